"""The op entries never synchronise with the host (mask_nms excepted, once: its output size).

CPU: the Python wrappers are run with every host-reading Tensor method patched to raise, and the
C++ entries under the profiler, which records every ATen op they call (nested ones too): none of
the ops that read device memory on the host (.item(), nonzero, ...) may appear. The C++ CPU
kernels read their data through pointers, which is no synchronisation there, and the glue they
share with CUDA (checks, sorting, ids, centring) is tensor ops whose sizes come from the shapes,
so what the profiler sees on the CPU is what the CUDA path runs. CUDA: each op is captured in a
CUDA graph and replayed on new inputs of the same shapes, and run eagerly under
``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from tests.helpers import HAS_CUDA
from wsls.ops import (
    affinity_grow,
    attention_cam,
    candidate_scores,
    debug_checks,
    debug_checks_enabled,
    mask_nms,
    pack_masks,
    pairwise_affinity_loss,
    union_masks,
    unpack_masks,
)

# ATen ops that read device memory on the host, or whose output size depends on tensor values
# (so that CUDA must wait for the device to learn it).
SYNC_OPS = {
    "aten::item",
    "aten::_local_scalar_dense",
    "aten::is_nonzero",
    "aten::equal",
    "aten::allclose",
    "aten::nonzero",
    "aten::argwhere",
    "aten::masked_select",
    "aten::unique",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::bincount",
    "aten::histc",
    "aten::repeat_interleave",
}

# Tensor methods that bring values to the host.
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


def _inputs(device: str, seed: int = 0) -> dict:
    """Small inputs of every op, on device."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 6, 5, 4, 3, generator=g)
    emb = torch.randn(3, 6, 5, 70, generator=g)
    masks = torch.rand(4, 6, 5, 70, generator=g) < 0.5
    labels = torch.randint(-1, 3, (200,), generator=g)
    return {
        "features": features.to(device),
        "cls_weight": (torch.randn(6, generator=g) / 3).to(device),
        "cls_bias": torch.randn(1, generator=g).to(device),
        "att_weight": torch.randn(3, 6, generator=g).to(device),
        "emb": emb.to(device),
        "seeds": torch.tensor([[0, 0, 0], [5, 4, 69], [2, 1, 64], [3, 3, 10]], device=device),
        "mask": (torch.rand(6, 5, 70, generator=g) < 0.9).to(device),
        "masks": masks.to(device),
        "acam": torch.rand(6, 5, 70, generator=g).to(device),
        "scores": torch.rand(4, generator=g).to(device),
        "points": torch.randn(200, 8, generator=g).to(device),
        "labels": labels.to(device),
        "groups": torch.randint(0, 3, (200,), generator=g).to(device),
    }


def _grad(fn, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn(x), x)
    return grad


# Each case: name -> fn(inputs) giving a tensor or a tuple of tensors; all the op entries that
# promise no synchronisation, forward and backward.
CASES = {
    "attention_cam": lambda t: tuple(
        attention_cam(t["features"], t["cls_weight"], t["cls_bias"], t["att_weight"], "geometric")
    ),
    "attention_cam_backward": lambda t: _grad(
        lambda f: attention_cam(f, t["cls_weight"], t["cls_bias"], t["att_weight"]).logits.sum(),
        t["features"],
    ),
    "pairwise_affinity_loss": lambda t: pairwise_affinity_loss(
        t["points"], t["labels"], t["groups"]
    ),
    "pairwise_affinity_loss_backward": lambda t: _grad(
        lambda e: pairwise_affinity_loss(e, t["labels"], t["groups"], "mean"), t["points"]
    ),
    "pairwise_affinity_loss_no_groups": lambda t: _grad(
        lambda e: pairwise_affinity_loss(e, t["labels"], None, "sum"), t["points"]
    ),
    "affinity_grow_6": lambda t: affinity_grow(t["emb"], t["seeds"], 0.3, 6, t["mask"]),
    "affinity_grow_26_packed": lambda t: (
        affinity_grow(t["emb"], t["seeds"], 0.3, 26, packed=True).words
    ),
    "affinity_grow_0": lambda t: affinity_grow(t["emb"], t["seeds"], 0.3, 0, t["mask"]),
    "candidate_scores": lambda t: (
        candidate_scores(t["masks"], t["acam"]),
        candidate_scores(pack_masks(t["masks"]), t["acam"]),
    ),
    "pack_unpack_union": lambda t: (
        unpack_masks(pack_masks(t["masks"])),
        union_masks(pack_masks(t["masks"])),
        union_masks(pack_masks(t["masks"]), torch.arange(0, 4, 2, device=t["masks"].device)),
    ),
}


def _leaves(out):
    return [x.detach() for x in torch.utils._pytree.tree_leaves(out)]


@contextlib.contextmanager
def _host_reads_raise(monkeypatch):
    def refuse(name):
        def method(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name}() called: a host synchronisation on CUDA")

        return method

    with monkeypatch.context() as m:
        for name in HOST_READS:
            m.setattr(torch.Tensor, name, refuse(name))
        yield


@pytest.mark.parametrize("name", sorted(CASES) + ["mask_nms"])
def test_python_wrappers_read_nothing_on_the_host(name, monkeypatch):
    """The wrappers, fake-free eager path included (autograd's setup and backward), call none
    of Tensor.item / tolist / cpu / numpy / bool / int / float / index. mask_nms too: its one
    synchronisation is in the CUDA glue, not in the wrapper."""
    t = _inputs("cpu")
    fn = CASES.get(name, lambda t: mask_nms(pack_masks(t["masks"]), t["scores"], 0.5))
    expected = fn(t)
    with _host_reads_raise(monkeypatch):
        got = fn(t)
    for a, b in zip(_leaves(got), _leaves(expected), strict=True):
        assert torch.equal(a, b)


def test_the_patch_catches_a_host_read(monkeypatch):
    """The guard itself: a wrapper calling .item() fails under it."""
    t = _inputs("cpu")
    with _host_reads_raise(monkeypatch), pytest.raises(AssertionError, match="Tensor.item"):
        pairwise_affinity_loss(t["points"], t["labels"]).item()


def _aten_ops(fn, t) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(t)
    return {e.name for e in prof.events()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cpu_entries_call_no_syncing_op(name):
    """The profiler sees every ATen op the C++ entries call, nested ones included (checked on
    an op the loss' glue must call): none of SYNC_OPS."""
    names = _aten_ops(CASES[name], _inputs("cpu"))
    assert not names & SYNC_OPS, sorted(names & SYNC_OPS)


def test_the_profiler_sees_the_glue_ops():
    """What makes the test above meaningful: ops called inside the C++ entries are recorded."""
    names = _aten_ops(CASES["pairwise_affinity_loss"], _inputs("cpu"))
    assert {"wsls::pairwise_affinity_loss", "aten::sort", "aten::cumsum"} <= names


def test_debug_checks_switch():
    start = debug_checks_enabled()
    with debug_checks(not start):
        assert debug_checks_enabled() is (not start)
        with debug_checks(start):
            assert debug_checks_enabled() is start
        assert debug_checks_enabled() is (not start)
    assert debug_checks_enabled() is start
    debug_checks(True)
    assert debug_checks_enabled()
    debug_checks(start)
    assert debug_checks_enabled() is start


# --- CUDA: graph capture and the sync debug mode -----------------------------------------------


@contextlib.contextmanager
def _sync_debug_error():
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_graph_capture(name):
    """Eager under sync debug mode 'error' (any synchronisation raises), then captured in a CUDA
    graph (where a synchronisation invalidates the capture) and replayed: the replay equals the
    eager result, and still does after new values are copied into the same input tensors (so
    nothing was planned on the host from the values at capture time)."""
    fn = CASES[name]
    t = _inputs("cuda")
    with debug_checks(False):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream, as torch recommends
            for _ in range(2):
                fn(t)
        torch.cuda.current_stream().wait_stream(side)
        with _sync_debug_error():
            eager = _leaves(fn(t))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static = _leaves(fn(t))
        graph.replay()
        torch.cuda.synchronize()
        for a, b in zip(static, eager, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for key, value in _inputs("cuda", seed=1).items():
            t[key].copy_(value)
        graph.replay()
        torch.cuda.synchronize()
        fresh = _leaves(fn(t))
        for a, b in zip(static, fresh, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_mask_nms_synchronises_once():
    """mask_nms' output size is the number of kept candidates: it synchronises (its docstring
    says so), and the sync debug mode catches it."""
    t = _inputs("cuda")
    packed = pack_masks(t["masks"])
    mask_nms(packed, t["scores"], 0.5)
    with _sync_debug_error(), pytest.raises(RuntimeError):
        mask_nms(packed, t["scores"], 0.5)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_debug_checks_synchronise():
    """Debug checks are the opt-in synchronisation: under them the sync debug mode fires."""
    t = _inputs("cuda")
    with debug_checks(True), _sync_debug_error(), pytest.raises(RuntimeError):
        pairwise_affinity_loss(t["points"], t["labels"], t["groups"])
