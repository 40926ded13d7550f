"""``check-log``: the store and its state compared with the log, row by row.

The log is the source of truth for what was published and done: every leaf is signed into
checkpoints that nodes and witnesses keep, while the tables beside it can be edited by
anyone with the database file. So a row deleted or altered by hand shows up as a
disagreement with the log, and each one is reported naming the row:

- every stored entry has a ``published``/``deprecated`` leaf, not followed by a
  ``removed`` one, whose ``document_sha256`` is that of its stored bytes; every entry the
  log says is served is stored;
- the change feed, key by key, is exactly what the log's leaves imply (a publication per
  serving leaf, a removal per ``removed`` leaf of a served entry), at the same times;
- every audit row of a logged action (confirmed, lifted, blocked, unblocked, removed) has
  its leaf, with the same time, actor, entry or endorser and reason, and every such leaf
  its row;
- tombstones and blocked endorsers are those the log's last word on each leaves;
- the stored tile hashes are those recomputed from the leaves.

The result is kept in a mark (:data:`CHECK_MARK`) that ``/healthz`` reads.

A store older than its log (migrated from a version without one) has a history the log
only summarises: its first leaves state what was served, removed and blocked then, and the
feed and audit rows of before have no leaf each. The migration says where that summary
ends in the mark ``LOG_HISTORY_MARK`` of :mod:`marketplace.store.state` (``{"leaves": L,
"change": C, "audit": A}``): leaves before L count for what is served, removed and
blocked, but are not matched to rows, and feed rows up to serial C and audit rows up to
serial A are not matched to leaves.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from marketplace.metadata import logleaf, tlog
from marketplace.metadata.logleaf import LeafError, LogEvent
from marketplace.metadata.model import format_date
from marketplace.metadata.vocabulary import MAX_LIMIT
from marketplace.store.base import Query, Store
from marketplace.store.state import LOG_HISTORY_MARK, PUBLISH, REMOVE, State

CHECK_MARK = "log:check"
AUDITED = (logleaf.CONFIRMED, logleaf.LIFTED, logleaf.BLOCKED, logleaf.UNBLOCKED,
           logleaf.REMOVED)
MAX_SHOWN = 50  # problems kept in the mark for /healthz (the command prints every one)


@dataclass(frozen=True)
class History:
    """Where the log's summary of a migrated history ends (nothing to skip by default)."""

    leaves: int = 0
    change: int = 0
    audit: int = 0

    @classmethod
    def of(cls, state: State) -> History:
        kept = state.mark(LOG_HISTORY_MARK)
        return cls(**json.loads(kept)) if kept else cls()


@dataclass
class LogCheck:
    """What one comparison found."""

    size: int = 0
    at: str = field(default_factory=lambda: format_date(datetime.now(UTC)))
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self, limit: int | None = None) -> dict:
        shown = self.problems if limit is None else self.problems[:limit]
        return {"ok": self.ok, "checked": self.at, "log_size": self.size,
                "problems": shown, "problem_count": len(self.problems)}


def check_log(store: Store) -> LogCheck:
    """Compare the store and its state with the log; every disagreement, each naming the
    row or the leaf at fault."""
    state = store.state
    result = LogCheck(size=state.log_size())
    leaves = state.log_leaves(0, result.size)
    events = _events(leaves, result.problems)
    history = History.of(state)
    result.problems += _tiles(state, leaves)
    result.problems += _entries(store, events)
    result.problems += _feed(state, events, history)
    result.problems += _audit(state, events, history)
    result.problems += _tombstones_and_blocks(state, events)
    return result


def record(state: State, result: LogCheck) -> None:
    """Keep the result where ``/healthz`` finds it."""
    state.set_mark(CHECK_MARK, json.dumps(result.as_dict(MAX_SHOWN)))


def recorded(state: State) -> dict | None:
    """The last result kept by :func:`record`, or None."""
    kept = state.mark(CHECK_MARK)
    return None if kept is None else json.loads(kept)


def _events(leaves: list[bytes], problems: list[str]) -> list[tuple[int, LogEvent]]:
    events = []
    for index, leaf in enumerate(leaves):
        try:
            events.append((index, LogEvent.parse(leaf)))
        except LeafError as exc:
            problems.append(f"leaf {index} is not a leaf of this log: {exc}")
    return events


def _tiles(state: State, leaves: list[bytes]) -> list[str]:
    """Stored tile hashes against those recomputed from the leaves, level by level."""
    problems = []
    expected = [tlog.leaf_hash(leaf) for leaf in leaves]
    level = 0
    while expected:
        stored = state.log_hashes(level, 0, len(expected))
        for position, (want, have) in enumerate(zip(expected, stored, strict=False)):
            if want != have:
                problems.append(f"the stored hash {position} of tile level {level} is not "
                                "the one its leaves give")
        if len(stored) != len(expected):
            problems.append(f"tile level {level} stores {len(stored)} hashes; the leaves "
                            f"give {len(expected)}")
        width = tlog.TILE_WIDTH
        expected = [tlog.root_of(expected[i:i + width])
                    for i in range(0, len(expected) - width + 1, width)]
        level += 1
    return problems


def _served(events: list[tuple[int, LogEvent]]) -> dict[tuple, tuple[int, LogEvent]]:
    """Each entry the log says is served now: its key -> (index, serving leaf)."""
    served = {}
    for index, event in events:
        if event.event in logleaf.SERVES:
            served[event.key] = (index, event)
        elif event.event == logleaf.REMOVED:
            served.pop(event.key, None)
    return served


def _stored(store: Store) -> dict[tuple, str]:
    """Every stored entry (every version), key -> the SHA-256 of its document (a page of
    documents in memory at a time)."""
    found, offset = {}, 0
    while True:
        page = store.search(Query(status="all", latest_only=False, sort="created",
                                  descending=False, limit=MAX_LIMIT, offset=offset))
        found.update((entry.key, logleaf.digest(entry.document)) for entry in page.entries)
        offset += len(page.entries)
        if len(page.entries) < MAX_LIMIT:
            return found


def _entries(store: Store, events: list[tuple[int, LogEvent]]) -> list[str]:
    problems = []
    served = _served(events)
    stored = _stored(store)
    for key, sha256 in sorted(stored.items()):
        if key not in served:
            problems.append(f"the stored entry {_name(key)} has no published leaf in the "
                            "log (or the log removed it)")
        elif served[key][1].document_sha256 != sha256:
            problems.append(f"the stored document of {_name(key)} is not the one leaf "
                            f"{served[key][0]} published (its SHA-256 differs)")
    for key, (index, _) in sorted(served.items()):
        if key not in stored:
            problems.append(f"leaf {index} published {_name(key)}, which the store does not "
                            "hold")
    return problems


def _feed(state: State, events: list[tuple[int, LogEvent]], history: History) -> list[str]:
    """The change feed, key by key, against what the leaves imply."""
    implied: dict[tuple, list[tuple[str, str, int]]] = defaultdict(list)
    served = set()
    for index, event in events:
        action = None
        if event.event in logleaf.SERVES:
            action = PUBLISH
            served.add(event.key)
        elif event.event == logleaf.REMOVED and event.key in served:
            action = REMOVE
            served.discard(event.key)
        if action and index >= history.leaves:
            implied[event.key].append((action, event.time, index))
    rows: dict[tuple, list] = defaultdict(list)
    after = history.change
    while changes := state.changes(after, MAX_LIMIT):
        for change in changes:
            rows[change.key].append(change)
        after = changes[-1].serial
    problems = []
    for key in sorted(set(implied) | set(rows)):
        want, have = implied.get(key, []), rows.get(key, [])
        for (action, at, index), change in zip(want, have, strict=False):
            if (change.action, format_date(change.at)) != (action, at):
                problems.append(f"change {change.serial} ({change.action} {_name(key)} at "
                                f"{format_date(change.at)}) is not what leaf {index} says "
                                f"({action} at {at})")
        for action, at, index in want[len(have):]:
            problems.append(f"leaf {index} ({action} {_name(key)} at {at}) has no change "
                            "in the feed")
        for change in have[len(want):]:
            problems.append(f"change {change.serial} ({change.action} {_name(key)}) has no "
                            "leaf in the log")
    return problems


def _audit(state: State, events: list[tuple[int, LogEvent]], history: History) -> list[str]:
    """Audit rows of logged actions against their leaves, as multisets of what both say."""
    logged: dict[tuple, list[int]] = defaultdict(list)
    for index, event in events:
        if event.event in AUDITED and index >= history.leaves:
            logged[_said(event)].append(index)
    audited: dict[tuple, list[int]] = defaultdict(list)
    before = None
    while records := state.audit(MAX_LIMIT, before):
        for row in records:
            if row.action in AUDITED and row.serial > history.audit:
                said = LogEvent(row.action, format_date(row.at), row.identifier, row.email,
                                row.created, None, row.endorser, row.actor,
                                logleaf.digest(row.reason))
                audited[_said(said)].append(row.serial)
        before = records[-1].serial
    rows, leaves = [], []  # what is left once each row met its leaf
    for said in sorted(set(logged) | set(audited), key=str):
        mine, theirs = sorted(audited.get(said, [])), logged.get(said, [])
        rows += [(serial, said) for serial in mine[len(theirs):]]
        leaves += [(index, said) for index in theirs[len(mine):]]
    return _unmatched(rows, leaves)


def _unmatched(rows: list[tuple[int, tuple]], leaves: list[tuple[int, tuple]]) -> list[str]:
    """An audit row and a leaf left over about the same action on the same entry or
    endorser are one row altered; anything else, a row or a leaf missing."""
    problems = []
    for serial, said in rows:
        twin = next((leaf for leaf in leaves if _subject(leaf[1]) == _subject(said)), None)
        if twin is None:
            problems.append(f"audit row {serial} ({_describe(said)}) has no leaf in the log")
            continue
        leaves.remove(twin)
        differ = [name for name, mine, theirs in zip(("time", "actor", "reason"),
                                                      (said[1], *said[6:]),
                                                      (twin[1][1], *twin[1][6:]), strict=True)
                  if mine != theirs]
        named = " and ".join([", ".join(differ[:-1]), differ[-1]] if len(differ) > 1
                             else differ)
        problems.append(f"audit row {serial} ({_describe(said)}) is not what leaf {twin[0]} "
                        f"says: its {named} differ{'s' if len(differ) == 1 else ''}")
    problems += [f"leaf {index} ({_describe(said)}) has no audit row" for index, said in leaves]
    return problems


def _subject(said: tuple) -> tuple:
    """The action and what it was about, without when, who or why."""
    return (said[0], *said[2:6])


def _tombstones_and_blocks(state: State, events: list[tuple[int, LogEvent]]) -> list[str]:
    """Tombstones and blocked endorsers against the log's last word on each."""
    buried, blocked = {}, {}
    for index, event in events:
        if event.event == logleaf.REMOVED:
            buried[event.key] = index
        elif event.event == logleaf.LIFTED:
            buried.pop(event.key, None)
        elif event.event == logleaf.BLOCKED:
            blocked[event.endorser] = index
        elif event.event == logleaf.UNBLOCKED:
            blocked.pop(event.endorser, None)
    return (_one_sided(buried, {t.key for t in state.tombstones()},
                       lambda key, i: f"leaf {i} removed {_name(key)}, which has no tombstone",
                       lambda key: f"the tombstone of {_name(key)} has no removal leaf in "
                                   "the log")
            + _one_sided(blocked, {b.endorser for b in state.blocked()},
                         lambda who, i: f"leaf {i} blocked {who}, who is not blocked",
                         lambda who: f"the block of {who} has no leaf in the log"))


def _one_sided(logged: dict, held: set, unheld: Callable[[Any, int], str],
               unlogged: Callable[[Any], str]) -> list[str]:
    """What the log's last word holds (each with its leaf) that the state does not, then
    what the state holds that the log does not, each said by its function."""
    return ([unheld(item, index) for item, index in sorted(logged.items()) if item not in held]
            + [unlogged(item) for item in sorted(held - set(logged))])


def _said(event: LogEvent) -> tuple:
    """What an audit row and its leaf both say (a leaf may also name a document)."""
    return (event.event, event.time, event.identifier, event.email, event.created,
            event.endorser, event.actor, event.reason_sha256)


def _describe(said: tuple) -> str:
    action, at, identifier, email, created, endorser, actor, _ = said
    what = endorser if endorser and not identifier else _name((identifier, email, created))
    return f"{action} {what} by {actor} at {at}"


def _name(key: tuple) -> str:
    return " ".join(part or "-" for part in key)
