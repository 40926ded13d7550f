"""Prometheus metrics of the marketplace, served as text at ``/metrics``.

What is counted: requests by route (the URL rule, not the raw path, so hostile paths
cannot blow up the label set), method and status; request latency by route; uploads
accepted (new or replayed) and rejected by reason; and the store size, read from the store
at each scrape.

Processes: gunicorn runs several worker processes, each with its own counters. When
``PROMETHEUS_MULTIPROC_DIR`` is set (``stratus-marketplace serve`` sets it to an empty
folder before anything imports ``prometheus_client``, which picks its value class at
import time), every process writes its values to files there and a scrape sums them with
``MultiProcessCollector``, so any worker answers for all. Without it (tests, the dev
server) the metrics live in the default registry of the one process. Nothing here is a
live-summed gauge, so the server need not call ``mark_process_dead`` when a worker exits.
"""

from __future__ import annotations

import os
from time import perf_counter

from flask import Flask, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from marketplace.store.base import Store

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"

REQUESTS = Counter("marketplace_http_requests", "HTTP requests answered",
                   ("route", "method", "status"))
LATENCY = Histogram("marketplace_http_request_duration_seconds",
                    "Time to answer an HTTP request", ("route",), buckets=LATENCY_BUCKETS)
ACCEPTED = Counter("marketplace_uploads_accepted", "Uploads accepted", ("outcome",))
REJECTED = Counter("marketplace_uploads_rejected", "Uploads rejected", ("reason",))


def init_app(app: Flask) -> None:
    """Time and count every request of the app."""
    app.before_request(_start)
    app.after_request(_finish)


def _start() -> None:
    g.metrics_started = perf_counter()


def _finish(response):
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        LATENCY.labels(route).observe(perf_counter() - started)
    return response


def upload_accepted(new: bool) -> None:
    ACCEPTED.labels("created" if new else "replayed").inc()


def upload_rejected(reason: str) -> None:
    REJECTED.labels(reason).inc()


class _Scrape:
    """The process (or all processes') metrics plus the store size, for one scrape."""

    def __init__(self, store: Store):
        self.store = store

    def collect(self):
        if os.environ.get(MULTIPROC_ENV):
            yield from multiprocess.MultiProcessCollector(None).collect()
        else:
            yield from REGISTRY.collect()
        size = GaugeMetricFamily("marketplace_store_entries", "Documents in the store")
        size.add_metric([], self.store.count())
        yield size


def exposition(store: Store) -> tuple[bytes, str]:
    """The metrics as Prometheus text, and its content type."""
    return generate_latest(_Scrape(store)), CONTENT_TYPE_LATEST
