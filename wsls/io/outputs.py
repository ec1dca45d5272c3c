"""Checks of an output path before any work: where it goes must be writable, must not be one
of the run's inputs, and must not lie inside a model bundle.

Commands call :func:`check_output` first, so a mistake costs a second, not the minutes of
computing that precede the first write. Every refusal is one line (:class:`OutputError`, a
:class:`~wsls.errors.UserError`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from wsls.errors import UserError

PathLike = str | Path


class OutputError(UserError):
    """An output path that cannot or must not be written (one line)."""


def _resolved(path: PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve(strict=False)


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (after links; hard links too)."""
    try:
        if _resolved(a) == _resolved(b):
            return True
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def nearest_existing(path: Path) -> Path:
    """``path``, or the nearest folder above it that exists."""
    here = path
    while not here.exists() and here != here.parent:
        here = here.parent
    return here


def writable_folder_problem(folder: PathLike) -> str | None:
    """Why files cannot be created in ``folder`` (or in the folders that would be created
    there), or None: a path through a file, a read-only file system, no permission."""
    folder = _resolved(folder)
    anchor = nearest_existing(folder)
    if not anchor.is_dir():
        if anchor == folder:
            return f"{folder} is a file, not a folder"
        return f"{anchor} is a file, not a folder, so {folder} cannot be created"
    try:
        read_only = bool(os.statvfs(anchor).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        return f"{anchor} is on a read-only file system"
    if not os.access(anchor, os.W_OK | os.X_OK):
        return f"no permission to write in {anchor}"
    return None


def check_output(
    path: PathLike,
    *,
    kind: str = "file",
    inputs: Iterable[PathLike] = (),
    bundles: Iterable[PathLike] = (),
    what: str = "output",
) -> Path:
    """Refuse an output that cannot or must not be written, before any work.

    Args:
        path: the file or folder to be written.
        kind: "file" or "folder".
        inputs: files the run reads: the output may be none of them (nor, for a folder,
            hold them under the names it will write: check those names as files).
        bundles: model bundle folders the output must not lie in.
        what: how messages call the output ("output", "run folder"...).
    Returns:
        ``path`` as given.
    Raises:
        OutputError: one line naming the path and the problem.
    """
    path = Path(path).expanduser()
    target = _resolved(path)
    if kind == "file":
        if path.is_dir():
            raise OutputError(f"{what} {path} is a folder; give a file name")
        for source in inputs:
            if same_file(source, path):
                raise OutputError(
                    f"{what} {path} is an input of this run ({source}); it would be "
                    "overwritten: choose another name"
                )
    elif path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} exists and is a file, not a folder")
    for bundle in bundles:
        folder = _resolved(bundle)
        if _inside(target, folder):
            raise OutputError(
                f"{what} {path} lies inside the model bundle {bundle}; write it elsewhere "
                "(a bundle holds only its config.json and weights)"
            )
    problem = writable_folder_problem(target.parent if kind == "file" else target)
    if problem is not None:
        raise OutputError(f"cannot write {what} {path}: {problem}")
    return path
