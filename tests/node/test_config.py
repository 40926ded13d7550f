"""The fetcher's config: general file, per-host override, @HOSTNAME@, precedence, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.node import config
from client.node.config import ConfigError, load


def test_defaults_with_an_empty_file(tmp_path):
    values = load(_empty(tmp_path), environ={}).values
    assert values["cache_dir"] == Path("/var/lib/stratuslab/images")
    assert values["quota"] is None and values["retries"] == 5
    assert values["allow_expired"] is False and values["ca_bundle"] == []


def test_a_per_host_file_overrides_and_hostname_is_substituted(write_config, tmp_path):
    main = write_config(fetcher={"cache_dir": "/shared/@HOSTNAME@/cache", "quota": "10G",
                                 "read_timeout": "30"},
                        endorsers={"whitelistendorsers": ["ops@example.org"]})
    write_config("node7.cfg", tmp_path / "fetcher.cfg.d", fetcher={"quota": "500M"})
    write_config("node7.example.org.cfg", tmp_path / "fetcher.cfg.d",
                 fetcher={"read_timeout": "90"},
                 endorsers={"whitelistendorsers": ["ops@example.org", "@HOSTNAME@@example.org"]})
    write_config("node8.cfg", tmp_path / "fetcher.cfg.d", fetcher={"quota": "1T"})
    loaded = load(main, environ={"STRATUSLAB_HOSTNAME": "node7.example.org"})
    assert loaded.hostname == "node7.example.org"
    assert loaded.cache_dir == Path("/shared/node7.example.org/cache")
    assert loaded.quota == 500 * 2**20 and loaded.read_timeout == 90.0
    assert loaded.policy["whitelistendorsers"] == ["ops@example.org",
                                                   "node7.example.org@example.org"]
    assert [Path(f).name for f in loaded.files] == ["fetcher.cfg", "node7.cfg",
                                                    "node7.example.org.cfg"]
    other = load(main, environ={"STRATUSLAB_HOSTNAME": "node9"})
    assert other.quota == 10 * 2**30 and other.cache_dir == Path("/shared/node9/cache")


def test_precedence_option_over_environment_over_file(write_config):
    path = write_config(fetcher={"cache_dir": "/from/file", "marketplace_endpoint":
                                 "http://file:1", "retries": "2"})
    env = {"STRATUSLAB_CACHE_DIR": "/from/env", "STRATUSLAB_RETRIES": "9"}
    loaded = load(path, environ=env, overrides={"cache_dir": "/from/option",
                                                "marketplace_endpoint": None})
    assert loaded.cache_dir == Path("/from/option")
    assert loaded.retries == 9 and loaded.marketplace_endpoint == "http://file:1"


def test_the_config_file_comes_from_the_environment(write_config):
    path = write_config(fetcher={"quota": "1G"})
    assert load(None, environ={config.CONFIG_ENV: str(path)}).quota == 2**30


@pytest.mark.parametrize("text,message", [
    ("[fetcher]\ncache_size = 1G\n", "unknown setting(s) in [fetcher]"),
    ("[fetcher]\nquota = lots\n", "setting quota = 'lots'"),
    ("[fetcher]\nretries = -1\n", "setting retries"),
    ("[fetcher]\nallow_weak = perhaps\n", "must be yes or no"),
    ("[fetcher]\nlocation_schemes = http ftp\n", "unknown scheme(s) ftp"),
    ("[fetcher]\nallow_private_addresses = intranet\n", "'intranet' is not a network"),
    ("[fetcher\n", "cannot read config file"),
])
def test_bad_files_name_the_setting(tmp_path, text, message):
    path = tmp_path / "fetcher.cfg"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        load(path, environ={})


def test_locations_follow_the_nodes_rules_by_default(tmp_path, write_config):
    values = load(_empty(tmp_path), environ={}).values
    assert values["location_schemes"] == ["http", "https"]
    assert values["allow_private_addresses"] == []
    assert values["min_rate"] == 10 * 1024 and values["location_timeout"] == 6 * 3600
    path = write_config(fetcher={"location_schemes": "http https file",
                                 "allow_private_addresses": "10.1.0.0/16, fd00::/8"})
    loaded = load(path, environ={})
    assert loaded.location_schemes == ["http", "https", "file"]
    assert [str(n) for n in loaded.allow_private_addresses] == ["10.1.0.0/16", "fd00::/8"]
    assert len(config.parse_networks(["yes"])) == 2 and config.parse_networks(["no"]) == []


def test_a_missing_config_file_given_explicitly_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.cfg", environ={})


def test_sizes_and_lists():
    assert config.parse_size("200G") == 200 * 2**30
    assert config.parse_size("1.5T") == int(1.5 * 2**40)
    assert config.parse_size("512MiB") == 512 * 2**20
    assert config.parse_size("4096") == 4096
    assert config.parse_size("none") is None
    assert config.split_values("a@x, b@y\n# comment\n  CN=A, O=B, C=EU\n\nAAA BBB") == [
        "a@x", "b@y", "CN=A, O=B, C=EU", "AAA", "BBB"]


def test_the_template_is_a_loadable_config(tmp_path):
    path = tmp_path / "fetcher.cfg"
    path.write_text(config.template())
    assert load(path, environ={}).values == load(_empty(tmp_path), environ={}).values


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.cfg"
    path.write_text("")
    return path
