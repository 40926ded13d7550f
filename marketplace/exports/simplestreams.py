"""simplestreams (what LXD, Incus, MAAS and ``sstream-mirror`` read) made from the index.

One products file, ``streams/v1/<CONTENT_ID>.json`` (``image-downloads``): a product per
operating system, version, architecture and tag (or title) and endorser; a version per
endorsement, named by its date (``YYYYMMDD_HHMMSS``, which sorts under ``LANG=C``); one item
per version, the disk image. Item paths are relative to the mirror root and never change:
``streams/v1/images/<identifier>/<email>/<created>`` is ours, and answers with a redirect to
the image's first web location. Entries without a SHA-256 (the checksum every client
verifies) or without a web location are left out.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from email.utils import format_datetime

from marketplace.exports.entries import web_location
from marketplace.metadata.identifier import path_segment

CONTENT_ID = "org.stratuslab.marketplace:images"
PRODUCTS_PATH = "streams/v1/images.json"
INDEX_PATH = "streams/v1/index.json"
ITEM_PREFIX = "streams/v1/images/"
_UNSAFE = re.compile(r"[^a-z0-9.+-]+")


def serial(created: str) -> str:
    """The version name of an endorsement date: ``2026-11-27T08:52:45Z`` → ``20261127_085245``."""
    return created.replace("-", "").replace(":", "").replace("T", "_").rstrip("Z")


def product_name(summary: dict) -> str:
    """``org.stratuslab:<os>:<version>:<arch>:<tag or title>:<email>``, lower case, with
    only letters, digits and ``. + -`` in each part (colons separate them)."""
    parts = [summary.get("os"), summary.get("os_version"), summary.get("os_arch"),
             summary.get("tag") or summary.get("title") or summary["identifier"],
             summary["email"]]
    return "org.stratuslab:" + ":".join(_UNSAFE.sub("-", (p or "unknown").lower()).strip("-")
                                        or "unknown" for p in parts)


def item_path(summary: dict) -> str:
    identifier, created = summary["identifier"], summary["endorsement"]["created"]
    return f"{ITEM_PREFIX}{identifier}/{path_segment(summary['email'])}/{created}"


def products(summaries, updated: datetime) -> dict:
    """The products document of the entries (any order)."""
    found: dict[str, dict] = {}
    for summary in summaries:
        checksums = summary["checksums"]
        if not checksums.get("SHA-256") or web_location(summary) is None:
            continue
        item = {"ftype": summary.get("format") or "raw", "path": item_path(summary),
                "sha256": checksums["SHA-256"].lower(), "size": summary["bytes"]}
        for algorithm, key in (("SHA-512", "sha512"), ("MD5", "md5")):
            if checksums.get(algorithm):
                item[key] = checksums[algorithm].lower()
        product = found.setdefault(product_name(summary), {
            "arch": summary.get("os_arch") or "", "os": summary.get("os") or "",
            "release": summary.get("os_version") or "", "version": summary.get("os_version")
            or "", "release_title": summary.get("title") or "", "endorser": summary["email"],
            "versions": {}})
        product["versions"][serial(summary["endorsement"]["created"])] = {
            "items": {"disk": item}, "label": summary.get("tag") or "",
            "identifier": summary["identifier"]}
    return {"content_id": CONTENT_ID, "datatype": "image-downloads", "format": "products:1.0",
            "updated": format_datetime(updated, usegmt=True),
            "products": dict(sorted(found.items()))}


def index(products_document: dict, updated: datetime, signed: bool = False) -> dict:
    """The index naming the products file (its ``.sjson`` form when ``signed``)."""
    path = PRODUCTS_PATH.removesuffix(".json") + (".sjson" if signed else ".json")
    return {"format": "index:1.0", "updated": format_datetime(updated, usegmt=True),
            "index": {CONTENT_ID: {"datatype": "image-downloads", "path": path,
                                   "format": "products:1.0",
                                   "updated": products_document["updated"],
                                   "products": list(products_document["products"])}}}


def dump(document: dict) -> bytes:
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
