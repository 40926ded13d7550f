"""StratusLab-style appliance marketplace: metadata core, store and web service.

A node or an image creator installs this package without the server: the metadata core
(``marketplace.metadata``) and the commands need none of Flask, gunicorn or
prometheus-client, which come with the ``server`` extra. So this module imports nothing, and
the ``stratus-marketplace`` command starts here to say which extra is missing instead of
ending in an ImportError traceback.
"""

from __future__ import annotations

import sys

SERVER_EXTRA = "stratus-marketplace[server]"
SERVER_MODULES = frozenset({"flask", "werkzeug", "jinja2", "gunicorn", "prometheus_client"})


def main() -> int:
    """Entry point of ``stratus-marketplace``: the server's command line, once it is known
    that the server extra is installed."""
    try:
        from marketplace import cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_MODULES:
            raise
        print(f"error: the marketplace server is not installed ({exc.name} is missing): "
              f"pip install '{SERVER_EXTRA}'", file=sys.stderr)
        return 1
    return cli.main()
