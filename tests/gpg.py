"""A GnuPG signing key made at run time (Debian's gpg), for the signed simplestreams forms."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def signing_home(user_id: str) -> Iterator[tuple[Path, str, Path]]:
    """A GnuPG home (short path: the agent's socket lives there) with a new signing key, its
    fingerprint, and a keyring holding only its public key, as a client would have."""
    home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
    home.chmod(0o700)
    base = ["gpg", "--batch", "--homedir", str(home)]
    try:
        subprocess.run([*base, "--passphrase", "", "--quick-gen-key", user_id, "ed25519",
                        "sign", "never"], check=True, capture_output=True)
        listing = subprocess.run([*base, "--with-colons", "--list-secret-keys"], check=True,
                                 capture_output=True, text=True).stdout
        fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                           if line.startswith("fpr:"))
        keyring = home / "client.gpg"
        exported = subprocess.run([*base, "--export", fingerprint], check=True,
                                  capture_output=True).stdout
        subprocess.run([*base, "--no-default-keyring", "--keyring", str(keyring), "--import"],
                       input=exported, check=True, capture_output=True)
        yield home, fingerprint, keyring
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
