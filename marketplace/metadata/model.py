"""One appliance entry as a plain dataclass, read from and written to the metadata XML.

The field table :data:`FIELDS` is the single description of the optional elements: their
XML names, their Python types, whether they repeat, and the order the original tools wrote.
Elements the table does not know (foreign namespaces) are kept as XML text in ``extra``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from marketplace.metadata import document as doc
from marketplace.metadata.document import DCTERMS, RDF, SLREQ, SLTERMS
from marketplace.metadata.problems import fail

DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
VALID = "valid"
EXPIRED = "expired"
DEPRECATED = "deprecated"
STATUSES = (VALID, EXPIRED, DEPRECATED)


def parse_date(text: str, element: str = "date") -> datetime:
    """Parse ``YYYY-MM-DDTHH:MM:SSZ`` as an aware UTC datetime."""
    try:
        return datetime.strptime(text.strip(), DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise fail(element, "date-format",
                   f"{text!r} is not a UTC date of the form YYYY-MM-DDTHH:MM:SSZ") from None


def parse_int(text: str, element: str) -> int:
    """Parse a decimal integer, naming the element when it is not one."""
    try:
        return int(text.strip())
    except ValueError:
        raise fail(element, "integer", f"{text!r} is not an integer") from None


def format_date(moment: datetime) -> str:
    """Write a datetime as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


@dataclass(frozen=True)
class Field:
    """How one optional element maps to an attribute of :class:`Appliance`."""

    name: str
    namespace: str
    local: str
    kind: type = str
    many: bool = False

    @property
    def tag(self) -> str:
        return f"{{{self.namespace}}}{self.local}"

    @property
    def qname(self) -> str:
        return f"{doc.PREFIXES[self.namespace]}:{self.local}"

    def decode(self, text: str):
        if self.kind is datetime:
            return parse_date(text, self.qname)
        if self.kind is int:
            return parse_int(text, self.qname)
        return text

    def encode(self, value) -> str:
        return format_date(value) if self.kind is datetime else str(value)


FIELDS: tuple[Field, ...] = (
    Field("type", DCTERMS, "type"),
    Field("kind", SLTERMS, "kind"),
    Field("os", SLTERMS, "os"),
    Field("os_version", SLTERMS, "os-version"),
    Field("os_arch", SLTERMS, "os-arch"),
    Field("version", SLTERMS, "version"),
    Field("compression", DCTERMS, "compression"),
    Field("locations", SLTERMS, "location", many=True),
    Field("format", DCTERMS, "format"),
    Field("creator", DCTERMS, "creator"),
    Field("created", DCTERMS, "created", kind=datetime),
    Field("valid", DCTERMS, "valid", kind=datetime),
    Field("title", DCTERMS, "title"),
    Field("tag", DCTERMS, "alternative"),
    Field("description", DCTERMS, "description"),
    Field("hypervisor", SLTERMS, "hypervisor"),
    Field("disks_bus", SLTERMS, "disks-bus"),
    Field("publisher", DCTERMS, "publisher"),
    Field("deprecated", SLTERMS, "deprecated"),
    Field("serial_number", SLTERMS, "serial-number", kind=int),
    Field("inbound_ports", SLTERMS, "inbound-port", kind=int, many=True),
    Field("outbound_ports", SLTERMS, "outbound-port", kind=int, many=True),
    Field("icmp", SLTERMS, "icmp", kind=int, many=True),
    Field("is_replaced_by", DCTERMS, "isReplacedBy"),
    Field("replaces", DCTERMS, "replaces"),
    Field("is_version_of", DCTERMS, "isVersionOf"),
)
_BY_TAG = {f.tag: f for f in FIELDS}
# Written even when unknown (empty), as the original template did: the original client
# refuses a document without any of them ("Missing element 'description'"). It also needs
# dcterms:created and dcterms:valid, which have no empty form: the build always sets them.
ALWAYS_WRITTEN = frozenset({"type", "os", "os_version", "os_arch", "version", "compression",
                            "description"})
RDF_TYPE = f"{{{RDF}}}type"
RESOURCE = f"{{{RDF}}}resource"
IDENTIFIER = f"{{{DCTERMS}}}identifier"
BYTES = f"{{{SLREQ}}}bytes"
CHECKSUM = f"{{{SLREQ}}}checksum"
ALGORITHM = f"{{{SLREQ}}}algorithm"
VALUE = f"{{{SLREQ}}}value"
ENDORSEMENT = f"{{{SLREQ}}}endorsement"
ENDORSER = f"{{{SLREQ}}}endorser"
CREATED = f"{{{DCTERMS}}}created"
EMAIL = f"{{{SLREQ}}}email"
SUBJECT = f"{{{SLREQ}}}subject"
ISSUER = f"{{{SLREQ}}}issuer"


@dataclass(frozen=True)
class Endorsement:
    """Who vouched for the entry and when; empty until the document is signed."""

    created: datetime | None = None
    email: str | None = None
    subject: str | None = None
    issuers: tuple[str, ...] = ()


@dataclass
class Appliance:
    """One appliance entry: an image described by its checksums, locations and properties."""

    identifier: str
    bytes: int
    checksums: dict[str, str]
    endorsement: Endorsement = field(default_factory=Endorsement)
    rdf_type: str | None = None
    type: str | None = None
    kind: str | None = None
    os: str | None = None
    os_version: str | None = None
    os_arch: str | None = None
    version: str | None = None
    compression: str | None = None
    locations: list[str] = field(default_factory=list)
    format: str | None = None
    creator: str | None = None
    created: datetime | None = None
    valid: datetime | None = None
    title: str | None = None
    tag: str | None = None
    description: str | None = None
    hypervisor: str | None = None
    disks_bus: str | None = None
    publisher: str | None = None
    deprecated: str | None = None
    serial_number: int | None = None
    inbound_ports: list[int] = field(default_factory=list)
    outbound_ports: list[int] = field(default_factory=list)
    icmp: list[int] = field(default_factory=list)
    is_replaced_by: str | None = None
    replaces: str | None = None
    is_version_of: str | None = None
    extra: list[str] = field(default_factory=list)

    def status(self, at: datetime | None = None) -> str:
        """``deprecated``, ``expired`` (``valid`` date passed at ``at``) or ``valid``."""
        return _status(self.deprecated, self.valid, at)

    def as_dict(self) -> dict:
        """A JSON-ready dict: dates as ``YYYY-MM-DDTHH:MM:SSZ`` strings."""
        return _jsonable(self)

    @classmethod
    def from_dict(cls, data: dict) -> Appliance:
        """The appliance :meth:`as_dict` gave ``data`` for."""
        values = {**data, **{name: _date(data[name]) for name in _DATES if data.get(name)}}
        endorsement = data["endorsement"]
        values["endorsement"] = Endorsement(
            created=_date(endorsement["created"]) if endorsement["created"] else None,
            email=endorsement["email"], subject=endorsement["subject"],
            issuers=tuple(endorsement["issuers"]))
        return cls(**values)


def status_of(data: dict, at: datetime | None = None) -> str:
    """The :meth:`Appliance.status` of the appliance :meth:`Appliance.as_dict` gave ``data``
    for, without making it (a listing served from an index needs no more)."""
    valid = data.get("valid")
    return _status(data.get("deprecated"), _date(valid) if valid else None, at)


def _status(deprecated: str | None, valid: datetime | None, at: datetime | None) -> str:
    if deprecated is not None:
        return DEPRECATED
    if valid is not None and valid < (at or datetime.now(UTC)):
        return EXPIRED
    return VALID


_DATES = tuple(f.name for f in FIELDS if f.kind is datetime)
_fields = functools.cache(dataclasses.fields)


def _date(text: str) -> datetime:
    """A date as :func:`format_date` wrote it (fast: no format checks for our own text)."""
    return datetime.fromisoformat(text)


def _jsonable(value):
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, datetime):
        return format_date(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in _fields(type(value))}
    return value


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    return (element.text or "").strip()


def read_endorsement(description: etree._Element) -> Endorsement:
    """The (last) endorsement of a Description as a value."""
    found = description.findall(ENDORSEMENT)
    if not found:
        return Endorsement()
    endorsement = found[-1]
    endorser = endorsement.find(ENDORSER)
    created = _text(endorsement.find(CREATED))
    if endorser is None:
        return Endorsement(created=parse_date(created, "dcterms:created") if created else None)
    return Endorsement(
        created=parse_date(created, "dcterms:created") if created else None,
        email=_text(endorser.find(EMAIL)),
        subject=_text(endorser.find(SUBJECT)),
        issuers=tuple(_text(i) or "" for i in endorser.findall(ISSUER)),
    )


def from_document(root: etree._Element) -> Appliance:
    """Read the model from a parsed document (validate first for clear messages)."""
    description = doc.description_of(root)
    identifier = _text(description.find(IDENTIFIER))
    size = _text(description.find(BYTES))
    if not identifier or size is None:
        raise fail("rdf:Description", "required", "dcterms:identifier and slreq:bytes are required")
    appliance = Appliance(
        identifier=identifier,
        bytes=parse_int(size, "slreq:bytes"),
        checksums={_text(c.find(ALGORITHM)) or "": _text(c.find(VALUE)) or ""
                   for c in description.findall(CHECKSUM)},
        endorsement=read_endorsement(description),
    )
    rdf_type = description.find(RDF_TYPE)
    if rdf_type is not None:
        appliance.rdf_type = rdf_type.get(RESOURCE) or _text(rdf_type)
    _read_fields(appliance, description)
    return appliance


_CORE = {IDENTIFIER, BYTES, CHECKSUM, ENDORSEMENT, RDF_TYPE}


def _read_fields(appliance: Appliance, description: etree._Element) -> None:
    for child in doc.elements(description):
        if child.tag in _CORE:
            continue
        spec = _BY_TAG.get(child.tag)
        if spec is None or len(child) or (not spec.many and getattr(appliance, spec.name)):
            appliance.extra.append(_standalone(child))
            continue
        text = _text(child)
        if not text:  # an empty element, as the original template wrote: unknown
            continue
        value = spec.decode(text)
        if spec.many:
            getattr(appliance, spec.name).append(value)
        else:
            setattr(appliance, spec.name, value)


def _standalone(element: etree._Element) -> str:
    """An element as XML text declaring only the namespaces it uses."""
    copy = etree.fromstring(etree.tostring(element, with_tail=False))
    etree.cleanup_namespaces(copy)
    return etree.tostring(copy, encoding="unicode")


def to_document(appliance: Appliance) -> etree._Element:
    """Write the model as a document in the original tools' layout (unsigned)."""
    root = etree.Element(doc.RDF_ROOT, nsmap=doc.NSMAP)
    root.set(doc.BASE, doc.XML_BASE)
    description = etree.SubElement(root, doc.DESCRIPTION)
    description.set(doc.ABOUT, "#" + appliance.identifier)
    if appliance.rdf_type:
        etree.SubElement(description, RDF_TYPE).set(RESOURCE, appliance.rdf_type)
    etree.SubElement(description, IDENTIFIER).text = appliance.identifier
    etree.SubElement(description, BYTES).text = str(appliance.bytes)
    for algorithm, value in appliance.checksums.items():
        checksum = etree.SubElement(description, CHECKSUM)
        checksum.set(doc.PARSE_TYPE, "Resource")
        etree.SubElement(checksum, ALGORITHM).text = algorithm
        etree.SubElement(checksum, VALUE).text = value
    _write_endorsement(description, appliance.endorsement)
    for spec in FIELDS:
        value = getattr(appliance, spec.name)
        if value is None and spec.name in ALWAYS_WRITTEN:
            etree.SubElement(description, spec.tag).text = ""
        for item in value if spec.many else ([] if value is None else [value]):
            etree.SubElement(description, spec.tag).text = spec.encode(item)
    etree.indent(root, space="    ")
    for xml_text in appliance.extra:
        description[-1].tail = "\n        "
        description.append(doc.fragment(xml_text))
    if appliance.extra:
        description[-1].tail = "\n    "
    return root


def _write_endorsement(description: etree._Element, endorsement: Endorsement) -> None:
    element = etree.SubElement(description, ENDORSEMENT)
    element.set(doc.PARSE_TYPE, "Resource")
    if endorsement.created is None:
        return
    etree.SubElement(element, CREATED).text = format_date(endorsement.created)
    endorser = etree.SubElement(element, ENDORSER)
    endorser.set(doc.PARSE_TYPE, "Resource")
    etree.SubElement(endorser, EMAIL).text = endorsement.email or ""
    etree.SubElement(endorser, SUBJECT).text = endorsement.subject or ""
    for issuer in endorsement.issuers:
        etree.SubElement(endorser, ISSUER).text = issuer
