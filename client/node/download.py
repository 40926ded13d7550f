"""Downloading an image: one pass from the network to a verified file.

For each location in order (``http``, ``https``, ``file``), until one delivers the image:
read the bytes, decompress them (``gz``, ``bz2``, ``xz``, ``zst``: the location's suffix,
else the entry's ``dcterms:compression``), count them, hash them and write them, all in the
same pass. Chunks go to :class:`~marketplace.metadata.digests.MultiHasher`, which hashes on
worker threads while this thread reads the next chunk and writes the last one. At the end the
byte count and the checksums must equal the entry's, else the location is refused and the
next one is tried; the caller renames the file into place only after :func:`fetch` returns.

Which locations a node follows is its own choice, since the entry's endorser chooses them:
only the schemes of ``location_schemes`` (``http`` and ``https`` unless ``file`` is added),
and over HTTP(S) only public addresses unless ``allow_private_addresses`` names the
networks of the node's own mirrors (checked by the session, :mod:`client.node.session`, on
the address each connection actually reached, for every redirect too); redirects stay on
http(s) and never go from https to http. A ``file`` location that fails says only
that it failed, never its size, its digests or whether it exists.

A location must keep up ``min_rate`` bytes per second over each ``rate_window`` and finish
within ``location_timeout``; else the next location is tried. Without this, a server sending
a byte every few seconds stalls a pull for ever under any read timeout.

HTTP(S) goes through ``requests`` with connect and read timeouts. A location that cannot
be connected to at all on first contact (refused, no such host, connect timeout) is left at
once for the next one: backing off on a dead mirror cost half a minute per pull. Once it
has answered, a failed connection, a 5xx/429 answer, a read timeout or a body cut short is
retried with exponential backoff; a
body that breaks off is resumed with ``Range: bytes=N-`` (guarded by ``If-Range``), and the
decompressor and hashes simply go on, since they never left memory. A server that ignores
``Range`` gets its first N bytes skipped. 4xx answers, TLS failures and wrong bytes move on to
the next location at once. TLS certificates are always verified (:mod:`client.node.session`).

A partial file left by a process that died is resumed across processes only for an
uncompressed location (a decompressor's state cannot be saved): its bytes are read through
the hashes again, then the download continues with ``Range`` from its end.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from client.node import entries
from client.node.config import parse_networks
from client.node.session import AddressRefused, location_session, network_reason, never_connected
from marketplace.metadata.compression import (
    COMPRESSIONS,
    CompressionError,
    compression_from_name,
    decompressing_reader,
)
from marketplace.metadata.digests import Digests, MultiHasher, same_digest

CHUNK_SIZE = 1 << 20
WRITEBACK_EVERY = 64 << 20  # start writing dirty pages to disk this often, so fsync is short
SUPPORTED_SCHEMES = ("http", "https", "file")
MAX_REDIRECTS = 10
FILE_FAILED = ("the file location did not deliver the image (a file location's reason is not "
               "reported, so that entries cannot probe the node's files)")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass
class TransferSettings:
    """How patient and persistent a download is."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 30.0
    ca_bundle: list[Path] = field(default_factory=list)
    chunk_size: int = CHUNK_SIZE
    location_schemes: list[str] = field(default_factory=lambda: ["http", "https"])
    allow_private_addresses: list = field(default_factory=list)  # networks (or "yes")
    min_rate: int | None = 10 * 1024  # None or 0: no minimum
    rate_window: float = 60.0
    location_timeout: float = 6 * 3600.0

    @classmethod
    def from_config(cls, config) -> TransferSettings:
        return cls(config.connect_timeout, config.read_timeout, config.retries,
                   config.backoff, config.backoff_max, list(config.ca_bundle),
                   location_schemes=list(config.location_schemes),
                   allow_private_addresses=list(config.allow_private_addresses),
                   min_rate=config.min_rate, rate_window=config.rate_window,
                   location_timeout=config.location_timeout)

    @property
    def private_networks(self) -> list:
        """The private networks locations may be on (parsed here too for settings made by
        hand)."""
        return parse_networks(self.allow_private_addresses)

    @property
    def max_reconnects(self) -> int:
        return max(20, 10 * self.retries)


@dataclass(frozen=True)
class Expected:
    """What the entry promises: the uncompressed size and the checksums to verify."""

    size: int
    checksums: dict[str, str]
    compression: str | None = None


@dataclass
class Fetched:
    """A verified download: where from, the digests, and how it went."""

    location: str
    digests: Digests
    compression: str | None
    resumed_from: int
    reconnects: int
    seconds: float


class LocationError(Exception):
    """One location failed; the message says how."""


class Mismatch(LocationError):
    """The location delivered other bytes than the entry describes."""


class RangeRefused(LocationError):
    """The server would not continue from the offset we asked for."""


class SchemeRefused(LocationError):
    """The location's scheme is not one this node follows."""


class DownloadError(Exception):
    """No location delivered the image; ``attempts`` lists what each one did."""

    def __init__(self, attempts: list[dict]):
        self.attempts = attempts
        summary = "; ".join(f"{a['location']}: {a['error']}" for a in attempts) or \
            "the entry has no location"
        super().__init__(summary)


# --- the whole download ---------------------------------------------------------------


def fetch(locations: list[str], expected: Expected, sink: Sink, settings: TransferSettings, *,
          session=None, progress: Callable[[int], None] | None = None,
          resume: dict | None = None, on_state: Callable[[dict], None] | None = None,
          log: Callable[[str], None] | None = None) -> Fetched:
    """Download the image into ``sink`` from the first location that delivers it verified.

    ``resume`` is the state a dead puller saved with its partial file (its location and
    validator); the sink's bytes are then continued, not fetched again. Raises DownloadError.
    """
    attempts: list[dict] = []
    order = list(dict.fromkeys(locations))
    if resume and resume.get("location") in order:
        order.remove(resume["location"])
        order.insert(0, resume["location"])
    for location in order:
        start = sink.size if resume and resume.get("location") == location else 0
        if start > expected.size:
            start = 0
        try:
            if compression_for(location, expected.compression) is not None:
                start = 0
            try:
                return _transfer(location, expected, sink, settings, session, start,
                                 (resume or {}).get("validator"), progress, on_state)
            except (Mismatch, RangeRefused) as exc:
                if not start:
                    raise
                if log:
                    log(f"{location}: resuming at byte {start} failed "
                        f"({reported(location, exc)}); starting over")
                return _transfer(location, expected, sink, settings, session, 0, None,
                                 progress, on_state)
        except LocationError as exc:
            attempts.append({"location": location, "error": reported(location, exc)})
            if log:
                log(f"{location}: {reported(location, exc)}")
    sink.truncate()
    raise DownloadError(attempts)


def reported(location: str, error: LocationError) -> str:
    """What may be said of a failed location: everything, except for an allowed ``file``
    location, whose size, digests or absence would tell the entry's author about the node."""
    if urlsplit(location).scheme.lower() == "file" and not isinstance(error, SchemeRefused):
        return FILE_FAILED
    return str(error)


def compression_for(location: str, declared: str | None) -> str | None:
    """The location's suffix if it names a compression, else the entry's declaration."""
    found = compression_from_name(location)
    if found:
        return found
    declared = (declared or "").strip().lower()
    if declared in ("", "none"):
        return None
    if declared not in COMPRESSIONS:
        raise LocationError(f"unsupported compression {declared!r} (dcterms:compression); "
                            f"known: {', '.join(COMPRESSIONS)}")
    return declared


def _transfer(location: str, expected: Expected, sink: Sink, settings: TransferSettings, session,
              start: int, validator: str | None, progress, on_state) -> Fetched:
    began = time.monotonic()
    compression = compression_for(location, expected.compression)
    if not start:
        sink.truncate()
    with MultiHasher(expected.checksums) as hasher:
        if start:
            sink.rehash(hasher, start, settings.chunk_size)
        if start == expected.size:  # complete already (the puller died before the rename)
            digests = hasher.result()
            check(expected, digests)
            return Fetched(location, digests, compression, start, 0, time.monotonic() - began)
        source = Paced(open_source(location, settings, session, offset=start,
                                   length=None if compression else expected.size,
                                   validator=validator, on_open=on_state), settings)
        reader = decompressing_reader(source, compression)
        try:
            _pump(reader, hasher, sink, expected.size, progress, settings.chunk_size)
        except CompressionError as exc:
            raise LocationError(f"the {compression} stream is damaged: {exc.reason}") from None
        finally:
            if reader is not source:
                reader.close()
            source.close()
        digests = hasher.result()
    check(expected, digests)
    return Fetched(location, digests, compression, start, source.reconnects,
                   time.monotonic() - began)


def _pump(reader, hasher: MultiHasher, sink: Sink, size: int,
          progress: Callable[[int], None] | None, chunk_size: int) -> None:
    """Read, hash and write until the end; never write past the declared size."""
    buffers = [memoryview(bytearray(chunk_size)) for _ in range(2)]
    turn = 0
    while True:
        view = buffers[turn]
        count = _fill(reader, view)
        if not count:
            break
        if sink.size + count > size:
            raise LocationError(f"delivers more than the {size} bytes the entry declares "
                                "(slreq:bytes)")
        chunk = view[:count]
        hasher.update(chunk)  # hashed on the workers while we write it and read the next
        sink.write(chunk)
        if progress is not None:
            progress(sink.size)
        turn ^= 1
    if sink.size < size:
        raise LocationError(f"the image ended after {sink.size} bytes; the entry declares "
                            f"{size} (slreq:bytes)")


def _fill(reader, view: memoryview) -> int:
    filled = 0
    while filled < len(view):
        count = reader.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled


def check(expected: Expected, digests: Digests) -> None:
    """Raise Mismatch unless the byte count and every expected checksum agree."""
    if digests.size != expected.size:
        raise Mismatch(f"the image is {digests.size} bytes; the entry declares "
                       f"{expected.size} (slreq:bytes)")
    for algorithm, want in expected.checksums.items():
        got = digests.checksums[algorithm]
        if not same_digest(got, want):
            raise Mismatch(f"{algorithm} mismatch: the entry says {want.lower()}, the bytes "
                           f"give {got} (the location serves other bytes)")


# --- the file written -----------------------------------------------------------------


class Sink:
    """The file a download writes, in order; its existing bytes can be resumed from."""

    def __init__(self, path: Path, keep: bool = False):
        self.path = Path(path)
        self.fd = entries.open_fd(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            entries.check(self.path, os.fstat(self.fd), "file", None)
        except entries.UnsafeEntry:
            self.close()
            raise
        if not keep:
            os.ftruncate(self.fd, 0)
        self.size = os.fstat(self.fd).st_size
        os.lseek(self.fd, self.size, os.SEEK_SET)
        self._written_back = self.size

    def write(self, view: memoryview) -> None:
        while view:
            done = os.write(self.fd, view)
            view = view[done:]
            self.size += done
        if self.size - self._written_back >= WRITEBACK_EVERY:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Start writing what we wrote to disk now (without waiting), not all at fsync."""
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, self._written_back, self.size - self._written_back,
                             os.POSIX_FADV_DONTNEED)
        self._written_back = self.size

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.size = self._written_back = 0

    def rehash(self, hasher: MultiHasher, upto: int, chunk_size: int = CHUNK_SIZE) -> None:
        """Feed the first ``upto`` bytes already in the file to ``hasher``."""
        buffers = [memoryview(bytearray(chunk_size)) for _ in range(2)]
        position, turn = 0, 0
        while position < upto:
            view = buffers[turn][:min(chunk_size, upto - position)]
            count = os.preadv(self.fd, [view], position)
            if not count:
                raise LocationError(f"the partial file ended at {position} of {upto} bytes")
            hasher.update(view[:count])
            position += count
            turn ^= 1

    def finish(self) -> None:
        """Make the bytes durable, then close."""
        os.fsync(self.fd)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


# --- sources ----------------------------------------------------------------------------


def open_source(location: str, settings: TransferSettings, session=None, offset: int = 0,
                length: int | None = None, validator: str | None = None,
                on_open: Callable[[dict], None] | None = None):
    """A readable raw stream of the bytes at ``location`` from ``offset`` on."""
    scheme = allowed_scheme(location, settings)
    if scheme in ("http", "https"):
        return HTTPSource(location, session or location_session(settings), settings, offset,
                          length, validator, on_open)
    return FileSource(location, offset, length, on_open)


def allowed_scheme(location: str, settings: TransferSettings) -> str:
    """The location's scheme, if this node supports and allows it; else SchemeRefused."""
    scheme = urlsplit(location).scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise SchemeRefused(f"unsupported location scheme {scheme or '(none)'!r}; "
                            f"{', '.join(SUPPORTED_SCHEMES)} are supported")
    if scheme not in settings.location_schemes:
        raise SchemeRefused(f"location scheme {scheme!r} is not allowed on this node "
                            f"(location_schemes = {' '.join(settings.location_schemes)})")
    return scheme


class Paced(io.RawIOBase):
    """A source that must keep up ``min_rate`` bytes/s over each ``rate_window`` seconds and
    end within ``location_timeout``: a trickle is given up on, whatever the read timeout."""

    def __init__(self, source, settings: TransferSettings):
        self.source, self.settings = source, settings
        self.began = self.window = time.monotonic()
        self.in_window = 0

    @property
    def reconnects(self) -> int:
        return getattr(self.source, "reconnects", 0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.source.readinto(buffer)
        self._check(count)
        return count

    def _check(self, count: int) -> None:
        settings, now = self.settings, time.monotonic()
        if settings.location_timeout and now - self.began > settings.location_timeout:
            raise LocationError(f"did not finish within {settings.location_timeout:g} s "
                                "(location_timeout)")
        self.in_window += count
        elapsed = now - self.window
        if settings.min_rate and elapsed >= settings.rate_window:
            if self.in_window < settings.min_rate * elapsed:
                raise LocationError(f"slower than {settings.min_rate} bytes/s for "
                                    f"{elapsed:.0f} s (min_rate, rate_window)")
            self.window, self.in_window = now, 0

    def close(self) -> None:
        self.source.close()
        super().close()


class FileSource(io.RawIOBase):
    """A ``file://`` location (a local or mounted path)."""

    def __init__(self, location: str, offset: int = 0, length: int | None = None,
                 on_open: Callable[[dict], None] | None = None):
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            raise LocationError(f"file URL with a host ({parts.netloc}) is not supported")
        path = unquote(parts.path)
        try:
            self.file = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise LocationError(f"cannot open {path}: {exc.strerror}") from None
        size = os.fstat(self.file.fileno()).st_size
        if length is not None and size != length:
            self.file.close()
            raise LocationError(f"the file is {size} bytes; the entry declares {length} "
                                "(slreq:bytes)")
        self.file.seek(offset)
        self.reconnects = 0
        if on_open is not None:
            st = os.fstat(self.file.fileno())
            on_open({"location": location, "validator": f"{st.st_size}:{st.st_mtime_ns}"})

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self.file.readinto(buffer)
        except OSError as exc:
            raise LocationError(f"read error: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.file.close()
        super().close()


class HTTPSource(io.RawIOBase):
    """The body of an HTTP(S) GET that reconnects and resumes when the connection breaks."""

    def __init__(self, url: str, session, settings: TransferSettings, offset: int = 0,
                 length: int | None = None, validator: str | None = None,
                 on_open: Callable[[dict], None] | None = None):
        import requests  # noqa: F401 (fail early if missing)

        self.url, self.session, self.settings = url, session, settings
        self.position = offset
        self.length = length  # the whole resource's expected size, when known (raw images)
        self.validator = validator
        self.on_open = on_open
        self.failures = self.reconnects = self.since_failure = 0
        self.answered = False  # has the server at this location ever answered?
        self._response = None
        self._end: int | None = None
        self._skip = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._response is None:
                self._open()
                continue
            try:
                count = self._read1(buffer)
            except Exception as exc:
                if not _is_network_error(exc):
                    raise
                self._retry(_describe(exc, self))
                continue
            if not count:
                if self._end is not None and self.position < self._end:
                    self._retry(f"the connection closed after {self.position} of "
                                f"{self._end} bytes")
                    continue
                return 0
            if self._skip:
                skipped = min(count, self._skip)
                self._skip -= skipped
                count -= skipped
                if not count:
                    continue
                buffer[:count] = buffer[skipped:skipped + count]
            self.position += count
            self.since_failure += count
            return count

    def close(self) -> None:
        self._close_response()
        super().close()

    def _read1(self, buffer) -> int:
        """What one read of the connection gives (not a full buffer: the pace is checked
        between reads, and a trickling server would otherwise hold us in one read)."""
        data = self._response.raw.read1(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _close_response(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def _retry(self, reason: str) -> None:
        """Count a failure; wait before the next attempt, or give up."""
        import requests  # noqa: F401

        self._close_response()
        self.failures = 1 if self.since_failure else self.failures + 1
        self.since_failure = 0
        self.reconnects += 1
        if self.failures > self.settings.retries or \
                self.reconnects > self.settings.max_reconnects:
            raise LocationError(f"gave up after {self.reconnects} attempts: {reason}")
        time.sleep(min(self.settings.backoff * 2 ** (self.failures - 1),
                       self.settings.backoff_max))

    def _open(self) -> None:
        import requests

        headers = {"Accept-Encoding": "identity"}
        if self.position:
            headers["Range"] = f"bytes={self.position}-"
            if self.validator:
                headers["If-Range"] = self.validator
        try:
            response = self._get_following_redirects(headers)
        except AddressRefused as exc:
            raise LocationError(str(exc)) from None
        except requests.exceptions.SSLError as exc:
            raise LocationError(f"TLS: the server's certificate was not accepted "
                                f"({_tls_reason(exc)})") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise LocationError(f"bad URL: {exc}") from None
        except requests.RequestException as exc:
            if not self.answered and never_connected(exc):
                raise LocationError(_describe(exc, self)) from None  # dead: next location
            self._retry(_describe(exc, self))
            return
        self.answered = True
        status = response.status_code
        if status in (200, 206):
            self._accept(response)
            return
        reason = f"HTTP {status} {response.reason or ''}".rstrip()
        response.close()
        if status in (408, 429) or status >= 500:
            self._retry(reason)
            return
        if status == 416:
            raise RangeRefused(f"{reason} for bytes {self.position}-")
        raise LocationError(reason)

    def _get_following_redirects(self, headers: dict):
        """GET the location, following redirects only where the node allows (see
        :func:`redirect_target`); the guarded session checks each address reached."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            response = self.session.get(
                url, headers=headers, stream=True, allow_redirects=False,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout))
            if not response.is_redirect:
                return response
            response.close()
            url = redirect_target(url, response.headers["Location"], self.settings)
        raise LocationError(f"more than {MAX_REDIRECTS} redirects")

    def _accept(self, response) -> None:
        validator = _validator(response)
        total = _int(response.headers.get("Content-Length"))
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if not match or int(match.group(1)) != self.position:
                response.close()
                raise RangeRefused(f"asked for bytes {self.position}-, the server sent "
                                   f"{response.headers.get('Content-Range')!r}")
            self._end = int(match.group(2)) + 1
            total = None if match.group(3) == "*" else int(match.group(3))
        else:
            if self.position and self.validator and validator and validator != self.validator:
                response.close()
                raise RangeRefused("the file changed on the server during the download")
            self._skip = self.position  # the server ignored Range: skip what we have
            self._end = total
        if self.length is not None and total is not None and total != self.length:
            response.close()
            raise LocationError(f"the server offers {total} bytes; the entry declares "
                                f"{self.length} (slreq:bytes)")
        if self.validator is None:
            self.validator = validator
        self._response = response
        if self.on_open is not None:
            self.on_open({"location": self.url, "validator": self.validator})


def redirect_target(url: str, location: str, settings: TransferSettings) -> str:
    """Where a redirect from ``url`` leads, if the node follows it: http(s) only, allowed by
    ``location_schemes``, and never from https down to http."""
    target = urljoin(url, location)
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https") or scheme not in settings.location_schemes:
        raise SchemeRefused(f"redirected to a {scheme or '(no scheme)'} URL; redirects are "
                            "followed only to the http(s) schemes of location_schemes")
    if scheme == "http" and urlsplit(url).scheme.lower() == "https":
        raise SchemeRefused(f"redirected from https down to http ({target}); not followed")
    return target


def _validator(response) -> str | None:
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _is_network_error(exc: BaseException) -> bool:
    import http.client

    import requests
    import urllib3

    return isinstance(exc, OSError | http.client.HTTPException | urllib3.exceptions.HTTPError
                      | requests.RequestException)


def _describe(exc: BaseException, source: HTTPSource) -> str:
    import requests
    import urllib3

    at = f" at byte {source.position}" if source.position else ""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection within {source.settings.connect_timeout:g} s (connect timeout)"
    if isinstance(exc, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError
                  | TimeoutError):
        return f"no data for {source.settings.read_timeout:g} s{at} (read timeout)"
    if isinstance(exc, requests.exceptions.ConnectionError) and source._response is None:
        return f"cannot connect: {network_reason(exc)}"
    return f"the connection broke{at}: {network_reason(exc)}"


def _tls_reason(exc: BaseException) -> str:
    text = re.sub(r"\s*\(_ssl\.c:\d+\)", "", network_reason(exc))
    if "certificate verify failed" in text:
        return "certificate verify failed" + text.split("certificate verify failed", 1)[1]\
            .rstrip(" )'\"")
    return text
