"""One router per resource of ``ragdb serve``; :func:`ragdb.serve.app.create_app`
includes them all."""
