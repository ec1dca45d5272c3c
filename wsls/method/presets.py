"""Settings that work for each kind of lesion, so a user picks a lesion type, not flags.

- "tumour": gliomas (BraTS whole tumour): FLAIR + T1c, the classifier on a 2 mm view with 32^3
  patches whose windows do not see the brain's outer 3 voxels, regions grown near the supported
  estimate, one lesion kept (the component the classifier points at most), the mixture reading
  FLAIR without its bias field (``EMConfig.bias_order`` 2) and, where the mask barely differs
  from the tissue around it, segmenting again with two lesion Gaussians
  (``EMConfig.faint_lesion_components``, as every preset). The defaults of
  :class:`~wsls.method.config.WSLSConfig`.
- "ms": multiple sclerosis: many small lesions: FLAIR + T1 + T2, 16^3 patches at 1 mm, a patch
  positive from 5 lesion voxels, regions grown globally (lesions need not touch) and their
  boundary drawn by the intensity model within 2 voxels of them (``RegionConfig.boundary_band``,
  the embedding's widest smoothing: an MS lesion is bright on FLAIR throughout, with no dark
  core for the intensity model to leave out), every component kept, the supported estimate not
  cut at thin bridges (the lesions are that thin), no erase test and second look
  (``WSLSConfig.second_look``) and windows that see the whole brain (``WSLSConfig.window_edge``)
  and no bias field removed (``EMConfig.bias_order``; all three measured on tumours only), no
  lower bound on the mask's share of the brain in the verdict (one small lesion is real), and
  the classifier's batch-norm statistics as training left them (recomputed, they gave one of
  the two held-out MS patients a mask of a third of the brain).
- "stroke": ischaemic stroke (ISLES): DWI + ADC + FLAIR, 24^3 patches at 1 mm... as "ms" but
  connected growth and the regions' own boundary (no stroke scans to measure it on).

The preset's name is saved in the bundle's configuration (``WSLSConfig.preset``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wsls.errors import ConfigError
from wsls.method.config import PRESETS, WSLSConfig


def preset_config(name: str) -> WSLSConfig:
    """The configuration of a lesion type ("tumour", "ms" or "stroke")."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r} is not one of {', '.join(PRESETS)}")
    config = WSLSConfig()
    if name == "tumour":
        return config
    patch_size, min_lesion = (16, 5) if name == "ms" else (24, 20)
    return replace(
        config,
        preset=name,
        modalities=("flair", "t1", "t2") if name == "ms" else ("dwi", "adc", "flair"),
        classifier_scale=1,
        patch=replace(config.patch, size=patch_size, min_lesion_voxels=min_lesion),
        regions=replace(
            config.regions,
            connectivity=0 if name == "ms" else 6,
            bound_margin=None if name == "ms" else config.regions.bound_margin,
            bridge_radius=0,
            boundary_band=2 if name == "ms" else None,
        ),
        keep="all",
        second_look=False,
        window_edge=0,
        classifier_batch_norm=0,
        quality=replace(config.quality, min_brain_fraction=0.0),
        em=replace(config.em, bias_order=0),
    )


# settings that change what training does, with the value every bundle saved before them was
# trained with (a preset's value now would not be what its networks learned from)
BEFORE_THEY_EXISTED = {"window_edge": 0}


def saved_config(data: dict[str, Any]) -> WSLSConfig:
    """The configuration a bundle saved (``WSLSConfig.to_dict``); a setting it lacks (saved
    before the setting existed) takes the value of the preset it names, not the tumour's, or
    for a setting that changes training, the value it had before it existed
    (:data:`BEFORE_THEY_EXISTED`)."""
    data = {**BEFORE_THEY_EXISTED, **data}
    preset = data.get("preset", WSLSConfig.preset)
    if isinstance(preset, str) and preset in PRESETS:
        return preset_config(preset).updated(data)
    return WSLSConfig.from_dict(data)
