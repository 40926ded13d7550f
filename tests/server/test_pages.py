"""The HTML pages' choices of what to show (their look is tests/ui's)."""

from __future__ import annotations

import os
import re

from tests.server.conftest import EVE, key_of, moment


def heading(page: str) -> str:
    return re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S).group(1).strip()


def test_a_deprecation_does_not_hide_another_endorsers_valid_entry(client, publish, rsa_signer,
                                                                     ec_signer):
    """Eve deprecated her entry of the image after Jane endorsed it: the page shows Jane's,
    and Eve's when asked for by name."""
    image = os.urandom(64)
    _, location = publish(image, signer=rsa_signer, when=moment(2), title="Jane image")
    publish(image, signer=ec_signer, when=moment(1), title="Eve image",
            deprecated="use another image")
    identifier = key_of(location)[0]
    assert heading(client.get(f"/appliances/{identifier}").get_data(as_text=True)) == \
        "Jane image"
    assert heading(client.get(f"/appliances/{identifier}?endorser={EVE}")
                   .get_data(as_text=True)) == "Eve image"
