"""The one settings mechanism of the server, the commands and the node's fetcher.

Each of them keeps its own prefix, files and keys; what they share lives here: a
:class:`Setting` declaration, reading INI files, picking a program's variables out of the
environment, secrets read from the file a ``*_FILE`` setting names, one :class:`ConfigError`,
and the precedence rule, :func:`layered`: later layers win, a value of None is "not set".
Standard library only, as the node's cache-hit path imports it.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A config file that cannot be read, or a setting that is missing, unknown or wrong."""


@dataclass(frozen=True)
class Setting:
    """One configuration key: its default, what it means, and the kind of value it takes
    (``text`` unless a reader turns it into something else: path, size, bool...)."""

    key: str
    default: object
    help: str
    kind: str = "text"


def layered(*layers: Mapping[str, object]) -> dict[str, object]:
    """The precedence rule: each layer overrides the ones before it, key by key; keys whose
    value is None are not set in that layer and leave the earlier value in place."""
    values: dict[str, object] = {}
    for layer in layers:
        values.update({key: value for key, value in layer.items() if value is not None})
    return values


def from_environment(environ: Mapping[str, str], prefix: str,
                     keys: Iterable[str]) -> dict[str, str]:
    """The variables ``PREFIX`` + ``KEY`` (upper case) that are set, by their key."""
    return {key: environ[prefix + key.upper()] for key in keys
            if prefix + key.upper() in environ}


def read_ini(*paths: Path, interpolation: configparser.Interpolation | None = None,
             key_case: Callable[[str], str] = str.lower) -> configparser.ConfigParser:
    """The files that exist, read in order into one parser (a later file overrides an
    earlier one key by key). A file that exists but cannot be read or parsed is an error
    naming it: a setting silently ignored is worse than a command that stops."""
    parser = configparser.ConfigParser(interpolation=interpolation)
    parser.optionxform = key_case
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return parser


def section(parser: configparser.ConfigParser, name: str) -> dict[str, str]:
    """One section's settings (empty when the files have no such section)."""
    return dict(parser[name]) if parser.has_section(name) else {}


def read_secret(name: str, value: str | None, file: str | None) -> str | None:
    """A secret given as such, else read from the file its ``*_FILE`` setting names (the
    line end removed; other white space may be part of it); None when neither is set.
    Errors name the setting and the file, never the secret."""
    if value:
        return value
    if not file:
        return None
    path = Path(file).expanduser()
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
        raise ConfigError(f"cannot read {name} from {path}: {reason}") from None
