"""Canonical modality names, so every layout speaks the same language ("flair", "t1c", ...)."""

from __future__ import annotations

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


def normalise_modalities(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Canonical names for user-given modalities; unknown names are kept, lower-cased."""
    return tuple(canonical_modality(n) or n.strip().lower() for n in names)
