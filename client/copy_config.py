"""stratus-copy-config: write a commented user config file to start from."""

from __future__ import annotations

import argparse
from pathlib import Path

from client import cli
from client.config import USER_CONFIG, ConfigError, Settings
from marketplace.metadata.files import write_atomic

TEMPLATE = """\
# StratusLab user configuration, read by every stratus-* command (the original client's
# layout: original files work as they are).
# Precedence: command-line option > STRATUSLAB_<KEY> environment variable > this file
# > built-in default. Keys are the long option names with '_' for '-'.
# As in the original client, a literal '%' in a value is written '%%' (e.g. in passwords).

# Defaults for every section.
[default]

# The section whose keys override [default]; -S/--user-config-section NAME or
# STRATUSLAB_USER_CONFIG_SECTION choose another for one command.
selected_section = marketplace

[marketplace]

# Marketplace to upload to and search (STRATUSLAB_MARKETPLACE_ENDPOINT); an original
# address with its /marketplace context path works too.
#marketplace_endpoint = http://127.0.0.1:8080

# Signing credentials: a PKCS#12 file (the original key name; p12_cert works too)...
#p12_certificate = ~/.globus/usercert.p12
# ...and its password, best from a file only you can read (or STRATUSLAB_P12_PASSWORD,
# or the prompt). The original p12_password key is read too, if this file is yours alone.
#p12_password_file = ~/.stratuslab/p12-password
# ...or a PEM key and certificate.
#pem_key = ~/.globus/userkey.pem
#pem_certificate = ~/.globus/usercert.pem

# Endorser email, when the certificate carries none.
#email = jane.tester@example.org

# Signature profile: default (RSA/ECDSA-SHA256) or stratuslab (the original RSA-SHA1).
#profile = default

# Defaults for stratus-build-metadata.
#author = Jane Tester
#validity = 365
"""


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stratus-copy-config", "Write a commented user config file.")
    p.add_argument("-o", "--output", help=f"where to write it (default {USER_CONFIG})")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing file")
    return p


def run(options: argparse.Namespace, settings: Settings) -> int:
    target = Path(options.output or USER_CONFIG).expanduser()
    if target.exists() and not options.force:
        raise ConfigError(f"{target} exists; use --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, TEMPLATE.encode(), mode=0o600)
    if options.json:
        cli.emit_json({"output": str(target)})
    elif not options.quiet:
        print(f"wrote {target}")
    return 0


main = cli.command(run, build_parser)
