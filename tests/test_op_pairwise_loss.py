"""wsls.ops.pairwise_affinity_loss against its references: values, gradients, extremes, dtypes,
compile, determinism, memory and errors."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import DEVICES, HAS_CUDA, allocated_bytes, skip_without_cuda
from wsls.ops import build_info, debug_checks, has_kernel, pairwise_affinity_loss, reference

REDUCTIONS = ["balanced", "mean", "sum"]
CASES = ["plain", "groups", "ignored"]  # ignored: some labels < 0; groups: 3 groups, ignored too


def make_inputs(n, k, case="plain", dtype=torch.float64, device="cpu", seed=0, classes=2):
    g = torch.Generator().manual_seed(seed)
    emb = (torch.randn(n, k, generator=g, dtype=torch.float64) * 0.6).to(device, dtype)
    labels = torch.randint(0, classes, (n,), generator=g)
    groups = None
    if case in ("ignored", "groups"):
        labels[torch.rand(n, generator=g) < 0.2] = -1
    if case == "groups":
        groups = torch.randint(0, 3, (n,), generator=g).to(device)
    return emb, labels.to(device), groups


def loss_and_grad(fn, emb, labels, groups, reduction, eps=1e-6):
    x = emb.detach().clone().requires_grad_()
    loss = fn(x, labels, groups, reduction, eps)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


def assert_grad_close(ours, ref, rtol):
    """Gradients agree to rtol relative to the largest entry (entries near 0 have no relative
    accuracy to speak of)."""
    scale = ref.abs().max().item() or 1.0
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float64_matches_reference(device, case, reduction):
    skip_without_cuda(device)
    emb, labels, groups = make_inputs(67, 5, case, device=device)
    ours = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, reduction)
    ref = loss_and_grad(reference.pairwise_affinity_loss, emb, labels, groups, reduction)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-10, atol=1e-12)
    assert_grad_close(ours[1], ref[1], 1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float32_n2048_within_1e4_of_reference(device, case, reduction):
    """float32 kernels against the float64 dense reference on N = 2048, K = 16."""
    skip_without_cuda(device)
    emb, labels, groups = make_inputs(2048, 16, case, dtype=torch.float32, device=device, classes=3)
    ref = loss_and_grad(reference.pairwise_affinity_loss, emb.double(), labels, groups, reduction)
    ours = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, reduction)
    assert ours[0].dtype == torch.float32 and ours[1].dtype == torch.float32
    torch.testing.assert_close(ours[0].double(), ref[0], rtol=1e-4, atol=0)
    assert_grad_close(ours[1].double(), ref[1], 1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_float64(device, reduction):
    skip_without_cuda(device)
    emb, labels, groups = make_inputs(11, 3, "groups", device=device, seed=1)
    labels[:4] = torch.tensor([0, 1, 0, 1])  # enough labelled rows in any case
    x = emb.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda e: pairwise_affinity_loss(e, labels, groups, reduction), (x,), eps=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("k", [1, 3, 8, 16, 17, 32, 40, 64, 70])
def test_feature_counts(k):
    """Every padding of K (CPU vectors of 8; CUDA specialisations 16/32/64 and generic), float32
    against the float64 reference of the same inputs. With K = 1 many pairs of different classes
    nearly coincide (gradient ~ 1 / d2): the recomputation from differences keeps them within
    1e-4 (the plain dot-product form was 1e-2 off, the float32 dense reference 7e-3)."""
    emb, labels, groups = make_inputs(150, k, "groups", dtype=torch.float32, seed=k)
    for shift in (0.0, 3.0):  # centred and off-centre embeddings
        x = emb + shift
        ours = loss_and_grad(pairwise_affinity_loss, x, labels, groups, "balanced")
        ref = loss_and_grad(
            reference.pairwise_affinity_loss, x.double(), labels, groups, "balanced"
        )
        torch.testing.assert_close(ours[0].double(), ref[0], rtol=1e-6, atol=0)
        assert_grad_close(ours[1].double(), ref[1], 1e-4)


@pytest.mark.parametrize("n", [1, 2, 7, 127, 128, 129, 300])
def test_sizes_around_the_tiles(n):
    emb, labels, groups = make_inputs(n, 4, "plain", seed=n)
    for reduction in REDUCTIONS:
        ours = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, reduction)
        ref = loss_and_grad(reference.pairwise_affinity_loss, emb, labels, groups, reduction)
        torch.testing.assert_close(ours[0], ref[0], rtol=1e-10, atol=1e-12)
        assert_grad_close(ours[1], ref[1], 1e-9)


def test_chunked_reference_matches_dense():
    emb, labels, groups = make_inputs(300, 6, "groups", seed=3)
    for reduction in REDUCTIONS:
        dense = loss_and_grad(reference.pairwise_affinity_loss, emb, labels, groups, reduction)
        chunked = loss_and_grad(
            lambda *a: reference.pairwise_affinity_loss_chunked(*a, chunk_elements=7000),
            emb,
            labels,
            groups,
            reduction,
        )
        torch.testing.assert_close(chunked[0], dense[0])
        torch.testing.assert_close(chunked[1], dense[1])


# --- extremes (issue item 2) -------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coincident_different_class_pair_is_clamped(device, dtype):
    """d2 = 0 between different classes: loss -log(eps) per ordered pair, finite, zero gradient
    (the clamp holds); and just outside the clamp the gradient is -1/sinh(d2)."""
    skip_without_cuda(device)
    emb = torch.tensor([[0.5, -1.0], [0.5, -1.0]], dtype=dtype, device=device)
    labels = torch.tensor([0, 1], device=device)
    for eps in (1e-6, 1e-3):
        loss, grad = loss_and_grad(pairwise_affinity_loss, emb, labels, None, "sum", eps)
        torch.testing.assert_close(
            loss.double().cpu(),
            torch.tensor(-2 * math.log(eps), dtype=torch.float64),
            rtol=1e-6,
            atol=0,
        )
        assert torch.count_nonzero(grad) == 0
    d = 0.1  # d2 = 0.01: tanh(0.005) > eps
    emb = torch.tensor([[0.0], [d]], dtype=dtype, device=device)
    loss, grad = loss_and_grad(pairwise_affinity_loss, emb, labels, None, "sum")
    expected_loss = -2 * math.log(math.tanh(d * d / 2))
    expected_grad = 2 * (-1 / math.sinh(d * d)) * 2 * (0 - d)  # both orders, d d2 / d f_0
    torch.testing.assert_close(
        loss.double().cpu(), torch.tensor(expected_loss, dtype=torch.float64), rtol=1e-5, atol=0
    )
    torch.testing.assert_close(
        grad.double().cpu(),
        torch.tensor([[expected_grad], [-expected_grad]], dtype=torch.float64),
        rtol=1e-4,
        atol=0,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_far_same_class_pair_does_not_overflow(device, dtype):
    """d2 = 10^4 for the same class: softplus(d2) - log 2 = d2 - log 2, gradient sigmoid = 1."""
    skip_without_cuda(device)
    emb = torch.tensor([[0.0, 0.0], [60.0, 80.0]], dtype=dtype, device=device)
    labels = torch.tensor([3, 3], device=device)
    loss, grad = loss_and_grad(pairwise_affinity_loss, emb, labels, None, "mean")
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(
        loss.double().cpu(), torch.tensor(1e4 - math.log(2), dtype=torch.float64), rtol=1e-6, atol=0
    )
    # d/df_0 of the mean over the 2 ordered pairs: sigmoid(d2) * 2 (f_0 - f_1) = (-120, -160)
    expected = torch.tensor([[-120.0, -160.0], [120.0, 160.0]], dtype=torch.float64)
    torch.testing.assert_close(grad.double().cpu(), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "labels, groups",
    [
        ([5], None),  # N = 1
        ([-1, -1, -1, -1], None),  # all ignored
        ([0, -1, -1, -1], None),  # one labelled row
        ([0, 1, 0, 1], [0, 1, 2, 3]),  # every group of one row
        ([0, 1, -1, 1], [0, 1, 0, 2]),  # groups of one labelled row
    ],
)
def test_no_valid_pair_gives_zero_and_zero_gradient(device, labels, groups):
    skip_without_cuda(device)
    labels = torch.tensor(labels, device=device)
    groups = None if groups is None else torch.tensor(groups, device=device)
    emb = torch.randn(len(labels), 3, device=device, dtype=torch.float64)
    for reduction in REDUCTIONS:
        loss, grad = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, reduction)
        assert loss.item() == 0.0 and torch.count_nonzero(grad) == 0
        ref = reference.pairwise_affinity_loss(emb, labels, groups, reduction)
        assert ref.item() == 0.0


@pytest.mark.parametrize("device", DEVICES)
def test_empty_input(device):
    skip_without_cuda(device)
    emb = torch.empty(0, 4, device=device, requires_grad=True)
    labels = torch.empty(0, dtype=torch.long, device=device)
    loss = pairwise_affinity_loss(emb, labels)
    assert loss.shape == () and loss.item() == 0.0
    loss.backward()
    assert emb.grad.shape == (0, 4)


@pytest.mark.parametrize("device", DEVICES)
def test_one_class_only(device):
    """All labelled rows of one class: 'balanced' averages the same-class pairs alone (equal to
    'mean'); likewise when every pair is of different classes."""
    skip_without_cuda(device)
    emb, _, _ = make_inputs(40, 4, device=device)
    for labels in (torch.zeros(40, dtype=torch.long), torch.arange(40)):
        labels = labels.to(device)
        balanced = pairwise_affinity_loss(emb, labels, reduction="balanced")
        mean = pairwise_affinity_loss(emb, labels, reduction="mean")
        torch.testing.assert_close(balanced, mean)
        torch.testing.assert_close(balanced, reference.pairwise_affinity_loss(emb, labels))


def test_labels_and_groups_are_ids_not_positions():
    """Arbitrary int64 ids (large, negative groups): only equality matters."""
    emb, labels, groups = make_inputs(90, 4, "groups", seed=5)
    relabelled = torch.where(labels >= 0, labels * 1_000_003 + 2**40, labels)
    regrouped = groups * -77 - 2**50
    ours = pairwise_affinity_loss(emb, relabelled, regrouped)
    torch.testing.assert_close(ours, pairwise_affinity_loss(emb, labels, groups))
    torch.testing.assert_close(ours, reference.pairwise_affinity_loss(emb, labels, groups))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_computes_in_float32(device, dtype):
    skip_without_cuda(device)
    emb, labels, groups = make_inputs(300, 8, "groups", device=device, dtype=dtype)
    loss, grad = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, "balanced")
    assert loss.dtype == dtype and grad.dtype == dtype
    ref = loss_and_grad(pairwise_affinity_loss, emb.float(), labels, groups, "balanced")
    torch.testing.assert_close(loss, ref[0].to(dtype))
    torch.testing.assert_close(grad, ref[1].to(dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "dtype, scale", [(torch.float32, 1e20), (torch.float32, 1e30), (torch.float64, 1e160)]
)
def test_huge_embeddings_never_give_nan(device, dtype, scale):
    """Finite embeddings so large that their squared norms overflow the accumulation type
    (float32 beyond about 1e19) once gave NaN (and negative losses): d2 is then taken from the
    differences, +Inf where it overflows too. Different classes that far apart: loss 0 and
    gradient 0, as exactly as the type can say; the same class: loss +Inf (its exact value
    exceeds the type) and the finite gradient of sum w d2, sigmoid(d2) being 1."""
    skip_without_cuda(device)
    unit = torch.randn(40, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    emb = (unit * scale).to(device, dtype)
    apart = torch.arange(40, device=device)
    loss, grad = loss_and_grad(pairwise_affinity_loss, emb, apart, None, "balanced")
    assert loss.item() == 0.0 and torch.count_nonzero(grad) == 0
    labels = torch.arange(40) % 2
    for reduction in REDUCTIONS:
        loss, grad = loss_and_grad(pairwise_affinity_loss, emb, labels.to(device), None, reduction)
        assert loss.item() == math.inf and torch.isfinite(grad).all(), reduction
        # d/df_p of sum over ordered same-class pairs of w d2 = 4 w sum_q (f_p - f_q)
        n_same, n_diff = reference.pair_counts(labels)
        w_same, _ = reference.pair_weights(n_same, n_diff, reduction)
        same = labels[:, None] == labels[None, :]
        diff = unit[:, None, :] - unit[None, :, :]
        expected = 4 * w_same * (diff * same[..., None]).sum(1)
        assert_grad_close(grad.double().cpu() / scale, expected, 1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_huge_offset_is_centred_away(device):
    """Rows sharing an offset of 1e160 (float64: squared norms 1e320 would overflow) and differing
    by 1e150: the centring removes the offset, and the loss and gradient are those of the
    centred rows."""
    skip_without_cuda(device)
    emb, labels, groups = make_inputs(60, 3, "groups", seed=2)
    huge = (emb * 1e150 + 1e160).to(device)
    ours = loss_and_grad(pairwise_affinity_loss, huge, labels.to(device), groups.to(device), "mean")
    centred = (emb * 1e150 + 1e160) - (emb * 1e150 + 1e160)[labels >= 0].mean(0)
    ref = loss_and_grad(reference.pairwise_affinity_loss, centred, labels, groups, "mean")
    assert torch.isfinite(ours[0]) and torch.isfinite(ours[1]).all()
    torch.testing.assert_close(ours[0].cpu(), ref[0], rtol=1e-6, atol=0)
    assert_grad_close(ours[1].cpu(), ref[1], 1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_loss_beyond_the_dtype_is_inf(device):
    """A finite loss of float64 magnitude beyond float32 (sum over 1560 pairs of d2 ~ 4e36) is
    +Inf in float32, as a cast gives (it was a 'cannot be converted' error)."""
    skip_without_cuda(device)
    unit = torch.randn(40, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = (torch.arange(40) % 2).to(device)
    loss64 = pairwise_affinity_loss((unit * 1e18).to(device), labels, reduction="sum")
    assert 3.5e38 < loss64.item() < math.inf
    loss32 = pairwise_affinity_loss(
        (unit * 1e18).to(device, torch.float32), labels, reduction="sum"
    )
    assert loss32.item() == math.inf


# --- op machinery ------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    skip_without_cuda(device)
    emb, labels, groups = make_inputs(50, 5, "groups", dtype=torch.float32, device=device)
    op = torch.ops.wsls.pairwise_affinity_loss.default
    torch.library.opcheck(op, (emb.requires_grad_(), labels, groups, "balanced", 1e-6))
    torch.library.opcheck(op, (emb, labels, None, "sum", 1e-3))
    grad = torch.tensor(0.7, device=device)
    torch.library.opcheck(
        torch.ops.wsls.pairwise_affinity_loss_backward.default,
        (grad, emb.detach(), labels, groups, "mean", 1e-6),
    )


def test_torch_compile_fullgraph():
    """Against the float64 dense reference: the float32 one is itself up to about 1e-5 (relative
    to the largest gradient entry) off for some weights, which made this test flaky; the compiled
    kernels stay within 4e-7."""
    emb, labels, groups = make_inputs(200, 6, "groups", dtype=torch.float32)
    weight = torch.randn(6, 6, generator=torch.Generator().manual_seed(10), dtype=torch.float32)

    def step(x, w):
        return pairwise_affinity_loss(torch.tanh(x @ w), labels, groups) * 2

    x = emb.clone().requires_grad_()
    compiled = torch.compile(step, fullgraph=True)
    loss = compiled(x, weight)
    (grad,) = torch.autograd.grad(loss, x)
    xr = emb.double().requires_grad_()
    ref_loss = reference.pairwise_affinity_loss(torch.tanh(xr @ weight.double()), labels, groups)
    (ref_grad,) = torch.autograd.grad(ref_loss * 2, xr)
    torch.testing.assert_close(loss.double(), ref_loss * 2, rtol=1e-6, atol=0)
    assert_grad_close(grad.double(), ref_grad, 1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_embeddings(device):
    skip_without_cuda(device)
    base, labels, groups = make_inputs(130, 12, "groups", dtype=torch.float32, device=device)
    strided = base.t().contiguous().t()[:, ::2]  # column-major storage and a column stride
    assert not strided.is_contiguous()
    ours = loss_and_grad(pairwise_affinity_loss, strided, labels, groups, "balanced")
    ref = loss_and_grad(pairwise_affinity_loss, strided.contiguous(), labels, groups, "balanced")
    torch.testing.assert_close(ours[0], ref[0])
    torch.testing.assert_close(ours[1], ref[1])
    assert ours[1].shape == strided.shape


@pytest.mark.parametrize("device", DEVICES)
def test_deterministic(device):
    skip_without_cuda(device)
    emb, labels, groups = make_inputs(3000, 16, "groups", dtype=torch.float32, device=device)
    first = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, "balanced")
    second = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, "balanced")
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_memory_is_linear():
    """No N x N intermediate: the forward allocates (frees ignored) about 4 copies of the N x K
    embeddings (gathered, padded, squared for the norms, transposed) and some N-vectors (the
    sort), the backward one more per thread (the per-thread gradients) plus the gradient itself;
    N^2 floats would be 256 MB here."""
    emb, labels, _ = make_inputs(8192, 32, "ignored", dtype=torch.float32)
    emb_bytes = emb.numel() * emb.element_size()
    allocated, _ = allocated_bytes(lambda: pairwise_affinity_loss(emb, labels))
    assert allocated <= 5 * emb_bytes + (1 << 20), allocated / emb_bytes
    grad = torch.tensor(1.0)
    allocated, _ = allocated_bytes(
        lambda: torch.ops.wsls.pairwise_affinity_loss_backward(
            grad, emb, labels, None, "balanced", 1e-6
        )
    )
    threads = torch.get_num_threads()
    assert allocated <= (6 + threads) * emb_bytes + (1 << 20), allocated / emb_bytes


def test_build_has_both_backends():
    info = build_info()
    for op in ("pairwise_affinity_loss", "pairwise_affinity_loss_backward"):
        assert has_kernel(op, "CPU")
        assert has_kernel(op, "CUDA") == info["cuda"]


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("k", [3, 16, 32, 64, 80])
def test_cuda_matches_cpu(k):
    for dtype in (torch.float32, torch.float64):
        emb, labels, groups = make_inputs(1500, k, "groups", dtype=dtype, seed=k)
        for reduction in REDUCTIONS:
            cpu = loss_and_grad(pairwise_affinity_loss, emb, labels, groups, reduction)
            gpu = loss_and_grad(
                pairwise_affinity_loss, emb.cuda(), labels.cuda(), groups.cuda(), reduction
            )
            rtol = 1e-5 if dtype == torch.float32 else 1e-10
            torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=rtol, atol=0)
            assert_grad_close(gpu[1].cpu(), cpu[1], rtol)


# --- errors: one line, naming the argument -----------------------------------------------------


def _error(fn) -> str:
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).splitlines()[0]


def _inputs():
    emb, labels, groups = make_inputs(10, 3, "groups", dtype=torch.float32)
    return emb, labels, groups


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda e, l, g: (e[0], l, g), "embeddings must be (N, K)"),
        (lambda e, l, g: (e[None], l, g), "embeddings must be (N, K)"),
        (lambda e, l, g: (e.int(), l, g), "embeddings must be float32, float64"),
        (lambda e, l, g: (e, l[:-1], g), "labels must have N = 10 entries"),
        (lambda e, l, g: (e, l[None], g), "labels must be (N)"),
        (lambda e, l, g: (e, l.int(), g), "labels must be int64, got Int"),
        (lambda e, l, g: (e, l.float(), g), "labels must be int64, got Float"),
        (lambda e, l, g: (e, l, g[:-2]), "groups must have N = 10 entries"),
        (lambda e, l, g: (e, l, g.int()), "groups must be int64"),
    ],
)
def test_bad_input_messages(mutate, expected):
    args = mutate(*_inputs())
    message = _error(lambda: pairwise_affinity_loss(*args))
    assert message.startswith("pairwise_affinity_loss: ") and expected in message, message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_embeddings(bad):
    emb, labels, groups = _inputs()
    emb[4, 1] = bad
    for checks in (False, True):  # the CPU always checks (host memory: no synchronisation)
        with debug_checks(checks):
            message = _error(lambda: pairwise_affinity_loss(emb, labels, groups))
            assert message == "pairwise_affinity_loss: embeddings contain NaN or Inf", message


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_non_finite_embeddings_cuda():
    """CUDA checks under debug checks only (the check synchronises); without them a non-finite
    embedding gives a non-finite loss."""
    emb, labels, groups = _inputs()
    emb[4, 1] = float("nan")
    labels[4] = 0  # a labelled row
    emb, labels, groups = emb.cuda(), labels.cuda(), groups.cuda()
    with debug_checks(True):
        message = _error(lambda: pairwise_affinity_loss(emb, labels, groups))
        assert message == "pairwise_affinity_loss: embeddings contain NaN or Inf", message
    with debug_checks(False):
        assert not torch.isfinite(pairwise_affinity_loss(emb, labels, groups)).item()


@pytest.mark.parametrize("shape", [(10, 0), (0, 0)])
def test_no_channel_is_refused(shape):
    """K = 0 is refused, as attention_cam and affinity_grow refuse it: an embedding without a
    channel is a mistake upstream, not a loss to compute."""
    labels = torch.zeros(shape[0], dtype=torch.int64)
    expected = (
        f"embeddings must have at least one channel (K > 0), got shape [{shape[0]}, {shape[1]}]"
    )
    message = _error(lambda: pairwise_affinity_loss(torch.empty(shape), labels))
    assert message == f"pairwise_affinity_loss: {expected}", message
    message = _error(
        lambda: torch.ops.wsls.pairwise_affinity_loss_backward(
            torch.ones(()), torch.empty(shape), labels, None, "balanced", 1e-6
        )
    )
    assert message == f"pairwise_affinity_loss_backward: {expected}", message


def test_unknown_reduction():
    message = _error(lambda: pairwise_affinity_loss(*_inputs(), reduction="max"))
    assert "reduction must be 'balanced', 'mean' or 'sum', got 'max'" in message


@pytest.mark.parametrize("eps", [0.0, -1e-6, 1.0, float("nan")])
def test_bad_eps(eps):
    message = _error(lambda: pairwise_affinity_loss(*_inputs(), eps=eps))
    assert "eps must be in (0, 1)" in message, message


def test_backward_op_messages():
    emb, labels, groups = _inputs()
    bad_grad = torch.ones(2)
    message = _error(
        lambda: torch.ops.wsls.pairwise_affinity_loss_backward(
            bad_grad, emb, labels, groups, "balanced", 1e-6
        )
    )
    assert message.startswith("pairwise_affinity_loss_backward: grad must hold one value")
    message = _error(
        lambda: torch.ops.wsls.pairwise_affinity_loss_backward(
            torch.ones(()), emb, labels[:3], groups, "balanced", 1e-6
        )
    )
    assert message.startswith("pairwise_affinity_loss_backward: labels must have N = 10")


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_device_mismatch_messages():
    emb, labels, groups = _inputs()
    message = _error(lambda: pairwise_affinity_loss(emb.cuda(), labels, groups.cuda()))
    assert "labels is on cpu but embeddings is on cuda" in message, message
    message = _error(lambda: pairwise_affinity_loss(emb.cuda(), labels.cuda(), groups))
    assert "groups is on cpu but embeddings is on cuda" in message, message
