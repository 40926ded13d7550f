"""Schemathesis hooks of tests/server/test_schemathesis.py (loaded by the CLI it runs).

Two refusals of schema-valid requests are excused, because no schema can say them; every
other failure of the same request still counts:

- A ``cursor`` is valid only for the query that gave it out (it carries that query's
  fingerprint): a generated one is refused (400, naming ``cursor``, in JSON or, for the
  feeds, in XML). tests/server/test_search.py covers cursors.
- The two segments of ``/metadata/{first}/{second}`` are each an identifier, an email or
  a date, but of two kinds: OpenAPI cannot tie one path parameter to another, so two
  identifiers are schema-valid and refused (400). tests/server/test_original_routes.py
  covers the path's forms.
"""

from __future__ import annotations

from urllib.parse import unquote

import schemathesis

from marketplace.web.params import ParameterError, path_names

SCHEMA_VALID_REQUEST_REJECTED = "ST202"
TWO_SEGMENTS = "/metadata/{first}/{second}"


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure but the two refusals a schema cannot foresee."""
    rejected = (getattr(failure, "code", None) == SCHEMA_VALID_REQUEST_REJECTED
                and response.status_code == 400)
    return not (rejected and (refused_cursor(case, response) or one_kind_twice(case)))


def refused_cursor(case, response) -> bool:
    return "cursor" in (case.query or {}) and ('"element":"cursor"' in response.text
                                               or 'element="cursor"' in response.text)


def one_kind_twice(case) -> bool:
    """Whether the server's own reading of the two segments finds one kind twice (the case
    holds them percent-encoded, as they are sent)."""
    if case.operation.path != TWO_SEGMENTS:
        return False
    try:
        path_names(unquote(value) for value in (case.path_parameters or {}).values())
    except ParameterError as refused:
        return refused.name != "path"
    return False
