"""What every command shows on a terminal: one progress display (a tqdm bar on standard
error), and a quiet end when its reader goes away (:func:`reader_gone`).

Hashing, downloading, verifying, migrating and importing all report "so much done so far";
:class:`Progress` turns that into tqdm's updates. It shows nothing with ``-q`` or when
standard error is not a terminal (a log file or a pipe gets no carriage returns), and sizes
in the unit that suits them (``512B``, ``4.10kB``, ``1.20GB``), never "0.00 GB". tqdm is
imported only when a display is made, as the node's cache-hit path must stay light.
"""

from __future__ import annotations

import os
import sys

READER_GONE = 141  # what a shell reports for a process ended by SIGPIPE
BYTES = "B"
_SIZE_FORMATS = {
    True: "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}, "
          "{rate_fmt}]",
    False: "{desc}: {n_fmt}B [{elapsed}, {rate_fmt}]",
}
REFRESH_SECONDS = 0.2


class Progress:
    """Call it with the count done so far; :meth:`close` ends the line."""

    def __init__(self, label: str, total: int | None, quiet: bool, unit: str = BYTES):
        from tqdm import tqdm

        sizes = unit == BYTES
        self._bar = tqdm(desc=label, total=total or None, unit=unit, unit_scale=sizes,
                         bar_format=_SIZE_FORMATS[bool(total)] if sizes else None,
                         file=sys.stderr, disable=True if quiet else None,
                         mininterval=REFRESH_SECONDS, dynamic_ncols=True)

    def __call__(self, done: int, total: int | None = None) -> None:
        """Show ``done`` (the count so far, not an increment; ``total`` when it changed)."""
        if total is not None and total != self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def note(self, line: str) -> None:
        """Print a line on standard error above the bar (as is, when there is no bar)."""
        self._bar.write(line, file=sys.stderr)

    def close(self) -> None:
        """Show the final count, however quick the work was, and end the line."""
        self._bar.close()


def reader_gone() -> int:
    """Standard output's reader went away (``--json list | head``): stop quietly, as Unix
    tools do, rather than with a traceback. Standard output is pointed at /dev/null so that
    Python's flush at exit does not fail on the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return READER_GONE
