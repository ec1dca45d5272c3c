"""The networks: the ACAM classifier (heads acam, gap, gmp) and ensembles of it, the U-Net
(context embedding f_R, S-UNet and WS-UNet) and the appearance-only embedding.
``build_model(spec_dict)`` rebuilds any of them from the ``spec_dict()`` it saved (model
bundles use this)."""

from __future__ import annotations

from torch import nn

from wsls.models.appearance import AppearanceEmbedding, AppearanceSpec
from wsls.models.classifier import (
    HEADS,
    Classifier3D,
    ClassifierOutput,
    ClassifierSpec,
    upsample_map,
)
from wsls.models.ensemble import ClassifierEnsemble, EnsembleSpec, classifier_members
from wsls.models.layers import gaussian_smooth
from wsls.models.unet import UNet3D, UNetSpec

_KINDS = {
    "classifier": (Classifier3D, ClassifierSpec),
    "classifier_ensemble": (ClassifierEnsemble, EnsembleSpec),
    "unet": (UNet3D, UNetSpec),
    "appearance": (AppearanceEmbedding, AppearanceSpec),
}


def build_model(spec: dict) -> nn.Module:
    """Rebuild a network from its ``spec_dict()``: {"kind": ..., **architecture}."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(
            f"build_model: unknown model kind {kind!r}; expected one of {sorted(_KINDS)}"
        )
    cls, spec_cls = _KINDS[kind]
    if "sigmas" in spec:
        spec["sigmas"] = tuple(spec["sigmas"])
    return cls(spec_cls(**spec))


__all__ = [
    "HEADS",
    "AppearanceEmbedding",
    "AppearanceSpec",
    "Classifier3D",
    "ClassifierOutput",
    "ClassifierEnsemble",
    "ClassifierSpec",
    "EnsembleSpec",
    "UNet3D",
    "UNetSpec",
    "build_model",
    "classifier_members",
    "gaussian_smooth",
    "upsample_map",
]
