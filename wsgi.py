"""The WSGI entry point: ``gunicorn wsgi:app``."""

import gc

from portal import create_app

app = create_app()
# Everything loaded so far (the app, its templates, its libraries) lives as long as the
# process: keep it out of the garbage collector's full passes, which would otherwise
# walk all of it now and then in the middle of a request.
gc.freeze()
