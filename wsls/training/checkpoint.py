"""Verified training checkpoints: one safetensors file, JSON state in its metadata, SHA-256.

Layout of a checkpoint file (a standard safetensors file, readable by any safetensors tool):

- tensors ``model.<name>`` (the model's state_dict) and ``optim.<param index>.<name>`` (the
  optimizer's per-parameter tensors, e.g. Adam's ``exp_avg``);
- metadata ``wsls_checkpoint_version`` (:data:`FORMAT_VERSION`), ``wsls_checkpoint`` (a JSON
  document: epoch, step, loader and RNG states, history, config, the optimizer's
  hyper-parameters...) and ``sha256``: the digest of the JSON text and of every tensor's name,
  dtype, shape and bytes, so truncation, bit flips and edits are all detected.

Loading never unpickles anything. Every failure is a :class:`CheckpointError` whose message is
one line naming the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wsls.errors import UserError
from wsls.io.atomic import atomic_write_bytes
from wsls.models.state import state_dict_mismatches

FORMAT_VERSION = 1
_META_STATE = "wsls_checkpoint"
_META_VERSION = "wsls_checkpoint_version"
_META_SHA = "sha256"
_MODEL = "model."
_OPTIM = "optim."


class CheckpointError(UserError):
    """A checkpoint that cannot be used: missing, truncated, corrupt, of another format
    version, or for another model. The message is one line and names the file."""


@dataclass
class Checkpoint:
    """A verified checkpoint in memory.

    Attributes:
        path: the file it was read from.
        model_state: the model's state_dict (CPU tensors).
        optimizer_state: a ``torch.optim.Optimizer.state_dict()`` or None.
        state: everything else (JSON values).
    """

    path: Path
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    state: dict[str, Any]


def _digest(state_text: str, tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    h.update(state_text.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str:
    """JSON text of a checkpoint/config document (tuples become lists, numpy scalars numbers).

    NaN and infinities are kept (Python's JSON extension) since losses can diverge.
    """
    return json.dumps(value, default=_json_default, sort_keys=True, allow_nan=True)


def flatten_optimizer(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors and a JSON document."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state_dict["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [dict(group) for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: Mapping[str, torch.Tensor], doc: Mapping[str, Any]) -> dict:
    """The inverse of :func:`flatten_optimizer` (tuples come back as lists; see
    :func:`match_optimizer_types`)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key[len(_OPTIM) :].split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in doc.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": [dict(g) for g in doc["param_groups"]]}


def match_optimizer_types(saved: dict, optimizer: torch.optim.Optimizer) -> dict:
    """Give the saved hyper-parameters the types of the live optimizer's (JSON has no tuple)."""
    for saved_group, live_group in zip(saved["param_groups"], optimizer.param_groups, strict=False):
        for key, live in live_group.items():
            if (
                key != "params"
                and isinstance(live, tuple)
                and isinstance(saved_group.get(key), list)
            ):
                saved_group[key] = tuple(saved_group[key])
    return saved


def save_checkpoint(
    path: str | Path,
    model_state: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    optimizer_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename).

    Args:
        path: destination file (conventionally ``*.ckpt``).
        model_state: the model's state_dict.
        state: JSON-serialisable document (epoch, step, loader state, RNG states, history...).
        optimizer_state: an optimizer's state_dict, or None.
    Returns:
        The path written.
    """
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for name, t in model_state.items():
        tensors[_MODEL + name] = t
    doc = dict(state)
    if optimizer_state is not None:
        optim_tensors, doc["optimizer"] = flatten_optimizer(optimizer_state)
        tensors.update(optim_tensors)
    # own, contiguous CPU copies: safetensors refuses shared storage (tied weights)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    text = to_json(doc)
    metadata = {
        "format": "pt",
        _META_VERSION: str(FORMAT_VERSION),
        _META_STATE: text,
        _META_SHA: _digest(text, tensors),
    }
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def _header(data: bytes, path: Path) -> dict[str, Any]:
    if len(data) < 8:
        raise CheckpointError(f"{path}: not a checkpoint (file of {len(data)} bytes, truncated?)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(f"{path}: truncated checkpoint (header cut short)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a wsls checkpoint (unreadable header)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a wsls checkpoint (unreadable header)")
    return header


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint.

    Raises:
        CheckpointError: missing file, truncation, checksum mismatch, another format version.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror})") from None
    meta = _header(data, path).get("__metadata__") or {}
    version = meta.get(_META_VERSION)
    if version is None or _META_STATE not in meta:
        raise CheckpointError(f"{path}: not a wsls checkpoint (no wsls metadata)")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: checkpoint format version {version}, this wsls reads version {FORMAT_VERSION}"
        )
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first})") from None
    text = meta[_META_STATE]
    if _digest(text, tensors) != meta.get(_META_SHA):
        raise CheckpointError(f"{path}: checksum mismatch, the checkpoint is corrupt or was edited")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: corrupt checkpoint state (invalid JSON)") from None
    model_state = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    optim_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPTIM)}
    optimizer_doc = doc.pop("optimizer", None)
    optimizer_state = None
    if optimizer_doc is not None:
        optimizer_state = unflatten_optimizer(optim_tensors, optimizer_doc)
    return Checkpoint(path, model_state, optimizer_state, doc)


def check_model_state(
    model_state: Mapping[str, torch.Tensor], model: torch.nn.Module, path: str | Path
) -> None:
    """Refuse weights that do not fit ``model`` (missing/unexpected keys, other shapes).

    Raises:
        CheckpointError: one line naming the file and the first differences.
    """
    problems = state_dict_mismatches(model_state, model.state_dict())
    if problems:
        raise CheckpointError(f"{path}: checkpoint is for another model: {problems}")


def restore_training_state(
    path: Path, task_name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> Checkpoint:
    """Load a verified checkpoint of task ``task_name`` into ``model`` and ``optimizer``.

    Raises:
        CheckpointError: another task's checkpoint, weights or optimizer state that do not fit.
    """
    ckpt = load_checkpoint(path)
    saved_task = ckpt.state.get("task")
    if saved_task != task_name:
        raise CheckpointError(f"{path}: checkpoint of task {saved_task!r}, not {task_name!r}")
    check_model_state(ckpt.model_state, model, path)
    model.load_state_dict(ckpt.model_state)
    if ckpt.optimizer_state is not None:
        try:
            optimizer.load_state_dict(match_optimizer_types(ckpt.optimizer_state, optimizer))
        except (ValueError, KeyError, RuntimeError, IndexError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{path}: optimizer state does not fit ({first})") from None
    return ckpt
