"""Following a signed HEPiX image list (EGI AppDB, vmcaster, our own ``/imagelists``) as
vmcatcher does, into the same cache as the marketplace's images.

A list is accepted only when Debian's ``openssl smime -verify`` verifies its S/MIME signature
against the subscription's CA (a directory in ``/etc/grid-security/certificates`` style, or
a file), the signer's subject is the endorser DN the subscription pins, the list's own
``hv:endorser`` names that signer and its issuer, it was not created in the future, it has
not expired, and its ``hv:version`` is not lower than the last one this cache accepted from
that URL (an equal one is a note). Then every image is pulled through the fetcher's own pull
(one pass, SHA-512 checked, atomic commit, locks, quota, events): :class:`ListFetcher` only
answers the fetcher's "which entry?" from the list instead of from a marketplace.

Subscriptions may also be written in the fetcher config, one section each::

    [subscription appdb-fedcloud]
    url = https://appdb.egi.eu/store/vo/image-list/fedcloud.egi.eu/image.list
    endorser_dn = /DC=EU/DC=EGI/C=NL/O=Hosts/O=EGI.eu/CN=appdb.egi.eu
    ca_dir = /etc/grid-security/certificates
"""

from __future__ import annotations

import configparser
import dataclasses
import email
import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from client.node import errors
from client.node.fetcher import Fetcher, Outcome
from client.node.policy import Facts
from client.node.resolve import Candidate, Resolution
from client.node.session import network_reason
from client.node.target import Target
from marketplace.metadata import dn
from marketplace.metadata.hepix import DATE_FORMAT, cache_identifier, slash_dn, version_key
from marketplace.metadata.keys import certificate_emails
from marketplace.metadata.model import Appliance
from marketplace.metadata.verdict import Checked, Verdict, identity_of

CLOCK_SKEW = timedelta(minutes=5)
MAX_LIST_BYTES = 64 << 20
OPENSSL_TIMEOUT = 60
SECTION_PREFIX = "subscription "


class ListRefused(errors.NoAcceptableEntry):
    """The list failed one of the subscriber's rules; nothing of it was used."""


@dataclass(frozen=True)
class Subscription:
    """Where a list is, who must have signed it, and the CAs that vouch for that signer."""

    url: str
    endorser_dn: str
    ca: Path
    name: str = ""


@dataclass
class ListImage:
    """One ``hv:image`` that passed the checks, ready to pull."""

    identifier: str  # the cache's key, from the image's UUID
    uuid: str
    title: str
    uri: str
    size: int
    sha512: str
    expires: str | None
    extra: dict = field(default_factory=dict)


@dataclass
class AcceptedList:
    """A verified list: its facts, its signer, its images, and images it could not use."""

    subscription: Subscription
    version: str
    created: str
    expires: str
    signer: x509.Certificate
    endorser_email: str
    images: list[ListImage]
    skipped: list[dict]


def subscriptions_of(config) -> list[Subscription]:
    """The ``[subscription NAME]`` sections of the fetcher config files read."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(config.files, encoding="utf-8")
    found = []
    for section in parser.sections():
        if not section.startswith(SECTION_PREFIX):
            continue
        values = parser[section]
        missing = [k for k in ("url", "endorser_dn", "ca_dir") if not values.get(k)]
        if missing:
            raise errors.FetchError(f"[{section}] of the fetcher config lacks "
                                    f"{', '.join(missing)}")
        found.append(Subscription(values["url"], values["endorser_dn"],
                                  Path(values["ca_dir"]).expanduser(),
                                  section[len(SECTION_PREFIX):].strip()))
    return found


# --- reading and verifying a list ------------------------------------------------------------


def fetch_list(subscription: Subscription, session, timeout) -> bytes:
    """The signed list's bytes (capped)."""
    try:
        response = session.get(subscription.url, timeout=timeout, stream=True)
        if response.status_code != 200:
            raise errors.FetchError(f"{subscription.url} answered {response.status_code}")
        data = response.raw.read(MAX_LIST_BYTES + 1, decode_content=True)
    except OSError as exc:  # requests' errors are OSErrors too
        raise errors.FetchError(f"cannot fetch the image list {subscription.url}: "
                                f"{network_reason(exc)}") from None
    if len(data) > MAX_LIST_BYTES:
        raise errors.FetchError(f"{subscription.url}: the list is over {MAX_LIST_BYTES} bytes")
    return data


def verify_smime(signed: bytes, ca: Path) -> tuple[bytes, x509.Certificate]:
    """The signed content and the signer's certificate, as ``openssl smime -verify`` found
    them against the CA directory (hashed names) or file; ListRefused when it fails."""
    with tempfile.TemporaryDirectory() as scratch:
        signer_file = Path(scratch) / "signer.pem"
        where = ["-CApath", str(ca)] if ca.is_dir() else ["-CAfile", str(ca)]
        try:
            done = subprocess.run(["openssl", "smime", "-verify", *where,
                                   "-signer", str(signer_file)], input=signed,
                                  capture_output=True, timeout=OPENSSL_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise errors.FetchError(f"openssl could not run: {exc}") from None
        if done.returncode != 0 or not signer_file.exists():
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            raise ListRefused("the list's S/MIME signature does not verify against "
                              f"{ca}: {reason[0] if reason else 'openssl failed'}")
        certificate = x509.load_pem_x509_certificate(signer_file.read_bytes())
    return _content(done.stdout), certificate


def _content(verified: bytes) -> bytes:
    """The JSON openssl gave back (it keeps a text part's MIME headers, if any)."""
    if verified.lstrip().startswith(b"{"):
        return verified
    part = email.message_from_bytes(verified)
    return part.get_payload(decode=True) or b""


def check_list(subscription: Subscription, content: bytes, signer: x509.Certificate,
               last_version: str | None, now: datetime) -> AcceptedList:
    """vmcatcher's rules on a verified list; ListRefused naming the first one it breaks."""
    try:
        data = json.loads(content)["hv:imagelist"]
        endorser = data["hv:endorser"]["hv:x509"]
        version, created, expires = (data["hv:version"], data["dc:date:created"],
                                     data["dc:date:expires"])
        images = data.get("hv:images") or []
    except (ValueError, KeyError, TypeError) as exc:
        raise ListRefused(f"{subscription.url} is not a HEPiX image list: {exc!r}") from None
    _pinned(subscription, signer, endorser)
    _dated(created, expires, now)
    _not_older(version, last_version)
    accepted, skipped = [], []
    for position, item in enumerate(images):
        image = _image(item, position)
        (skipped if isinstance(image, dict) else accepted).append(image)
    return AcceptedList(subscription, str(version), created, expires, signer,
                        str(endorser.get("hv:email") or ""), accepted, skipped)


def _pinned(subscription: Subscription, signer: x509.Certificate, endorser: dict) -> None:
    subject, issuer = slash_dn(signer.subject), slash_dn(signer.issuer)
    expected = subscription.endorser_dn.strip()
    if not (subject == expected if expected.startswith("/") else dn.same_dn(expected,
                                                                            signer.subject)):
        raise ListRefused(f"the list is signed by {subject}, not by the subscribed endorser "
                          f"{expected}")
    if endorser.get("hv:dn") != subject or endorser.get("hv:ca") != issuer:
        raise ListRefused(f"the list names its endorser {endorser.get('hv:dn')} of "
                          f"{endorser.get('hv:ca')}, but its signer is {subject} of {issuer}")


def _dated(created: str, expires: str, now: datetime) -> None:
    try:
        made = datetime.strptime(created, DATE_FORMAT).replace(tzinfo=UTC)
        ends = datetime.strptime(expires, DATE_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise ListRefused(f"the list's dates {created!r}, {expires!r} are not "
                          "YYYY-MM-DDTHH:MM:SSZ") from None
    if made > now + CLOCK_SKEW:
        raise ListRefused(f"the list was created in the future ({created})")
    if ends < now:
        raise ListRefused(f"the list expired on {expires}")


def _not_older(version: object, last_version: str | None) -> None:
    try:
        key = version_key(str(version))
        if last_version is not None and key < version_key(last_version):
            raise ListRefused(f"the list's hv:version {version} is lower than {last_version}, "
                              "the last one accepted: an old list replayed")
    except ValueError as exc:
        raise ListRefused(str(exc)) from None


def _image(item: object, position: int) -> ListImage | dict:
    """A usable image, or why not (it is skipped; the rest of the list still counts)."""
    image = item.get("hv:image") if isinstance(item, dict) else None
    if not isinstance(image, dict):
        return {"position": position, "reason": "not an hv:image"}
    try:
        identifier = cache_identifier(image["dc:identifier"])
        sha512 = str(image["sl:checksum:sha512"]).lower()
        size = int(image["hv:size"])
        uri = str(image["hv:uri"])
        int(sha512, 16)
    except (KeyError, TypeError, ValueError) as exc:
        return {"position": position, "identifier": image.get("dc:identifier"),
                "reason": f"missing or malformed {exc}"}
    if len(sha512) != 128 or size < 0 or not uri.startswith(("http://", "https://")):
        return {"position": position, "identifier": image.get("dc:identifier"),
                "reason": "needs a 128-digit SHA-512, a size and an http(s) hv:uri"}
    return ListImage(identifier, image["dc:identifier"], str(image.get("dc:title") or ""),
                     uri, size, sha512, image.get("dc:date:expires"), image)


# --- pulling the images ----------------------------------------------------------------------


class ListFetcher(Fetcher):
    """The fetcher, answering "which entry?" from an accepted list instead of a marketplace.

    The list's signature is the trust here, so the marketplace trust store does not apply
    (an image of a list has no signed document to check again)."""

    def __init__(self, config, accepted: AcceptedList, **kwargs):
        super().__init__(config, **kwargs)
        self.policy = dataclasses.replace(self.policy, trust_paths=[])
        self.accepted = accepted
        self.by_identifier = {image.identifier: image for image in accepted.images}

    def resolve(self, target: Target) -> Resolution:
        image = self.by_identifier[target.identifier]
        candidate = self.candidate(image)
        if candidate.reasons:
            self.events.emit("refused", image.identifier, reasons=[candidate.summary()])
            raise errors.NoAcceptableEntry(f"{image.identifier} ({image.title}) is refused",
                                 image.identifier, [candidate.summary()])
        return Resolution(image.identifier, candidate, [])

    def candidate(self, image: ListImage) -> Candidate:
        accepted = self.accepted
        appliance = Appliance(identifier=image.identifier, bytes=image.size,
                              checksums={"SHA-512": image.sha512}, locations=[image.uri],
                              title=image.title, format=image.extra.get("hv:format"),
                              os=image.extra.get("sl:os"),
                              os_version=image.extra.get("sl:osversion"),
                              os_arch=image.extra.get("sl:arch"))
        valid = min(filter(None, (image.expires, accepted.expires)))
        facts = Facts(identifier=image.identifier, sha1="", email=accepted.endorser_email,
                      certificate_emails=certificate_emails(accepted.signer),
                      subject=accepted.signer.subject.rfc4514_string(),
                      issuer=accepted.signer.issuer.rfc4514_string(),
                      created=accepted.created, valid=valid,
                      checksums={"SHA-512": image.sha512})
        verdict = Verdict(Checked(None, appliance, accepted.signer),
                          identity_of(accepted.endorser_email, accepted.signer), None)
        candidate = Candidate(accepted.subscription.url, None, verdict, facts)
        candidate.reasons = self.policy.refusals(facts)
        return candidate

    def pull_all(self) -> list[dict]:
        """Pull every image of the list; each one's outcome or error, in list order."""
        results = []
        for image in self.accepted.images:
            try:
                outcome: Outcome = self.pull(image.identifier)
            except errors.FetchError as exc:
                results.append({"uuid": image.uuid, **exc.as_dict()})
                continue
            results.append({"uuid": image.uuid, "title": image.title, **outcome.as_dict()})
        return results


# --- the last version seen -------------------------------------------------------------------


def _state_path(fetcher: Fetcher, url: str) -> Path:
    name = hashlib.sha256(url.encode()).hexdigest()[:32]
    return fetcher.cache.dir("subscriptions") / f"{name}.json"


def last_version(fetcher: Fetcher, url: str) -> str | None:
    try:
        return json.loads(_state_path(fetcher, url).read_bytes())["version"]
    except (OSError, ValueError, KeyError):
        return None


def remember(fetcher: Fetcher, accepted: AcceptedList) -> None:
    from marketplace.metadata.files import write_atomic

    path = _state_path(fetcher, accepted.subscription.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({
        "url": accepted.subscription.url, "version": accepted.version,
        "created": accepted.created, "expires": accepted.expires,
        "endorser": slash_dn(accepted.signer.subject)}, indent=1).encode())


def follow(fetcher: Fetcher, subscription: Subscription, now: datetime | None = None) -> dict:
    """Fetch, verify and accept the list, remember its version, then pull its images.

    The check of the version and its update happen under one cache lock, so two runs
    cannot both accept lists out of order."""
    now = now or datetime.now(UTC)
    signed = fetch_list(subscription, fetcher.session(),
                        (fetcher.config.connect_timeout, fetcher.config.read_timeout))
    content, signer = verify_smime(signed, subscription.ca)
    fetcher.cache.ensure()
    name = "subscription-" + hashlib.sha256(subscription.url.encode()).hexdigest()[:32]
    held = fetcher.cache.lock(name, fetcher.config.lock_wait)
    try:
        previous = last_version(fetcher, subscription.url)
        accepted = check_list(subscription, content, signer, previous, now)
        if previous is not None and version_key(accepted.version) == version_key(previous):
            fetcher.log(f"{subscription.url}: hv:version {previous} again")
        remember(fetcher, accepted)
    finally:
        held.release()
    puller = ListFetcher(fetcher.config, accepted, progress=fetcher.progress, log=fetcher.log,
                         events=fetcher.events)
    return {"url": subscription.url, "version": accepted.version,
            "previous_version": previous, "expires": accepted.expires,
            "endorser": slash_dn(signer.subject), "skipped": accepted.skipped,
            "images": puller.pull_all()}


# --- the command -----------------------------------------------------------------------------


def subscribe_command(fetcher: Fetcher, options, out) -> int:
    """``stratus-image-cache subscribe [URL --endorser-dn DN --ca-dir DIR]``: that list, or
    every subscription of the config; the exit status of the worst outcome."""
    if options.url:
        if not options.endorser_dn or not options.ca_dir:
            out.error("subscribe URL needs --endorser-dn and --ca-dir")
            return errors.USAGE
        wanted = [Subscription(options.url, options.endorser_dn, Path(options.ca_dir))]
    else:
        wanted = subscriptions_of(fetcher.config)
        if not wanted:
            out.error("no URL given and no [subscription NAME] section in the fetcher config")
            return errors.USAGE
    reports, status = [], errors.OK
    for subscription in wanted:
        try:
            report = follow(fetcher, subscription)
        except errors.FetchError as exc:
            out.error(f"{subscription.url}: {exc.message}")
            reports.append({"url": subscription.url, **exc.as_dict()})
            status = max(status, exc.exit_code)
            continue
        reports.append(report)
        for result in report["images"]:
            status = max(status, result.get("exit_code", errors.OK))
        _print(out, report)
    if out.json:
        out.emit({"subscriptions": reports})
    return status


def _print(out, report: dict) -> None:
    if out.json:
        return
    print(f"{report['url']}: hv:version {report['version']} by {report['endorser']}, "
          f"valid until {report['expires']}")
    for result in report["images"]:
        if "error" in result:
            print(f"  {result['uuid']}: {result['kind']}: {result['error']}")
        else:
            how = "already cached" if result["cached"] else "downloaded"
            print(f"  {result['uuid']} ({result['title']}): {how}: {result['path']}")
    for skipped in report["skipped"]:
        print(f"  skipped image {skipped.get('identifier') or skipped['position']}: "
              f"{skipped['reason']}")
