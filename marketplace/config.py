"""Marketplace settings: defaults < ``marketplace.cfg`` in the data dir < ``MARKETPLACE_*``.

:data:`SETTINGS` documents every key once; ``stratus-marketplace --help`` prints it. The
mechanism (reading the file and the environment, the precedence) is the one the commands
share, :mod:`marketplace.metadata.settings`.
"""

from __future__ import annotations

import os
from pathlib import Path

from marketplace.metadata.settings import (
    ConfigError,
    Setting,
    from_environment,
    layered,
    read_ini,
    section,
)

CONFIG_FILE = "marketplace.cfg"
ENV_PREFIX = "MARKETPLACE_"
SECTION = "marketplace"

SETTINGS = (
    Setting("DATA_DIR", "./var/marketplace", "folder for the SQLite store and marketplace.cfg"),
    Setting("STORE", "sqlite", "storage backend: sqlite or elasticsearch"),
    Setting("ELASTICSEARCH_URL", "http://127.0.0.1:9200", "Elasticsearch server (STORE="
            "elasticsearch); several nodes separated by commas"),
    Setting("ELASTICSEARCH_INDEX_PREFIX", "marketplace", "prefix of the Elasticsearch indices"),
    Setting("ELASTICSEARCH_USERNAME", "", "user for HTTP basic authentication to "
            "Elasticsearch (empty: none)"),
    Setting("ELASTICSEARCH_PASSWORD", "", "that user's password (better: the _FILE setting)"),
    Setting("ELASTICSEARCH_PASSWORD_FILE", "", "file holding that user's password"),
    Setting("ELASTICSEARCH_API_KEY", "", "Elasticsearch API key (base64 id:key), instead of "
            "a user (better: the _FILE setting)"),
    Setting("ELASTICSEARCH_API_KEY_FILE", "", "file holding the API key"),
    Setting("ELASTICSEARCH_CA_CERTS", "", "CA certificates (PEM file) for an https:// "
            "Elasticsearch; empty: the system's"),
    Setting("ELASTICSEARCH_VERIFY_CERTS", "true", "check the Elasticsearch server's "
            "certificate (false only for tests)"),
    Setting("ELASTICSEARCH_TIMEOUT", "10", "seconds to wait for Elasticsearch before "
            "answering 503"),
    Setting("ELASTICSEARCH_SHARDS", "1", "primary shards of each new index"),
    Setting("ELASTICSEARCH_REPLICAS", "0-1", "replicas of each new index: a number, or a "
            "range such as 0-1 that follows the number of nodes"),
    Setting("ELASTICSEARCH_WAIT_FOR_ACTIVE_SHARDS", "all", "copies of a shard (primary and "
            "replicas) that must be up before a write starts: all (a write is refused, 503, "
            "rather than kept on fewer copies) or a number such as 1"),
    Setting("ELASTICSEARCH_TRANSLOG_DURABILITY", "auto", "auto: an index with at least one "
            "replica, written with WAIT_FOR_ACTIVE_SHARDS=all, fsyncs its translog every 5 s "
            "(index.translog.sync_interval), a write being acknowledged once the primary and "
            "every replica have it (it survives the loss of a node; a power loss of every "
            "node at once can cost the last 5 s); any other index fsyncs before each answer. "
            "request: always fsync before each answer"),
    Setting("MAX_UPLOAD_BYTES", str(1024 * 1024), "largest metadata document accepted"),
    Setting("TRUST_STORE", "", "CA certificates and CRLs (file or folder) that signers must "
            "chain to; empty: any valid certificate"),
    Setting("TITLE", "StratusLab Marketplace", "name shown on the pages"),
    # Who may publish (marketplace.moderation).
    Setting("ENDORSER_WHITELIST", "", "file of endorsers published at once: subject DNs "
            "(compared as names) and/or email addresses (the certificate's own), one a line; "
            "needs TRUST_STORE"),
    Setting("UNLISTED_ENDORSERS", "publish", "what becomes of an upload by an endorser not "
            "on the whitelist: publish (at once), confirm (kept pending until a link mailed "
            "to the endorser is followed) or refuse (403)"),
    Setting("PENDING_HOURS", "48", "hours an upload awaits its emailed confirmation before "
            "it is discarded"),
    Setting("PUBLIC_URL", "", "this marketplace's address as people reach it (the links of "
            "confirmation mails, the commands shown on pages); required with "
            "UNLISTED_ENDORSERS=confirm"),
    Setting("TRUSTED_HOSTS", "", "host names this marketplace answers to, separated by "
            "commas (.example.org admits its subdomains); any other Host header gets 400; "
            "empty: the host of PUBLIC_URL when set, else any"),
    Setting("MODERATION_DB", "", "the SQLite moderation file of an older version, taken into "
            "the store's state by init-store or serve and renamed *.migrated (the state now "
            "lives in the store); empty: DATA_DIR/moderation.db"),
    Setting("MAILS_PER_RECIPIENT_PER_DAY", "3", "confirmation mails one address gets in 24 "
            "hours at most; further uploads naming it are answered 429 and not kept"),
    Setting("MAILS_PER_CLIENT_PER_HOUR", "20", "confirmation mails the uploads of one client "
            "address (IPv6: its /64) cause in an hour at most; then 429. The address is the "
            "one the server sees: behind a reverse proxy, the proxy's, shared by everyone"),
    Setting("SMTP_HOST", "", "mail server of the confirmation mails"),
    Setting("SMTP_PORT", "25", "its port"),
    Setting("SMTP_USER", "", "user to log in to the mail server as (empty: no login)"),
    Setting("SMTP_PASSWORD_FILE", "", "file holding that user's password"),
    Setting("SMTP_STARTTLS", "false", "true: switch the SMTP connection to TLS (STARTTLS) "
            "and check the server's certificate"),
    Setting("SMTP_FROM", "", "sender address of the confirmation mails"),
    Setting("ADMIN_TOKEN_FILE", "", "file of admin bearer tokens, one a line (TOKEN or "
            "NAME:TOKEN); with no admin credentials, /admin answers 403"),
    Setting("ADMIN_ACCOUNTS_FILE", "", "file of admin accounts for HTTP basic authentication, "
            "NAME:PASSWORD-HASH a line (`stratus-marketplace admin-account NAME` makes one)"),
    # Replica mode (marketplace.replica).
    Setting("PRIMARY_URL", "", "make this marketplace a read-only replica of the one at this "
            "URL: uploads are refused (403) and `serve` follows the primary"),
    Setting("REPLICATE_INTERVAL", "60", "seconds between two pulls of a replica that `serve` "
            "runs; 0: `serve` does not pull (run `replicate --once` yourself)"),
    Setting("REPLICA_WITNESS_KEY", "", "file of this replica's witness key "
            "(`stratus-marketplace init-log --witness` makes it): each pull then checks the "
            "primary's signed log checkpoint (with REPLICA_LOG_KEY), its consistency with "
            "the last one cosigned, and posts a cosignature; empty: no witnessing"),
    Setting("REPLICA_LOG_KEY", "", "the primary's log verifier key (its /log/key, checked "
            "out of band), which the checkpoints a witnessing replica cosigns must verify "
            "with"),
    # The transparency log (marketplace.log, docs/log.md).
    Setting("LOG_KEY", "", "file of the log's signing key (`stratus-marketplace init-log` "
            "makes it, mode 0600); empty: DATA_DIR/log-key. Servers sharing one store "
            "share this key"),
    Setting("LOG_RESIGN", "3600", "seconds after which the served log checkpoint is signed "
            "again, even when the log did not grow (nodes refuse checkpoints older than "
            "their max_checkpoint_age)"),
    Setting("LOG_WITNESSES", "", "verifier keys (vkeys) of the witnesses whose "
            "cosignatures of the log checkpoint this marketplace accepts and serves, "
            "separated by commas or spaces"),
    # Exports for other tools (marketplace.exports).
    Setting("IMAGELISTS", "", "INI file of the HEPiX image lists served at /imagelists/NAME: "
            "a [NAME] section each, with title, description and search parameters as "
            "/api/v1/appliances takes (os = ubuntu); one list per endorser is always there"),
    Setting("IMAGELIST_CERTIFICATE", "", "PEM certificate that signs the image lists "
            "(S/MIME); its subject and issuer are the lists' hv:endorser"),
    Setting("IMAGELIST_KEY", "", "PEM private key (unencrypted) of that certificate"),
    Setting("IMAGELIST_LIFETIME_DAYS", "7", "days an image list is valid after it is signed "
            "(dc:date:expires); lists are signed again when half of it has passed"),
    Setting("GPG_HOME", "", "GnuPG home holding the key that clearsigns the simplestreams "
            ".sjson files (empty: gpg's default)"),
    Setting("GPG_KEY", "", "that key's id or fingerprint (no passphrase); empty: no .sjson"),
)
_DEFAULTS = {s.key: s.default for s in SETTINGS}


def load(data_dir: str | None = None, environ: dict[str, str] | None = None,
         **overrides: str) -> dict[str, str]:
    """The effective settings: defaults, then the data dir's file, environment, then the
    arguments (an explicit ``data_dir`` or override beats the environment)."""
    environ = os.environ if environ is None else environ
    folder = data_dir or environ.get(ENV_PREFIX + "DATA_DIR") or _DEFAULTS["DATA_DIR"]
    file = section(read_ini(Path(folder) / CONFIG_FILE, key_case=str.upper), SECTION)
    values = layered(_DEFAULTS, {"DATA_DIR": folder}, file,
                     from_environment(environ, ENV_PREFIX, _DEFAULTS),
                     {k.upper(): str(v) for k, v in overrides.items() if v is not None},
                     {"DATA_DIR": data_dir})
    unknown = set(values) - set(_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown marketplace settings: {', '.join(sorted(unknown))}")
    return values


def describe() -> str:
    """Every setting with its default, for --help."""
    return "\n".join(f"  {ENV_PREFIX}{s.key} (default {s.default!r}): {s.help}"
                     for s in SETTINGS)
