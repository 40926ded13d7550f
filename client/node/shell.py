"""What the two fetcher commands share: options, config loading, output, exit statuses."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from client.node import config as fetcher_config
from client.node import errors
from client.node.config import human_size as human_size  # the commands' size format
from client.node.target import BadTarget

SUPPRESS = argparse.SUPPRESS


def add_common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """--config, --json, -q (on the main parser and, repeated, on every subcommand)."""
    default = None if top else SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default,
                        help=f"fetcher config file (default {fetcher_config.DEFAULT_CONFIG}, "
                        f"or ${fetcher_config.CONFIG_ENV})")
    parser.add_argument("--json", action="store_true", default=False if top else SUPPRESS,
                        help="print machine-readable JSON on standard output")
    parser.add_argument("-q", "--quiet", action="store_true", default=False if top else SUPPRESS,
                        help="no progress or notes on standard error")


def add_pull_options(parser: argparse.ArgumentParser) -> None:
    """The options of anything that may download."""
    parser.add_argument("--marketplace-endpoint", metavar="URL",
                        help="the marketplace (else $STRATUSLAB_MARKETPLACE_ENDPOINT, the "
                        "config file, http://127.0.0.1:8080)")
    parser.add_argument("--allow-expired", action="store_true", default=None,
                        help="accept an entry whose valid date has passed")
    parser.add_argument("--allow-deprecated", action="store_true", default=None,
                        help="accept a deprecated entry")
    parser.add_argument("--allow-weak", action="store_true", default=None,
                        help="accept an entry with only MD5/SHA-1 checksums")
    parser.add_argument("--verify-all", action="store_true", default=None,
                        help="verify every checksum of the entry, not only the strongest")
    parser.add_argument("--ca-bundle", action="append", metavar="PEM", type=Path,
                        help="add CA certificates for HTTPS servers (repeatable); "
                        "certificates are always verified")


def load_config(options: argparse.Namespace) -> fetcher_config.FetcherConfig:
    """The config file plus the command line's overrides."""
    overrides = {key: getattr(options, key, None) for key in (
        "marketplace_endpoint", "allow_expired", "allow_deprecated", "allow_weak",
        "verify_all", "cache_dir", "quota")}
    config = fetcher_config.load(getattr(options, "config", None), overrides=overrides)
    extra = getattr(options, "ca_bundle", None)
    if extra:
        config = config.replace(ca_bundle=[*config.ca_bundle, *extra])
    return config


class Output:
    """Notes and errors on standard error (notes only when not quiet), results on stdout."""

    def __init__(self, options: argparse.Namespace):
        self.json = bool(getattr(options, "json", False))
        self.quiet = bool(getattr(options, "quiet", False))

    def note(self, message: str) -> None:
        if not self.quiet:
            print(f"note: {message}", file=sys.stderr)

    def error(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)

    def emit(self, value) -> None:
        json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
        sys.stdout.flush()

    def progress(self, label: str, total: int | None):
        """A progress display for a download or a verification (tqdm, loaded only then)."""
        from marketplace.metadata.progress import Progress

        return Progress(label, total, self.quiet)


def run(body: Callable[[argparse.Namespace, Output], int], options: argparse.Namespace) -> int:
    """Run a command body, turning every expected failure into a message and an exit status
    (the JSON of a failure may meet a closed pipe too, hence the outer guard)."""
    try:
        return _run(body, options)
    except BrokenPipeError:
        from marketplace.metadata.progress import reader_gone

        return reader_gone()


def _run(body: Callable[[argparse.Namespace, Output], int], options: argparse.Namespace) -> int:
    out = Output(options)
    try:
        return body(options, out)
    except BrokenPipeError:
        raise  # not an error to report: see run()
    except errors.FetchError as exc:
        lines = exc.lines() if hasattr(exc, "lines") else [exc.message]
        out.error(lines[0])
        for line in lines[1:]:
            print(line, file=sys.stderr)
        if out.json:
            out.emit(exc.as_dict())
        return exc.exit_code
    except BadTarget as exc:
        return _fail(out, str(exc), errors.USAGE)
    except fetcher_config.ConfigError as exc:
        return _fail(out, str(exc), errors.FAILURE)
    except OSError as exc:
        return _fail(out, str(exc), errors.FAILURE)
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130


def _fail(out: Output, message: str, code: int) -> int:
    out.error(message)
    if out.json:
        out.emit({"error": message, "exit_code": code})
    return code


def report_resolution(out: Output, resolution: dict | None) -> None:
    """Say which entry was chosen and why each other one was not."""
    if not resolution:
        return
    chosen = resolution["chosen"]
    out.note(f"chose the entry of {chosen['endorser']} dated {chosen['created']}")
    for other in resolution["others"]:
        who = other["endorser"] or other["url"]
        out.note(f"not chosen: {who}{' of ' + other['created'] if other['created'] else ''}: "
                 + "; ".join(other["reasons"]))
