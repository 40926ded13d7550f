"""The original marketplace's addresses: every route also under ``/marketplace/``.

The original StratusLab marketplace was a Java web application deployed at the context path
``/marketplace`` (``https://host/marketplace/metadata/...``), and its users' configurations
and the original commands carry that path. This WSGI middleware moves a leading
``/marketplace`` from ``PATH_INFO`` to ``SCRIPT_NAME``, so the same views answer and the
links they build (``request.script_root``) keep the prefix the client used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

CONTEXT_PATH = "/marketplace"


class OriginalContextPath:
    """Serve the app under ``/marketplace`` as well as at the root."""

    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == CONTEXT_PATH or path.startswith(CONTEXT_PATH + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + CONTEXT_PATH
            environ["PATH_INFO"] = path[len(CONTEXT_PATH):] or "/"
        return self.app(environ, start_response)
