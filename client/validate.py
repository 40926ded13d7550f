"""stratus-validate-metadata: a verdict for each metadata document, with the reasons."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from client import cli
from client.config import Settings
from marketplace.metadata.model import format_date, parse_date
from marketplace.metadata.problems import MetadataError
from marketplace.metadata.trust import TrustStore
from marketplace.metadata.verdict import Moment, judge

MAX_EXIT = 125


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stratus-validate-metadata",
                   "Validate metadata documents and verify their signatures. The exit status "
                   f"is the number of invalid files (at most {MAX_EXIT}).")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--at", metavar="YYYY-MM-DDTHH:MM:SSZ",
                   help="check the certificate as of this time (default: the endorsement date)")
    p.add_argument("--trust-store", action="append", metavar="PATH",
                   help="CA certificates and CRLs (file or directory) the signer must chain to")
    p.add_argument("--require-signature", action="store_true",
                   help="an unsigned document is invalid")
    return p


def verdict(path: Path, at: datetime | None, trust_store: TrustStore | None,
            require_signature: bool = False) -> dict:
    """The verdict of the trust decision on one file, as a JSON-ready dict: as of the
    endorsement date (or exactly ``at``); an endorsement dated in the future is invalid."""
    now = datetime.now(UTC)
    try:
        verdict = judge(path.read_bytes(), Moment.endorsement(now, at), trust_store,
                        require_signature=require_signature)
    except MetadataError as exc:
        return {"file": str(path), "valid": False,
                "problems": [p.as_dict() for p in exc.problems]}
    except OSError as exc:
        return {"file": str(path), "valid": False,
                "problems": [{"element": "file", "rule": "readable", "message": str(exc)}]}
    appliance, certificate = verdict.appliance, verdict.certificate
    return {"file": str(path), "valid": True, "identifier": appliance.identifier,
            "status": appliance.status(at or now),
            "signed": certificate is not None,
            "signer": certificate.subject.rfc4514_string() if certificate else None,
            "email": appliance.endorsement.email, "email_proof": verdict.email_proof,
            "judged_at": format_date(verdict.moment) if verdict.moment else None,
            "problems": []}


def _line(result: dict) -> str:
    if not result["valid"]:
        reasons = "".join(f"\n  - {p['element']}: {p['message']} [{p['rule']}]"
                          for p in result["problems"])
        return f"{result['file']}: INVALID{reasons}"
    signed = f"signed by {result['signer']}" if result["signed"] else "not signed"
    unproven = f"; the certificate does not carry the email {result['email']}: unproven" \
        if result["signed"] and not result["email_proof"] else ""
    return f"{result['file']}: valid, {signed}, status {result['status']}{unproven}"


def run(options: argparse.Namespace, settings: Settings) -> int:
    at = parse_date(options.at, "--at") if options.at else None
    store = TrustStore.load(*map(Path, options.trust_store)) if options.trust_store else None
    results = [verdict(Path(f), at, store, options.require_signature) for f in options.files]
    if options.json:
        cli.emit_json(results)
    else:
        print("\n".join(_line(r) for r in results))
    return min(sum(not r["valid"] for r in results), MAX_EXIT)


main = cli.command(run, build_parser)
