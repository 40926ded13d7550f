"""HEPiX image lists (the ``hv:imagelist`` JSON that vmcatcher, cloudkeeper and atrope read)
made from the index.

A list is named by the operator (:func:`load_definitions`: a name, a title and a search) or is
one endorser's. Its entries are the latest valid ones of the search: deprecated and expired
entries leave it (the format has no "deprecated"), and so do entries a subscriber could not
check (no SHA-512) or fetch (no web location); those are counted for a header. The list's
``hv:version`` is the store's :class:`~marketplace.exports.changes.Marker` version and the
refresh window, so it grows with every change; the list expires after ``lifetime``.
"""

from __future__ import annotations

import configparser
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from marketplace.exports.entries import web_location
from marketplace.metadata.hepix import DATE_FORMAT, NAMESPACE, OUR_IDENTIFIER, image_uuid
from marketplace.metadata.identifier import path_segment

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DESCRIBING = ("title", "description")


class DefinitionError(ValueError):
    """An image-list definitions file that cannot be used."""


@dataclass(frozen=True)
class Definition:
    """One list the operator publishes: its name, words, and the search that fills it."""

    name: str
    title: str
    description: str = ""
    search: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endorser:
    """The list's ``hv:endorser``: the marketplace's own signing certificate."""

    dn: str
    ca: str
    email: str

    def as_json(self) -> dict:
        return {"hv:x509": {"dc:creator": self.dn.rsplit("CN=", 1)[-1], "hv:ca": self.ca,
                            "hv:dn": self.dn, "hv:email": self.email}}


@dataclass
class Built:
    """A list as JSON text, and the entries left out of it (and why)."""

    text: str
    images: int
    left_out: dict[str, int]


def load_definitions(path: Path) -> dict[str, Definition]:
    """The lists of an INI file: a section per list name, ``title`` and ``description``, and
    every other key a search parameter as ``/api/v1/appliances`` takes (``os = ubuntu``)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as stream:
            parser.read_file(stream)
    except (OSError, configparser.Error) as exc:
        raise DefinitionError(f"image-list definitions {path}: {exc}") from None
    found = {}
    for name in parser.sections():
        if not NAME.fullmatch(name) or name == "endorsers":
            raise DefinitionError(f"image-list definitions {path}: [{name}] is not a list name "
                                  "(letters, digits, . _ -; not 'endorsers')")
        section = dict(parser[name])
        found[name] = Definition(name, section.pop("title", name),
                                 section.pop("description", ""), section)
    return found


def endorser_definition(email: str) -> Definition:
    return Definition(f"endorsers/{email}", f"Images endorsed by {email}",
                      f"The latest valid images that {email} endorsed.", {"endorser": email})


def list_uuid(name: str, base_url: str) -> str:
    """The list's RFC 4122 identifier: stable for this marketplace and name."""
    return str(uuid.uuid5(NAMESPACE, f"{base_url}/imagelists/{name}"))


def build(definition: Definition, summaries, endorser: Endorser, version: str,
          created: datetime, lifetime: timedelta, base_url: str) -> Built:
    """The list document; ``summaries`` are the index's JSON summaries of its entries."""
    images, left_out = [], {"without SHA-512": 0, "without a web location": 0}
    for summary in summaries:
        image = image_of(summary, base_url)
        if isinstance(image, str):
            left_out[image] += 1
        else:
            images.append({"hv:image": image})
    document = {"hv:imagelist": {
        "dc:identifier": list_uuid(definition.name, base_url),
        "dc:title": definition.title,
        "dc:description": definition.description,
        "dc:source": base_url + "/",
        "dc:date:created": created.strftime(DATE_FORMAT),
        "dc:date:expires": (created + lifetime).strftime(DATE_FORMAT),
        "hv:version": version,
        "hv:uri": f"{base_url}/imagelists/{definition.name}",
        "hv:endorser": endorser.as_json(),
        "hv:images": images,
    }}
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"
    return Built(text, len(images), {k: v for k, v in left_out.items() if v})


def image_of(summary: dict, base_url: str) -> dict | str:
    """One ``hv:image`` from an entry's summary, or the reason it cannot be listed. The
    EGI AppDB keys are filled from the endorsement (atrope requires every one of them)."""
    sha512 = summary["checksums"].get("SHA-512")
    if not sha512:
        return "without SHA-512"
    location = web_location(summary)
    if location is None:
        return "without a web location"
    identifier = summary["identifier"]
    endorsement = summary["endorsement"]
    email = path_segment(summary["email"])
    image = {
        "dc:identifier": image_uuid(identifier),
        OUR_IDENTIFIER: identifier,
        "dc:title": summary.get("title") or identifier,
        "dc:description": summary.get("description") or "",
        "hv:uri": location,
        "hv:size": summary["bytes"],
        "sl:checksum:sha512": sha512.lower(),
        "hv:format": (summary.get("format") or "").upper(),
        "hv:hypervisor": summary.get("hypervisor") or "",
        "hv:version": summary.get("version") or endorsement["created"],
        "sl:os": summary.get("os") or "",
        "sl:osversion": summary.get("os_version") or "",
        "sl:arch": summary.get("os_arch") or "",
        "sl:comments": summary.get("tag") or "",
        "sl:osname": summary.get("os") or "",
        "ad:mpuri": f"{base_url}/metadata/{identifier}/{email}/{endorsement['created']}",
        "ad:group": summary.get("tag") or "",
        "ad:user:fullname": endorsement.get("subject") or summary["email"],
        "ad:user:guid": summary["email"],
        "ad:user:uri": f"{base_url}/publishers/{email}",
    }
    if summary.get("valid"):
        image["dc:date:expires"] = summary["valid"]
    return image
