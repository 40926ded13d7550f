"""The endorser list files an operator edits: one endorser a line, read again on change.

What an entry means and how it names an endorser (a DN compared as a name, an email only
when the certificate proves it, or any claimed email on a block list) is the trust
decision's (:class:`~marketplace.metadata.verdict.Endorser`), shared with the node.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from marketplace.metadata.verdict import EMAIL, SUBJECT, Endorser

__all__ = ["EMAIL", "SUBJECT", "Endorser", "WatchedFile", "Whitelist", "read_list"]


def read_list(path: Path) -> list[Endorser]:
    """The endorsers of a list file: one a line; blank lines and ``#`` comments skipped."""
    endorsers = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                endorsers.append(Endorser.parse(line))
            except ValueError as exc:
                raise ValueError(f"{path}, line {number}: {exc}") from None
    return endorsers


class WatchedFile:
    """A file read again whenever it changes, so operators edit it without a restart."""

    def __init__(self, path: Path, read: Callable[[Path], object]):
        self.path = Path(path)
        self._read = read
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._value = None
        self.value()  # a broken file is an error at start-up, not at the first request

    def value(self):
        stat = os.stat(self.path)
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if stamp != self._stamp:
                self._value, self._stamp = self._read(self.path), stamp
            return self._value


class Whitelist:
    """The endorsers whose uploads are published at once."""

    def __init__(self, path: Path):
        self.file = WatchedFile(path, read_list)

    def endorsers(self) -> list[Endorser]:
        return self.file.value()
