"""Telling the node's own tooling what happened: a command run with a JSON event on stdin.

``event_command`` (split like a shell would, run without a shell) receives one JSON object
per event on standard input, and ``STRATUSLAB_EVENT=<type>`` in its environment:

- ``available``: an image is ready (``identifier``, ``path``, ``size``, ``endorser``,
  ``created``, ``location``, ``digests``) -- after a pull, not on cache hits;
- ``evicted``: an image left the cache (``reason``: ``quota``, ``removed``, ``damaged``);
- ``refused``: no entry of the identifier was acceptable (``reasons`` of each candidate);
- ``failed``: an acceptable entry could not be downloaded (``attempts``: what each location
  did wrong).

Every event carries ``event``, ``identifier``, ``host`` and ``time``. A failing or slow
command is reported as a warning; it never changes the outcome of the fetch.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable

EVENTS = ("available", "evicted", "refused", "failed")


class Events:
    """Sends events to the configured command (or nowhere)."""

    def __init__(self, command: str | None, host: str, timeout: float = 30.0,
                 warn: Callable[[str], None] | None = None):
        self.argv = shlex.split(command) if command else []
        self.host = host
        self.timeout = timeout
        self.warn = warn or (lambda message: None)
        self.sent: list[dict] = []

    def emit(self, event: str, identifier: str | None, **details) -> dict:
        """Run the command with the event; return the event."""
        assert event in EVENTS, event
        payload = {"event": event, "identifier": identifier, "host": self.host,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **details}
        self.sent.append(payload)
        if self.argv:
            self._run(payload)
        return payload

    def _run(self, payload: dict) -> None:
        import subprocess

        data = json.dumps(payload, sort_keys=True).encode() + b"\n"
        env = {**os.environ, "STRATUSLAB_EVENT": payload["event"]}
        try:
            done = subprocess.run(self.argv, input=data, capture_output=True, env=env,
                                  timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.warn(f"event command {self.argv[0]} failed for {payload['event']}: {exc}")
            return
        if done.returncode != 0:
            text = done.stderr.decode(errors="replace").strip()[-300:]
            self.warn(f"event command {self.argv[0]} exited with status {done.returncode} "
                      f"for {payload['event']}" + (f": {text}" if text else ""))
