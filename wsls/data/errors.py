"""The one exception type for bad input data."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: the message is one line naming the file (or source) and the problem.

    Attributes:
        source: the file path or other source (a manifest, a case id) the problem is in.
        problem: what is wrong, in words.
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.source}: {self.problem}")
