"""The XML Schema of the metadata profile (``schemas/metadata.xsd`` beside this module, installed
with the package), compiled once per thread."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from lxml import etree

from marketplace.metadata.document import prefixed
from marketplace.metadata.problems import Problem

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMA_FILE = SCHEMA_DIR / "metadata.xsd"
_CLARK = re.compile(r"\{([^}'\s]*)\}([A-Za-z_][\w.-]*)")


_compiling = threading.Lock()
_this_thread = threading.local()


def metadata_schema() -> etree.XMLSchema:
    """This thread's compiled schema; imports are resolved from local files only.

    One per thread, because a validator keeps the error log of its last run in itself;
    compiled one at a time, because libxml2 sets up its built-in types on the first compile,
    and two threads doing that at once corrupt them for good ("Document is not valid XML
    Schema" on every later compile in that process).
    """
    schema = getattr(_this_thread, "schema", None)
    if schema is None:
        with _compiling:
            parser = etree.XMLParser(no_network=True, resolve_entities=False)
            schema = etree.XMLSchema(etree.parse(str(SCHEMA_FILE), parser))
        _this_thread.schema = schema
    return schema


def schema_problems(root: etree._Element) -> list[Problem]:
    """What the schema finds wrong with a document, in prefixed names."""
    schema = metadata_schema()
    if schema.validate(root.getroottree()):
        return []
    return [Problem(_element_of(error.message), "schema", _prefixed(error.message))
            for error in schema.error_log]


def _prefixed(text: str) -> str:
    return _CLARK.sub(lambda match: prefixed(match.group(0)), text)


def _element_of(message: str) -> str:
    found = re.match(r"Element '([^']+)'", message)
    return _prefixed(found.group(1)) if found else "document"
