"""stratus-image-cache and stratus-download-image as installed commands, run as a script on
a node would: exit statuses, JSON, the light cache-hit path, leases for the caller."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.node import errors
from tests import factories
from tests.node.conftest import Fault, command_env, image_bytes, run_command

SIZE = 150_000


@pytest.fixture
def node(marketplace, origin, rsa_signer, write_config, node_settings, tmp_path):
    """A published image, a config file for it, and a runner of the commands."""

    class Node:
        config = write_config(fetcher=node_settings)
        cache = Path(node_settings["cache_dir"])
        image = image_bytes(SIZE, seed=int(time.time() * 1000) % 10**9)
        url = origin.add(f"image-{time.time_ns()}.img", image)
        identifier = marketplace.publish(rsa_signer, image, [url])

        def run(self, *args, env=None):
            name = "stratus-download-image" if args[0] == "download" else "stratus-image-cache"
            args = args[1:] if args[0] == "download" else args
            return run_command(name, *args, "--config", str(self.config), env=env)

        def json(self, *args, code: int = 0):
            done = self.run(*args, "--json")
            assert done.returncode == code, done.stderr
            return json.loads(done.stdout)

    return Node()


def test_help_documents_the_exit_statuses():
    for name in ("stratus-image-cache", "stratus-download-image"):
        done = run_command(name, "--help")
        assert done.returncode == 0
        text = " ".join(done.stdout.split())
        for code, meaning in errors.EXIT_CODES.items():
            assert f"{code} {' '.join(meaning.split())}" in text, (name, code)


def test_pull_then_path_answers_from_the_cache(node, origin):
    pulled = node.json("pull", node.identifier)
    assert pulled["cached"] is False and pulled["size"] == SIZE
    assert pulled["resolution"]["chosen"]["endorser"].startswith("jane.tester@example.org")
    done = node.run("path", node.identifier)
    assert done.returncode == 0 and done.stdout == pulled["path"] + "\n"
    assert Path(pulled["path"]).read_bytes() == node.image
    assert sum(origin.requests.values()) == 1


def test_path_pulls_on_a_miss_and_leases_the_image_to_its_caller(node):
    done = node.run("path", node.identifier)
    assert done.returncode == 0, done.stderr
    leases = list((node.cache / "leases" / node.identifier).iterdir())
    owners = [json.loads(p.read_bytes())["pid"] for p in leases]
    assert owners == [os.getpid()], "the lease belongs to the process that asked"
    listed = node.json("list")
    assert listed["images"][0]["in_use"] == [f"pid {os.getpid()} on {socket.gethostname()}"]
    assert node.run("path", node.identifier, "--no-hold").returncode == 0
    assert len(list((node.cache / "leases" / node.identifier).iterdir())) == 1


def test_a_cache_hit_loads_no_network_or_xml_machinery(node):
    assert node.run("pull", node.identifier).returncode == 0
    probe = ("import sys\nfrom client.image_cache import main\n"
             f"code = main(['path', {node.identifier!r}, '--config', {str(node.config)!r}, "
             "'--no-hold'])\n"
             "heavy = [m for m in ('lxml', 'xmlsec', 'requests', 'urllib3', 'cryptography', "
             "'zstandard') if m in sys.modules]\n"
             "print(code, heavy)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=command_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"


def test_path_without_pull_on_a_miss_is_not_found(node):
    done = node.run("path", node.identifier, "--no-pull")
    assert done.returncode == errors.NOT_FOUND and "is not in the cache" in done.stderr


def test_a_refused_entry_exits_3_and_says_why(node, write_config, node_settings):
    strict = write_config("strict.cfg", fetcher=node_settings,
                          endorsers={"blacklistendorsers": ["jane.tester@example.org"]})
    done = run_command("stratus-image-cache", "pull", node.identifier, "--config", str(strict),
                       "--json")
    assert done.returncode == errors.REFUSED
    answer = json.loads(done.stdout)
    assert answer["kind"] == "refused" and answer["exit_code"] == 3
    assert "is blacklisted (jane.tester@example.org)" in answer["candidates"][0]["reasons"][0]
    assert "is blacklisted" in done.stderr
    assert not (node.cache / "images" / node.identifier).exists()


def test_a_failed_download_exits_4_naming_each_location(marketplace, origin, rsa_signer,
                                                        write_config, node_settings):
    image = image_bytes(SIZE, seed=99)
    bad = origin.add("bad-for-command.img", image, Fault("wrong", after=7))
    identifier = marketplace.publish(rsa_signer, image, [f"{origin.base}/gone.img", bad])
    config = write_config(fetcher=node_settings)
    done = run_command("stratus-image-cache", "pull", identifier, "--config", str(config))
    assert done.returncode == errors.DOWNLOAD_FAILED
    assert f"{origin.base}/gone.img: HTTP 404" in done.stderr
    assert f"{bad}: SHA-256 mismatch" in done.stderr


def test_usage_errors_exit_2(node):
    assert node.run("pull", "not-an-identifier").returncode == errors.USAGE
    assert node.run("frobnicate").returncode == errors.USAGE
    assert node.run("pin", "../../etc/passwd").returncode == errors.USAGE


def test_an_unknown_identifier_exits_5(node):
    missing = factories.appliance(os.urandom(64)).identifier
    assert node.run("pull", missing).returncode == errors.NOT_FOUND


def test_verify_reports_and_removes_a_damaged_image(node):
    path = Path(node.json("pull", node.identifier)["path"])
    os.chmod(path, 0o644)
    path.write_bytes(node.image[:-1] + bytes([node.image[-1] ^ 0xFF]))
    report = node.json("verify", code=errors.DAMAGED)
    assert report["results"][0]["status"] == "damaged" and report["results"][0]["removed"]
    assert not path.exists()
    assert node.run("pull", node.identifier).returncode == 0
    assert node.json("verify", node.identifier)["results"][0]["status"] == "ok"


def test_pin_list_prune_and_remove(node):
    node.json("pull", node.identifier)
    assert node.json("pin", node.identifier)["pinned"] is True
    assert node.json("prune", "--quota", "1")["evicted"] == []
    listed = node.json("list")
    assert listed["images"][0]["pinned"] and listed["total"] == SIZE
    assert node.run("remove", node.identifier).returncode == errors.FAILURE
    assert node.json("unpin", node.identifier)["was_pinned"] is True
    assert node.json("prune", "--quota", "1")["evicted"] == [node.identifier]
    assert node.run("remove", node.identifier).returncode == errors.NOT_FOUND
    assert node.json("list")["images"] == []


def test_show_config_applies_the_per_host_file(node, write_config, tmp_path):
    write_config("node42.cfg", node.config.parent / "fetcher.cfg.d",
                 fetcher={"quota": "3G", "event_command": "/usr/bin/logger -t @HOSTNAME@"})
    done = node.run("show-config", "--json", env=command_env(STRATUSLAB_HOSTNAME="node42"))
    shown = json.loads(done.stdout)
    assert shown["hostname"] == "node42" and shown["settings"]["quota"] == 3 * 2**30
    assert shown["settings"]["event_command"] == "/usr/bin/logger -t node42"


def test_the_config_template_is_printed_and_loads(node, tmp_path):
    done = node.run("show-config", "--template")
    assert done.returncode == 0 and "#quota =" in done.stdout and "[endorsers]" in done.stdout
    (tmp_path / "from-template.cfg").write_text(done.stdout)
    again = run_command("stratus-image-cache", "show-config", "--json", "--config",
                        str(tmp_path / "from-template.cfg"))
    assert again.returncode == 0 and json.loads(again.stdout)["settings"]["retries"] == 5


def test_download_image_writes_a_verified_file(node, tmp_path):
    output = tmp_path / "out" / "disk.img"
    output.parent.mkdir()
    done = node.run("download", node.identifier, "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert output.read_bytes() == node.image
    assert sorted(p.name for p in output.parent.iterdir()) == ["disk.img"]
    answer = node.json("download", node.identifier, "-o", str(output.parent))
    assert Path(answer["path"]).parent == output.parent
    assert not (node.cache / "images").exists(), "download-image does not fill the cache"


@pytest.mark.parametrize("where", ["missing/disk.img", "file/disk.img"])
def test_a_bad_output_directory_is_named_not_the_hidden_part_file(node, tmp_path, where):
    (tmp_path / "file").write_text("a file, not a directory")
    output = tmp_path / where
    done = node.run("download", node.identifier, "-o", str(output))
    assert done.returncode == 1
    assert ".part" not in done.stderr
    reason = "does not exist" if where.startswith("missing") else "is not a directory"
    assert done.stderr == f"error: cannot write {output}: {output.parent} {reason}\n"


def test_download_image_from_a_marketplace_url_decompresses(marketplace, origin, rsa_signer,
                                                           tmp_path, write_config,
                                                           node_settings):
    image = image_bytes(SIZE, seed=123)
    url = origin.add("appliance-1.0.img.gz", gzip.compress(image))
    identifier = marketplace.publish(rsa_signer, image, [url], compression="gz")
    config = write_config(fetcher={**node_settings, "marketplace_endpoint": "http://127.0.0.1:9"})
    done = subprocess.run(
        [sys.executable, "-m", "client.download_image", f"{marketplace.url}metadata/{identifier}",
         "--config", str(config), "--json"], capture_output=True, text=True, cwd=tmp_path,
        env=command_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["path"] == str(tmp_path / "appliance-1.0.img")
    assert (tmp_path / "appliance-1.0.img").read_bytes() == image


def test_download_image_failure_leaves_no_file(marketplace, origin, rsa_signer, tmp_path,
                                               write_config, node_settings):
    image = image_bytes(SIZE, seed=321)
    bad = origin.add("bad-download.img", image, Fault("short", after=SIZE // 2))
    identifier = marketplace.publish(rsa_signer, image, [bad])
    config = write_config(fetcher=node_settings)
    done = run_command("stratus-download-image", identifier, "-o", str(tmp_path / "x.img"),
                       "--config", str(config))
    assert done.returncode == errors.DOWNLOAD_FAILED
    assert "the server offers" in done.stderr
    assert not list(tmp_path.glob("*x.img*"))


@pytest.mark.parametrize("command", [
    ["-m", "client.image_cache", "--json", "list"],
    ["-c", "from client.validate import main; raise SystemExit(main())", "--json", __file__],
], ids=["stratus-image-cache", "stratus-validate-metadata"])
def test_a_reader_that_goes_away_ends_the_command_quietly(command, tmp_path):
    """``--json list | head`` ended in a BrokenPipe traceback (or "error: Broken pipe")."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, *command], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=60,
                                env={**os.environ, "STRATUSLAB_CACHE_DIR": str(tmp_path)})
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
