"""Canonical modality names, so every layout speaks the same language ("flair", "t1c", ...)."""

from __future__ import annotations

import re
from pathlib import Path

CANONICAL_ORDER = ("flair", "t1", "t1c", "t2", "dwi", "adc")

_ALIASES = {
    "flair": "flair",
    "t2f": "flair",
    "t2flair": "flair",
    "t2-flair": "flair",
    "t1": "t1",
    "t1n": "t1",
    "t1w": "t1",
    "t1c": "t1c",
    "t1ce": "t1c",
    "t1gd": "t1c",
    "t1post": "t1c",
    "t1-post": "t1c",
    "t2": "t2",
    "t2w": "t2",
    "dwi": "dwi",
    "adc": "adc",
}


def canonical_modality(name: str) -> str | None:
    """The canonical name for a modality alias ('T1ce', 'T1POST', 't2f' ...), or None."""
    return _ALIASES.get(name.strip().lower())


def naming_hint(modalities: tuple[str, ...] | list[str]) -> str:
    """How files of these modalities may be named: "flair (*flair*, *t2f*...), t1c (...)"."""
    parts = []
    for m in modalities:
        aliases = [a for a, c in _ALIASES.items() if c == m and "-" not in a]
        parts.append(f"{m} ({', '.join(f'*{a}*' for a in aliases)})" if aliases else m)
    return ", ".join(parts)


def normalise_modalities(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Canonical names for user-given modalities; unknown names are kept, lower-cased."""
    return tuple(canonical_modality(n) or n.strip().lower() for n in names)


_TOKEN_SPLIT = re.compile(r"[_\-. ]+")
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".img", ".hdr")


def modality_in_name(path: str | Path) -> str | None:
    """The modality a file's name says ('case_t1ce.nii.gz' -> 't1c', 'FLAIR.nii.gz' ->
    'flair', 'sub-01_T2-FLAIR' -> 'flair'), or None when it names none or several."""
    name = Path(path).name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    tokens = [t for t in _TOKEN_SPLIT.split(name) if t]
    found: set[str] = set()
    used: set[int] = set()
    for i in range(len(tokens) - 1):  # 't2-flair', 't1-post': two tokens, one modality
        joined = canonical_modality(tokens[i] + tokens[i + 1])
        if joined is not None and tokens[i] + tokens[i + 1] in ("t2flair", "t1post"):
            found.add(joined)
            used.update((i, i + 1))
    for i, token in enumerate(tokens):
        if i not in used and canonical_modality(token) is not None:
            found.add(canonical_modality(token))  # type: ignore[arg-type]
    return found.pop() if len(found) == 1 else None
