"""The model's JSON form: what the store's index keeps of an entry must give it back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from marketplace.metadata import document, model
from tests import factories
from tests.data import STRATUSLAB as INTEROP

VALID = sorted(p.name for p in INTEROP.glob("valid-*.xml"))


@pytest.mark.parametrize("name", VALID)
def test_original_documents_survive_the_json_form(name):
    appliance = model.from_document(document.parse((INTEROP / name).read_bytes()))
    again = model.Appliance.from_dict(json.loads(json.dumps(appliance.as_dict())))
    assert again == appliance


def test_every_field_survives_the_json_form(rsa_signer):
    moment = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    entry = factories.appliance(
        b"all fields", version="1.2", compression="xz", creator="Jane", created=moment,
        valid=moment, tag="tag", description="<b>text</b> ✓", disks_bus="virtio",
        publisher="Lab", deprecated="old", serial_number=7, inbound_ports=[22, 443],
        outbound_ports=[80], icmp=[0, 8], is_replaced_by="X", replaces="Y",
        is_version_of="Z", rdf_type="http://example.org/type",
        locations=["http://a.example/i", "pdisk:host:1/x"],
        extra=['<ex:note xmlns:ex="http://example.org/ns">kept</ex:note>'])
    appliance = model.from_document(document.parse(factories.signed(rsa_signer, entry)))
    assert appliance.endorsement.created is not None and appliance.deprecated == "old"
    data = json.loads(json.dumps(appliance.as_dict()))
    assert data["valid"] == "2031-02-03T04:05:06Z"
    again = model.Appliance.from_dict(data)
    assert again == appliance
    assert again.valid == moment and again.valid.tzinfo is UTC
    assert again.endorsement.issuers == appliance.endorsement.issuers != ()
    assert "kept" in again.extra[0]


def test_an_unsigned_entry_survives_the_json_form():
    appliance = factories.appliance(b"unsigned")
    assert appliance.endorsement.created is None
    assert model.Appliance.from_dict(appliance.as_dict()) == appliance
