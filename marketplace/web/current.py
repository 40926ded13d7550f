"""What a request works with: the running app's marketplace, store, moderation and admin
guard, as Flask's tutorial reaches its database (``get_db``), so that views import this
module instead of the app or each other."""

from __future__ import annotations

from flask import Flask, current_app

from marketplace.moderation.auth import Guard
from marketplace.moderation.workflow import Moderation
from marketplace.service import Marketplace
from marketplace.store.base import Store


def init_app(app: Flask, marketplace: Marketplace) -> None:
    """Keep the app's marketplace and the guard of its admin area (from its settings)."""
    app.extensions["marketplace"] = marketplace
    app.extensions["admin_guard"] = Guard.from_settings(app.config["MARKETPLACE"])


def marketplace_of(app: Flask) -> Marketplace:
    """An app's marketplace, outside a request (commands, tests)."""
    return app.extensions["marketplace"]


def current_marketplace() -> Marketplace:
    return marketplace_of(current_app)


def current_store() -> Store:
    return current_marketplace().store


def current_moderation() -> Moderation:
    return current_marketplace().moderation


def current_guard() -> Guard:
    return current_app.extensions["admin_guard"]


def current_settings() -> dict[str, str]:
    return current_app.config["MARKETPLACE"]
