"""A trained method (its configuration and networks), as a model bundle folder and back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from torch import nn

from wsls.bundle import load_bundle, save_bundle
from wsls.errors import BundleError, ConfigError
from wsls.method.config import WSLSConfig, _from_dict
from wsls.method.presets import saved_config
from wsls.models import Classifier3D, ClassifierEnsemble, build_model


@dataclass
class TrainedModels:
    """A trained method: its config, the ACAM classifier (or an ensemble of them,
    ``config.classifier_members``), the representation model, the baselines that were trained
    (name -> model), and the per-modality intensity signatures of its training cases
    (``wsls.data.signatures``; None for bundles written without them), and where it came from
    (``training``: case ids, sources, seed, wsls version, git commit)."""

    config: WSLSConfig
    classifier: Classifier3D | ClassifierEnsemble
    embedding: nn.Module
    baselines: dict[str, nn.Module] = field(default_factory=dict)
    signatures: dict[str, Any] | None = None
    training: dict[str, Any] | None = None

    def all_models(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier, "embedding": self.embedding, **self.baselines}


def save_models(models: TrainedModels, path: str | Path) -> Path:
    """Write ``models`` (method and baselines) as a bundle folder; returns its path.

    The bundle's configuration holds ``method`` (the ``WSLSConfig``), ``modalities`` and,
    when known, ``signatures`` (the training cases' intensity signatures per modality) and
    ``training`` (its provenance).
    """
    nets = models.all_models()
    specs = {name: net.spec_dict() for name, net in nets.items()}
    config: dict[str, Any] = {
        "method": models.config.to_dict(),
        "modalities": list(models.config.modalities),
    }
    if models.signatures is not None:
        config["signatures"] = models.signatures
    if models.training is not None:
        config["training"] = models.training
    return save_bundle(path, nets, specs, config)


def _bad_setting(cls: type, data: dict[str, Any], prefix: str = "") -> str | None:
    """The dotted name of the first setting of ``data`` that ``cls`` refuses (None if the
    refusal involves several settings together)."""
    defaults = cls()
    names = {f.name for f in fields(cls)}
    for name, value in data.items():
        if name not in names:
            return prefix + name
        current = getattr(defaults, name)
        if is_dataclass(current) and isinstance(value, dict):
            try:
                _from_dict(type(current), value)
            except (ConfigError, TypeError, ValueError):
                return _bad_setting(type(current), value, f"{prefix}{name}.") or prefix + name
            continue
        try:
            _from_dict(cls, {name: value})
        except (ConfigError, TypeError, ValueError):
            return prefix + name
    return None


def method_config(doc: Any, path: str | Path) -> WSLSConfig:
    """The ``WSLSConfig`` saved in a bundle's configuration, validated setting by setting.

    Raises:
        BundleError: one line naming the bundle's ``config.json`` and the bad setting.
    """
    where = Path(path) / "config.json"
    method = doc.get("method") if isinstance(doc, dict) else None
    if not isinstance(method, dict):
        raise BundleError(f"{where}: not a wsls method bundle (no 'method' settings)")
    try:
        return saved_config(method)
    except (ConfigError, TypeError, ValueError) as exc:
        text = " ".join(str(exc).split())
        setting = _bad_setting(WSLSConfig, method)
        named = f"setting method.{setting}: " if setting else ""
        raise BundleError(
            f"{where}: bad {named}{text} (edit or restore the bundle's config.json)"
        ) from None


def _check_config(path: Path, parsed: dict[str, WSLSConfig]):
    """The bundle's configuration check; it keeps the parsed method settings in ``parsed``."""

    def check(doc: dict[str, Any]) -> None:
        from wsls.data.signatures import signatures_ok

        parsed["method"] = method_config(doc, path)
        if doc.get("signatures") is not None:
            problem = signatures_ok(doc["signatures"])
            if problem is not None:
                raise BundleError(f"{path / 'config.json'}: bad 'signatures': {problem}")

    return check


def load_models(
    path: str | Path,
    *,
    modalities: Iterable[str] | None = None,
    device: str = "cpu",
) -> TrainedModels:
    """Load a bundle written by :func:`save_models`.

    The configuration is validated before any weights are read (a bad setting is one
    :class:`BundleError` line naming it); bundles without signatures load as before.

    Args:
        modalities: the modalities the caller has; loading fails with a clear message if the
            bundle needs others.
    """
    path = Path(path)
    parsed: dict[str, WSLSConfig] = {}
    bundle = load_bundle(
        path,
        build_model,
        required_modalities=modalities,
        device=device,
        check_config=_check_config(path, parsed),
    )
    config = parsed["method"]
    models = dict(bundle.models)
    for name in ("classifier", "embedding"):
        if name not in models:
            raise BundleError(f"{path}: the bundle has no {name!r} model")
    return TrainedModels(
        config,
        models.pop("classifier"),
        models.pop("embedding"),
        models,
        bundle.config.get("signatures"),
        bundle.config.get("training"),
    )


def bundle_path(path: str | Path | None) -> Path:
    """The bundle folder for ``path``: the folder itself, ``path/bundle`` for a run folder, the
    shipped model of that name (``wsls.pretrained``: "tumour"...), or for None the default
    shipped model."""
    from wsls import pretrained

    if path is None:
        return pretrained.bundle(pretrained.DEFAULT)
    if (
        isinstance(path, str)
        and not Path(path).expanduser().exists()
        and path in pretrained.names()
    ):
        return pretrained.bundle(path)
    path = Path(path).expanduser()
    if not path.exists():
        shipped = ", ".join(pretrained.names()) or "none"
        raise BundleError(f"{path}: model bundle not found (shipped models: {shipped})")
    if not (path / "config.json").exists() and (path / "bundle" / "config.json").exists():
        return path / "bundle"
    return path
