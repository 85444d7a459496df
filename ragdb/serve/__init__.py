"""The service: ``ragdb serve``, one long-running process that keeps the model
warm and offers the knowledge base over HTTP (imported only when serving).

:mod:`ragdb.serve.app` assembles the application from one router per resource
(:mod:`ragdb.serve.routes`); :mod:`ragdb.serve.jobs`, :mod:`~ragdb.serve.batching`
and :mod:`~ragdb.serve.watch` are the service's own machinery.
"""
