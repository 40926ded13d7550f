"""``stratus-marketplace`` (and ``python -m marketplace``): the server's command line, once it
is known that the ``server`` extra is installed.

A node installs the package without Flask, gunicorn and prometheus-client; run there, the
command says in one line which extra to install instead of ending in an ImportError
traceback from deep inside the server's imports.
"""

from __future__ import annotations

import sys

SERVER_EXTRA = "stratus-marketplace[server]"
SERVER_MODULES = frozenset({"flask", "werkzeug", "jinja2", "gunicorn", "prometheus_client"})


def main() -> int:
    try:
        from marketplace import cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_MODULES:
            raise
        print(f"error: the marketplace server is not installed ({exc.name} is missing): "
              f"pip install '{SERVER_EXTRA}'", file=sys.stderr)
        return 1
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
