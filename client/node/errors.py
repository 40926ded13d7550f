"""What can go wrong when fetching an image, and the exit status each failure gives.

The exit statuses are part of the commands' interface (documented in their ``--help`` and
in README.md), so scripts on a node can tell "refused" from "the network failed".
"""

from __future__ import annotations

OK = 0
FAILURE = 1  # anything else: config, I/O, the marketplace unreachable or answering nonsense
USAGE = 2  # bad command line (argparse's own status)
REFUSED = 3  # no entry passed verification and the node's policy (or the cached one no longer does)
DOWNLOAD_FAILED = 4  # no location delivered the image with the right size and checksums
NOT_FOUND = 5  # the marketplace has no entry for the identifier / the image is not cached
DAMAGED = 6  # verify found cached images whose bytes changed (they were removed)
BUSY = 7  # gave up waiting for another process's lock (lock_wait)
# The transparency log (client.node.transparency): each way a marketplace can be caught.
LOG_UNTRUSTED = 8  # no checkpoint signed by log_key (with the witnesses asked for), or tiles
# that are not its tree: the log cannot be checked
LOG_FROZEN = 9  # the checkpoint is older than max_checkpoint_age
LOG_ROLLBACK = 10  # the log is smaller than one this node already saw
LOG_SPLIT_VIEW = 11  # the log is not an extension of the one this node already saw
LOG_NOT_INCLUDED = 12  # the entry's document is not in the log where the marketplace says
ENTRY_ROLLBACK = 13  # an entry older than one this node already saw of that image and endorser

EXIT_CODES = {
    OK: "success",
    FAILURE: "error (configuration, I/O, marketplace unreachable)",
    USAGE: "usage error",
    REFUSED: "refused: no entry passed verification and the trust policy",
    DOWNLOAD_FAILED: "download failed: no location delivered the verified image",
    NOT_FOUND: "not found: no entry for the identifier (or, with --no-pull, not cached)",
    DAMAGED: "verify found damaged images (removed unless --keep)",
    BUSY: "gave up waiting for another puller's lock",
    LOG_UNTRUSTED: "the transparency log cannot be checked: no checkpoint signed by log_key "
                   "(with the witness cosignatures required), or tiles not of its tree",
    LOG_FROZEN: "the log's checkpoint is older than max_checkpoint_age (a frozen log)",
    LOG_ROLLBACK: "the log is smaller than one seen before (rollback; evidence kept)",
    LOG_SPLIT_VIEW: "the log does not extend the one seen before (split view; evidence kept)",
    LOG_NOT_INCLUDED: "the entry is not in the log as the marketplace claims",
    ENTRY_ROLLBACK: "an entry older than one seen before of the same image and endorser",
}


def exit_codes_help() -> str:
    """The exit statuses as an epilog for ``--help``."""
    return "exit status: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())


class FetchError(Exception):
    """A fetch that did not give a verified image; ``exit_code`` says which kind."""

    exit_code = FAILURE
    kind = "error"

    def __init__(self, message: str, identifier: str | None = None):
        super().__init__(message)
        self.message = message
        self.identifier = identifier

    def details(self) -> dict:
        return {}

    def as_dict(self) -> dict:
        return {"error": self.message, "kind": self.kind, "exit_code": self.exit_code,
                "identifier": self.identifier, **self.details()}


class NoAcceptableEntry(FetchError):
    """Every entry was refused (by the node's checks, not the marketplace's
    :class:`~marketplace.metadata.identity.Refused`); ``candidates`` holds each one with
    its reasons."""

    exit_code = REFUSED
    kind = "refused"

    def __init__(self, message: str, identifier: str | None = None,
                 candidates: list[dict] | None = None):
        super().__init__(message, identifier)
        self.candidates = candidates or []

    def details(self) -> dict:
        return {"candidates": self.candidates}

    def lines(self) -> list[str]:
        return [self.message] + [
            f"  {c.get('endorser') or c.get('url') or 'entry'}"
            f"{' of ' + c['created'] if c.get('created') else ''}: " + "; ".join(c["reasons"])
            for c in self.candidates]


class NotFound(FetchError):
    exit_code = NOT_FOUND
    kind = "not-found"


class DownloadFailed(FetchError):
    """No location gave the image; ``attempts`` says what each one did wrong."""

    exit_code = DOWNLOAD_FAILED
    kind = "download-failed"

    def __init__(self, message: str, identifier: str | None = None,
                 attempts: list[dict] | None = None):
        super().__init__(message, identifier)
        self.attempts = attempts or []

    def details(self) -> dict:
        return {"attempts": self.attempts}

    def lines(self) -> list[str]:
        return [self.message] + [f"  {a['location']}: {a['error']}" for a in self.attempts]


class Busy(FetchError):
    exit_code = BUSY
    kind = "busy"


class Damaged(FetchError):
    exit_code = DAMAGED
    kind = "damaged"


class LogError(FetchError):
    """The marketplace's transparency log does not vouch for what it serves: a refusal of
    its own kind, so that an operator can tell a lying marketplace from a broken one."""


class LogUntrusted(LogError):
    exit_code = LOG_UNTRUSTED
    kind = "log-untrusted"


class LogFrozen(LogError):
    exit_code = LOG_FROZEN
    kind = "log-frozen"


class LogEvidence(LogError):
    """Two signed checkpoints that cannot both be honest; ``evidence`` names the files
    where both are kept, to show whoever runs the marketplace (or its witnesses)."""

    def __init__(self, message: str, identifier: str | None = None,
                 evidence: list[str] | None = None):
        super().__init__(message, identifier)
        self.evidence = evidence or []

    def details(self) -> dict:
        return {"evidence": self.evidence}


class LogRollback(LogEvidence):
    exit_code = LOG_ROLLBACK
    kind = "log-rollback"


class LogSplitView(LogEvidence):
    exit_code = LOG_SPLIT_VIEW
    kind = "log-split-view"


class NotInLog(LogError):
    exit_code = LOG_NOT_INCLUDED
    kind = "log-not-included"


class EntryRollback(LogError):
    exit_code = ENTRY_ROLLBACK
    kind = "entry-rollback"
