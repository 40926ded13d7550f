"""Finding the signer's credentials and their password without ever taking it as an argument.

A password comes from a file named by ``--p12-password-file`` / ``--pem-password-file``,
from the environment (``STRATUSLAB_P12_PASSWORD`` or ``STRATUSLAB_PEM_PASSWORD``), from a
password file named in the environment or the config file, or from a prompt on a terminal:
the usual order, option > environment > config file.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from client.config import ConfigError, Settings
from marketplace.metadata.keys import Credentials, load_pem, load_pkcs12


def add_options(p: argparse.ArgumentParser) -> None:
    """The credential options of the signing commands."""
    p.add_argument("--p12-cert", metavar="FILE", help="PKCS#12 file with key and certificate")
    p.add_argument("--p12-password-file", metavar="FILE",
                   help="file holding the PKCS#12 password (else STRATUSLAB_P12_PASSWORD or a "
                   "prompt)")
    p.add_argument("--pem-key", metavar="FILE", help="PEM private key (with --pem-cert)")
    p.add_argument("--pem-cert", metavar="FILE", help="PEM certificate (with --pem-key)")
    p.add_argument("--pem-password-file", metavar="FILE",
                   help="file holding the PEM key's password, if it is encrypted")


def load(settings: Settings) -> Credentials:
    """The credentials the settings point at: PKCS#12 first, else a PEM key and certificate."""
    p12 = settings.get("p12_cert")
    if p12:
        return load_pkcs12(Path(p12).expanduser(), password(settings, "p12"))
    key, certificate = settings.get("pem_key"), settings.get("pem_cert")
    if key and certificate:
        # a password set for other keys (e.g. in the environment) is no use to a plain key
        secret = password(settings, "pem") if _is_encrypted(Path(key)) else None
        return load_pem(Path(key).expanduser(), Path(certificate).expanduser(), secret)
    raise ConfigError("no signing credentials: give --p12-cert, or --pem-key and --pem-cert "
                      "(or set them in the config file)")


def password(settings: Settings, kind: str) -> bytes:
    """The password for a ``p12`` or ``pem`` key: from a password file given as an option,
    else the environment, else a password file named by the environment or config file,
    else a prompt."""
    option = getattr(settings.options, f"{kind}_password_file", None)
    value = None if option else settings.environ.get(f"STRATUSLAB_{kind.upper()}_PASSWORD")
    if value is None:
        file = settings.get(f"{kind}_password_file")
        if file:
            value = Path(file).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
    if value is None:
        if not sys.stdin.isatty():
            raise ConfigError(f"the {kind} password is needed: set STRATUSLAB_{kind.upper()}_"
                              f"PASSWORD or --{kind}-password-file (no terminal to prompt on)")
        value = getpass.getpass(f"{kind.upper()} password: ")
    return value.encode()


def _is_encrypted(key: Path) -> bool:
    return b"ENCRYPTED" in key.expanduser().read_bytes()[:200]
