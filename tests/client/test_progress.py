"""The one progress display (tqdm): on a terminal only, sizes in their unit, counts as is."""

from __future__ import annotations

import io
import sys

import pytest

from marketplace.metadata.progress import Progress


class Terminal(io.StringIO):
    """Standard error as a terminal: it only answers isatty()."""

    def isatty(self) -> bool:
        return True


def terminal(monkeypatch) -> Terminal:
    """Set in the test itself: pytest's capture replaces sys.stderr after fixtures ran."""
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


def test_counts_of_entries_show_with_their_total_and_notes_go_above(monkeypatch):
    shown = terminal(monkeypatch)
    progress = Progress("importing", None, quiet=False, unit="files")
    progress(1, 3)
    progress.note("refused a.xml: not signed [signed]")
    progress(3, 3)
    progress.close()
    shown = shown.getvalue()
    assert "refused a.xml: not signed [signed]\n" in shown
    assert "importing: 100%" in shown and "3/3" in shown
    assert shown.endswith("\n")


@pytest.mark.parametrize(("size", "shown"), [(512, " 512B/512B "), (4_096, " 4.10kB/4.10kB "),
                                             (3 << 30, " 3.22GB/3.22GB ")])
def test_sizes_are_shown_in_the_unit_that_suits_them(monkeypatch, size, shown):
    stream = terminal(monkeypatch)
    progress = Progress("hashing", size, quiet=False)
    progress(size)
    progress.close()
    assert shown in stream.getvalue()


def test_quiet_or_off_a_terminal_shows_nothing(monkeypatch):
    stream = terminal(monkeypatch)
    progress = Progress("hashing", 10, quiet=True)
    progress(10)
    progress.close()
    assert stream.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    progress = Progress("hashing", 10, quiet=False)
    progress(10)
    progress.close()
    assert sys.stderr.getvalue() == ""
