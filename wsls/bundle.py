"""Model bundles: a folder with ``config.json`` and one safetensors file per model.

``config.json``::

    {"format": 1, "wsls_version": "0.1.0", "torch_version": "2.x",
     "config": {...modalities, normalisation, patch size, thresholds...},
     "models": {"classifier": {...spec...}, ...},
     "weights": {"classifier": {"file": "classifier.safetensors", "sha256": "..."}, ...}}

Loading reads JSON and safetensors only: nothing is ever unpickled. Every failure is a
:class:`BundleError` with a one-line message.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import wsls
from wsls.errors import BundleError
from wsls.io.atomic import atomic_folder, write_durable

__all__ = ["BUNDLE_FORMAT", "Bundle", "BundleError", "load_bundle", "save_bundle"]

BUNDLE_FORMAT = 1
CONFIG_FILE = "config.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class Bundle:
    """A loaded bundle.

    Attributes:
        config: the user configuration saved with it (modalities, normalisation...).
        models: name -> model built from its spec, weights loaded, in eval mode on the device.
        path: the bundle folder.
        specs: name -> the spec each model was built from.
        wsls_version, torch_version: the versions that wrote it.
    """

    config: dict[str, Any]
    models: dict[str, torch.nn.Module]
    path: Path
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    wsls_version: str = ""
    torch_version: str = ""

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the models expect, in channel order (from ``config``)."""
        return tuple(self.config.get("modalities", ()))


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise BundleError(f"the bundle {what} is not plain JSON: {exc}") from None


def _is_bundle(path: Path) -> bool:
    try:
        doc = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "format" in doc and "models" in doc


def save_bundle(
    path: str | Path,
    models: Mapping[str, torch.nn.Module],
    model_specs: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
) -> Path:
    """Write a bundle folder atomically (built aside, then renamed into place).

    Args:
        path: the bundle folder; an existing bundle there is replaced, any other non-empty
            folder is refused.
        models: name -> model (names: letters, digits, ``_.-``; they name the weight files).
        model_specs: name -> JSON spec from which ``build_model`` of :func:`load_bundle`
            rebuilds the model.
        config: JSON configuration (modalities, normalisation, patch size, thresholds...).
    Returns:
        The bundle folder.
    Raises:
        BundleError: names or keys that do not match, non-JSON config/specs, a folder that
            is not a bundle in the way.
    """
    from safetensors.torch import save

    path = Path(path)
    if set(models) != set(model_specs):
        raise BundleError(
            f"models and model_specs name different models: {sorted(models)} vs "
            f"{sorted(model_specs)}"
        )
    if not models:
        raise BundleError("a bundle needs at least one model")
    for name in models:
        if not _NAME.match(name):
            raise BundleError(f"model name {name!r} must be letters, digits, '_', '.' or '-'")
    _json_text(dict(config), "config")
    _json_text({k: dict(v) for k, v in model_specs.items()}, "model specs")
    if path.exists() and not path.is_dir():
        raise BundleError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not _is_bundle(path):
        raise BundleError(f"refusing to replace {path}: it is not empty and not a wsls bundle")
    with atomic_folder(path) as tmp:
        weights: dict[str, dict[str, str]] = {}
        for name, model in models.items():
            tensors = {
                k: v.detach().to("cpu", copy=True).contiguous()
                for k, v in model.state_dict().items()
            }
            file = f"{name}.safetensors"
            meta = {"format": "pt", "wsls_model": name, "wsls_version": wsls.__version__}
            blob = save(tensors, metadata=meta)
            write_durable(tmp / file, blob)
            weights[name] = {"file": file, "sha256": hashlib.sha256(blob).hexdigest()}
        doc = {
            "format": BUNDLE_FORMAT,
            "wsls_version": wsls.__version__,
            "torch_version": torch.__version__,
            "config": dict(config),
            "models": {k: dict(v) for k, v in model_specs.items()},
            "weights": weights,
        }
        write_durable(tmp / CONFIG_FILE, _json_text(doc, "document").encode("utf-8"))
    return path


def _read_document(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise BundleError(f"no model bundle at {path} (folder not found)")
    if not path.is_dir():
        raise BundleError(f"{path} is not a model bundle (a bundle is a folder with {CONFIG_FILE})")
    cfg = path / CONFIG_FILE
    if not cfg.is_file():
        raise BundleError(f"{path} is not a wsls model bundle: {CONFIG_FILE} is missing")
    try:
        doc = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{cfg} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise BundleError(f"{cfg} is not a wsls bundle description (no 'models')")
    fmt = doc.get("format")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(
            f"{path} is a bundle of format {fmt}; this wsls ({wsls.__version__}) reads format "
            f"{BUNDLE_FORMAT}"
        )
    written_by = str(doc.get("wsls_version", "unknown"))
    if _major_minor(written_by) != _major_minor(wsls.__version__):
        here = ".".join(_major_minor(wsls.__version__))
        raise BundleError(
            f"{path} was written by wsls {written_by}; this is wsls {wsls.__version__} and "
            f"bundles load only within the same major.minor version ({here}.x)"
        )
    return doc


def _check_modalities(config: Mapping[str, Any], provided: Iterable[str] | None) -> None:
    if provided is None:
        return
    from wsls.io.modalities import normalise_modalities

    needed = normalise_modalities(list(config.get("modalities") or ()))
    if not needed:
        raise BundleError("the bundle's config lists no modalities, so they cannot be checked")
    have = set(normalise_modalities(list(provided)))
    missing = [m for m in needed if m not in have]
    if missing:
        raise BundleError(
            f"bundle needs modalities {', '.join(needed)}; missing: {', '.join(missing)}"
        )


def _load_weights(path: Path, name: str, entry: Any) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    file = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(file, str) or not _NAME.match(file):
        raise BundleError(f"{path}: no valid weights entry for model '{name}' in {CONFIG_FILE}")
    weights_path = path / file
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: weights file {file} of model '{name}' is missing") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise BundleError(f"{weights_path}: checksum mismatch, the weights file is corrupt")
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{weights_path}: unreadable weights ({first})") from None


def _nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def _skeleton(
    path: Path, name: str, spec: Any, build_model: Callable[[dict[str, Any]], torch.nn.Module]
) -> torch.nn.Module:
    """The model of ``spec`` on the meta device: its shapes and size, nothing allocated."""
    if not isinstance(spec, dict):
        raise BundleError(f"{path}: the spec of model '{name}' in {CONFIG_FILE} is not a mapping")
    try:
        with torch.device("meta"):
            return build_model(dict(spec))
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise BundleError(
            f"{path}: model '{name}' cannot be built from its spec in {CONFIG_FILE} ({text})"
        ) from None


def _check_finite(path: Path, name: str, weights: Mapping[str, torch.Tensor]) -> None:
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise BundleError(
                f"{path}: model '{name}' has {bad} non-finite weights (NaN or Inf) in {key}: "
                "the training diverged or the file was damaged; retrain or restore the bundle"
            )


def load_bundle(
    path: str | Path,
    build_model: Callable[[dict[str, Any]], torch.nn.Module],
    *,
    required_modalities: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
    check_config: Callable[[dict[str, Any]], None] | None = None,
) -> Bundle:
    """Load a bundle written by :func:`save_bundle`.

    Nothing is allocated before it is known to fit: ``check_config`` validates the
    configuration before any weights are read; each model is first built on the meta device
    from its spec (its size and shapes, no memory) and compared with its weights file; only a
    model whose spec matches its finite weights is built for real.

    Args:
        path: the bundle folder.
        build_model: builds an (untrained) model from one of the saved specs.
        required_modalities: the modalities the caller can provide (aliases such as "T1ce"
            are accepted); the load fails if the bundle needs one that is not among them.
        device: where the models go.
        check_config: called with the saved configuration before any weights are read;
            raises :class:`BundleError` for a bad one.
    Returns:
        :class:`Bundle` with every model in eval mode on ``device``.
    Raises:
        BundleError: missing folder or files, another format or wsls major.minor version,
            missing modalities, a bad configuration, corrupt or non-finite weights, a spec
            that cannot be built or does not fit its weights (e.g. an edited width that would
            need terabytes).
    """
    from wsls.models.state import state_dict_mismatches

    path = Path(path)
    doc = _read_document(path)
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise BundleError(f"{path}: 'config' in {CONFIG_FILE} is not a mapping")
    if check_config is not None:
        check_config(config)
    _check_modalities(config, required_modalities)
    weights_doc = doc.get("weights") or {}
    models: dict[str, torch.nn.Module] = {}
    for name, spec in doc["models"].items():
        if not _NAME.match(str(name)):
            raise BundleError(f"{path}: invalid model name {name!r} in {CONFIG_FILE}")
        skeleton = _skeleton(path, name, spec, build_model)
        weights = _load_weights(path, name, weights_doc.get(name))
        needed, stored = _nbytes(skeleton.state_dict().values()), _nbytes(weights.values())
        if needed > 2 * stored + (1 << 20):
            raise BundleError(
                f"{path}: model '{name}' would need {_size_text(needed)} of weights by its spec "
                f"in {CONFIG_FILE}, but its weights file holds {_size_text(stored)}: the spec "
                "was edited or damaged; refusing to allocate it"
            )
        problems = state_dict_mismatches(weights, skeleton.state_dict())
        if problems:
            raise BundleError(
                f"{path}: weights of model '{name}' do not match its spec: {problems}"
            )
        _check_finite(path, name, weights)
        model = build_model(dict(spec))
        model.load_state_dict(weights, strict=True)
        models[name] = model.to(device).eval()
    return Bundle(
        config=config,
        models=models,
        path=path,
        specs={k: dict(v) for k, v in doc["models"].items()},
        wsls_version=str(doc.get("wsls_version", "")),
        torch_version=str(doc.get("torch_version", "")),
    )
