"""The marketplace web application: ``create_app()`` wires settings, store and blueprints."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from marketplace import config, security
from marketplace.service import Marketplace
from marketplace.store.base import Store


def open_store(settings: dict[str, str]) -> Store:
    """The store the settings name."""
    if settings["STORE"] == "sqlite":
        from marketplace.store.sqlite import SQLiteStore
        return SQLiteStore(Path(settings["DATA_DIR"]) / "marketplace.db")
    if settings["STORE"] == "elasticsearch":
        from marketplace.store.elastic import ElasticStore
        return ElasticStore.from_settings(settings)
    raise ValueError(f"unknown store {settings['STORE']!r}: use sqlite or elasticsearch")


def create_app(data_dir: str | None = None, **overrides: str) -> Flask:
    """A marketplace app on the configured store (``MARKETPLACE_*`` settings)."""
    settings = config.load(data_dir, **overrides)
    app = Flask(__name__)
    app.config["MARKETPLACE"] = settings
    app.config["MAX_CONTENT_LENGTH"] = int(settings["MAX_UPLOAD_BYTES"]) + 64 * 1024
    security.init_app(app)
    app.extensions["marketplace"] = Marketplace.from_settings(settings, open_store(settings))
    from marketplace import api, pages
    app.register_blueprint(api.blueprint)
    app.register_blueprint(pages.blueprint)
    from marketplace.moderation import api as moderation_api
    from marketplace.moderation import logs
    from marketplace.moderation import pages as moderation_pages
    moderation_api.install(app)
    moderation_pages.install(app)
    logs.install()
    from marketplace.exports import views as exports
    exports.install(app)
    return app


def marketplace_of(app: Flask) -> Marketplace:
    """The app's marketplace service."""
    return app.extensions["marketplace"]
