"""What every command shares: common options, error reporting, progress and output."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from client.config import ConfigError, Settings
from marketplace.files import write_atomic
from marketplace.metadata.problems import MetadataError

FAILURE = 1
USAGE = 2


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every command takes.

    Abbreviations are off: ``--p12-password SECRET`` must be refused, not taken as
    ``--p12-password-file`` (which would then print the secret in its error).
    """
    result = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)
    result.add_argument("--config", metavar="FILE",
                        help="user config file (default ~/.stratuslab/stratuslab-user.cfg)")
    result.add_argument("--json", action="store_true", help="print machine-readable JSON")
    result.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return result


def command(main: Callable[[argparse.Namespace, Settings], int],
            build: Callable[[], argparse.ArgumentParser]) -> Callable[[list[str] | None], int]:
    """Turn ``main(options, settings)`` into an entry point that reports errors plainly."""
    @functools.wraps(main)
    def entry(argv: list[str] | None = None) -> int:
        options = build().parse_args(argv)
        try:
            return main(options, Settings(options))
        except MetadataError as exc:
            for problem in exc.problems:
                error(str(problem))
            return FAILURE
        except (ConfigError, OSError) as exc:
            error(str(exc))
            return FAILURE
        except KeyboardInterrupt:
            error("interrupted")
            return 130
    return entry


def error(message: str) -> None:
    """Print one error line on standard error."""
    print(f"error: {message}", file=sys.stderr)


def emit_json(value) -> None:
    """Print a JSON document on standard output."""
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def write_output(data: bytes, output: str | None) -> None:
    """Write to a file atomically, or to standard output for ``-`` or None."""
    if output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        write_atomic(Path(output), data)


class Progress:
    """A one-line progress display on standard error, only on a terminal."""

    def __init__(self, label: str, total: int | None, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled
        self.started = self.shown = time.monotonic()
        self.done = 0

    @classmethod
    def for_terminal(cls, label: str, total: int | None, quiet: bool) -> Progress:
        return cls(label, total, enabled=not quiet and sys.stderr.isatty())

    def __call__(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if not self.enabled or now - self.shown < 0.2:
            return
        self.shown = now
        self._show(now)

    def _show(self, now: float) -> None:
        done = self.done
        rate = done / max(now - self.started, 1e-9) / 1e6
        share = f"{100 * done / self.total:5.1f}% " if self.total else ""
        sys.stderr.write(f"\r{self.label}: {share}{done / 1e9:.2f} GB  {rate:.0f} MB/s ")
        sys.stderr.flush()

    def close(self) -> None:
        """Show the final count (however quick the work was) and end the line."""
        if self.enabled:
            self._show(time.monotonic())
            sys.stderr.write("\n")
