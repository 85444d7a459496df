"""The store: the only package that talks to Chroma (and imports chromadb).

Chunks are :mod:`~ragdb.store.records`, written and deleted only through the
protocol in :mod:`~ragdb.store.versions`, inside a :mod:`~ragdb.store.session`
of a :mod:`~ragdb.store.store` whose backend is a directory
(:mod:`~ragdb.store.local`) or a Chroma server (:mod:`~ragdb.store.server`),
both a :class:`~ragdb.store.backend.Backend`.
"""
