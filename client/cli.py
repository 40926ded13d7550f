"""What every command shares: common options, error reporting and output."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from client.config import ConfigError, Settings
from marketplace.metadata.files import write_atomic
from marketplace.metadata.problems import MetadataError
from marketplace.metadata.progress import reader_gone

FAILURE = 1
USAGE = 2


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors never repeat the values of arguments it refused.

    Abbreviations are off, so ``--p12-pass SECRET`` is refused rather than guessed; and
    argparse's own "unrecognized arguments" message would print SECRET, so only the
    option names are shown.
    """

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def parse_args(self, args=None, namespace=None):
        options, extras = self.parse_known_args(args, namespace)
        if extras:
            names = [e.split("=", 1)[0] for e in extras if e.startswith("-")]
            hidden = len(extras) - len(names) + sum("=" in e for e in extras if e[:1] == "-")
            shown = " ".join(names) + (f" (and {hidden} value(s), not shown)" if hidden else "")
            self.error(f"unrecognized arguments: {shown}")
        return options


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every command takes (the original client's
    ``-c``, ``-S`` and ``-v`` among them)."""
    result = Parser(prog=prog, description=description)
    result.add_argument("-c", "--config", metavar="FILE",
                        help="user config file (default ~/.stratuslab/stratuslab-user.cfg)")
    result.add_argument("-S", "--user-config-section", metavar="SECTION",
                        help="section of the config file to use (default: its "
                        "selected_section; or STRATUSLAB_USER_CONFIG_SECTION)")
    result.add_argument("--json", action="store_true", help="print machine-readable JSON")
    result.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    result.add_argument("-v", "--verbose", action="count", default=0,
                        help="say more about what is done (repeat for more)")
    return result


def command(main: Callable[[argparse.Namespace, Settings], int],
            build: Callable[[], argparse.ArgumentParser]) -> Callable[[list[str] | None], int]:
    """Turn ``main(options, settings)`` into an entry point that reports errors plainly."""
    @functools.wraps(main)
    def entry(argv: list[str] | None = None) -> int:
        options = build().parse_args(argv)
        try:
            with _verbosity(options.verbose):
                return main(options, Settings(options))
        except BrokenPipeError:
            return reader_gone()
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


@contextlib.contextmanager
def _verbosity(level: int):
    """Show log messages on standard error for -v (INFO) and -vv (DEBUG, libraries too)."""
    if not level:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if level > 1 else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


def error(message: str) -> None:
    """Print one error line on standard error."""
    print(f"error: {message}", file=sys.stderr)


def warning(message: str) -> None:
    """Print one warning line on standard error."""
    print(f"warning: {message}", file=sys.stderr)


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
