"""Comparing a saved state_dict with a model's, for checkpoints and bundles."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def state_dict_mismatches(
    saved: Mapping[str, torch.Tensor], live: Mapping[str, torch.Tensor], limit: int = 3
) -> str:
    """A short description of how two state_dicts differ in keys or shapes ('' if they fit)."""
    missing = [k for k in live if k not in saved]
    unexpected = [k for k in saved if k not in live]
    shapes = [
        f"{k} {tuple(saved[k].shape)} vs {tuple(live[k].shape)}"
        for k in live
        if k in saved and tuple(saved[k].shape) != tuple(live[k].shape)
    ]
    parts = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape (saved vs model)", shapes),
    ):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)
