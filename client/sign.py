"""stratus-sign-metadata: fill the endorsement and sign a metadata document."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from client import cli, credentials
from client.config import ConfigError, Settings
from marketplace.metadata import document, model, signature, validation
from marketplace.metadata.files import write_atomic


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stratus-sign-metadata",
                   "Sign a metadata document in place (keeping FILE.orig) or into --output.")
    p.add_argument("file", help="metadata document to sign")
    p.add_argument("-o", "--output", help="write the signed document here instead")
    p.add_argument("--email", help="endorser email, when the certificate carries none")
    p.add_argument("--profile", choices=sorted(signature.PROFILES),
                   help="default: RSA/ECDSA-SHA256 with exclusive C14N; stratuslab: the "
                   "original RSA-SHA1 with C14N with comments, for old verifiers")
    credentials.add_options(p)
    return p


def profile(settings: Settings) -> str:
    """The signature profile (option, environment or config file), checked by name."""
    name = settings.get("profile", "default")
    if name not in signature.PROFILES:
        raise ConfigError(f"unknown signature profile {name!r}; known: "
                          f"{', '.join(sorted(signature.PROFILES))}")
    return name


def sign_file(source: Path, settings: Settings) -> tuple[model.Appliance, bytes]:
    """Sign a document and return the entry and the signed bytes, checked valid and verified."""
    root = document.parse(source.read_bytes())
    signature.sign(root, credentials.load(settings), profile=profile(settings),
                   email=settings.get("email"))
    data = document.serialize(root)
    signed = validation.check(data)
    signature.verify(signed)
    return model.from_document(signed), data


def run(options: argparse.Namespace, settings: Settings) -> int:
    source = Path(options.file)
    appliance, data = sign_file(source, settings)
    if options.output:
        write_atomic(Path(options.output), data)
        target = Path(options.output)
    else:
        shutil.copy2(source, source.with_name(source.name + ".orig"))
        write_atomic(source, data)
        target = source
    if options.json:
        cli.emit_json({"output": str(target), "identifier": appliance.identifier,
                       "endorsement": appliance.as_dict()["endorsement"]})
    elif not options.quiet:
        print(f"signed {target}: {appliance.identifier} by {appliance.endorsement.email}")
    return 0


main = cli.command(run, build_parser)
