"""The models that ship with wsls: bundles in this package (config.json + safetensors, verified
by their checksums when loaded, never unpickled) and a model card each (card.json).

``wsls segment scan -o mask`` and ``wsls.segment(image)`` use :data:`DEFAULT`; ``--model NAME``
or ``model="NAME"`` another one; ``wsls models`` lists them with their cards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wsls.errors import BundleError

DEFAULT = "tumour"
ROOT = Path(__file__).resolve().parent


def names() -> list[str]:
    """The shipped models (folders holding a bundle and a card)."""
    return sorted(p.name for p in ROOT.iterdir() if (p / "config.json").is_file())


def bundle(name: str) -> Path:
    """The bundle folder of a shipped model."""
    if name not in names():
        known = ", ".join(names()) or "none"
        raise BundleError(f"no shipped model named {name!r} (shipped: {known})")
    return ROOT / name


def card(name: str) -> dict[str, Any]:
    """The model card of a shipped model (what it was trained on, how it measured, its use)."""
    path = bundle(name) / "card.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable model card ({exc})") from None


def describe(name: str) -> str:
    """A model card as text for a terminal."""
    c = card(name)
    lines = [f"{name}: {c.get('title', '')}"]
    for key, label in (
        ("lesion", "segments"),
        ("preset", "preset"),
        ("modalities", "needs"),
        ("training_data", "trained on"),
        ("data_terms", "data terms"),
        ("cross_validation", "measured"),
        ("intended_use", "intended use"),
        ("rebuild", "rebuild"),
        ("provenance", "provenance"),
    ):
        if key in c:
            value = c[key]
            if isinstance(value, dict):
                value = "; ".join(f"{k}: {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            lines.append(f"  {label:<13} {value}")
    return "\n".join(lines)
