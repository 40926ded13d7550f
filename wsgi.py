"""The marketplace as a WSGI application, for gunicorn or any WSGI server: ``wsgi:app``."""

from marketplace.web.app import create_app

app = create_app()
