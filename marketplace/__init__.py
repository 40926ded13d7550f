"""StratusLab-style appliance marketplace: metadata core, store and web service.

A node or an image creator installs this package without the server: the metadata core
(``marketplace.metadata``) and the commands need none of Flask, gunicorn or
prometheus-client, which come with the ``server`` extra. So this module imports nothing;
``stratus-marketplace`` starts in ``marketplace.__main__``, which says which extra is missing.
"""
