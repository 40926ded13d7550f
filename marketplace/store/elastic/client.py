"""Reaching the cluster: the official client built from the ``ELASTICSEARCH_*`` settings, and
what its errors mean to the store.

The client marks a failed node dead and retries it by itself, so the store recovers when the
cluster returns, with nothing to restart. A cluster that cannot serve (no answer, refused
credentials, overloaded) becomes :class:`StoreError`: the API answers 503 with Retry-After
and /healthz is red; any other refusal is an error of the request itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marketplace.metadata.settings import read_secret
from marketplace.store.base import StoreError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

LONG_TIMEOUT = 300.0  # seconds, for requests that scan or write many documents


def connect(settings: dict[str, str]) -> Elasticsearch:
    """A client of the cluster the settings name (nothing is asked of the cluster yet: the
    app starts, and answers 503, while it is down)."""
    from elasticsearch import Elasticsearch
    options = {"request_timeout": float(settings["ELASTICSEARCH_TIMEOUT"]),
               "max_retries": 2, "retry_on_timeout": False}
    user = settings["ELASTICSEARCH_USERNAME"]
    password = _secret(settings, "ELASTICSEARCH_PASSWORD")
    api_key = _secret(settings, "ELASTICSEARCH_API_KEY")
    if api_key:
        options["api_key"] = api_key
    elif user:
        options["basic_auth"] = (user, password)
    if settings["ELASTICSEARCH_CA_CERTS"]:
        options["ca_certs"] = settings["ELASTICSEARCH_CA_CERTS"]
    if settings["ELASTICSEARCH_VERIFY_CERTS"].lower() in ("false", "0", "no"):
        options["verify_certs"] = False
        options["ssl_show_warn"] = False
    hosts = [u.strip() for u in settings["ELASTICSEARCH_URL"].split(",") if u.strip()]
    return Elasticsearch(hosts, **options)


def _secret(settings: dict[str, str], key: str) -> str:
    """A secret from its setting, else from the file its ``_FILE`` setting names."""
    return read_secret(f"MARKETPLACE_{key}", settings[key], settings[key + "_FILE"]) or ""


def store_error(exc: Exception, url: str) -> StoreError | None:
    """The StoreError a failed call to the cluster at ``url`` means (the caller may retry
    later), or None for a refusal of the request itself, which is a bug to raise as is."""
    from elasticsearch import ApiError, TransportError
    where = url or "its address"
    if isinstance(exc, TransportError):
        return StoreError(f"Elasticsearch at {where} does not answer: "
                          f"{type(exc).__name__}: {exc.message}")
    if not isinstance(exc, ApiError):
        return None
    if exc.status_code in (401, 403):
        return StoreError(f"Elasticsearch at {where} refused this marketplace's credentials "
                          f"({exc.status_code} {exc.error}): check the "
                          "MARKETPLACE_ELASTICSEARCH_* settings")
    if exc.status_code in (408, 429) or exc.status_code >= 500:
        return StoreError(f"Elasticsearch at {where} cannot serve now "
                          f"({exc.status_code} {exc.error})")
    return None


def missing_index(exc) -> bool:
    """Whether a NotFoundError is about the index (not a document in it)."""
    return exc.error == "index_not_found_exception"
