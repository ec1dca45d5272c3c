"""Where a process runs: torchrun's environment and device strings, read in one place."""

from __future__ import annotations

import pytest
import torch

from wsls.errors import ConfigError
from wsls.runtime import placement, resolve_device


def test_placement_without_and_with_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert placement() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert placement() == (3, 4, 3)  # LOCAL_RANK defaults to RANK (one node)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert placement().local_rank == 1


@pytest.mark.parametrize(
    "env, match",
    [({"RANK": "4", "WORLD_SIZE": "2"}, "RANK=4, WORLD_SIZE=2"), ({"RANK": "x"}, "RANK")],
)
def test_bad_torchrun_environment_is_one_line(monkeypatch, env, match):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=match):
        placement()


def test_device_strings(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(None, "auto") == torch.device("cpu")
    assert resolve_device("cpu", "auto") == torch.device("cpu")
    for bad, match in (("tpu", "not a device torch knows"), ("cuda", "no CUDA device")):
        with pytest.raises(ConfigError, match=match):
            resolve_device(bad)
    with pytest.raises(ConfigError, match="wsls runs on cpu or cuda"):
        resolve_device("meta")
