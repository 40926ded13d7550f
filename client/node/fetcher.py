"""The fetcher: a verified image in the cache (or in a file) from an identifier, once.

:meth:`Fetcher.pull` answers from the cache when it can: the record proves the bytes were
verified (inode, size and mtime unchanged) and the current policy still accepts the entry
they were verified against (lists, expiry and deprecation from the recorded facts; the full
signature and chain check again when the trust store changed). Otherwise it takes the
image's pull lock -- or waits while another process or host pulls it and then uses that
result -- resolves the entry on the marketplace (and, with a ``log_key``, checks it in the
marketplace's transparency log, recorded once the image is verified), makes room under the
quota, downloads into a partial file (taking over one a dead puller left), and commits it
into the cache.
Events report what happened. :meth:`Fetcher.download_to` does the same into a plain file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from client.node import errors
from client.node.cache import Cache, Hit, verified_strongly
from client.node.config import FetcherConfig, human_size
from client.node.events import Events
from client.node.locks import LockTimeout
from client.node.policy import Policy
from client.node.target import Target, parse_target
from marketplace.metadata.digests import same_digest

ProgressFactory = Callable[[str, int | None], Callable[[int], None]]


@dataclass
class Outcome:
    """Where the verified image is and how it got there."""

    identifier: str
    path: Path
    size: int
    cached: bool
    record: dict = field(default_factory=dict)
    resolution: dict | None = None
    fetched: dict | None = None
    evicted: list[str] = field(default_factory=list)
    waited: bool = False
    lease: str | None = None

    def as_dict(self) -> dict:
        facts = self.record.get("facts", {})
        return {"identifier": self.identifier, "path": str(self.path), "size": self.size,
                "cached": self.cached, "waited_for_other_puller": self.waited,
                "digests": self.record.get("digests", {}),
                "endorser": facts.get("email"), "created": facts.get("created"),
                "location": self.record.get("location"), "resolution": self.resolution,
                "download": self.fetched, "evicted": self.evicted, "lease": self.lease}


class Fetcher:
    """Pulls images into one cache under one configuration and policy."""

    def __init__(self, config: FetcherConfig, policy: Policy | None = None,
                 progress: ProgressFactory | None = None,
                 log: Callable[[str], None] | None = None, events: Events | None = None):
        self.config = config
        self.policy = policy or Policy.from_config(config)
        self.cache = Cache(config.cache_dir, config.hostname, config.lock_stale_after,
                           config.local_lock_dir)
        self.log = log or (lambda message: None)
        self.events = events or Events(config.event_command, config.hostname,
                                       config.event_timeout, warn=self.log)
        self.progress = progress
        self._session = self._location_session = self._transparency = None

    # --- the cache -------------------------------------------------------------------------

    def pull(self, text: str, hold_for: int | None = None, allow_pull: bool = True) -> Outcome:
        """The cached image of ``text`` (an identifier or marketplace URL), pulled if needed.

        ``hold_for``: mark the image in use by that process of this host until it exits, so
        that no eviction removes it meanwhile. ``allow_pull=False``: NotFound on a miss.
        """
        target = parse_target(text, self.config.marketplace_endpoint)
        identifier = target.identifier
        lease = None
        if hold_for is not None:
            self.cache.ensure()
            lease = self.cache.add_lease(identifier, hold_for)
        try:
            outcome = self.from_cache(identifier)
            if outcome is None:
                if not allow_pull:
                    raise errors.NotFound(f"{identifier} is not in the cache at "
                                          f"{self.cache.root}", identifier)
                outcome = self._pull(target)
        except BaseException:
            if lease is not None:
                self.cache.release_lease(lease)
            raise
        outcome.lease = str(lease) if lease else None
        return outcome

    def from_cache(self, identifier: str) -> Outcome | None:
        """A hit the current policy accepts, or None (absent, damaged, or now refused)."""
        hit = self.cache.lookup(identifier)
        if hit is None:
            return None
        if not hit.intact and not self._reverify(hit):
            return None
        if self.refusals_of(hit):
            return None
        if self.policy.verify_all and not self._verified_all(hit):
            return None
        self.cache.touch(identifier)
        return Outcome(identifier, hit.path, hit.record.get("size", 0), True, hit.record)

    def refusals_of(self, hit: Hit) -> list[str]:
        """Why the current policy would refuse the entry the cached image was verified for."""
        reasons = self.policy.refusals(hit.facts)
        if not verified_strongly(hit.record) and not self.policy.allow_weak:
            reasons.append("the cached image was verified with weak checksums only "
                           "(--allow-weak accepts it)")
        if not reasons and self.policy.trust_paths and \
                self.policy.trust_fingerprint() not in hit.record.get("trust", []):
            reasons = self._recheck_document(hit)
        return reasons

    def _recheck_document(self, hit: Hit) -> list[str]:
        """The trust store changed since the image was verified: check its entry again."""
        from client.node.resolve import check_candidate

        try:
            document = self.cache.record_path(hit.identifier, ".xml").read_bytes()
        except OSError:
            return ["the cached entry's document is missing"]
        candidate = check_candidate(hit.record.get("entry_url", ""), document, hit.identifier,
                                    self.policy, _now())
        if not candidate.reasons:
            trust = [*hit.record.get("trust", []), self.policy.trust_fingerprint()]
            self.cache.update_record(hit.identifier, trust=trust[-8:])
        return candidate.reasons

    def _reverify(self, hit: Hit) -> bool:
        """The image's inode, size or mtime changed: hash it again; evict it if damaged."""
        self.log(f"{hit.identifier}: the cached file changed since it was verified; hashing")
        good, found = self.cache.rehash(hit.identifier)
        if good:
            self.cache.write_record(hit.identifier, self.cache.stamp(hit.identifier,
                                                                     dict(hit.record)))
            hit.record = self.cache.read_record(hit.identifier) or hit.record
            return True
        self._evict_damaged(hit.identifier, found)
        return False

    def _evict_damaged(self, identifier: str, found: dict) -> None:
        self.cache.remove(identifier, force=True)
        self.events.emit("evicted", identifier, reason="damaged", found=found)
        self.log(f"{identifier}: the cached bytes no longer match what was verified; removed")

    def _verified_all(self, hit: Hit) -> bool:
        """With --verify-all: hash once more for checksums the record does not cover yet."""
        missing = [a for a in hit.facts.checksums if a not in hit.record.get("digests", {})]
        if not missing:
            return True
        from marketplace.metadata.digests import digest_file

        digests = digest_file(hit.path, missing, compression=None)
        if not all(same_digest(digests.checksums[a], hit.facts.checksums[a])
                   for a in missing):
            self._evict_damaged(hit.identifier, digests.checksums)
            return False
        record = dict(hit.record)
        record["digests"] = {**record.get("digests", {}), **digests.checksums}
        self.cache.write_record(hit.identifier, record)
        hit.record = record
        return True

    def _pull(self, target: Target) -> Outcome:
        identifier = target.identifier
        self.cache.ensure()
        refused_hit = self.cache.present(identifier)  # cached, but not acceptable now
        done = None if refused_hit else (lambda: self.cache.present(identifier))
        held = self._lock(identifier, done)
        if held is None:  # another puller finished while we waited
            outcome = self.from_cache(identifier)
            if outcome is not None:
                outcome.waited = True
                return outcome
            held = self._lock(identifier, None)
        try:
            outcome = None if refused_hit else self.from_cache(identifier)
            if outcome is None:
                outcome = self._resolve_and_download(target, held)
        finally:
            held.release()
        if not outcome.cached:
            self.events.emit("available", identifier, path=str(outcome.path),
                             size=outcome.size, **_event_facts(outcome.record))
        outcome.evicted += self._enforce_quota(protect={identifier})
        return outcome

    def _lock(self, identifier: str, done):
        def waiting(holder) -> None:
            who = holder.describe() if holder else "another process"
            self.log(f"{identifier}: waiting for {who}, which is pulling it")

        try:
            return self.cache.pull_lock(identifier, self.config.lock_wait, done, waiting)
        except LockTimeout as exc:
            raise errors.Busy(str(exc), identifier) from None

    def _resolve_and_download(self, target: Target, held) -> Outcome:
        from client.node import download

        identifier = target.identifier
        resolution = self.resolve(target)
        chosen = resolution.chosen
        expected = self._expected(chosen)
        adopted = self._adopt_cached(identifier, chosen, expected, resolution)
        if adopted is not None:
            return adopted
        evicted = self._enforce_quota(incoming=expected.size, protect={identifier})
        partial, state = self.cache.adopt_partial(identifier, held.token)
        if state is not None:
            self.log(f"{identifier}: taking over a partial download of "
                     f"{partial.stat().st_size} bytes from {state.get('location')}")
        sink = download.Sink(partial, keep=state is not None)
        owner = asdict(held.shared.owner)

        def save_state(values: dict) -> None:
            compression = download.compression_for(values["location"], expected.compression)
            self.cache.save_partial_state(partial, {**values, "owner": owner,
                                                    "compression": compression})

        fetched = self._download(identifier, chosen, expected, sink, state, save_state)
        if held.lost:
            self.log(f"{identifier}: our lock was taken over while downloading; the bytes "
                     "are verified, committing them")
        record = self._record(chosen, fetched)
        record = self.cache.commit(identifier, partial, record, chosen.document)
        self.cache.drop_partial(partial)
        self._recorded(resolution)
        return Outcome(identifier, self.cache.image_path(identifier), record["size"], False,
                       record, resolution.summary(), _fetched_dict(fetched), evicted)

    def _download(self, identifier: str, chosen, expected, sink, state, save_state):
        from client.node import download

        progress = self._progress(identifier, expected.size)
        try:
            fetched = download.fetch(chosen.checked.appliance.locations, expected, sink,
                                     self.settings(), session=self.location_session(),
                                     progress=progress, resume=state, on_state=save_state,
                                     log=self.log)
            sink.finish()
        except download.DownloadError as exc:
            sink.discard()
            self.cache.drop_partial(sink.path)
            self.events.emit("failed", identifier, attempts=exc.attempts)
            raise errors.DownloadFailed(f"no location delivered {identifier} verified",
                                        identifier, exc.attempts) from None
        except BaseException:
            sink.close()  # interrupted: the partial file stays for the next puller
            raise
        finally:
            closer = getattr(progress, "close", None)
            if closer is not None:
                closer()
        return fetched

    def _adopt_cached(self, identifier: str, chosen, expected, resolution) -> Outcome | None:
        """A cached image refused under its old entry, that the chosen entry describes too."""
        hit = self.cache.lookup(identifier)
        if hit is None or not hit.intact:
            return None
        digests = hit.record.get("digests", {})
        same = [a for a in expected.checksums
                if a in digests and same_digest(digests[a], expected.checksums[a])]
        if not same or hit.record.get("size") != expected.size:
            return None
        record = dict(hit.record)
        record.update(facts=chosen.facts.as_dict(), entry_url=chosen.url,
                      trust=[self.policy.trust_fingerprint()] if self.policy.trust_paths
                      else [])
        self.cache.write_record(identifier, record, chosen.document)
        self._recorded(resolution)
        self.log(f"{identifier}: the cached image matches the entry of {chosen.created}; "
                 "now accepted under it")
        return Outcome(identifier, hit.path, expected.size, True, record,
                       resolution.summary())

    def _enforce_quota(self, incoming: int = 0, protect=frozenset()) -> list[str]:
        quota = self.config.quota
        if quota is None:
            return []
        try:
            evicted, left = self.cache.enforce_quota(quota, incoming, protect,
                                                     wait=self.config.lock_wait)
        except LockTimeout as exc:
            self.log(f"quota not enforced: {exc}")
            return []
        for item in evicted:
            self.events.emit("evicted", item.identifier, reason="quota", size=item.size)
            self.log(f"{item.identifier}: evicted ({human_size(item.size)}, least recently "
                     "used)")
        if left + incoming > quota:
            coming = f" and {human_size(incoming)} more are coming" if incoming else ""
            self.log(f"the cache holds {human_size(left)}{coming}, "
                     f"{human_size(left + incoming - quota)} over the quota of "
                     f"{human_size(quota)}: what stays is pinned, in use or being pulled")
        return [item.identifier for item in evicted]

    def prune(self, quota: int | None = None) -> tuple[list[str], list[str]]:
        """Evict down to the quota and clean debris; (evicted ids, removed debris)."""
        self.cache.ensure()
        quota = self.config.quota if quota is None else quota
        removed = self.cache.clean()
        if quota is None:
            return [], removed
        evicted, _ = self.cache.enforce_quota(quota, wait=self.config.lock_wait)
        for item in evicted:
            self.events.emit("evicted", item.identifier, reason="quota", size=item.size)
        return [item.identifier for item in evicted], removed

    def remove(self, identifier: str, force: bool = False) -> bool:
        gone = self.cache.remove(identifier, force)
        if gone:
            self.events.emit("evicted", identifier, reason="removed")
        return gone

    def verify(self, identifiers: list[str] | None = None, keep: bool = False) -> list[dict]:
        """Hash cached images again; damaged ones are removed (unless ``keep``)."""
        results = []
        for identifier in identifiers or [i.identifier for i in self.cache.items()]:
            if self.cache.lookup(identifier) is None:
                results.append({"identifier": identifier, "status": "not-cached"})
                continue
            progress = self._progress(f"verify {identifier}", None)
            good, found = self.cache.rehash(identifier, progress)
            getattr(progress, "close", lambda: None)()
            if good:
                self.cache.write_record(identifier, self.cache.stamp(
                    identifier, self.cache.read_record(identifier) or {}), keep_last_use=True)
                results.append({"identifier": identifier, "status": "ok", "found": found})
            else:
                if not keep:
                    self._evict_damaged(identifier, found)
                results.append({"identifier": identifier, "status": "damaged",
                                "removed": not keep, "found": found,
                                "expected": (self.cache.read_record(identifier) or {})
                                .get("digests")})
        return results

    # --- a plain file ------------------------------------------------------------------------

    def download_to(self, text: str, output: Path | None) -> Outcome:
        """Resolve and download into ``output`` (atomically: temp file, fsync, rename)."""
        from client.node import download
        from marketplace.metadata.files import fsync_directory

        target = parse_target(text, self.config.marketplace_endpoint)
        if output is not None:
            _check_output_folder(Path(output))  # before asking anyone for anything
        resolution = self.resolve(target)
        chosen = resolution.chosen
        expected = self._expected(chosen)
        output = _output_path(output, chosen)
        temporary = output.with_name(f".{output.name}.{os.urandom(6).hex()}.part")
        sink = download.Sink(temporary)
        try:
            fetched = self._download(target.identifier, chosen, expected, sink, None, None)
            os.replace(temporary, output)
        except BaseException:
            sink.discard()
            raise
        fsync_directory(output.parent)
        self._recorded(resolution)
        record = self._record(chosen, fetched)
        self.events.emit("available", target.identifier, path=str(output), size=expected.size,
                         **_event_facts(record))
        return Outcome(target.identifier, output, expected.size, False, record,
                       resolution.summary(), _fetched_dict(fetched))

    # --- shared steps ------------------------------------------------------------------------

    def resolve(self, target: Target):
        """The chosen entry, verified, and (with a log_key) shown in the marketplace's log;
        what the log showed is recorded only once the image is verified (:meth:`_recorded`)."""
        from client.node.resolve import resolve

        try:
            resolution = resolve(target, self.policy, self.session(),
                                 (self.config.connect_timeout, self.config.read_timeout))
        except errors.NoAcceptableEntry as exc:
            self.events.emit("refused", target.identifier, reasons=exc.candidates)
            raise
        try:
            self._check_log(target, resolution)
        except errors.LogError as exc:
            self.events.emit("refused", target.identifier, reasons=[exc.as_dict()])
            raise
        return resolution

    def _check_log(self, target: Target, resolution) -> None:
        """Replace the chosen entry by its stored bytes, verified, once the log includes
        them (under a checkpoint that extends the one kept): the log speaks of those bytes,
        which a listing does not carry verbatim."""
        from client.node.resolve import check_candidate

        log = self.transparency()
        if not log.checked:
            if log.settings.required:
                raise errors.LogUntrusted("require_log is set but no log_key: the node "
                                          "cannot check the marketplace's log, so it takes "
                                          "nothing from it", target.identifier)
            self.log("the marketplace's transparency log is not checked (no log_key set)")
            return
        chosen = resolution.chosen
        document, index = log.entry(chosen.url, target.identifier)
        exact = check_candidate(chosen.url, document, target.identifier, self.policy, _now(),
                                target.base)
        if exact.reasons or exact.key != chosen.key:
            why = "; ".join(exact.reasons) or f"it is {'/'.join(exact.key or ('?',))}"
            raise errors.FetchError(f"the entry the marketplace serves at {chosen.url} is not "
                                    f"the one it listed: {why}", target.identifier)
        newest = log.newest_taken(exact.key)
        deprecation = self._deprecation(target, exact, log) \
            if newest is not None and exact.created < newest else None
        inclusion = log.check(target.base, exact.key, document, index, deprecation)
        resolution.chosen, resolution.inclusion = exact, inclusion
        self.log(f"{target.identifier}: leaf {index} of the log {inclusion.checkpoint.origin} "
                 f"({inclusion.checkpoint.size} leaves) publishes this entry")
        if inclusion.deprecation is not None:
            self.log(f"{target.identifier}: older than the entry this node took, but leaf "
                     f"{inclusion.deprecation.index} deprecates that one (a document of "
                     f"{inclusion.deprecation.key[2]} signed by its endorser)")

    def _deprecation(self, target: Target, entry, log):
        """The newest document of ``entry``'s image that deprecates, signed by its endorser,
        as the marketplace lists it (every status) and serves it with its log index, verified
        like every entry (the policy's lists and statuses aside: a deprecation is refused as
        an image, not as proof); None when it lists none. Whether it is new enough and in the
        log is :meth:`Transparency.check`'s to decide."""
        from client.node.resolve import fetch_documents, same_endorser, verified_candidate
        from client.node.transparency import Deprecation

        def deprecates(candidate) -> bool:
            return not candidate.reasons and candidate.facts.deprecated is not None and \
                same_endorser(entry.facts, candidate.facts)

        listing = Target(target.identifier, target.endpoint)
        timeout = (self.config.connect_timeout, self.config.read_timeout)
        found = [c for c in (verified_candidate(url, data, target.identifier, self.policy,
                                                _now(), target.base)
                             for url, data in fetch_documents(listing, self.session(), timeout))
                 if deprecates(c)]
        if not found:
            return None
        listed = max(found, key=lambda c: c.created)
        document, index = log.entry(listed.url, target.identifier)
        exact = verified_candidate(listed.url, document, target.identifier, self.policy,
                                   _now(), target.base)
        if not deprecates(exact) or exact.key != listed.key:
            why = "; ".join(exact.reasons) or f"it is {'/'.join(exact.key or ('?',))}"
            raise errors.FetchError(f"the deprecation the marketplace serves at {listed.url} "
                                    f"is not the one it listed: {why}", target.identifier)
        return Deprecation(exact.key, document, index)

    def _recorded(self, resolution) -> None:
        """Remember the checkpoint and the entry's date the log showed, now the image is
        verified."""
        if resolution.inclusion is None:
            return
        try:
            self.transparency().record(resolution.inclusion)
        except LockTimeout as exc:
            raise errors.Busy(str(exc), resolution.identifier) from None

    def transparency(self):
        """The log this node checks (client.node.transparency), settings read once."""
        if self._transparency is None:
            from client.node.resolve import get
            from client.node.transparency import LOCK, LogSettings, Transparency

            settings = LogSettings.from_config(self.config)
            if settings.key is not None:
                self.cache.ensure()
            timeout = (self.config.connect_timeout, self.config.read_timeout)
            self._transparency = Transparency(
                settings, self.cache.dir("log"), self.cache.trusted,
                lambda url, room, accept: get(self.session(), url, timeout, room, None, accept),
                lambda: self.cache.lock(LOCK, self.config.lock_wait))
        return self._transparency

    def _expected(self, chosen):
        from client.node import download

        appliance = chosen.checked.appliance
        algorithms = self.policy.algorithms(appliance.checksums)
        return download.Expected(appliance.bytes, {a: appliance.checksums[a] for a in algorithms},
                                 appliance.compression)

    def _record(self, chosen, fetched) -> dict:
        appliance = chosen.checked.appliance
        return {"identifier": appliance.identifier, "size": fetched.digests.size,
                "digests": fetched.digests.checksums,
                "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "verified_by": self.config.hostname, "location": fetched.location,
                "compression": fetched.compression, "entry_url": chosen.url,
                "facts": chosen.facts.as_dict(),
                "trust": [self.policy.trust_fingerprint()] if self.policy.trust_paths else [],
                "title": appliance.title, "format": appliance.format, "os": appliance.os,
                "os_version": appliance.os_version, "os_arch": appliance.os_arch}

    def settings(self):
        from client.node import download

        return download.TransferSettings.from_config(self.config)

    def session(self):
        """The session for the marketplace (any address: the operator configured it)."""
        if self._session is None:
            from client.node import session

            self._session = session.make_session(self.settings())
        return self._session

    def location_session(self):
        """The session for image locations (public addresses unless the node allows more)."""
        if self._location_session is None:
            from client.node import session

            self._location_session = session.location_session(self.settings())
        return self._location_session

    def _progress(self, label: str, total: int | None):
        return self.progress(label, total) if self.progress else None


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _event_facts(record: dict) -> dict:
    facts = record.get("facts", {})
    return {"endorser": facts.get("email"), "created": facts.get("created"),
            "location": record.get("location"), "digests": record.get("digests", {})}


def _fetched_dict(fetched) -> dict:
    return {"location": fetched.location, "compression": fetched.compression,
            "resumed_from": fetched.resumed_from, "reconnects": fetched.reconnects,
            "seconds": round(fetched.seconds, 3)}


def _check_output_folder(output: Path) -> None:
    """An OSError naming ``output`` and its folder when the file could not be written there
    (else the error would name the hidden temporary file written first)."""
    folder = output if output.is_dir() else output.parent
    if not folder.exists():
        reason = "does not exist"
    elif not folder.is_dir():
        reason = "is not a directory"
    elif not os.access(folder, os.W_OK | os.X_OK):
        reason = "is not writable"
    else:
        return
    raise OSError(f"cannot write {output}: {folder} {reason}")


def _output_path(output: Path | None, chosen) -> Path:
    """``output`` (a directory gets the default name), else a name in the current directory."""
    from client.node.download import compression_for

    name = f"{chosen.facts.identifier}.img"
    locations = chosen.checked.appliance.locations
    if locations:
        base = locations[0].rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        if compression_for(locations[0], None):
            base = base.rsplit(".", 1)[0]
        if base and not base.startswith(".") and all(c.isalnum() or c in "._-" for c in base):
            name = base
    if output is None:
        return Path.cwd() / name
    output = Path(output)
    return output / name if output.is_dir() else output
