"""What an entry becomes in the indices: its document ids and its ``_source``.

Free text follows the SQLite store's FTS5 ``unicode61`` rules: the words are split here into
lowercase letter-and-digit tokens (Latin diacritics removed) and indexed with the
``whitespace`` analyzer, one array element per source field (so that a phrase cannot run
across two fields); queries.py splits the words of a query the same way.
"""

from __future__ import annotations

import base64
import re
import unicodedata

from marketplace.store.base import TEXT_FIELDS, Entry, indexed_fields

_TOKEN = re.compile(r"[^\W_]+")


def entry_id(key: tuple[str, str, str]) -> str:
    """The id of an entry in the entries index: its key."""
    return "|".join(key)


def pair_id(identifier: str, email: str) -> str:
    """The id of a pair's latest copy in the latest index."""
    return f"{identifier}|{email}"


def fields(entry: Entry, seq: int) -> dict:
    """The indexed fields of an entry (its document included), with ``seq`` as the order of
    arrival that breaks ties in sorting, as the SQLite store's row id does. The description
    has no field of its own in the mapping: it is only searched, as part of ``text``."""
    indexed = indexed_fields(entry)
    source = {
        "key": entry_id(entry.key),
        **{name: value for name, value in indexed.items() if name != "description"},
        "seq": seq,
        "text": [" ".join(tokens(indexed[name])) for name in TEXT_FIELDS if indexed[name]],
        "document": base64.b64encode(entry.document).decode("ascii"),
        "summary": entry.as_dict(),
    }
    return {k: v for k, v in source.items() if v is not None}


def stored_entry(source: dict) -> Entry:
    """The entry of a stored ``_source`` (with its ``document``), parsed from its bytes."""
    return Entry.from_document(base64.b64decode(source["document"]))


def tokens(text: str) -> list[str]:
    """Lowercase runs of letters and digits, Latin diacritics removed (FTS5 ``unicode61``)."""
    folded = []
    for char in unicodedata.normalize("NFD", text.lower()):
        if unicodedata.combining(char) and folded and _latin(folded[-1]):
            continue
        folded.append(char)
    return _TOKEN.findall(unicodedata.normalize("NFC", "".join(folded)))


def _latin(char: str) -> bool:
    return char < "\u0250" or "\u1e00" <= char <= "\u1eff"
