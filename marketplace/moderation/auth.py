"""Who may use ``/admin``: bearer tokens and/or accounts with hashed passwords.

- ``MARKETPLACE_ADMIN_TOKEN_FILE``: one token a line, ``TOKEN`` or ``NAME:TOKEN`` (the name
  goes into the audit log; ``admin-token`` otherwise). Sent as ``Authorization: Bearer``.
- ``MARKETPLACE_ADMIN_ACCOUNTS_FILE``: ``NAME:HASH`` a line, HASH from werkzeug's
  ``generate_password_hash`` (``stratus-marketplace admin-account NAME`` prints a line).
  Sent as HTTP basic authentication, which browsers ask for by themselves.

With neither file, every admin route answers 403: never open by default. Tokens are
compared through their SHA-256 with :func:`hmac.compare_digest`; no credential is ever
written to a log, a page or an error message. The files are read again when they change.

Forms of the admin pages carry a CSRF token (an HMAC keyed by the account's password hash),
since a browser sends basic credentials on any site's behalf; bearer tokens are never
sent by a browser on its own, and the JSON API only takes ``application/json`` bodies,
which no cross-site form can send.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from marketplace.moderation.endorsers import WatchedFile

TOKEN_ACTOR = "admin-token"
REALM = "marketplace admin"
MAX_NAME = 64


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the account is unknown, so a wrong name costs as much time."""
    return generate_password_hash("not a password of anyone")


class NotConfigured(Exception):
    """No admin credentials are configured: administration is off (403)."""


class Unauthorized(Exception):
    """Missing or wrong credentials (401)."""

    def __init__(self, message: str, challenge: str):
        self.challenge = challenge
        super().__init__(message)


@dataclass(frozen=True)
class Admin:
    """An authenticated operator: the name audited, and how they proved it."""

    name: str
    method: str  # "token" or "password"
    form_key: bytes  # key of the CSRF tokens of this operator's forms

    def form_token(self) -> str:
        return hmac.new(self.form_key, b"admin-form:" + self.name.encode(),
                        hashlib.sha256).hexdigest()

    def check_form(self, token: str | None) -> bool:
        """True when a form came from our page (always, for a bearer token)."""
        return self.method == "token" or hmac.compare_digest(
            (token or "").encode(), self.form_token().encode())


def _read_tokens(path: Path) -> list[tuple[str, bytes]]:
    tokens = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, token = line.rpartition(":")
        if len(token) < 16:
            raise ValueError(f"{path}, line {number}: an admin token must have at least 16 "
                             "characters")
        tokens.append((name.strip()[:MAX_NAME] or TOKEN_ACTOR,
                       hashlib.sha256(token.encode()).digest()))
    return tokens


def _read_accounts(path: Path) -> dict[str, str]:
    accounts = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, hashed = line.partition(":")
        if not name or "$" not in hashed:
            raise ValueError(f"{path}, line {number}: write NAME:HASH (the hash from "
                             "`stratus-marketplace admin-account NAME`)")
        accounts[name.strip()] = hashed.strip()
    return accounts


class Guard:
    """Checks the credentials of a request against the configured files."""

    def __init__(self, token_file: str = "", accounts_file: str = ""):
        self.tokens = WatchedFile(Path(token_file), _read_tokens) if token_file else None
        self.accounts = WatchedFile(Path(accounts_file), _read_accounts) \
            if accounts_file else None

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> Guard:
        return cls(settings["ADMIN_TOKEN_FILE"], settings["ADMIN_ACCOUNTS_FILE"])

    @property
    def configured(self) -> bool:
        return self.tokens is not None or self.accounts is not None

    def challenge(self) -> str:
        return f'Basic realm="{REALM}"' if self.accounts else f'Bearer realm="{REALM}"'

    def check(self, authorization: str | None) -> Admin:
        """The operator an ``Authorization`` header proves; NotConfigured or Unauthorized."""
        if not self.configured:
            raise NotConfigured("administration is off on this marketplace: no admin "
                                "credentials are configured (MARKETPLACE_ADMIN_TOKEN_FILE, "
                                "MARKETPLACE_ADMIN_ACCOUNTS_FILE)")
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        admin = None
        if scheme.lower() == "bearer" and self.tokens is not None:
            admin = self._token(credentials.strip())
        elif scheme.lower() == "basic" and self.accounts is not None:
            admin = self._account(credentials.strip())
        if admin is None:
            raise Unauthorized("authentication required: send valid admin credentials"
                               if authorization else "authentication required",
                               self.challenge())
        return admin

    def _token(self, token: str) -> Admin | None:
        given = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        found = None
        for name, digest in self.tokens.value():
            if hmac.compare_digest(given, digest):
                found = name
        if found is None:
            return None
        return Admin(found, "token", digest_key(given))

    def _account(self, credentials: str) -> Admin | None:
        try:
            text = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, _, password = text.partition(":")
        hashed = self.accounts.value().get(name)
        if not check_password_hash(hashed or _dummy_hash(), password) or hashed is None:
            return None
        return Admin(name[:MAX_NAME], "password", digest_key(hashed.encode()))


def digest_key(material: bytes) -> bytes:
    return hashlib.sha256(b"marketplace-admin-form\0" + material).digest()


def account_line(name: str, password: str) -> str:
    """A line of the accounts file for ``name`` with this password (hashed)."""
    if not name or ":" in name or len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"an account name has 1 to {MAX_NAME} printable characters, no ':'")
    if len(password) < 12:
        raise ValueError("use a password of at least 12 characters")
    return f"{name}:{generate_password_hash(password)}"
