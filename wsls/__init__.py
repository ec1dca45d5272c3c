"""wsls: weakly supervised 3D brain lesion segmentation from image-level labels.

    import wsls
    seg = wsls.segment("scan_flair_t1c.nii.gz", "run/bundle")   # -> Segmentation
    seg.save("lesion.nii.gz")

Public API: ``segment``, ``segment_many``, ``train``, ``load``, ``evaluate`` and the result
type ``Segmentation``. Importing the package is cheap: these load on first use, the compiled
ops with ``wsls.ops`` and the I/O stack (nibabel, scipy) with ``wsls.data``.

``wsls.train`` and ``wsls.evaluate`` are also the names of subpackages/modules (the training
loop; the evaluation tables). Both are made callable: ``wsls.train(data, out_dir)`` calls
:func:`wsls.api.train`, ``wsls.evaluate(models, test_cases, ...)`` calls
:func:`wsls.evaluate.evaluate`, and ``wsls.train.fit`` etc. keep working.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "segment": "wsls.api",
    "load": "wsls.api",
    "segment_many": "wsls.batch",
    "Segmentation": "wsls.segmentation",
    "Candidates": "wsls.segmentation",
}
# submodule name -> (module, function) it doubles as
_CALLABLE = {"train": ("wsls.api", "train"), "evaluate": ("wsls.evaluate", "evaluate")}

__all__ = ["Candidates", "Segmentation", "evaluate", "load", "segment", "segment_many", "train"]


class _CallableModule(types.ModuleType):
    """A submodule that is also the public function of the same name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, name = _CALLABLE[self.__name__.rsplit(".", 1)[1]]
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


class _Package(types.ModuleType):
    """The wsls package: binds ``train`` / ``evaluate`` submodules as callables on import."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CALLABLE and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _CALLABLE:
        return importlib.import_module(f"{__name__}.{name}")  # bound callable on import
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsls' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_CALLABLE])
