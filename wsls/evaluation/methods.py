"""The methods an evaluation compares, as a registry: a row name, its table, the bundle model it
needs, how it maps a prepared case, and how its threshold is chosen.

A method's ``predict`` returns, on the prepared grid, either a map (thresholded at the fixed
``threshold`` or at the one tuned on the training cases) or a mask (``threshold`` None). The
trivial baseline is not here: it works on the original grid (:mod:`wsls.baselines.threshold`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

LOCALISATION, SEGMENTATION = "localisation", "segmentation"
CAM_GMP, CAM_GAP, ACAM = "CAM(GMP)", "CAM(GAP)", "ACAM"
WS_UNET, WS_UNET_TUNED, WSR, S_UNET = "WS-UNet", "WS-UNet (tuned)", "ACAM+WSR", "S-UNet"
TUNED, FIXED = (
    "tuned",
    "fixed",
)  # thresholds: tuned on the training cases; EvalConfig.unet_threshold


@dataclass
class CaseContext:
    """One prepared case and the trained models, with the steps several methods share (the
    method's maps, its segmentation, the U-Nets' probabilities) computed once."""

    models: Any  # TrainedModels
    prepared: Any  # Prepared
    _done: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._done:
            self._done[key] = compute()
        return self._done[key]

    def tensors(self):
        """The prepared volume and brain on the method's device (copied once)."""
        from wsls.method.segment import method_device, to_device

        p = self.prepared
        return self.once(
            "tensors", lambda: to_device(p.image, p.brain, method_device(self.models.classifier))
        )

    def acam(self) -> np.ndarray:
        return self.once("acam", lambda: self.volume_maps().acam.cpu().numpy())

    def volume_maps(self):
        """The method's maps (ACAM and intensity posterior), on the device."""
        from wsls.method.segment import device_maps

        m = self.models
        return self.once("maps", lambda: device_maps(m.classifier, *self.tensors(), m.config))

    def result(self):
        """The method's segmentation, from the volume and maps already on the device."""
        from wsls.method.segment import segment_on_device

        m = self.models
        return self.once(
            "result",
            lambda: segment_on_device(
                m.embedding, *self.tensors(), self.volume_maps(), m.config, m.classifier
            ).to_host(),
        )

    def localisation_map(self, net_name: str) -> np.ndarray:
        from wsls.method.maps import coarse_view_maps

        net = self.models.baselines[net_name]
        return self.once(
            net_name,
            lambda: coarse_view_maps(net, *self.tensors(), self.models.config)[1].cpu().numpy(),
        )

    def unet_probability(self, net_name: str) -> np.ndarray:
        from wsls.baselines.unet import segmenter_probability

        def compute() -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(self.prepared.image, dtype=np.float32))
            window = self.models.config.segmenter.patch.shape[0]
            prob = segmenter_probability(self.models.baselines[net_name], x, window).numpy()
            return (prob * self.prepared.brain).astype(np.float32)

        return self.once(net_name, compute)


@dataclass(frozen=True)
class EvalMethod:
    """name: the table row; table: LOCALISATION or SEGMENTATION; needs: the bundle's baseline
    model it runs (None: the method's own networks); predict(context) -> map or mask on the
    prepared grid; threshold: TUNED (on the training cases), a fixed value, or None (a mask);
    heat: shown as a heat map in the figure (else as an outline)."""

    name: str
    table: str
    needs: str | None
    predict: Callable[[CaseContext], np.ndarray]
    threshold: str | None
    figure: str | None = None


METHODS: tuple[EvalMethod, ...] = (
    EvalMethod(
        CAM_GMP,
        LOCALISATION,
        "classifier_gmp",
        lambda c: c.localisation_map("classifier_gmp"),
        TUNED,
    ),
    EvalMethod(
        CAM_GAP,
        LOCALISATION,
        "classifier_gap",
        lambda c: c.localisation_map("classifier_gap"),
        TUNED,
        figure="heat",
    ),
    EvalMethod(ACAM, LOCALISATION, None, lambda c: c.acam(), TUNED, figure="heat"),
    EvalMethod(WS_UNET, SEGMENTATION, "ws_unet", lambda c: c.unet_probability("ws_unet"), FIXED),
    EvalMethod(
        WS_UNET_TUNED, SEGMENTATION, "ws_unet", lambda c: c.unet_probability("ws_unet"), TUNED
    ),
    EvalMethod(WSR, SEGMENTATION, None, lambda c: c.result().mask, None, figure="mask"),
    EvalMethod(
        S_UNET, SEGMENTATION, "s_unet", lambda c: c.unet_probability("s_unet"), FIXED, figure="mask"
    ),
)


def available(models: Any, tune_ws_unet: bool = True) -> tuple[list[EvalMethod], list[str]]:
    """The registered methods this bundle can run, and a note for each one it cannot."""
    chosen, notes = [], []
    for method in METHODS:
        if method.name == WS_UNET_TUNED and not tune_ws_unet:
            continue
        if method.needs is not None and method.needs not in models.baselines:
            if method.name != WS_UNET_TUNED:
                notes.append(
                    f"{method.name}: the bundle has no {method.needs!r} model "
                    "(train it with baselines=)"
                )
            continue
        chosen.append(method)
    return chosen, notes
