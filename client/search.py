"""stratus-search-metadata: find appliances in a marketplace by filters and free text.

A thin shell over ``GET /api/v1/appliances``: a table by default (identifier, os/version/
arch, endorser, endorsement date, status, title), ``--json`` for scripts (the server's
answer as is).
"""

from __future__ import annotations

import argparse
import sys

from client import cli
from client.config import Settings
from client.marketplace import Client
from client.upload import add_endpoint_option
from marketplace.metadata import vocabulary

# Each filter option is named as the search's filter (--os-version: os_version).
FILTERS = tuple(name for name in vocabulary.FILTERS if name != "identifier")
COLUMNS = ("IDENTIFIER", "OS", "ENDORSER", "CREATED", "STATUS", "TITLE")
MAX_TITLE = 40


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stratus-search-metadata",
                   "Search a marketplace's appliances: every filter and every word must match.")
    p.add_argument("words", nargs="*", metavar="WORD",
                   help="free text, matched as prefixes in titles, descriptions, tags, ...")
    p.add_argument("--os", help="operating system, e.g. ubuntu")
    p.add_argument("--os-version", help="operating system version, e.g. 24.04")
    p.add_argument("--arch", help="architecture, e.g. x86_64")
    p.add_argument("--endorser", metavar="EMAIL", help="endorser's email")
    p.add_argument("--kind", help="machine or disk")
    p.add_argument("--type", help="base or grid")
    p.add_argument("--format", help="disk format, e.g. qcow2")
    p.add_argument("--hypervisor", help="e.g. kvm")
    p.add_argument("--tag", help="tag (dcterms:alternative)")
    p.add_argument("--status", choices=vocabulary.STATUSES, default=vocabulary.DEFAULT_STATUS,
                   help="which entries (default valid)")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="at most N entries (default 50)")
    add_endpoint_option(p)
    return p


def query(options: argparse.Namespace) -> dict[str, str | int]:
    """The query parameters for the options given."""
    params: dict[str, str | int] = {"status": options.status, "limit": options.limit}
    for name in FILTERS:
        value = getattr(options, name, None)
        if value:
            params[name] = value
    if options.words:
        params["q"] = " ".join(options.words)
    return params


def _field(item: dict, *names: str) -> str:
    """The first of several possible names (flat or under ``endorsement``) an item has."""
    for name in names:
        for source in (item, item.get("endorsement") or {}):
            value = source.get(name)
            if value not in (None, ""):
                return str(value)
    return ""


def _created(item: dict) -> str:
    """The endorsement date (part of the entry's key), not the image's dcterms:created."""
    endorsement = item.get("endorsement")
    if isinstance(endorsement, dict) and endorsement.get("created"):
        return str(endorsement["created"])
    return _field(item, "created")


def row(item: dict) -> tuple[str, ...]:
    """One table row for one item of the search answer."""
    system = "/".join(v for v in (_field(item, "os"), _field(item, "os_version", "os-version"),
                                  _field(item, "os_arch", "os-arch", "arch")) if v)
    title = _field(item, "title")
    if len(title) > MAX_TITLE:
        title = title[:MAX_TITLE - 1] + "\u2026"
    return (_field(item, "identifier"), system or "-", _field(item, "email", "endorser") or "-",
            _created(item) or "-", _field(item, "status") or "-", title)


def table(items: list[dict]) -> str:
    """The items as an aligned text table with a header line."""
    rows = [COLUMNS, *(row(i) for i in items)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def run(options: argparse.Namespace, settings: Settings) -> int:
    if options.limit < 1:
        cli.error("--limit must be at least 1")
        return cli.USAGE
    answer = Client.from_settings(settings).search(query(options))
    if options.json:
        cli.emit_json(answer)
        return 0
    items = answer.get("items") or []
    if items:
        print(table(items))
    if not options.quiet:
        total = answer.get("total", len(items))
        print(f"{len(items)} of {total} entries", file=sys.stderr)
    return 0


main = cli.command(run, build_parser)
