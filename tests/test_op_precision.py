"""float16 / bfloat16 kernels against a float64 reference, judged by PyTorch's own error in the
same dtype (the flash-attention rule): err(ours) <= 2 * err(torch in that dtype), where err is
||out - ref64|| / ||ref64|| over a whole output (values and gradients), ref64 the float64
reference on the same (already rounded) inputs, and "torch in that dtype" the plain PyTorch
reference of wsls.ops.reference run without its float32 upcast. Outputs are rounded to the
dtype, so an error under the dtype's machine epsilon always passes (the floor); where torch's
own run overflows (float16 sums of many pair losses), that floor is the bound.

The CUDA cases also compare each low-precision CUDA kernel with its CPU twin (both accumulate
in float32). They run in `make gpu-check` (pytest -m cuda); the CPU cases run everywhere.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import DEVICES, HAS_CUDA, skip_without_cuda
from tests.test_op_attention_cam import make_inputs as cam_inputs
from tests.test_op_pairwise_loss import loss_and_grad
from tests.test_op_pairwise_loss import make_inputs as loss_inputs
from wsls.ops import attention_cam, pairwise_affinity_loss, reference

LOW = [torch.float16, torch.bfloat16]


def rel_err(out: torch.Tensor, ref64: torch.Tensor) -> float:
    """||out - ref64|| / ||ref64||; inf where out holds NaN or Inf."""
    out, ref64 = out.detach().double().cpu(), ref64.detach().double().cpu()
    if not torch.isfinite(out).all():
        return float("inf")
    scale = ref64.norm().item()
    return (out - ref64).norm().item() / (scale if scale > 0 else 1.0)


def assert_within_torch_error(name, ours, torch_lp, ref64, dtype) -> tuple[float, float]:
    e_ours, e_torch = rel_err(ours, ref64), rel_err(torch_lp, ref64)
    eps = torch.finfo(dtype).eps
    bound = max(2 * e_torch, eps) if e_torch < float("inf") else eps
    assert e_ours <= bound, f"{name}: error {e_ours:.2e} > 2 x torch's {e_torch:.2e} ({dtype})"
    return e_ours, e_torch


@pytest.fixture
def torch_in_dtype(monkeypatch):
    """The references compute in the input's own dtype (no float32 upcast) while active."""
    monkeypatch.setattr(reference, "_compute_dtype", lambda t: t.dtype)


def cam_values_and_grads(fn, inputs, weight):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    grads = torch.autograd.grad((out.logits.float() * weight).sum(), inputs)
    return [t.detach() for t in out], list(grads)


CAM_OUTPUTS = ("logits", "cam", "acam", "scores_h", "scores_w", "scores_d")
CAM_GRADS = ("d features", "d cls_weight", "d cls_bias", "d att_weight")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("shape", [(3, 16, 6, 5, 4), (2, 64, 12, 10, 8)])
def test_attention_cam_error_within_twice_torch(device, dtype, shape, torch_in_dtype):
    skip_without_cuda(device)
    inputs = cam_inputs(shape, dtype, device)
    weight = torch.randn(shape[0], generator=torch.Generator().manual_seed(1)).to(device)
    ref64 = cam_values_and_grads(
        reference.attention_cam, [t.double() for t in inputs], weight.double()
    )
    torch_lp = cam_values_and_grads(reference.attention_cam, inputs, weight)  # in dtype
    ours = cam_values_and_grads(attention_cam, inputs, weight)
    for part in range(2):
        names = CAM_OUTPUTS if part == 0 else CAM_GRADS
        for name, a, b, r in zip(names, ours[part], torch_lp[part], ref64[part], strict=True):
            assert a.dtype == dtype, name
            assert_within_torch_error(name, a, b, r, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("n, k", [(300, 8), (700, 16)])
def test_pairwise_loss_error_within_twice_torch(device, dtype, n, k, torch_in_dtype):
    skip_without_cuda(device)
    emb, labels, groups = loss_inputs(n, k, "groups", dtype, device)
    ref64 = loss_and_grad(
        reference.pairwise_affinity_loss, emb.double(), labels, groups, "balanced"
    )
    torch_lp = loss_and_grad(reference.pairwise_affinity_loss, emb, labels, groups, "balanced")
    ours = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, "balanced")
    for i, name in enumerate(("loss", "d embeddings")):
        assert ours[i].dtype == dtype, name
        assert_within_torch_error(name, ours[i], torch_lp[i], ref64[i], dtype)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", LOW)
def test_cuda_low_precision_matches_cpu_twin(dtype):
    """Both kernels accumulate in float32 and round once: at most about one ulp apart."""
    eps = torch.finfo(dtype).eps
    for shape in [(3, 16, 6, 5, 4), (1, 256, 30, 30, 20)]:
        inputs = cam_inputs(shape, dtype, "cpu")
        weight = torch.randn(shape[0])
        cpu = cam_values_and_grads(attention_cam, inputs, weight)
        gpu = cam_values_and_grads(attention_cam, [t.cuda() for t in inputs], weight.cuda())
        for part in range(2):
            names = CAM_OUTPUTS if part == 0 else CAM_GRADS
            for name, a, b in zip(names, gpu[part], cpu[part], strict=True):
                assert rel_err(a, b) <= eps, f"attention_cam {shape} {name}"
    emb, labels, groups = loss_inputs(1500, 16, "groups", dtype, "cpu")
    cpu = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, "balanced")
    gpu = loss_and_grad(
        pairwise_affinity_loss, emb.cuda(), labels.cuda(), groups.cuda(), "balanced"
    )
    for name, a, b in zip(("loss", "d embeddings"), gpu, cpu, strict=True):
        assert rel_err(a, b) <= eps, f"pairwise_affinity_loss {name}"
