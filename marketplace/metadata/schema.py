"""The XML Schema of the metadata profile (``schemas/metadata.xsd``), loaded once."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from lxml import etree

from marketplace.metadata.document import prefixed
from marketplace.metadata.problems import Problem

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
SCHEMA_FILE = SCHEMA_DIR / "metadata.xsd"
_CLARK = re.compile(r"\{([^}'\s]*)\}([A-Za-z_][\w.-]*)")


@functools.cache
def metadata_schema() -> etree.XMLSchema:
    """The compiled schema; imports are resolved from local files only."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA_FILE), parser))


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
