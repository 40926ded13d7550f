"""What can be wrong with a metadata document, said so that a person can fix it.

A hostile document can break one rule a hundred thousand times; the report stays small all
the same: at most :data:`MAX_PROBLEMS` problems, each of bounded length, then one problem
saying how many more were found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

MAX_PROBLEMS = 50
MAX_ELEMENT = 200
MAX_MESSAGE = 600
TOO_MANY = "too-many-problems"


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


@dataclass(frozen=True)
class Problem:
    """One broken rule: the element (or part) at fault, the rule's name and a sentence.

    The element and the message are cut to a bounded length, since both may quote the
    document (a name or a value can be most of a megabyte long).
    """

    element: str
    rule: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "element", _shortened(self.element, MAX_ELEMENT))
        object.__setattr__(self, "message", _shortened(self.message, MAX_MESSAGE))

    def __str__(self) -> str:
        return f"{self.element}: {self.message} [{self.rule}]"

    def as_dict(self) -> dict[str, str]:
        return {"element": self.element, "rule": self.rule, "message": self.message}


def reported(problems: Iterable[Problem]) -> list[Problem]:
    """The first :data:`MAX_PROBLEMS` problems, then one saying how many more there are."""
    return _listed(problems)[0]


def _listed(problems: Iterable[Problem]) -> tuple[list[Problem], int]:
    """The problems to report and how many there are in all; ``problems`` may be a
    generator, whose problems past the limit are only counted, never kept."""
    found = iter(problems)
    listed = list(islice(found, MAX_PROBLEMS))
    more = sum(1 for _ in found)
    if more:
        listed.append(Problem("document", TOO_MANY,
                              f"and {more} more problem{'s' if more != 1 else ''}, not listed: "
                              f"fix the {MAX_PROBLEMS} above first"))
    return listed, MAX_PROBLEMS + more if more else len(listed)


class MetadataError(ValueError):
    """A document that cannot be used, with the problems found in it: at most
    :data:`MAX_PROBLEMS` in :attr:`problems`, then one counting the rest; :attr:`total`
    counts them all.

    Its text is the first problem and how many others there are, not the whole list: a
    reply that gives the text and the list must not say everything twice.
    """

    def __init__(self, problems: Iterable[Problem] | Problem):
        self.problems, self.total = _listed(
            [problems] if isinstance(problems, Problem) else problems)
        super().__init__(self._text())

    def _text(self) -> str:
        if not self.problems:
            return "the document was refused"
        others = self.total - 1
        return str(self.problems[0]) + (f" (and {others} more)" if others else "")


def fail(element: str, rule: str, message: str) -> MetadataError:
    """Shorthand for raising a single-problem error: ``raise fail(...)``."""
    return MetadataError(Problem(element, rule, message))
