"""The version of ragdb (a leaf: everything may import it, it imports nothing)."""

__version__ = "0.1.0"
