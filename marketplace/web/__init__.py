"""The marketplace on the web: ``app.create_app()`` and, below the views, what they share.

Layers, lowest first: ``negotiation`` (media types), ``current`` (the marketplace, store,
moderation and admin guard of the running app, as Flask's ``get_db``), ``params`` (every
request parameter parsed once), ``urls`` (every link), ``errors``, ``security`` and
``metrics`` (registered with ``init_app(app)``); then the views in ``views/``, which never
import each other, and ``app`` on top. Only the commands and ``wsgi.py`` import this package.
"""
