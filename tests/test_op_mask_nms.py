"""wsls.ops.mask_nms and candidate_scores against their plain PyTorch references: identical kept
indices (ties, empty candidates, threshold edges), scores, fake kernels, errors."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import DEVICES, HAS_CUDA, skip_without_cuda
from tests.test_op_affinity_grow import blob_embeddings, lam
from wsls.ops import (
    affinity_grow,
    candidate_scores,
    debug_checks,
    mask_nms,
    pack_masks,
    reference,
)

THRESHOLDS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0]


def grown_candidates(seed=0, n=24, shape=(6, 16, 14, 70)):
    """Realistic candidates: regions grown from seeds in blobs (many overlap, some coincide),
    plus two empty ones and two copies (IoU 1)."""
    K, H, W, D = shape
    emb, labels = blob_embeddings(K, H, W, D, n_blobs=3, seed=seed)
    g = torch.Generator().manual_seed(seed)
    inside = labels.nonzero()
    seeds = inside[torch.randint(0, len(inside), (n,), generator=g)]
    masks = affinity_grow(emb, seeds, lam(3.0), 6)
    empty = torch.zeros((2, H, W, D), dtype=torch.bool)
    return torch.cat([masks, empty, masks[:2]]), labels


def random_scores(n, g, ties=True):
    scores = torch.rand(n, generator=g)
    if ties:  # a third of the scores shared with another candidate
        idx = torch.randperm(n, generator=g)
        scores[idx[: n // 3]] = scores[idx[n // 3 : 2 * (n // 3)]]
    return scores


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_reference(device, seed):
    skip_without_cuda(device)
    masks, _ = grown_candidates(seed)
    g = torch.Generator().manual_seed(seed)
    scores = random_scores(masks.shape[0], g)
    dev_masks = masks.to(device)
    packed = pack_masks(dev_masks)
    for tau in THRESHOLDS:
        expected = reference.mask_nms(masks, scores, tau)
        for m in (packed, dev_masks, packed.words):
            kept = mask_nms(m, scores.to(device), tau)
            assert kept.dtype == torch.int64 and kept.device == dev_masks.device
            assert kept.tolist() == expected.tolist(), tau
    # the edges: tau = 1 keeps everything (in score order), tau = 0 keeps pairwise disjoint ones
    order = torch.sort(scores, descending=True, stable=True).indices
    assert mask_nms(packed, scores.to(device), 1.0).tolist() == order.tolist()
    kept = mask_nms(packed, scores.to(device), 0.0).cpu()
    overlap = reference.mask_iou(masks[kept]) > 0
    assert torch.equal(overlap, torch.diag(masks[kept].flatten(1).any(1)))


@pytest.mark.parametrize("device", DEVICES)
def test_nms_small_cases(device):
    skip_without_cuda(device)
    z = torch.zeros(1, 2, 3, 70, dtype=torch.bool, device=device)
    a = z.clone()
    a[0, 1, 2, 60:70] = True  # crosses a word boundary
    b = z.clone()
    b[0, 1, 2, 62:70] = True  # IoU(a, b) = 0.8
    c = z.clone()
    c[0, 0, 0, 0] = True
    f = lambda *x: torch.tensor(x, dtype=torch.float32, device=device)  # noqa: E731
    masks = torch.cat([a, b, c, z])
    # S = 0 and S = 1
    assert mask_nms(masks[:0], f(), 0.5).tolist() == []
    assert mask_nms(masks[:1], f(0.3), 0.5).tolist() == [0]
    # IoU 0.8 against the threshold on either side, exactly at it (not > : kept)
    assert mask_nms(masks[:2], f(1, 2), 0.79).tolist() == [1]
    assert mask_nms(masks[:2], f(1, 2), 0.8).tolist() == [1, 0]
    assert mask_nms(masks[:2], f(2, 1), 0.5).tolist() == [0]
    # ties: lower index first, then suppression in that order
    assert mask_nms(masks[:2], f(1, 1), 0.5).tolist() == [0]
    assert mask_nms(masks, f(1, 1, 1, 1), 0.5).tolist() == [0, 2, 3]
    # empty candidates are kept wherever they rank (IoU 0 with everything, each other included)
    assert mask_nms(torch.cat([z, z, a]), f(3, 2, 1), 0.0).tolist() == [0, 1, 2]
    # identical masks: IoU 1, kept only at tau = 1
    assert mask_nms(torch.cat([a, a]), f(0, 1), 0.999).tolist() == [1]
    assert mask_nms(torch.cat([a, a]), f(0, 1), 1.0).tolist() == [1, 0]
    # scores in float64 and with -inf / inf are fine
    s = torch.tensor([-math.inf, math.inf, 0.0, 1.0], dtype=torch.float64, device=device)
    assert mask_nms(masks, s, 0.5).tolist() == [1, 3, 2]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_candidate_scores_match_reference(device, dtype):
    skip_without_cuda(device)
    masks, labels = grown_candidates(3)
    acam = (labels > 0).double() * torch.rand(labels.shape, generator=torch.Generator())
    acam = acam.to(dtype)
    expected = reference.candidate_scores(masks, acam)
    dev_masks = masks.to(device)
    for m in (pack_masks(dev_masks), dev_masks):
        ours = candidate_scores(m, acam.to(device))
        assert ours.dtype == dtype and ours.shape == (masks.shape[0],)
        tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else {}
        torch.testing.assert_close(ours.cpu(), expected, **tol)
    assert (ours[-4:-2] == 0).all()  # the empty candidates score 0
    empty = torch.zeros((0,) + tuple(labels.shape), dtype=torch.bool, device=device)
    assert candidate_scores(empty, acam.to(device)).shape == (0,)


@pytest.mark.parametrize("device", DEVICES)
def test_candidate_scores_ignore_bits_past_the_row(device):
    """Words from elsewhere may set the bits past D of a row's last word: they are not voxels
    (reading them would read the next row's map, or past the end of the last one)."""
    skip_without_cuda(device)
    masks, labels = grown_candidates(4)
    acam = torch.rand(labels.shape, generator=torch.Generator().manual_seed(1)).to(device)
    clean = pack_masks(masks.to(device))
    D = labels.shape[-1]
    dirty = clean.words.clone()
    dirty[..., -1] |= -(1 << (D % 64))  # every bit from D % 64 up
    expected = candidate_scores(clean, acam)
    torch.testing.assert_close(candidate_scores(type(clean)(dirty, clean.shape), acam), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_pipeline_on_packed(device):
    """grow -> score -> NMS -> union on packed masks, against the references end to end."""
    skip_without_cuda(device)
    emb, labels = blob_embeddings(6, 16, 14, 70, n_blobs=3, seed=4)
    acam = (labels > 0).float() * 0.9 + 0.05
    seeds = labels.nonzero()[::60]
    packed = affinity_grow(emb.to(device), seeds.to(device), lam(3.0), 26, packed=True)
    scores = candidate_scores(packed, acam.to(device))
    kept = mask_nms(packed, scores, 0.5)
    ref_masks = reference.affinity_grow(emb, seeds, lam(3.0), 26)
    ref_scores = reference.candidate_scores(ref_masks, acam)
    torch.testing.assert_close(scores.cpu(), ref_scores)
    ref_kept = reference.mask_nms(ref_masks, scores.cpu(), 0.5)
    assert kept.tolist() == ref_kept.tolist()
    assert torch.equal(packed.union(kept).cpu(), ref_masks[ref_kept].any(0))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    skip_without_cuda(device)
    masks, labels = grown_candidates(5, n=6)
    words = pack_masks(masks.to(device)).words
    g = torch.Generator().manual_seed(0)
    scores = random_scores(masks.shape[0], g).to(device)
    for tau in (0.0, 0.5, 1.0):
        torch.library.opcheck(torch.ops.wsls.mask_nms.default, (words, scores, tau))
    torch.library.opcheck(torch.ops.wsls.mask_nms.default, (words[:0], scores[:0], 0.5))
    acam = torch.rand(labels.shape, generator=g).to(device)
    torch.library.opcheck(torch.ops.wsls.candidate_scores.default, (words, acam))


def test_torch_compile_fullgraph(monkeypatch):
    """The kept count is data-dependent: compiles with capture_dynamic_output_shape_ops."""
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "capture_dynamic_output_shape_ops", True)
    masks, labels = grown_candidates(6, n=8)
    words = pack_masks(masks).words
    acam = torch.rand(labels.shape, generator=torch.Generator().manual_seed(0))

    def select(w, a):
        scores = torch.ops.wsls.candidate_scores(w, a)
        kept = torch.ops.wsls.mask_nms(w, scores, 0.5)
        return scores[kept]

    torch._dynamo.reset()
    compiled = torch.compile(select, fullgraph=True)
    torch.testing.assert_close(compiled(words, acam), select(words, acam))


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_matches_cpu():
    for seed in range(3):
        masks, labels = grown_candidates(seed, n=120, shape=(8, 40, 36, 155))
        g = torch.Generator().manual_seed(seed)
        scores = random_scores(masks.shape[0], g)
        words = pack_masks(masks).words
        for tau in THRESHOLDS:
            cpu = mask_nms(words, scores, tau)
            gpu = mask_nms(words.cuda(), scores.cuda(), tau)
            assert cpu.tolist() == gpu.cpu().tolist()
        acam = torch.rand(labels.shape, generator=g)
        torch.testing.assert_close(
            candidate_scores(words, acam), candidate_scores(words.cuda(), acam.cuda()).cpu()
        )


# --- errors: one line, naming the argument ---------------------------------------------------


def _error(fn) -> str:
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).splitlines()[0]


def test_nms_bad_input_messages():
    masks = torch.zeros(3, 2, 3, 4, dtype=torch.bool)
    words = pack_masks(masks).words
    scores = torch.rand(3)
    cases = [
        (
            lambda: mask_nms(masks, scores[:2], 0.5),
            "scores must have one entry per candidate (S = 3)",
        ),
        (lambda: mask_nms(masks, scores[None], 0.5), "scores must be (S)"),
        (lambda: mask_nms(masks, torch.tensor([0, 1, 2]), 0.5), "scores must be a floating-point"),
        (
            lambda: mask_nms(masks, torch.tensor([0.1, math.nan, 0.2]), 0.5),
            "scores contain NaN",
        ),
        (lambda: mask_nms(masks, scores, -0.1), "iou_threshold must be in [0, 1], got -0.1"),
        (lambda: mask_nms(masks, scores, 1.5), "iou_threshold must be in [0, 1]"),
        (lambda: mask_nms(masks, scores, math.nan), "iou_threshold must be in [0, 1]"),
        (lambda: mask_nms(words.int(), scores, 0.5), "masks must be packed candidates"),
        (lambda: mask_nms(words[0], scores, 0.5), "masks must be packed candidates"),
    ]
    for fn, expected in cases:
        message = _error(fn)
        assert message.startswith("mask_nms: ") and expected in message, message


def test_scores_bad_input_messages():
    masks = torch.zeros(3, 2, 3, 70, dtype=torch.bool)
    acam = torch.rand(2, 3, 70)
    cases = [
        (lambda: candidate_scores(masks, acam[0]), "acam must be (H, W, D)"),
        (lambda: candidate_scores(masks, acam[:, :2]), "do not fit acam (H, W, D)"),
        (lambda: candidate_scores(masks, acam[..., :60]), "do not fit acam (H, W, D)"),
        (lambda: candidate_scores(masks, acam.int()), "acam must be float32, float64"),
    ]
    for fn, expected in cases:
        message = _error(fn)
        assert message.startswith("candidate_scores: ") and expected in message, message
    with pytest.raises(TypeError, match="masks must be PackedMasks or a bool tensor"):
        candidate_scores([1, 2], acam)


def test_scores_refuse_acam_of_another_depth():
    """D = 70 and D = 100 both take 2 words per row: the packed words alone cannot tell them
    apart, PackedMasks and bool masks can, and refuse the mismatch like the reference does."""
    masks = torch.zeros(3, 2, 3, 70, dtype=torch.bool)
    acam = torch.rand(2, 3, 100)
    with pytest.raises(RuntimeError):
        reference.candidate_scores(masks, acam)
    for m in (masks, pack_masks(masks)):
        message = _error(lambda m=m: candidate_scores(m, acam))
        assert message == (
            "candidate_scores: masks over the volume (H, W, D) = (2, 3, 70) do not fit acam "
            "(H, W, D) = (2, 3, 100)"
        ), message


@pytest.mark.parametrize("device", DEVICES)
def test_nms_nan_scores_with_and_without_debug_checks(device):
    """mask_nms synchronises anyway (its output size): the NaN check is always made, on CUDA
    read together with the kept count."""
    skip_without_cuda(device)
    masks = torch.zeros(3, 2, 3, 4, dtype=torch.bool, device=device)
    scores = torch.tensor([0.1, math.nan, 0.2], device=device)
    for checks in (False, True):
        with debug_checks(checks):
            assert _error(lambda: mask_nms(masks, scores, 0.5)) == "mask_nms: scores contain NaN"
