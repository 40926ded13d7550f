"""Finding the signer's credentials and their password.

A password comes from a file named by ``--p12-password-file`` / ``--pem-password-file``;
from ``--p12-password VALUE``, which old scripts pass and which is accepted with a warning
(every user of the machine can read a command line); from the environment
(``STRATUSLAB_P12_PASSWORD`` or ``STRATUSLAB_PEM_PASSWORD``); from a password file named in
the environment or the config file; from the original config key ``p12_password``; or from
a prompt on a terminal: the usual order, option > environment > config file.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from client.cli import warning
from client.config import ConfigError, Settings
from marketplace.metadata.keys import Credentials, load_pem, load_pkcs12
from marketplace.metadata.settings import read_secret


def add_options(p: argparse.ArgumentParser) -> None:
    """The credential options of the signing commands."""
    p.add_argument("--p12-cert", metavar="FILE", help="PKCS#12 file with key and certificate")
    p.add_argument("--p12-password-file", metavar="FILE",
                   help="file holding the PKCS#12 password (else STRATUSLAB_P12_PASSWORD or a "
                   "prompt)")
    p.add_argument("--p12-password", metavar="PASSWORD",
                   help="the PKCS#12 password itself: accepted for old scripts, but other "
                   "users of the machine can read it; prefer the file or the variable")
    p.add_argument("--pem-key", metavar="FILE", help="PEM private key (with --pem-cert)")
    p.add_argument("--pem-cert", metavar="FILE", help="PEM certificate (with --pem-key)")
    p.add_argument("--pem-password-file", metavar="FILE",
                   help="file holding the PEM key's password, if it is encrypted")


def load(settings: Settings) -> Credentials:
    """The credentials the settings point at: PKCS#12 first, else a PEM key and certificate."""
    p12 = settings.get("p12_cert")
    if p12:
        path = Path(p12).expanduser()
        if not path.is_file():  # before asking for a password it could not use
            raise ConfigError(f"the PKCS#12 file {path} does not exist")
        return load_pkcs12(path, password(settings, "p12"))
    key, certificate = settings.get("pem_key"), settings.get("pem_cert")
    if key and certificate:
        # a password set for other keys (e.g. in the environment) is no use to a plain key
        secret = password(settings, "pem") if _is_encrypted(Path(key)) else None
        return load_pem(Path(key).expanduser(), Path(certificate).expanduser(), secret)
    raise ConfigError("no signing credentials: give --p12-cert, or --pem-key and --pem-cert "
                      "(or set them in the config file)")


def password(settings: Settings, kind: str) -> bytes:
    """The password for a ``p12`` or ``pem`` key: from a password file given as an option,
    else the password option, else the environment, else a password file named by the
    environment or config file, else the config file's password, else a prompt."""
    value = None
    if not getattr(settings.options, f"{kind}_password_file", None):
        value = getattr(settings.options, f"{kind}_password", None)
        if value is not None:
            warning(f"--{kind}-password shows the password to every user of this machine "
                    f"(ps, /proc): use STRATUSLAB_{kind.upper()}_PASSWORD or "
                    f"--{kind}-password-file")
        else:
            value = settings.environ.get(f"STRATUSLAB_{kind.upper()}_PASSWORD")
    if value is None:
        value = read_secret(f"the {kind} password", None, settings.get(f"{kind}_password_file"))
    if value is None:
        value = _config_password(settings, kind)
    if value is None:
        if not sys.stdin.isatty():
            raise ConfigError(f"the {kind} password is needed: set STRATUSLAB_{kind.upper()}_"
                              f"PASSWORD or --{kind}-password-file (no terminal to prompt on)")
        value = getpass.getpass(f"{kind.upper()} password: ")
    return value.encode()


def _config_password(settings: Settings, kind: str) -> str | None:
    """The original layout's ``p12_password`` key, with a warning when others can read it."""
    value = settings.file.get(f"{kind}_password")
    if value is not None and settings.config_path().stat().st_mode & 0o077:
        warning(f"{settings.config_path()} holds a password and other users can read it: "
                f"chmod 600 it")
    return value


def _is_encrypted(key: Path) -> bool:
    return b"ENCRYPTED" in key.expanduser().read_bytes()[:200]
