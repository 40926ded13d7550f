"""Moving an original StratusLab marketplace over: ``stratus-marketplace import DIR``.

The original server (a Java war) kept every upload as a file
``DIR/metadata/<identifier>/<email>/<created>.xml``, in its flat-file and its git stores
alike. It stored documents re-serialized rather than byte for byte, which their XML-DSig
signatures survive (the signed content is canonicalized), and it never checked certificate
dates, so most certificates of that era expired long ago. Each file is therefore judged by
the one trust decision (:func:`~marketplace.metadata.verdict.judge`) as of its own
endorsement date: signature, endorser against certificate, the trust store and CRLs,
blocked endorsers, removals the operators made here, and -- as for a replica's copy, since
no mail proved anything here -- only emails the certificate carries. A file that passes is
stored byte for byte as read, and joins the change feed so replicas get it. The path must
name the entry the file holds; a tampered file fails its signature. Each file gets a verdict
(accepted, already there, refused with the rule), so a second run adds nothing and says so.

Uploads (``POST /metadata``) still judge certificates at upload time: only this command,
run by an operator on a directory they trust to be the old site's, looks back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from marketplace.metadata.problems import MetadataError
from marketplace.metadata.verdict import Moment, Refused
from marketplace.service import Marketplace
from marketplace.store.base import Conflict, Entry

ACCEPTED, KNOWN, REFUSED = "accepted", "already there", "refused"


@dataclass(frozen=True)
class Verdict:
    """What became of one file of the original marketplace."""

    path: str
    outcome: str  # accepted | already there | refused
    rule: str = ""
    message: str = ""

    def as_dict(self) -> dict:
        return {"file": self.path, "outcome": self.outcome, "rule": self.rule,
                "message": self.message}


def original_files(directory: Path) -> list[Path]:
    """The documents of an original data directory, in a stable order.

    ``directory`` is the original's data directory (holding ``metadata/``) or its
    ``metadata/`` folder itself. Files of another depth are left out: the layout is fixed.
    """
    root = Path(directory)
    if (root / "metadata").is_dir():
        root = root / "metadata"
    if not root.is_dir():
        raise FileNotFoundError(f"{directory} is not an original marketplace's data directory "
                                "(no metadata/ folder)")
    return sorted(p for p in root.glob("*/*/*.xml") if p.is_file() and not p.is_symlink())


def import_directory(marketplace: Marketplace, directory: Path,
                     progress: Callable[[int, int], None] | None = None) -> Iterator[Verdict]:
    """Judge and store every document of an original marketplace; a verdict per file."""
    files = original_files(directory)
    for done, path in enumerate(files, 1):
        yield import_file(marketplace, path)
        if progress is not None:
            progress(done, len(files))


def import_file(marketplace: Marketplace, path: Path) -> Verdict:
    """One file: judged as of its endorsement date, stored byte for byte when it passes."""
    try:
        data = _read(path, marketplace.max_bytes)
        entry = _judged(marketplace, data, path)
        new = marketplace.moderation.publish(entry, datetime.now(UTC)).new
    except MetadataError as exc:
        first = exc.problems[0]
        return Verdict(str(path), REFUSED, first.rule, "; ".join(map(str, exc.problems)))
    except Refused as exc:
        return Verdict(str(path), REFUSED, exc.rule, exc.message)
    except Conflict as exc:  # Removed too: operators removed it here
        return Verdict(str(path), REFUSED, getattr(exc, "rule", "conflict"), str(exc))
    except OSError as exc:
        return Verdict(str(path), REFUSED, "readable", str(exc))
    return Verdict(str(path), ACCEPTED if new else KNOWN)


def _read(path: Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise Refused("size", f"larger than this marketplace's limit of {limit} bytes",
                      element="document")
    return data


def _judged(marketplace: Marketplace, data: bytes, path: Path) -> Entry:
    """The entry of a document that passed every check as of its endorsement date, whose
    place in the original layout names it."""
    verdict = marketplace.moderation.judge(data, Moment.endorsement(datetime.now(UTC)))
    marketplace.moderation.admit_copy(verdict)
    entry = Entry(data, verdict.appliance)
    expected = (path.parent.parent.name, path.parent.name, path.stem)
    if entry.key != expected:
        raise Refused("original-layout", f"the file holds {entry.key}, but its place names "
                      f"{expected}", element="document")
    return entry
