"""The rules every backend shares, tested without a backend: the conflict rule that judges
an upload against what is stored, and what is indexed of an entry."""

from __future__ import annotations

import pytest

from marketplace.store.base import TEXT_FIELDS, Conflict, Entry, indexed_fields, is_new
from tests.store.conftest import moment


@pytest.fixture
def entry(make_entry):
    return make_entry(b"judged", when=moment(1))


def test_an_entry_of_a_new_pair_is_new(entry):
    assert is_new(entry, stored=None, newest=None) is True


def test_an_entry_newer_than_or_as_new_as_the_latest_is_new(entry, make_entry):
    older = make_entry(b"judged", when=moment(2))
    assert is_new(entry, stored=None, newest=older.key[2]) is True
    assert is_new(entry, stored=None, newest=entry.key[2]) is True


def test_the_same_document_again_is_a_replay(entry):
    assert is_new(entry, stored=entry.document, newest=entry.key[2]) is False


def test_another_document_under_the_key_is_a_conflict(entry):
    with pytest.raises(Conflict, match=f"another document is stored for {entry.identifier}"):
        is_new(entry, stored=entry.document + b" ", newest=entry.key[2])


def test_an_entry_older_than_the_latest_is_a_conflict(entry, make_entry):
    newer = make_entry(b"judged", when=moment(0))
    with pytest.raises(Conflict, match=rf"a newer entry \({newer.key[2]}\)"):
        is_new(entry, stored=None, newest=newer.key[2])


def test_indexed_fields_are_read_from_the_entry(make_entry):
    entry = make_entry(title="Café", os="ubuntu", deprecated="old",
                       locations=["http://a.example/i", "pdisk:h:1/x"])
    fields = indexed_fields(entry)
    assert (fields["identifier"], fields["email"], fields["created"]) == entry.key
    assert fields["title"] == "Café" and fields["os"] == "ubuntu"
    assert fields["deprecated"] is True
    assert fields["web"] is True and fields["pdisk"] is True
    assert set(TEXT_FIELDS) <= set(fields)


def test_a_web_only_entry_has_no_pdisk_location(make_entry):
    fields = indexed_fields(make_entry(locations=["http://a.example/i"]))
    assert (fields["web"], fields["pdisk"], fields["deprecated"]) == (True, False, False)


@pytest.mark.parametrize("fields", [{}, {"deprecated": "old"},
                                    {"valid": moment(-2)}, {"valid": moment(2)}])
def test_an_entry_served_from_its_fields_says_what_its_appliance_says(make_entry, fields):
    """An entry from an index's fields makes its appliance only when asked: its key, its
    status at any moment and the appliance it makes are those of the parsed document."""
    parsed = make_entry(title="kept", **fields)
    served = Entry.from_dict(parsed.document, parsed.as_dict())
    assert served.key == parsed.key and (served.identifier, served.email) == parsed.key[:2]
    for at in (moment(3), moment(0), moment(-3)):
        assert served.status(at) == parsed.status(at) == parsed.appliance.status(at)
    assert served.as_dict() == parsed.as_dict() and served == parsed
    assert served.appliance == parsed.appliance and served.created == parsed.created
    assert served.status(moment(0)) == parsed.status(moment(0))  # now through its appliance


def test_an_entry_is_not_changed_once_made(entry):
    with pytest.raises(AttributeError):
        entry.document = b"other"
    with pytest.raises(ValueError):
        Entry(entry.document)
