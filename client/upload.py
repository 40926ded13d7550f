"""stratus-upload-metadata: send signed metadata documents to a marketplace.

Prints the URL of each stored entry on standard output, one a line; each failure is
reported on standard error with the problems the marketplace named, each once. The exit
status is the number of files that failed (at most 125). An upload the marketplace holds
until its endorser confirms it (HTTP 202, a link mailed to the endorser) is no failure: it
counts as 0, prints no entry URL, and a line on standard error says so and where it stands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client import cli
from client.config import Settings
from client.marketplace import DEFAULT_ENDPOINT, Client, MarketplaceError, problem_line

MAX_EXIT = 125


def add_endpoint_option(p: argparse.ArgumentParser) -> None:
    """``--marketplace-endpoint``, shared by the commands that talk to a marketplace."""
    p.add_argument("--marketplace-endpoint", metavar="URL",
                   help="marketplace to talk to (else STRATUSLAB_MARKETPLACE_ENDPOINT, the "
                   f"config file's marketplace_endpoint, or {DEFAULT_ENDPOINT})")


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stratus-upload-metadata",
                   "Upload signed metadata documents to a marketplace and print the URL of "
                   f"each entry. The exit status is the number of failed files (at most "
                   f"{MAX_EXIT}); an upload held until its endorser follows the link mailed "
                   "to them is no failure (a line on standard error says so).")
    p.add_argument("files", nargs="+", metavar="FILE", help="signed metadata documents")
    add_endpoint_option(p)
    return p


def upload_file(client: Client, path: Path) -> dict:
    """Upload one file; the outcome as a JSON-ready dict (never raises for a refusal)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"file": str(path), "ok": False, "error": f"cannot read {path}: "
                f"{exc.strerror or exc}", "status": None, "problems": []}
    try:
        uploaded = client.upload(data)
    except MarketplaceError as exc:
        return {"file": str(path), "ok": False, **exc.as_dict()}
    return {"file": str(path), "ok": True, "url": uploaded.url, "new": uploaded.created,
            "pending": uploaded.pending}


def report(result: dict, quiet: bool) -> None:
    """The human form: the URL on standard output, notes and failures on standard error."""
    if result.get("pending"):
        # not a note that -q silences: nothing is published until the endorser acts
        print(f"{result['file']}: held until its endorser confirms it: follow the link "
              f"mailed to the endorser's address (where it stands: {result['url']})",
              file=sys.stderr, flush=True)
        return
    if result["ok"]:
        print(result["url"], flush=True)
        if not result["new"] and not quiet:
            print(f"{result['file']}: already stored, not added again", file=sys.stderr)
        return
    cli.error(f"{result['file']}: {result['error']}")
    for line in unsaid_problems(result["error"], result.get("problems") or []):
        print(f"  - {line}", file=sys.stderr)


def unsaid_problems(error: str, problems: list) -> list[str]:
    """The problems the error line does not already name (the marketplace's message quotes
    them): each is printed once."""
    return [problem_line(p) for p in problems
            if (p.get("message") if isinstance(p, dict) else str(p)) not in error]


def run(options: argparse.Namespace, settings: Settings) -> int:
    client = Client.from_settings(settings)
    results = []
    for name in options.files:
        result = upload_file(client, Path(name))
        results.append(result)
        if not options.json:
            report(result, options.quiet)
    if options.json:
        cli.emit_json(results)
    return min(sum(not r["ok"] for r in results), MAX_EXIT)


main = cli.command(run, build_parser)
