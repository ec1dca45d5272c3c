"""wsls: weakly supervised 3D brain lesion segmentation from image-level labels.

    import wsls
    seg = wsls.segment("scan_flair_t1c.nii.gz", "run/bundle")   # -> Segmentation
    seg.save("lesion.nii.gz")

Public API: ``segment``, ``segment_many``, ``train``, ``load``, ``evaluate`` and the result
type ``Segmentation``. Importing the package is cheap: these load on first use, the compiled
ops with ``wsls.ops`` and the I/O stack (nibabel, scipy) with the modules that read files.

Layout (imports run one way, checked by ``tests/test_layout.py``): ``io`` (files, layouts,
atomic writes), ``data`` (preprocessing, patches), ``method`` (the per-volume method),
``training`` and ``evaluation``, then ``api``, ``batch`` and the command line ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "segment": "wsls.api",
    "load": "wsls.api",
    "segment_many": "wsls.batch",
    "train": "wsls.training.run",
    "evaluate": "wsls.evaluation.evaluate",
    "Segmentation": "wsls.segmentation",
    "Candidates": "wsls.segmentation",
}

__all__ = ["Candidates", "Segmentation", "evaluate", "load", "segment", "segment_many", "train"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsls' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
