"""A trained method (its configuration and networks), as a model bundle folder and back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from wsls.bundle import load_bundle, save_bundle
from wsls.errors import BundleError
from wsls.method.config import WSLSConfig
from wsls.models import Classifier3D, build_model


@dataclass
class TrainedModels:
    """A trained method: its config, the ACAM classifier, the representation model, and the
    baselines that were trained (name -> model)."""

    config: WSLSConfig
    classifier: Classifier3D
    embedding: nn.Module
    baselines: dict[str, nn.Module] = field(default_factory=dict)

    def all_models(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier, "embedding": self.embedding, **self.baselines}


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


def bundle_path(path: str | Path) -> Path:
    """The bundle folder for ``path``: the folder itself, or ``path/bundle`` for a run folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BundleError(f"{path}: model bundle not found")
    if not (path / "config.json").exists() and (path / "bundle" / "config.json").exists():
        return path / "bundle"
    return path
