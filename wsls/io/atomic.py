"""Atomic file writes: the one way wsls writes a user's file.

Every output (masks, maps, tables, figures, bundles, checkpoints) is written to a temporary
file (or folder) beside its destination, flushed to disk, then renamed over it. A crash or a
failed write at any point leaves the old file (or none), never a mix, and no temporary file.

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: content in memory.
- :func:`atomic_path`: for writers that want a path (nibabel, matplotlib, numpy): yields a
  temporary path with the destination's suffix, renamed into place when the block succeeds.
- :func:`atomic_folder`: a folder built aside and swapped into place (model bundles), or, with
  ``replace=False``, put in place only if none exists yet (the prepared-volume cache).
- :func:`write_durable`: a new file inside such a folder, flushed to disk.

A failed write raises an ``OSError`` whose message names the destination (``No space left on
device: '/run/last.ckpt'``); the temporary file or folder is gone and the old file untouched.
``tests/test_faults.py`` checks that no wsls writer opens a final path for writing outside
these helpers (every temporary name starts with ``.`` and holds :data:`TEMP_SUFFIX`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _new_file_mode(path: Path) -> int:
    """The destination's current mode, else 0o666 less the process umask (as ``open`` does)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_error(err: BaseException, path: str | Path) -> OSError:
    """``err`` (a failed write) as an ``OSError`` whose message names ``path``, with its errno;
    writers that report no errno (numpy: "N requested and M written") are told apart by the
    free space left."""
    path = Path(path)
    code = getattr(err, "errno", None)
    reason = getattr(err, "strerror", None) or " ".join(str(err).split()) or type(err).__name__
    if code is None:
        with contextlib.suppress(OSError):
            if shutil.disk_usage(path.parent).free < (1 << 20):
                code, reason = errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({reason})"
    if code is None:
        return OSError(f"cannot write {path}: {reason}")
    return OSError(code, reason, str(path))


def write_durable(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a new file and flush it to disk (inside a folder that is renamed into
    place later; on its own use :func:`atomic_write_bytes`)."""
    path = Path(path)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers pick the same format); when the
    block ends without an exception it is flushed and renamed to ``path``, else removed.

    Args:
        path: the destination; its folder must exist.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=TEMP_SUFFIX + suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        with contextlib.suppress(OSError):  # mkstemp creates files 0600
            os.chmod(tmp, _new_file_mode(path))
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and not _names(err, path):
            raise write_error(err, path) from None
        raise
    _fsync_dir(path.parent)


def _names(err: OSError, path: Path) -> bool:
    return str(path) in str(err)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably; returns the path."""
    with atomic_path(path) as tmp:
        write_durable(tmp, data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; when the block succeeds it replaces
    ``path`` (an existing folder is moved aside first and removed after), else it is removed.

    Args:
        replace: False keeps an existing ``path`` (one that appeared while the block ran, e.g.
            stored by another process) and discards the new folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if replace:
            _swap_into_place(tmp, path)
        else:
            try:
                os.rename(tmp, path)  # atomic; fails if path exists and is not empty
            except OSError:
                if not path.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process stored it first
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and not _names(err, path):
            raise write_error(err, path) from None
        raise
    _fsync_dir(path.parent)


def _swap_into_place(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    old.rmdir()
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
