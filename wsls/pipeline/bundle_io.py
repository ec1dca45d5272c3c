"""A trained method as a model bundle folder (config.json + safetensors), and back."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from wsls.bundle import BundleError, load_bundle, save_bundle
from wsls.models import build_model
from wsls.pipeline.config import WSLSConfig
from wsls.pipeline.train import TrainedModels


def save_models(models: TrainedModels, path: str | Path) -> Path:
    """Write ``models`` (method and baselines) as a bundle folder; returns its path."""
    nets = models.all_models()
    specs = {name: net.spec_dict() for name, net in nets.items()}
    config = {"method": models.config.to_dict(), "modalities": list(models.config.modalities)}
    return save_bundle(path, nets, specs, config)


def load_models(
    path: str | Path,
    *,
    modalities: Iterable[str] | None = None,
    device: str = "cpu",
) -> TrainedModels:
    """Load a bundle written by :func:`save_models`.

    Args:
        modalities: the modalities the caller has; loading fails with a clear message if the
            bundle needs others.
    """
    bundle = load_bundle(path, build_model, required_modalities=modalities, device=device)
    try:
        config = WSLSConfig.from_dict(bundle.config["method"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: not a wsls method bundle ({exc})") from None
    models = dict(bundle.models)
    for name in ("classifier", "embedding"):
        if name not in models:
            raise BundleError(f"{path}: the bundle has no {name!r} model")
    return TrainedModels(config, models.pop("classifier"), models.pop("embedding"), models)
