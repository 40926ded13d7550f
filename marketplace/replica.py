"""Replica mode: a read-only marketplace that follows a primary and checks what it copies.

A replica (``MARKETPLACE_PRIMARY_URL``) refuses uploads with 403, as the original
StratusLab replicas did, and pulls from its primary:

1. the primary's change feed, ``GET /api/v1/changes?after=N``: every publication and removal
   in the order the primary made them (upload order, not endorsement order: an entry
   endorsed last week and uploaded now is not missed);
2. for a publication, the stored bytes at ``/metadata/<identifier>/<email>/<created>``,
   judged HERE (below), then published through the moderation workflow (store and change
   feed); for a removal, a tombstone of this replica's own and ``Store.remove``.

When is the certificate checked? Through the one trust decision
(:func:`~marketplace.metadata.verdict.judge`), with this replica's trust store, CRLs and
endorser lists, as of the moment the primary published the entry (the change's ``at``,
no later than now) -- but never earlier than the endorsement, and an endorsement dated
after that publication is refused: the very rules an upload meets, so a feed that claims
an early publication time cannot bring in a document whose certificate had expired when
it was endorsed. Not "now": a replica that did would drop every entry whose certificate
expired since its upload, and diverge from its primary. An entry found by the first walk
(the listings give no publication time) is judged as of its endorsement date. As for an
upload, the endorsement's email must be one the certificate carries; blocked endorsers
are refused, and unlisted ones too when this replica refuses them. An entry that fails is
left out, logged and reported; a malformed change is reported and skipped; the feed goes
on.

The serial reached is kept in the moderation database (one mark per primary), so a
restarted replica goes on where it stopped; replaying a change is harmless (``add`` of a
stored document and ``remove`` of a missing one change nothing). The first pull (or
``--full``) copies every entry the primary lists, then follows the feed from the serial
the primary had before that walk.

How it runs: ``stratus-marketplace replicate --once`` (e.g. from cron), ``replicate``
(follows every ``REPLICATE_INTERVAL`` seconds), or ``serve`` with ``PRIMARY_URL`` set or
``--replica-of URL``, which runs that follower as one child process beside gunicorn (one
puller per server, whatever the number of workers).

A witnessing replica (``REPLICA_WITNESS_KEY``, with the primary's log key in
``REPLICA_LOG_KEY``) also checks, after each pull, that the primary's signed log checkpoint
extends the last one it cosigned, then cosigns it and posts the cosignature to the primary
(:mod:`marketplace.log.witness`); a checkpoint that does not is refused and kept as evidence.

Limits: the first walk copies the latest entry of each identifier and endorser (the
primary's listings show no older versions); from then on the feed brings every version.
An entry its primary published after its endorser confirmed an email by mail is left out
(a replica cannot see that mail). Entries stored on the primary without going through
its upload path (``demo``,
``migrate``) reach a replica only by a walk (``replicate --full``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

from marketplace.log.witness import SplitView, Witness, WitnessError
from marketplace.metadata.identifier import entry_path
from marketplace.metadata.model import parse_date
from marketplace.metadata.problems import MetadataError
from marketplace.metadata.verdict import Moment, Refused
from marketplace.service import Marketplace, TooLarge
from marketplace.store.base import Conflict, Entry
from marketplace.store.state import PUBLISH, REMOVE

log = logging.getLogger(__name__)
BATCH = 500
TIMEOUT = 30
ACTOR = "replication"


class ReplicationError(RuntimeError):
    """The primary could not be read; the pull stops and is tried again later."""


@dataclass
class Report:
    """What one pull did."""

    added: int = 0
    known: int = 0
    removed: int = 0
    gone: int = 0  # published then removed on the primary before we fetched it
    refused: list[dict] = field(default_factory=list)
    serial: int = 0
    walked: bool = False
    witness: dict | None = None  # what witnessing the primary's log did, when it does

    def summary(self) -> str:
        """One line for people. Entries left out are no failure of the pull: they were
        refused here, each logged with its reason, and the pull went on past them."""
        left = f", {len(self.refused)} left out (refused here; each is logged with its " \
            "reason)" if self.refused else ""
        return f"up to change {self.serial}: {self.added} added, {self.removed} removed{left}"

    def as_dict(self) -> dict:
        return {"added": self.added, "known": self.known, "removed": self.removed,
                "gone": self.gone, "refused": self.refused, "serial": self.serial,
                "walked": self.walked, "witness": self.witness}


@dataclass
class Replicator:
    """Pulls a primary into the local store of ``marketplace``."""

    primary: str
    marketplace: Marketplace
    session: requests.Session = field(default_factory=requests.Session)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    witness: Witness | None = None

    def __post_init__(self):
        self.primary = self.primary.rstrip("/")
        if not self.primary.startswith(("http://", "https://")):
            raise ValueError(f"the primary must be an http(s) URL; got {self.primary!r}")
        self.session.headers["User-Agent"] = "stratus-marketplace-replica"

    @property
    def mark_name(self) -> str:
        return f"replica:{self.primary}"

    def pull(self, full: bool = False) -> Report:
        """Bring the local store up to the primary's feed; what was done."""
        state = self.marketplace.moderation.state
        report = Report()
        mark = state.mark(self.mark_name)
        if mark is None or full:
            serial = self._get("/api/v1/changes", after=2 ** 62, limit=1)["last"]
            self._walk(report)
            state.set_mark(self.mark_name, str(serial))
            report.walked = True
        else:
            serial = int(mark)
        try:
            while True:
                changes = self._get("/api/v1/changes", after=serial, limit=BATCH)["changes"]
                for change in changes:
                    serial = self._apply(change, report) or serial
                if len(changes) < BATCH:
                    break
        finally:
            state.set_mark(self.mark_name, str(serial))
            report.serial = serial
        if self.witness is not None:
            report.witness = self.cosign()
        return report

    def cosign(self) -> dict:
        """Witness the primary's log: check its checkpoint, cosign it, post the cosignature.
        What was done; a refusal (evidence kept) is logged as an error, never cosigned."""
        try:
            checkpoint, cosigned = self.witness.witness(self._log_file,
                                                        int(self.clock().timestamp()))
        except SplitView as exc:
            log.error("refused to cosign the log of %s: %s", self.primary, exc)
            return {"cosigned": False, "error": str(exc), "evidence": str(exc.evidence)}
        except WitnessError as exc:
            log.warning("could not witness the log of %s: %s", self.primary, exc)
            return {"cosigned": False, "error": str(exc)}
        answer = self._post_cosignature(cosigned)
        return {"cosigned": True, "size": checkpoint.size, "posted": answer}

    def _log_file(self, path: str) -> bytes:
        url = f"{self.primary}/log/{path}"
        try:
            response = self.session.get(url, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise WitnessError(f"{url}: {exc}") from exc
        if response.status_code != 200:
            raise WitnessError(f"{url} answered {response.status_code}")
        return response.content

    def _post_cosignature(self, cosigned: str) -> str:
        """Hand the cosignature to the primary; its answer, for the report (a primary that
        does not list this witness, or signed again meanwhile, is no failure of the pull)."""
        url = f"{self.primary}/log/cosignature"
        try:
            response = self.session.post(url, data=cosigned.encode(), timeout=TIMEOUT,
                                         headers={"Content-Type": "text/plain"})
        except requests.RequestException as exc:
            log.warning("could not post the cosignature to %s: %s", url, exc)
            return f"not posted: {exc}"
        if response.status_code != 200:
            log.warning("%s answered %s to the cosignature: %s", url, response.status_code,
                        response.text[:300])
        return f"{response.status_code}"

    def follow(self, interval: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Pull every ``interval`` seconds until ``stop()``; failures are logged, retried."""
        while not stop():
            try:
                report = self.pull()
                if report.added or report.removed or report.refused:
                    log.info("replicated from %s: %s", self.primary, report.as_dict())
            except Exception as exc:  # a follower outlives any one failure
                log.warning("could not pull from %s: %s: %s", self.primary,
                            type(exc).__name__, exc)
            time.sleep(interval)

    # --- reading the primary ---

    def _get(self, path: str, **params) -> dict:
        try:
            response = self.session.get(self.primary + path, params=params, timeout=TIMEOUT,
                                        headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise ReplicationError(f"{self.primary}{path}: {exc}") from exc
        if response.status_code != 200:
            raise ReplicationError(f"{self.primary}{path} answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise ReplicationError(f"{self.primary}{path} did not answer JSON") from None
        if not isinstance(data, dict):
            raise ReplicationError(f"{self.primary}{path} did not answer a JSON object")
        return data

    def _document(self, key: tuple[str, str, str]) -> bytes | None:
        """The primary's stored bytes of an entry; None when it has no such entry now."""
        url = self.primary + entry_path(*key)
        limit = self.marketplace.max_bytes
        try:
            with self.session.get(url, timeout=TIMEOUT, stream=True,
                                  headers={"Accept": "application/rdf+xml"}) as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise ReplicationError(f"{url} answered {response.status_code}")
                chunks, size = [], 0
                for chunk in response.iter_content(64 * 1024):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"larger than this marketplace's limit of {limit} "
                                       "bytes")
                return b"".join(chunks)
        except requests.RequestException as exc:
            raise ReplicationError(f"{url}: {exc}") from exc

    def _walk(self, report: Report) -> None:
        """Copy every entry the primary lists, oldest endorsement first (keyset paging)."""
        since, offset = None, 0
        while True:
            params = {"status": "all", "sort": "created", "limit": BATCH, "offset": offset}
            if since:
                params["created_from"] = since
            items = self._get("/api/v1/appliances", **params)["items"]
            keys = []
            for item in items:
                try:
                    keys.append((item["identifier"], item["email"],
                                 item["endorsement"]["created"]))
                except (KeyError, TypeError) as exc:
                    self._malformed(item, report, f"a listed entry without {exc}")
            for key in keys:
                self._publish(key, report)
            if len(items) < BATCH or not keys:
                return
            last = keys[-1][2]
            if last == since:
                offset += len(items)
            else:
                since = last
                offset = sum(key[2] == last for key in keys)

    # --- applying ---

    def _apply(self, change: object, report: Report) -> int | None:
        """Apply one change of the feed; its serial. A malformed change is reported and
        skipped, so that one bad row never stops the changes after it."""
        try:
            serial, action, key, at = _read_change(change)
        except (TypeError, ValueError, MetadataError) as exc:
            serial = change.get("serial") if isinstance(change, dict) else None
            self._malformed(change, report, f"malformed change: {exc}")
            return serial if isinstance(serial, int) else None
        if action == PUBLISH:
            self._publish(key, report, at)
        else:
            self._remove(key, report)
        return serial

    def _publish(self, key: tuple[str, str, str], report: Report,
                 published: datetime | None = None) -> None:
        try:
            data = self._document(key)
        except TooLarge as exc:
            return self._refuse(key, report, str(exc))
        if data is None:
            report.gone += 1
            return None
        moderation = self.marketplace.moderation
        try:
            entry = self.verify(data, key, published)
            publish = moderation.publish if published is None else moderation.publish_following
            new = publish(entry, self.clock()).new
        except (MetadataError, Refused, Conflict) as exc:  # Conflict: Removed too
            return self._refuse(key, report, str(exc))
        if new:
            report.added += 1
        else:
            report.known += 1
        return None

    def verify(self, data: bytes, key: tuple[str, str, str],
               published: datetime | None = None) -> Entry:
        """The entry, judged as the primary should have judged its upload: with the
        certificate as of when the primary says it published it, but never before the
        endorsement (else as of the endorsement), and this marketplace's lists. Raises
        MetadataError or Refused."""
        moderation = self.marketplace.moderation
        moment = Moment.published(published, self.clock()) if published \
            else Moment.endorsement(self.clock())
        verdict = moderation.judge(data, moment)
        entry = Entry(data, verdict.appliance)
        if entry.key != key:
            raise Refused("replica", f"the primary served {entry.key} for {key}",
                          element="document")
        moderation.admit_copy(verdict)
        return entry

    def _malformed(self, what: object, report: Report, reason: str) -> None:
        log.warning("skipped from %s: %s", self.primary, reason)
        report.refused.append({"change": str(what)[:300], "reason": reason})

    def _refuse(self, key: tuple[str, str, str], report: Report, reason: str) -> None:
        log.warning("left out %s by %s at %s from %s: %s", *key, self.primary, reason)
        report.refused.append({"identifier": key[0], "email": key[1], "created": key[2],
                               "reason": reason})

    def _remove(self, key: tuple[str, str, str], report: Report) -> None:
        if self.marketplace.moderation.follow_removal(key, ACTOR, self.primary, self.clock()):
            report.removed += 1


def _read_change(change: object) -> tuple[int, str, tuple[str, str, str], datetime | None]:
    """(serial, action, key, published at) of a feed change; TypeError or ValueError
    (MetadataError for a bad date) naming what is wrong."""
    if not isinstance(change, dict):
        raise TypeError(f"a change is a JSON object, not {type(change).__name__}")
    needed = ("serial", "action", "identifier", "email", "created") + \
        (("at",) if change.get("action") == PUBLISH else ())
    missing = [name for name in needed if name not in change]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    serial, action = change["serial"], change["action"]
    if not isinstance(serial, int) or isinstance(serial, bool):
        raise TypeError(f"serial {serial!r} is not a number")
    if action not in (PUBLISH, REMOVE):
        raise ValueError(f"unknown action {action!r}")
    key = (change["identifier"], change["email"], change["created"])
    if not all(isinstance(part, str) and part for part in key):
        raise ValueError(f"identifier, email and created must be text, got {key!r}")
    parse_date(key[2], "created")
    return serial, action, key, parse_date(change["at"], "at") if action == PUBLISH else None
