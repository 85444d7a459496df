"""Whatever sequence of edits and ingests a user makes, the store holds each
current source exactly once, in its latest version, and nothing else."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ragdb import KnowledgeBase

NAMES = ["a.txt", "b.md", "sub/c.txt", "sub/d.txt"]
TEXTS = [
    "Llamas live in the Andes.",
    "# Octopus\n\nThe octopus has three hearts.\n\n## More\n\nAnd blue blood.",
    "Coffee is on the third floor. " * 60,
    "",
    "Zebras have stripes.",
]


class StoreMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.docs = self.tmp / "docs"
        self.docs.mkdir()
        self.kb = KnowledgeBase(store=self.tmp / "store")
        self.expected: dict[str, str] = {}  # source -> text, as of the last ingest
        self.created = False

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(name=st.sampled_from(NAMES), text=st.sampled_from(TEXTS))
    def write(self, name: str, text: str) -> None:
        path = self.docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    @rule(name=st.sampled_from(NAMES))
    def delete(self, name: str) -> None:
        (self.docs / name).unlink(missing_ok=True)

    @rule(prune=st.booleans())
    def ingest(self, prune: bool) -> None:
        files = {str(p.resolve()): p.read_text() for p in self.docs.rglob("*") if p.is_file()}
        if not files and not (prune and self.created):
            return
        # With no files left, --prune empties the store: "everything removed" is a state too.
        report = self.kb.ingest([self.docs], prune=prune)
        self.created = True
        for src, text in files.items():
            if text:
                self.expected[src] = text
        if prune:
            for src in list(self.expected):
                if src not in files:
                    del self.expected[src]
        assert report.skipped == sum(1 for t in files.values() if not t)

    @rule(name=st.sampled_from(NAMES))
    def remove(self, name: str) -> None:
        src = str((self.docs / name).resolve())
        if src in self.expected:
            self.kb.remove([src])
            del self.expected[src]

    @invariant()
    def store_matches(self) -> None:
        if not self.created:
            assert not self.expected
            return
        with self.kb.store().session() as session:
            unreadable: list[str] = []
            records = session.fetch_records(unreadable=unreadable)
            ids = [r.id for r in records]
            # The keyword index holds exactly the collection's chunks.
            assert session.keywords.ids() == set(ids) == session.ids()
        assert unreadable == []
        by_source: dict[str, list] = {}
        for record in records:
            by_source.setdefault(record.source, []).append(record)
        assert set(by_source) == set(self.expected)
        assert len(set(ids)) == len(ids) == self.kb.status().chunks
        for src, chunks in by_source.items():
            n = chunks[0].n_chunks
            assert sorted(r.chunk_index for r in chunks) == list(range(n))
            assert len({r.source_hash for r in chunks}) == 1
            text = self.expected[src]
            for record in chunks:
                assert text[record.start : record.end] == record.text


StoreMachine.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStore = StoreMachine.TestCase
