"""Settings for the commands, in the original StratusLab client's order of precedence.

command-line option > ``STRATUSLAB_<KEY>`` environment variable > the user's config file
(``~/.stratuslab/stratuslab-user.cfg``, or ``-c/--config`` / ``STRATUSLAB_CONFIG``) >
built-in default.

The config file has the original client's layout: ``[default]`` holds the defaults and may
name a ``selected_section`` whose keys override them; ``-S/--user-config-section`` (or
``STRATUSLAB_USER_CONFIG_SECTION``) chooses another section. Values follow the original's
ConfigParser rule that a literal ``%`` is written ``%%`` (as in passwords); a lone ``%`` is
kept as written. The original key names (``p12_certificate``, ``pem_certificate``) are
read as ours (``p12_cert``, ``pem_cert``), in the file and in the environment. Files, the
environment and errors go through the mechanism the server and the node share,
:mod:`marketplace.metadata.settings`.
"""

from __future__ import annotations

import argparse
import configparser
import functools
import logging
import os
from pathlib import Path

from marketplace.metadata.settings import ConfigError, from_environment, read_ini, section

log = logging.getLogger(__name__)
USER_CONFIG = Path("~/.stratuslab/stratuslab-user.cfg")
SECTION = "default"
SELECTED_SECTION = "selected_section"
ENV_PREFIX = "STRATUSLAB_"
SECTION_VARIABLE = ENV_PREFIX + "USER_CONFIG_SECTION"
# our key -> the original client's name for the same setting
ORIGINAL_KEYS = {"p12_cert": "p12_certificate", "pem_cert": "pem_certificate"}


class Settings:
    """Look settings up by key (``marketplace_endpoint``, ``p12_cert``...) in precedence order."""

    def __init__(self, options: argparse.Namespace, environ: dict[str, str] | None = None):
        self.options = options
        self.environ = os.environ if environ is None else environ

    @functools.cached_property
    def file(self) -> dict[str, str]:
        """The config file's settings, read when first needed (copy-config never needs them)."""
        section = getattr(self.options, "user_config_section", None) or \
            self.environ.get(SECTION_VARIABLE)
        path = self.config_path()
        values = read_config_file(path, section)
        log.info("settings file %s%s: %d setting(s)", path,
                 f" [{section}]" if section else "", len(values))
        return values

    def config_path(self) -> Path:
        given = getattr(self.options, "config", None) or self.environ.get(ENV_PREFIX + "CONFIG")
        return Path(given).expanduser() if given else USER_CONFIG.expanduser()

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value for ``key`` from the first source that has it."""
        value = getattr(self.options, key, None)
        if value is not None:
            return value
        names = (key, ORIGINAL_KEYS[key]) if key in ORIGINAL_KEYS else (key,)
        environment = from_environment(self.environ, ENV_PREFIX, names)
        for name in names:
            if name in environment:
                return environment[name]
        for name in names:
            value = self.file.get(name)
            if value is not None:
                return value
        return default


class _DoubledPercent(configparser.Interpolation):
    """``%%`` reads as ``%``, as in the original's ConfigParser; nothing else is expanded."""

    def before_get(self, parser, section, option, value, defaults):
        return value.replace("%%", "%")


def read_config_file(path: Path, chosen_section: str | None = None) -> dict[str, str]:
    """``[default]`` overlaid with the selected section; empty when the file is absent.

    ``chosen_section`` (the option or variable) wins over ``selected_section`` in ``[default]``;
    a section that is named but missing is an error, as in the original client.
    """
    if not path.exists():
        return {}
    parser = read_ini(path, interpolation=_DoubledPercent())
    values = section(parser, SECTION)
    chosen = chosen_section or values.pop(SELECTED_SECTION, None)
    values.pop(SELECTED_SECTION, None)
    if chosen and chosen != SECTION:
        if not parser.has_section(chosen):
            by = "-S/" + SECTION_VARIABLE if chosen_section else SELECTED_SECTION
            raise ConfigError(f"config file {path} has no section [{chosen}] (selected by {by})")
        values.update(parser[chosen])
    return values
