"""Getting documents in: which files a path names (:mod:`~ragdb.ingest.paths`),
reading them safely (:mod:`~ragdb.ingest.inputs`), their text
(:mod:`~ragdb.ingest.extract`, :mod:`~ragdb.ingest.record_files`), chunks
(:mod:`~ragdb.ingest.chunking`), what an ingest is to do (:mod:`~ragdb.ingest.plan`)
and doing it incrementally (:mod:`~ragdb.ingest.pipeline`).
"""
