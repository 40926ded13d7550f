"""The marketplace web application: ``create_app()`` wires settings, store and views."""

from __future__ import annotations

from flask import Flask

from marketplace import config
from marketplace.moderation import logs
from marketplace.service import Marketplace, open_store
from marketplace.web import current, errors, metrics, security
from marketplace.web.context_path import OriginalContextPath
from marketplace.web.views import api, exports, log, moderation_api, moderation_pages, pages


def create_app(data_dir: str | None = None, **overrides: str) -> Flask:
    """A marketplace app on the configured store (``MARKETPLACE_*`` settings)."""
    settings = config.load(data_dir, **overrides)
    app = Flask(__name__)
    # The original answered /metadata/ as /metadata: no redirect a client must follow.
    app.url_map.strict_slashes = False
    app.wsgi_app = OriginalContextPath(app.wsgi_app)
    app.config["MARKETPLACE"] = settings
    app.config["MAX_CONTENT_LENGTH"] = int(settings["MAX_UPLOAD_BYTES"]) + 64 * 1024
    security.init_app(app)
    metrics.init_app(app)
    current.init_app(app, Marketplace.from_settings(settings, open_store(settings)))
    errors.init_app(app)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(pages.blueprint)
    moderation_api.init_app(app)
    moderation_pages.init_app(app)
    exports.init_app(app)
    log.init_app(app)
    logs.redact_tokens()
    return app
