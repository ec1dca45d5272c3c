"""The exceptions that mean "the user gave something that cannot work".

The command line prints these (and ``OSError``) as one line and exits with status 1; any other
exception is a bug and keeps its traceback. All are ``ValueError`` subclasses, so code that
catches ``ValueError`` keeps working.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path


class UserError(ValueError):
    """A mistake in the inputs, the settings or the command line; the message is one line."""


class DataError(UserError):
    """Bad input data: the message is one line naming the file (or source) and the problem.

    Attributes:
        source: the file path or other source (a manifest, a case id) the problem is in.
        problem: what is wrong, in words.
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.source}: {self.problem}")


class BundleError(UserError):
    """A model bundle that cannot be written or used (one-line message)."""


class ConfigError(UserError):
    """A setting out of its range or of the wrong type (names the setting, value and range)."""


class InputWarning(UserWarning):
    """An input that works but looks wrong (modalities in another order, a file named for
    another modality, an implausible voxel size). One line; the command line prints it as
    ``wsls: warning: ...``; ``strict=True`` (``--strict``) refuses such inputs instead."""


_remarks: ContextVar[list[str] | None] = ContextVar("wsls_input_remarks", default=None)


def input_remark(text: str) -> None:
    """Say that an input looks wrong: into the innermost :func:`collect_input_remarks` of this
    thread (context), else as an :class:`InputWarning`."""
    into = _remarks.get()
    if into is not None:
        into.append(text)
    else:
        warnings.warn(text, InputWarning, stacklevel=4)


@contextmanager
def collect_input_remarks() -> Iterator[list[str]]:
    """The input remarks made inside the block, as a list, instead of warnings. Per thread, unlike
    ``warnings.catch_warnings``, so one scan's remarks never land on another's segmentation when
    several are segmented in threads."""
    remarks: list[str] = []
    token = _remarks.set(remarks)
    try:
        yield remarks
    finally:
        _remarks.reset(token)
