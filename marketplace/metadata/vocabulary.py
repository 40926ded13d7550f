"""The search vocabulary, said once for the server, its pages, the stores and the client.

A filter has one name everywhere people and programs meet it (query parameters, facet keys
of JSON answers, the pages' forms, the client's options) and one index field the stores
keep it under: ``endorser`` is the entry's ``email``, ``arch`` its ``os_arch``. Facets are
named by their filter, so a facet value can be sent back as that filter as is.
"""

from __future__ import annotations

# filter name -> index field
FILTERS = {"identifier": "identifier", "endorser": "email", "os": "os",
           "os_version": "os_version", "arch": "os_arch", "kind": "kind", "type": "type",
           "format": "format", "hypervisor": "hypervisor", "tag": "tag"}
# filters whose values are counted in a search's facets, in the order the pages list them
FACETS = ("os", "os_version", "arch", "endorser", "kind", "format", "hypervisor")
STATUS_FACET = "status"
SORT_FIELDS = ("created", "identifier", "email", "title", "os", "os_version", "os_arch",
               "kind", "format", "hypervisor", "valid", "bytes")
STATUSES = ("valid", "expired", "deprecated", "all")
LOCATIONS = ("all", "web", "pdisk")

DEFAULT_STATUS = "valid"
DEFAULT_LOCATION = "all"
DEFAULT_SORT = "-created"  # newest first
SEARCH_LIMIT = 20
LISTING_LIMIT = 100
MAX_LIMIT = 500
MAX_OFFSET = 10_000_000

FILTER_OF_FIELD = {field: name for name, field in FILTERS.items()}


def facet_fields() -> tuple[str, ...]:
    """The index fields a store counts for the facets, the status among them."""
    return (*(FILTERS[name] for name in FACETS), STATUS_FACET)


def named_facets(counts: dict[str, dict]) -> dict[str, dict]:
    """A store's facet counts (keyed by index field) keyed by filter name instead."""
    return {FILTER_OF_FIELD.get(field, field): values for field, values in counts.items()}
