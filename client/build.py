"""stratus-build-metadata: describe an image file as an (unsigned) metadata document."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from client import cli
from client.config import ConfigError, Settings
from marketplace.metadata import document, model, validation
from marketplace.metadata.compression import COMPRESSIONS, CompressionError, compression_from_name
from marketplace.metadata.digests import ALGORITHMS, Digests, digest_file
from marketplace.metadata.identifier import sha1_to_identifier
from marketplace.metadata.problems import MetadataError, Problem, fail
from marketplace.metadata.progress import Progress

GIVEN = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}
UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._+-]")
FORMATS = {".qcow2": "qcow2", ".vmdk": "vmdk", ".vdi": "vdi", ".iso": "iso", ".vhd": "vpc"}


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stratus-build-metadata",
                   "Compute an image's size and checksums and write its metadata document.")
    p.add_argument("image", nargs="?", help="image file (compressed images are hashed as their "
                   "uncompressed content); may be omitted with --bytes and --sha1")
    p.add_argument("-a", "--author", help="image creator (dcterms:creator)")
    p.add_argument("--type", help="dcterms:type, e.g. base or grid (default base)")
    p.add_argument("--kind", choices=("machine", "disk"), help="default machine")
    p.add_argument("--os", help="operating system, e.g. ubuntu")
    p.add_argument("--os-version", help="operating system version")
    p.add_argument("--os-arch", help="architecture, e.g. x86_64")
    p.add_argument("--image-version", help="version of this image (slterms:version)")
    p.add_argument("--format", help="disk format (default from the name, else raw)")
    p.add_argument("--hypervisor", help="hypervisor, e.g. kvm")
    p.add_argument("--location", action="append", default=None,
                   help="download URL; repeat for several locations")
    p.add_argument("--compression", choices=(*COMPRESSIONS, "none"),
                   help="default: guessed from the image name")
    p.add_argument("--title", help="short title")
    p.add_argument("--tag", help="tag (dcterms:alternative)")
    p.add_argument("--comment", help="description")
    p.add_argument("--disks-bus", choices=("ide", "scsi", "virtio"))
    p.add_argument("--publisher", help="publisher (dcterms:publisher)")
    p.add_argument("--bytes", type=int, help="uncompressed size, when the image is not given")
    for algorithm, option in GIVEN.items():
        p.add_argument(f"--{option}", metavar="HEX", help=f"{algorithm} of the uncompressed "
                       "image (checked against the image when it is given)")
    for option in ("md5", "sha256", "sha512"):
        p.add_argument(f"--no-{option}", action="store_true", help=f"omit the {option} checksum")
    p.add_argument("--validity", type=int, metavar="DAYS",
                   help="days the entry stays valid (default 365)")
    p.add_argument("-o", "--output", help="output file, - for standard output (default: "
                   "OS-OSVERSION-ARCH-TYPE-VERSION.xml in the current directory, as the original "
                   "command named it; with --json and -o - only the entry as JSON is printed)")
    return p


def wanted_algorithms(options: argparse.Namespace) -> list[str]:
    """The checksums to write: all four, less those switched off (SHA-1 is required)."""
    skipped = {a for a, o in GIVEN.items() if getattr(options, f"no_{o}", False)}
    return [a for a in ALGORITHMS if a not in skipped]


def measure(options: argparse.Namespace, algorithms: list[str]) -> Digests:
    """Size and checksums: hashed from the image, or as given (and then checked)."""
    given = {a: getattr(options, o).lower() for a, o in GIVEN.items() if getattr(options, o)}
    for dropped in given.keys() - set(algorithms):
        option = GIVEN[dropped]
        raise fail("slreq:checksum", "given-checksum",
                   f"--{option} gives the {dropped} that --no-{option} leaves out")
    if options.image is None:
        if options.bytes is None or "SHA-1" not in given:
            raise fail("image", "required", "give an image file, or --bytes and --sha1")
        return Digests(size=options.bytes, checksums={a: given[a] for a in given})
    compression = _compression(options)
    # The progress counts uncompressed bytes: the file's size is their total only when raw.
    total = None if compression else Path(options.image).stat().st_size
    progress = Progress(f"hashing {options.image}", total, options.quiet)
    try:
        digests = digest_file(options.image, algorithms, compression=compression,
                              progress=progress)
    except CompressionError as exc:
        raise fail("image", "compression", f"{options.image}: {exc}") from None
    finally:
        progress.close()
    _check_given(digests, given, options.bytes)
    return digests


def _compression(options: argparse.Namespace) -> str | None:
    if options.compression == "none":
        return None
    return options.compression or compression_from_name(options.image or "")


def _check_given(digests: Digests, given: dict[str, str], size: int | None) -> None:
    problems = [Problem("slreq:checksum", "given-checksum",
                        f"the image's {algorithm} is {digests.checksums[algorithm]}, not {value}")
                for algorithm, value in given.items()
                if algorithm in digests.checksums and digests.checksums[algorithm] != value]
    if size is not None and size != digests.size:
        problems.append(Problem("slreq:bytes", "given-size",
                                f"the image has {digests.size} bytes, not {size}"))
    if problems:
        raise MetadataError(problems)


def describe(options: argparse.Namespace, settings: Settings, digests: Digests,
             now: datetime) -> model.Appliance:
    """The appliance entry for measured digests and the command's options."""
    name = options.image or ""
    stem = name[: -len(Path(name).suffix)] if compression_from_name(name) else name
    return model.Appliance(
        identifier=sha1_to_identifier(digests.checksums["SHA-1"]),
        bytes=digests.size,
        checksums={a: digests.checksums[a] for a in ALGORITHMS if a in digests.checksums},
        type=options.type or "base",
        kind=options.kind or "machine",
        os=options.os, os_version=options.os_version, os_arch=options.os_arch,
        version=options.image_version,
        compression=_compression(options),
        locations=options.location or [],
        format=options.format or FORMATS.get(Path(stem).suffix.lower(), "raw"),
        creator=settings.get("author"),
        created=now,
        valid=now + timedelta(days=validity_days(settings)),
        title=options.title, tag=options.tag, description=options.comment,
        hypervisor=options.hypervisor, disks_bus=options.disks_bus,
        publisher=options.publisher,
    )


def validity_days(settings: Settings) -> int:
    """The validity period in days (option, environment or config file; default 365)."""
    value = str(settings.get("validity", "365")).strip()
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"validity must be a whole number of days of at least 1, not {value!r}")
    return int(value)


def build_metadata(options: argparse.Namespace, settings: Settings,
                   now: datetime | None = None) -> tuple[model.Appliance, bytes]:
    """Measure the image and return its entry and the document, checked to be valid."""
    appliance = describe(options, settings, measure(options, wanted_algorithms(options)),
                         now or datetime.now(UTC).replace(microsecond=0))
    data = document.serialize(model.to_document(appliance))
    validation.check(data)
    return appliance, data


def default_output(appliance: model.Appliance) -> str:
    """The original command's file name, ``<os>-<os-version>-<os-arch>-<type>-<version>.xml``
    (e.g. ``SL-6.6-x86_64-base-1.0.xml``); unknown parts are left out, and characters that
    do not belong in a file name become ``_``."""
    parts = (appliance.os, appliance.os_version, appliance.os_arch, appliance.type,
             appliance.version)
    name = "-".join(UNSAFE_IN_NAME.sub("_", p) for p in parts if p)
    return f"{name or appliance.identifier}.xml"


def run(options: argparse.Namespace, settings: Settings) -> int:
    appliance, data = build_metadata(options, settings)
    output = options.output or default_output(appliance)
    if output == "-":
        if options.json:
            cli.emit_json({"output": None, "appliance": appliance.as_dict()})
        else:
            cli.write_output(data, None)
        return 0
    cli.write_output(data, output)
    if options.json:
        cli.emit_json({"output": output, "appliance": appliance.as_dict()})
    elif not options.output and not options.quiet:
        print(f"wrote {output}")  # a name the user did not choose: say which
    return 0


main = cli.command(run, build_parser)
