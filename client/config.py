"""Settings for the commands, in the original StratusLab client's order of precedence.

command-line option > ``STRATUSLAB_<KEY>`` environment variable > the user's config file
(``~/.stratuslab/stratuslab-user.cfg``, section ``[default]``, or ``--config`` /
``STRATUSLAB_CONFIG``) > built-in default.
"""

from __future__ import annotations

import argparse
import configparser
import functools
import os
from pathlib import Path

USER_CONFIG = Path("~/.stratuslab/stratuslab-user.cfg")
SECTION = "default"
ENV_PREFIX = "STRATUSLAB_"


class ConfigError(ValueError):
    """A config file that cannot be read, or a setting that is missing or wrong."""


class Settings:
    """Look settings up by key (``marketplace_endpoint``, ``p12_cert``...) in precedence order."""

    def __init__(self, options: argparse.Namespace, environ: dict[str, str] | None = None):
        self.options = options
        self.environ = os.environ if environ is None else environ

    @functools.cached_property
    def file(self) -> dict[str, str]:
        """The config file's settings, read when first needed (copy-config never needs them)."""
        return read_config_file(self._config_path())

    def _config_path(self) -> Path:
        given = getattr(self.options, "config", None) or self.environ.get(ENV_PREFIX + "CONFIG")
        return Path(given).expanduser() if given else USER_CONFIG.expanduser()

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value for ``key`` from the first source that has it."""
        value = getattr(self.options, key, None)
        if value is not None:
            return value
        value = self.environ.get(ENV_PREFIX + key.upper())
        if value is not None:
            return value
        return self.file.get(key, default)


def read_config_file(path: Path) -> dict[str, str]:
    """The ``[default]`` section of an INI config file; empty when the file is absent."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        return {}
    except configparser.Error as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return dict(parser[SECTION]) if parser.has_section(SECTION) else {}
