"""The fetcher's configuration: one file for a fleet, a per-host override, ``@HOSTNAME@``.

Where a setting comes from, first match wins: a command-line option > the environment
variable ``STRATUSLAB_<KEY>`` (``STRATUSLAB_CACHE_DIR``, ``STRATUSLAB_MARKETPLACE_ENDPOINT``...)
> the per-host file > the general file > the policy file (policy sections only) > default.

The general file is ``/etc/stratuslab/fetcher.cfg`` (or ``--config`` /
``STRATUSLAB_FETCHER_CONFIG``). Beside it, ``fetcher.cfg.d/<host>.cfg`` overrides it key by
key for one host: the short host name's file is read, then the full name's, so one shared
directory serves a fleet of stateless nodes. ``@HOSTNAME@`` in any value becomes the host
name (``STRATUSLAB_HOSTNAME``, else the system's). The host name also identifies this node
as the owner of cache locks and leases.

Sections: ``[fetcher]`` (the settings of :data:`SETTINGS`), and the trust policy in the
original ``policy.cfg`` layout -- ``[endorsers]`` whitelistendorsers/blacklistendorsers,
``[images]`` whitelistimages/blacklistimages, ``[checksums]`` whitelistchecksums/
blacklistchecksums (one value per line) -- plus ``[trust]`` certificates (CA files or
directories, CRLs included) and crls. ``policy_file`` may name an original policy.cfg whose
sections apply where the fetcher's own files do not set them. Standard library only: this
module is on the cache-hit path.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from marketplace.metadata.settings import (
    ConfigError,
    Setting,
    from_environment,
    layered,
    read_ini,
    section,
)

DEFAULT_CONFIG = Path("/etc/stratuslab/fetcher.cfg")
CONFIG_ENV = "STRATUSLAB_FETCHER_CONFIG"
HOSTNAME_ENV = "STRATUSLAB_HOSTNAME"
ENV_PREFIX = "STRATUSLAB_"
SECTION = "fetcher"
HOSTNAME_MARK = "@HOSTNAME@"

# The trust policy, in the sections and keys of the original StratusLab policy.cfg.
POLICY_KEYS = {
    "endorsers": ("whitelistendorsers", "blacklistendorsers"),
    "images": ("whitelistimages", "blacklistimages"),
    "checksums": ("whitelistchecksums", "blacklistchecksums"),
    "trust": ("certificates", "crls"),
}


SETTINGS = (
    Setting("cache_dir", Path("/var/lib/stratuslab/images"), "the image cache (may be a "
            "shared mount: NFS and the like)", kind="path"),
    Setting("quota", None, "largest total size of cached images, e.g. 200G (none: no limit); "
            "least recently used images are evicted, never pinned or in-use ones", kind="size"),
    Setting("marketplace_endpoint", "http://127.0.0.1:8080", "the marketplace to ask"),
    Setting("connect_timeout", 10.0, "seconds to connect to a server", kind="float"),
    Setting("read_timeout", 60.0, "seconds without a byte before a read gives up",
            kind="float"),
    Setting("min_rate", 10 * 1024, "bytes per second a location must keep up over each "
            "rate_window, else the next location is tried (0: no minimum)", kind="size"),
    Setting("rate_window", 60.0, "seconds over which min_rate is measured", kind="float"),
    Setting("location_timeout", 6 * 3600.0, "seconds one location may take for the whole "
            "image before the next is tried (0: no limit)", kind="float"),
    Setting("location_schemes", ["http", "https"], "the location schemes followed (of http, "
            "https, file): entries are signed by their endorsers, not by the node's operator, "
            "so file (the node's own files) only when added here", kind="schemes"),
    Setting("allow_private_addresses", [], "networks (e.g. 10.1.0.0/16) of loopback, "
            "link-local or private addresses that image locations and redirects may lead to, "
            "or yes for all; by default only public addresses", kind="networks"),
    Setting("retries", 5, "attempts per location after a failure without progress",
            kind="int"),
    Setting("backoff", 1.0, "first wait between attempts; doubles each time", kind="float"),
    Setting("backoff_max", 30.0, "longest wait between attempts", kind="float"),
    Setting("lock_stale_after", 60.0, "seconds without a heartbeat after which another host's "
            "lock counts as abandoned (a dead process on this host is seen at once)",
            kind="float"),
    Setting("lock_wait", 3600.0, "longest wait for another puller of the same image",
            kind="float"),
    Setting("local_lock_dir", None, "host-local directory for same-host locks (default "
            "/run/lock/stratuslab-fetcher, else a directory under /tmp)", kind="path"),
    Setting("event_command", None, "command run with a JSON event on standard input when an "
            "image becomes available, is evicted, or is refused"),
    Setting("event_timeout", 30.0, "seconds the event command may take", kind="float"),
    Setting("ca_bundle", [], "extra CA certificates (PEM) for HTTPS servers, added to the "
            "system's; certificates are always verified", kind="paths"),
    Setting("policy_file", None, "an original StratusLab policy.cfg to read the [endorsers], "
            "[images] and [checksums] sections from", kind="path"),
    Setting("allow_expired", False, "accept entries whose valid date has passed", kind="bool"),
    Setting("allow_deprecated", False, "accept deprecated entries", kind="bool"),
    Setting("allow_weak", False, "accept entries with only MD5/SHA-1 checksums", kind="bool"),
    Setting("verify_all", False, "verify every checksum of the entry, not one strong one",
            kind="bool"),
    Setting("log_key", None, "the verifier key of the marketplace's transparency log (what its "
            "/log/key serves, name+id+key): every pulled entry must then be in a log signed "
            "by it that extends the one seen before; none: the log is not checked"),
    Setting("require_log", False, "refuse to pull when no log_key is set", kind="bool"),
    Setting("max_checkpoint_age", 24 * 3600.0, "seconds after its signing that a log "
            "checkpoint is refused as frozen", kind="float"),
    Setting("witness_keys", [], "verifier keys of the witnesses whose cosignatures count "
            "(one a line)", kind="words"),
    Setting("witnesses_required", 0, "cosignatures of distinct witness_keys a checkpoint "
            "must carry", kind="int"),
)
_BY_KEY = {s.key: s for s in SETTINGS}
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", re.IGNORECASE)


@dataclass
class FetcherConfig:
    """Every setting with its typed value, the policy lists, and where they came from."""

    values: dict[str, object]
    policy: dict[str, list[str]] = field(default_factory=dict)
    hostname: str = ""
    files: list[str] = field(default_factory=list)

    def __getattr__(self, key: str):
        try:
            return self.__dict__["values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def replace(self, **overrides) -> FetcherConfig:
        """A copy with some settings given as typed values (None leaves one as it is)."""
        values = dict(self.values)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return FetcherConfig(values, dict(self.policy), self.hostname, list(self.files))

    def as_dict(self) -> dict:
        shown = {k: str(v) if isinstance(v, Path) else v for k, v in self.values.items()}
        shown["ca_bundle"] = [str(p) for p in self.values["ca_bundle"]]
        shown["allow_private_addresses"] = [str(n) for n in self.values["allow_private_addresses"]]
        return {"settings": shown, "policy": self.policy, "hostname": self.hostname,
                "files": self.files}


def hostname(environ: dict[str, str] | None = None) -> str:
    """The host name used for the per-host file, ``@HOSTNAME@`` and lock ownership."""
    environ = os.environ if environ is None else environ
    return environ.get(HOSTNAME_ENV) or os.uname().nodename  # = gethostname(), lighter


def host_files(path: Path, host: str) -> list[Path]:
    """The per-host override files of ``path`` for ``host``, least specific first."""
    directory = path.parent / f"{path.name}.d"
    names = [host.split(".", 1)[0], host] if "." in host else [host]
    return [directory / f"{name}.cfg" for name in names]


def load(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None,
         overrides: dict[str, object] | None = None) -> FetcherConfig:
    """Read the configuration; ``overrides`` are command-line values (None = not given)."""
    environ = os.environ if environ is None else environ
    given = path or environ.get(CONFIG_ENV)
    main = Path(given).expanduser() if given else DEFAULT_CONFIG
    if given and not main.is_file():
        raise ConfigError(f"config file {main} does not exist")
    host = hostname(environ)
    files = [f for f in [main, *host_files(main, host)] if f.is_file()]
    parser = read_ini(*files)
    file = section(parser, SECTION)
    unknown = sorted(set(file) - set(_BY_KEY))
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{SECTION}] of {', '.join(map(str, files))}: "
                          f"{', '.join(unknown)}; known: {', '.join(_BY_KEY)}")
    chosen = layered(file, from_environment(environ, ENV_PREFIX, _BY_KEY), overrides or {})
    values = {s.key: _typed(s, chosen[s.key], host) if s.key in chosen else _copy(s.default)
              for s in SETTINGS}
    policy = _policy(parser, values["policy_file"], host)
    if values["policy_file"] is not None:
        files.append(values["policy_file"])
    return FetcherConfig(values, policy, host, [str(f) for f in files])


def _policy(parser: configparser.ConfigParser, policy_file: Path | None,
            host: str) -> dict[str, list[str]]:
    if policy_file is not None and not Path(policy_file).is_file():
        raise ConfigError(f"policy_file {policy_file} does not exist")
    original = read_ini(*([policy_file] if policy_file is not None else []))
    lists: dict[str, list[str]] = {}
    for name, keys in POLICY_KEYS.items():
        for key in keys:
            for source in (parser, original):
                if source.has_option(name, key):
                    lists[key] = split_values(_host(source.get(name, key), host))
                    break
            else:
                lists[key] = []
    return lists


def split_values(text: str) -> list[str]:
    """One value per line; a line without ``=`` (not a DN) may also hold several, separated
    by commas or spaces. Blank lines and ``#`` comments are skipped."""
    values: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            values.append(line)
        else:
            values += [v for v in re.split(r"[\s,]+", line) if v]
    return values


def _copy(value: object) -> object:
    return list(value) if isinstance(value, list) else value


def _host(value: str, host: str) -> str:
    return value.replace(HOSTNAME_MARK, host)


def _typed(setting: Setting, value: object, host: str) -> object:
    """A text value as its setting's kind, ``@HOSTNAME@`` replaced; a value the command line
    already typed is kept."""
    if not isinstance(value, str):
        return value
    text = _host(value, host).strip()
    try:
        if setting.kind == "path":
            return Path(text).expanduser() if text else None
        if setting.kind == "paths":
            return [Path(p).expanduser() for p in split_values(text)]
        if setting.kind == "words":
            return split_values(text)
        if setting.kind == "size":
            return parse_size(text)
        if setting.kind == "float":
            number = float(text)
            if number < 0:
                raise ValueError("must not be negative")
            return number
        if setting.kind == "int":
            number = int(text)
            if number < 0:
                raise ValueError("must not be negative")
            return number
        if setting.kind == "bool":
            return parse_bool(text)
        if setting.kind == "schemes":
            return parse_schemes(text)
        if setting.kind == "networks":
            return parse_networks(split_values(text))
        return text or None
    except ValueError as exc:
        raise ConfigError(f"setting {setting.key} = {text!r}: {exc}") from None


def parse_size(text: str) -> int | None:
    """``200G``, ``1.5T``, ``500MiB``, ``1048576``; ``none``/``0``/empty means no limit."""
    if text.lower() in ("", "none", "0", "unlimited"):
        return None
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError("is not a size such as 200G, 500M or a number of bytes")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def human_size(size: int | float | None) -> str:
    """A size as people read it (``390.6 KiB``): the inverse of :func:`parse_size`."""
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


SCHEMES = ("http", "https", "file")
_EVERYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def parse_schemes(text: str) -> list[str]:
    """``http https file``: the location schemes a node follows."""
    schemes = [s.lower() for s in split_values(text)]
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise ValueError(f"unknown scheme(s) {', '.join(unknown)}; known: {', '.join(SCHEMES)}")
    return schemes


def parse_networks(values: list) -> list:
    """Networks (``10.1.0.0/16``, ``fd00::/8``, an address); ``yes`` is every address,
    ``no`` none. Networks already parsed are kept."""
    networks: list = []
    for value in values:
        if not isinstance(value, str):
            networks.append(value)
        elif value.lower() in ("yes", "all", "true"):
            networks += _EVERYWHERE
        elif value.lower() not in ("no", "none", "false"):
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise ValueError(f"{value!r} is not a network such as 10.1.0.0/16, "
                                 "nor yes or no") from None
    return networks


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off", ""):
        return False
    raise ValueError("must be yes or no")


def template() -> str:
    """A commented fetcher.cfg listing every setting with its default."""
    lines = ["# Node fetcher configuration (stratus-image-cache, stratus-download-image).",
             "# @HOSTNAME@ in a value becomes the host name; fetcher.cfg.d/<host>.cfg beside",
             "# this file overrides it for one host.", "", f"[{SECTION}]"]
    for s in SETTINGS:
        default = "" if s.default in (None, []) else \
            " ".join(s.default) if isinstance(s.default, list) else str(s.default)
        lines += [f"# {s.help}", f"#{s.key} = {default}"]
    lines += ["", "[endorsers]", "#whitelistendorsers = jane@example.org",
              "#    CN=Jane Doe,OU=Grid,O=Example,C=EU", "#blacklistendorsers =", "",
              "[images]", "#whitelistimages =", "#blacklistimages =", "",
              "[checksums]", "#whitelistchecksums =", "#blacklistchecksums =", "",
              "[trust]", "#certificates = /etc/grid-security/certificates", "#crls =",
              "", "# Signed HEPiX image lists `stratus-image-cache subscribe` follows, one each:",
              "#[subscription NAME]", "#url = https://appdb.example.org/image.list",
              "#endorser_dn = /DC=EU/DC=Example/CN=appdb.example.org",
              "#ca_dir = /etc/grid-security/certificates"]
    return "\n".join(lines) + "\n"
