"""The one checksum rule of the core: which checksums a node checks, and when two agree."""

from __future__ import annotations

import pytest

from marketplace.metadata.digests import PREFERRED, STRONG, WeakChecksums, choose, same_digest


def test_strong_checksums_come_first_sha256_before_sha512():
    assert PREFERRED[:2] == STRONG == ("SHA-256", "SHA-512")
    assert choose(["MD5", "SHA-512", "SHA-256"]) == ["SHA-256"]
    assert choose(["SHA-1", "MD5"], allow_weak=True) == ["SHA-1"]
    assert choose(["MD5", "SHA-512", "SHA-1"], every=True) == ["SHA-512", "SHA-1", "MD5"]


def test_only_weak_checksums_are_refused_naming_them():
    with pytest.raises(WeakChecksums, match=r"only weak checksums \(MD5, SHA-1\)"):
        choose(["MD5", "SHA-1"])


@pytest.mark.parametrize(("a", "b"), [("ABCDEF01", "abcdef01"), ("00ff", "ff"),
                                      (" ff\n", "ff"), ("0", "000")])
def test_case_leading_zeros_and_line_ends_do_not_count(a, b):
    assert same_digest(a, b)


@pytest.mark.parametrize(("a", "b"), [("ff", "fe"), ("0xff", "ff"), ("f_f", "ff"),
                                      ("", ""), ("+ff", "ff"), ("ff", None)])
def test_other_values_or_anything_but_hex_never_agree(a, b):
    """int(x, 16), the former rule, took 0x, underscores and signs as hex."""
    assert not same_digest(a, b)
