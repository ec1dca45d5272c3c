"""wsls.ops.attention_cam against its reference: values, gradients, dtypes, shapes, errors."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import DEVICES, HAS_CUDA, allocated_bytes, nbytes, skip_without_cuda
from wsls.ops import attention_cam, build_info, debug_checks, has_kernel, reference

SHAPES = [(2, 8, 5, 4, 3), (1, 3, 1, 1, 1), (3, 16, 7, 5, 3), (2, 24, 9, 1, 6), (4, 32, 8, 8, 8)]
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float16: dict(rtol=1e-2, atol=2e-3),
    torch.bfloat16: dict(rtol=2e-2, atol=1e-2),
}


def make_inputs(shape, dtype=torch.float32, device="cpu", seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    B, K = shape[:2]
    tensors = [
        torch.randn(shape, generator=g, dtype=torch.float64),
        torch.randn(K, generator=g, dtype=torch.float64) / K**0.5,
        torch.randn(1, generator=g, dtype=torch.float64),
        torch.randn(3, K, generator=g, dtype=torch.float64),
    ]
    return [t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in tensors]


def assert_matches_reference(inputs, fusion, tol):
    ours = attention_cam(*inputs, fusion=fusion)
    ref = reference.attention_cam(*inputs, fusion=fusion)
    for name, a, b in zip(ours._fields, ours, ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, **tol, msg=lambda m, n=name: f"{n}: {m}")
    return ours, ref


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fusion", ["mean", "geometric"])
@pytest.mark.parametrize("shape", SHAPES)
def test_values_match_reference(device, fusion, shape):
    skip_without_cuda(device)
    assert_matches_reference(make_inputs(shape, device=device), fusion, TOL[torch.float32])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(device, dtype):
    skip_without_cuda(device)
    inputs = make_inputs((3, 16, 6, 5, 4), dtype=dtype, device=device)
    ours, _ = assert_matches_reference(inputs, "mean", TOL[dtype])
    assert all(t.dtype == dtype for t in ours)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_match_reference(device, shape):
    skip_without_cuda(device)
    ours_in = make_inputs(shape, device=device, requires_grad=True)
    ref_in = [t.detach().clone().requires_grad_() for t in ours_in]
    weight = torch.randn(shape[0], device=device)
    (attention_cam(*ours_in).logits * weight).sum().backward()
    (reference.attention_cam(*ref_in).logits * weight).sum().backward()
    names = ("features", "cls_weight", "cls_bias", "att_weight")
    for name, a, b in zip(names, ours_in, ref_in, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fusion", ["mean", "geometric"])
def test_gradcheck_float64(device, fusion):
    skip_without_cuda(device)
    inputs = make_inputs((2, 5, 4, 3, 2), dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *x: attention_cam(*x, fusion=fusion).logits, inputs, eps=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    skip_without_cuda(device)
    for shape in [(2, 8, 5, 4, 3), (1, 3, 1, 1, 1)]:
        args = make_inputs(shape, device=device, requires_grad=True)
        torch.library.opcheck(torch.ops.wsls.attention_cam.default, (*args, "geometric"))
    features, cls_weight, cls_bias, att_weight = make_inputs((2, 8, 5, 4, 3), device=device)
    pooled = torch.ops.wsls.attention_cam(features, cls_weight, cls_bias, att_weight)[6]
    grad_logits = torch.randn(2, device=device)
    torch.library.opcheck(
        torch.ops.wsls.attention_cam_backward.default,
        (grad_logits, pooled, cls_weight, att_weight, 5, 4, 3),
    )


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device):
    skip_without_cuda(device)
    inputs = make_inputs((0, 4, 3, 2, 5), device=device, requires_grad=True)
    out = attention_cam(*inputs)
    assert out.logits.shape == (0,) and out.acam.shape == (0, 3, 2, 5)
    out.logits.sum().backward()
    assert inputs[0].grad.shape == inputs[0].shape
    assert torch.count_nonzero(inputs[1].grad) == 0 and torch.count_nonzero(inputs[2].grad) == 0


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    skip_without_cuda(device)
    base = make_inputs((3, 10, 6, 8, 5), device=device)
    features = base[0].permute(0, 1, 3, 2, 4).contiguous().permute(0, 1, 3, 2, 4)[:, ::2]
    assert not features.is_contiguous()
    cls_weight = base[1].repeat_interleave(2)[::4][:5].clone()
    att_weight = torch.randn(5, 3, device=device).t()  # (3, 5), transposed storage
    inputs = [features.requires_grad_(), cls_weight, base[2], att_weight]
    assert_matches_reference(inputs, "mean", TOL[torch.float32])
    attention_cam(*inputs).logits.sum().backward()
    ref = features.detach().contiguous().requires_grad_()
    reference.attention_cam(ref, cls_weight, base[2], att_weight).logits.sum().backward()
    torch.testing.assert_close(features.grad, ref.grad)


def test_acam_properties():
    features, cls_weight, cls_bias, att_weight = make_inputs((3, 8, 6, 5, 4))
    out = attention_cam(features, cls_weight, cls_bias, att_weight)
    flat = out.acam.flatten(1)
    assert torch.all(flat >= 0) and torch.allclose(flat.amax(1), torch.ones(3))
    for s in (out.scores_h, out.scores_w, out.scores_d):
        torch.testing.assert_close(s.sum(1), torch.ones(3))
    # all-negative CAM: ACAM stays zero instead of dividing by zero
    zero = attention_cam(features.abs(), -cls_weight.abs(), cls_bias, att_weight).acam
    assert torch.count_nonzero(zero) == 0
    # uniform attention (zero attention weights) and 'mean' fusion reduce ACAM to relu(CAM)/max
    uniform = attention_cam(features, cls_weight, cls_bias, torch.zeros_like(att_weight))
    torch.testing.assert_close(uniform.acam, reference.normalise_per_sample(uniform.cam.relu()))


def test_deterministic_cpu():
    inputs = make_inputs((2, 64, 12, 10, 9), requires_grad=True)
    first = attention_cam(*inputs)
    second = attention_cam(*inputs)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_torch_compile_fullgraph():
    inputs = make_inputs((2, 8, 5, 4, 3), requires_grad=True)

    def step(f, w, b, a):
        out = attention_cam(f, w, b, a, fusion="geometric")
        return out.logits.sigmoid().sum() + out.acam.mean().detach()

    compiled = torch.compile(step, fullgraph=True)
    loss = compiled(*inputs)
    grads = torch.autograd.grad(loss, inputs)
    ref_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    ref_out = reference.attention_cam(*ref_inputs, fusion="geometric")
    ref_loss = ref_out.logits.sigmoid().sum() + ref_out.acam.mean().detach()
    ref_grads = torch.autograd.grad(ref_loss, ref_inputs)
    torch.testing.assert_close(loss, ref_loss)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("shape", [(8, 256, 8, 8, 8), (1, 256, 30, 30, 20)])
def test_memory_bound(shape):
    """The forward allocates its outputs plus at most 10 %; the backward the feature gradient
    plus at most 10 % (no feature-sized intermediate)."""
    inputs = make_inputs(shape, requires_grad=True)
    allocated, out = allocated_bytes(lambda: torch.ops.wsls.attention_cam(*inputs))
    assert allocated <= 1.1 * nbytes(out), (allocated, nbytes(out))
    grad = torch.ones(shape[0])
    allocated, grads = allocated_bytes(
        lambda: torch.ops.wsls.attention_cam_backward(
            grad, out[6], inputs[1], inputs[3], *shape[2:]
        )
    )
    assert allocated <= 1.1 * nbytes(grads[:1]), (allocated, nbytes(grads[:1]))


def test_build_has_both_backends():
    info = build_info()
    assert has_kernel("attention_cam", "CPU") and has_kernel("attention_cam_backward", "CPU")
    assert has_kernel("attention_cam", "CUDA") == info["cuda"]
    assert has_kernel("attention_cam_backward", "CUDA") == info["cuda"]


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    for shape in SHAPES + [(1, 256, 30, 30, 20)]:
        cpu = make_inputs(shape, dtype=dtype, requires_grad=True)
        gpu = [t.detach().cuda().requires_grad_() for t in cpu]
        out_cpu, out_gpu = attention_cam(*cpu), attention_cam(*gpu)
        for a, b in zip(out_cpu, out_gpu, strict=True):
            torch.testing.assert_close(a, b.cpu(), **TOL[dtype])
        out_cpu.logits.sum().backward()
        out_gpu.logits.sum().backward()
        for a, b in zip(cpu, gpu, strict=True):
            torch.testing.assert_close(a.grad, b.grad.cpu(), **TOL[dtype])


# --- errors: one line, naming the argument ---------------------------------------------------


def _error(fn) -> str:
    with pytest.raises(RuntimeError) as info:
        fn()
    message = str(info.value).splitlines()[0]
    return message


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda f, w, b, a: (f[0], w, b, a), "features must be (B, K, H, W, D)"),
        (lambda f, w, b, a: (f, w[:-1], b, a), "cls_weight must have K = 8"),
        (lambda f, w, b, a: (f, w[None], b, a), "cls_weight must be (K)"),
        (lambda f, w, b, a: (f, w, torch.zeros(2), a), "cls_bias must hold one value"),
        (lambda f, w, b, a: (f, w, b, a[:2]), "att_weight must be (3, K)"),
        (lambda f, w, b, a: (f, w, b, a[:, :-1]), "att_weight must be (3, K)"),
        (lambda f, w, b, a: (f, w.double(), b, a), "cls_weight has dtype Double but features"),
        (lambda f, w, b, a: (f.int(), w, b, a), "features must be float32, float64"),
        (lambda f, w, b, a: (f[:, :, :0], w, b, a), "non-empty spatial grid"),
        (lambda f, w, b, a: (f[:, :0], w[:0], b, a[:, :0]), "at least one channel"),
    ],
)
def test_bad_input_messages(mutate, expected):
    args = mutate(*make_inputs((2, 8, 5, 4, 3)))
    message = _error(lambda: attention_cam(*args))
    assert message.startswith("attention_cam: ") and expected in message, message


def test_unknown_fusion():
    message = _error(lambda: attention_cam(*make_inputs((2, 8, 5, 4, 3)), fusion="max"))
    assert "fusion must be 'mean' or 'geometric', got 'max'" in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_features(bad):
    f, w, b, a = make_inputs((2, 8, 5, 4, 3))
    f[1, 3, 2, 1, 0] = bad
    assert "features contain NaN or Inf" in _error(lambda: attention_cam(f, w, b, a))
    w2 = w.clone()
    w2[0] = float("nan")
    assert "cls_weight contains NaN or Inf" in _error(
        lambda: attention_cam(f.nan_to_num(), w2, b, a)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_non_finite_features_and_debug_checks(device):
    """The CPU always raises (it reads the logits in host memory); CUDA under debug checks only
    (reading them synchronises), giving non-finite logits without them."""
    skip_without_cuda(device)
    f, w, b, a = make_inputs((2, 8, 5, 4, 3), device=device)
    f[1, 3, 2, 1, 0] = float("nan")
    for checks in (True, False):
        with debug_checks(checks):
            if device == "cpu" or checks:
                assert "features contain NaN or Inf" in _error(lambda: attention_cam(f, w, b, a))
            else:
                logits = attention_cam(f, w, b, a).logits
                assert torch.isfinite(logits[0]) and not torch.isfinite(logits[1])


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_device_mismatch_message():
    f, w, b, a = make_inputs((2, 8, 5, 4, 3))
    message = _error(lambda: attention_cam(f.cuda(), w, b.cuda(), a.cuda()))
    assert "cls_weight is on cpu but features is on cuda" in message
