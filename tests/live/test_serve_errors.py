"""A setting that cannot work stops ``stratus-marketplace serve`` with one clear line,
before the gunicorn banner and before any worker boots (not a traceback in each worker)."""

from __future__ import annotations

import subprocess

import pytest

from tests.live.conftest import clean_environ, script
from tests.processes import free_port


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("MARKETPLACE_PUBLIC_URL", "ftp://marketplace.example.org", "MARKETPLACE_PUBLIC_URL"),
    ("MARKETPLACE_UNLISTED_ENDORSERS", "sometimes", "MARKETPLACE_UNLISTED_ENDORSERS"),
    ("MARKETPLACE_MAILS_PER_CLIENT_PER_HOUR", "0", "MARKETPLACE_MAILS_PER_CLIENT_PER_HOUR"),
])
def test_a_bad_setting_is_one_line_before_any_worker(tmp_path, setting, value, named):
    done = subprocess.run(
        [script("stratus-marketplace"), "serve", "--data-dir", str(tmp_path),
         "--port", str(free_port())], capture_output=True, text=True, timeout=60,
        env=clean_environ(**{setting: value}), stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], \
        done.stderr
    assert "Starting gunicorn" not in done.stderr + done.stdout
