"""What can be wrong with a metadata document, said so that a person can fix it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One broken rule: the element (or part) at fault, the rule's name and a sentence."""

    element: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.element}: {self.message} [{self.rule}]"

    def as_dict(self) -> dict[str, str]:
        return {"element": self.element, "rule": self.rule, "message": self.message}


class MetadataError(ValueError):
    """A document that cannot be used, with every problem found in it."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def fail(element: str, rule: str, message: str) -> MetadataError:
    """Shorthand for raising a single-problem error: ``raise fail(...)``."""
    return MetadataError(Problem(element, rule, message))
