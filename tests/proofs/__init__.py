"""The proof harnesses: long runs that check what the suite checks small (many
writers and readers at once, SIGKILLs at random moments), run as modules from
the repository root (`python -m tests.proofs.stress`, via scripts/stress)."""
