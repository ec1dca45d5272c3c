"""wsls.ops.affinity_grow against its scipy reference: the same voxels for every connectivity,
with and without mask, on random and blob embeddings; packing; fake kernels; errors."""

from __future__ import annotations

import importlib
import math
import time

import pytest
import torch

from tests.helpers import DEVICES, HAS_CUDA, skip_without_cuda
from wsls.ops import (
    PackedMasks,
    affinity_grow,
    build_info,
    debug_checks,
    has_kernel,
    pack_masks,
    reference,
    union_masks,
    unpack_masks,
)

# the module (wsls.ops.affinity_grow is the function)
affinity_grow_module = importlib.import_module("wsls.ops.affinity_grow")

CONNECTIVITIES = [0, 6, 26]
# (K, H, W, D): rows of 1, 2 and 3 words, runs crossing word boundaries, thin and tiny volumes
SHAPES = [(4, 7, 6, 150), (3, 9, 8, 64), (4, 6, 7, 65), (3, 5, 4, 3), (2, 1, 1, 1), (3, 12, 1, 9)]


def lam(bound: float) -> float:
    """The threshold lambda whose d2 bound is `bound`."""
    return 2.0 / (1.0 + math.exp(bound))


def random_seeds(n, H, W, D, g):
    return torch.stack([torch.randint(0, s, (n,), generator=g) for s in (H, W, D)], dim=1).long()


def border_seeds(H, W, D):
    """The 8 corners and the 6 face centres."""
    corners = [(h, w, d) for h in (0, H - 1) for w in (0, W - 1) for d in (0, D - 1)]
    faces = [
        (0, W // 2, D // 2),
        (H - 1, W // 2, D // 2),
        (H // 2, 0, D // 2),
        (H // 2, W - 1, D // 2),
        (H // 2, W // 2, 0),
        (H // 2, W // 2, D - 1),
    ]
    return torch.tensor(corners + faces, dtype=torch.int64)


def blob_embeddings(K, H, W, D, n_blobs=4, noise=0.3, seed=0, dtype=torch.float32):
    """Embeddings piecewise constant over a few random ellipsoids (one random code per blob, one
    for the background) plus Gaussian noise. Returns (embeddings (K, H, W, D), labels (H, W, D)
    with 0 for the background)."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([H, W, D], dtype=torch.float64)
    centres = torch.rand(n_blobs, 3, generator=g, dtype=torch.float64) * size
    radii = (0.1 + 0.15 * torch.rand(n_blobs, 3, generator=g, dtype=torch.float64)) * size
    hh = torch.arange(H, dtype=torch.float64)[:, None, None]
    ww = torch.arange(W, dtype=torch.float64)[None, :, None]
    dd = torch.arange(D, dtype=torch.float64)[None, None, :]
    labels = torch.zeros((H, W, D), dtype=torch.int64)
    for b in range(n_blobs):
        c, r = centres[b], radii[b]
        inside = ((hh - c[0]) / r[0]) ** 2 + ((ww - c[1]) / r[1]) ** 2 + ((dd - c[2]) / r[2]) ** 2
        labels[inside <= 1] = b + 1
    codes = torch.randn(n_blobs + 1, K, generator=g)
    emb = codes[labels].permute(3, 0, 1, 2).contiguous()
    emb += noise * torch.randn(K, H, W, D, generator=g)
    return emb.to(dtype), labels


def assert_same_as_reference(emb, seeds, threshold, connectivity, mask=None):
    ours = affinity_grow(emb, seeds, threshold, connectivity, mask)
    ref = reference.affinity_grow(emb, seeds, threshold, connectivity, mask)
    assert ours.dtype == torch.bool and ours.shape == ref.shape
    if not torch.equal(ours.cpu(), ref.cpu()):
        diff = (ours.cpu() != ref.cpu()).flatten(1).sum(1)
        pytest.fail(f"voxels differ from the reference per seed: {diff.tolist()}")
    return ours


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("shape", SHAPES)
def test_random_embeddings_match_reference(device, shape, connectivity, use_mask):
    """iid embeddings: for K channels d2 ~ 2 chi2(K), so these bounds pass about 20 to 70 % of
    the voxels, around the percolation thresholds: ragged components of every size."""
    skip_without_cuda(device)
    g = torch.Generator().manual_seed(sum(shape) * 31 + connectivity)
    K, H, W, D = shape
    emb = torch.randn(shape, generator=g).to(device)
    mask = (torch.rand(H, W, D, generator=g) < 0.8).to(device) if use_mask else None
    seeds = torch.cat([random_seeds(6, H, W, D, g), border_seeds(H, W, D)]).to(device)
    sizes = []
    for bound in (0.8 * K, 1.6 * K, 2.4 * K):
        out = assert_same_as_reference(emb, seeds, lam(bound), connectivity, mask)
        sizes.append(out.flatten(1).sum(1))
    if H * W * D > 100:  # the cases are not trivial: some candidates neither empty nor full
        sizes = torch.cat(sizes)
        assert ((sizes > 1) & (sizes < 0.9 * H * W * D)).any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_blob_embeddings_match_reference(device, connectivity):
    skip_without_cuda(device)
    emb, labels = blob_embeddings(8, 20, 18, 70, seed=connectivity)
    g = torch.Generator().manual_seed(1)
    inside = labels.nonzero()
    seeds = inside[torch.randint(0, len(inside), (10,), generator=g)]
    seeds = torch.cat([seeds, border_seeds(20, 18, 70)])
    brain = torch.zeros_like(labels, dtype=torch.bool)
    brain[2:-2, 1:-3, 5:-5] = True
    for mask in (None, brain):
        for bound in (6.0, 3.0, 1.0):
            m = None if mask is None else mask.to(device)
            out = assert_same_as_reference(
                emb.to(device), seeds.to(device), lam(bound), connectivity, m
            )
            if mask is None and bound == 6.0:  # seeds in blobs: regions near the blob size
                size = out[:10].flatten(1).sum(1).float().median()
                assert 0 < size < 0.5 * labels.numel()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("connectivity", [6, 26])
def test_many_seeds_in_one_lesion(device, connectivity):
    """Dozens of mutually affine seeds (the CPU kernel grows them in groups sharing row
    evaluations), interleaved with seeds in other blobs and seeds outside the mask."""
    skip_without_cuda(device)
    emb, labels = blob_embeddings(4, 14, 12, 70, n_blobs=3, noise=0.2, seed=8)
    g = torch.Generator().manual_seed(8)
    big = labels.flatten().bincount()[1:].argmax() + 1
    inside = (labels == big).nonzero()
    others = ((labels > 0) & (labels != big)).nonzero()
    seeds = torch.cat(
        [
            inside[torch.randint(0, len(inside), (40,), generator=g)],
            others[torch.randint(0, len(others), (8,), generator=g)],
        ]
    )[torch.randperm(48, generator=g)]
    mask = torch.rand(labels.shape, generator=g) < 0.95
    for m in (None, mask):
        mm = None if m is None else m.to(device)
        assert_same_as_reference(emb.to(device), seeds.to(device), lam(2.0), connectivity, mm)


@pytest.mark.parametrize("device", DEVICES)
def test_edge_cases(device):
    skip_without_cuda(device)
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(3, 5, 6, 70, generator=g).to(device)
    none = torch.zeros((0, 3), dtype=torch.int64, device=device)
    for conn in CONNECTIVITIES:
        out = affinity_grow(emb, none, 0.5, conn)
        assert out.shape == (0, 5, 6, 70) and out.dtype == torch.bool
        packed = affinity_grow(emb, none, 0.5, conn, packed=True)
        assert packed.words.shape == (0, 5, 6, 2) and packed.num_candidates == 0
        one = torch.tensor([[4, 0, 69]], device=device)
        assert_same_as_reference(emb, one, lam(6.0), conn)
        tiny = torch.randn(2, 1, 1, 1, generator=g).to(device)
        zero = torch.zeros((1, 3), dtype=torch.int64, device=device)
        assert affinity_grow(tiny, zero, 1.0, conn).tolist() == [[[[True]]]]
        masked = affinity_grow(tiny, zero, 1.0, conn, torch.zeros(1, 1, 1, dtype=torch.bool))
        assert masked.tolist() == [[[[False]]]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_lambda_one_keeps_equal_embeddings(device, connectivity):
    """lambda = 1: d2 <= 0, exactly the voxels whose embedding equals the seed's."""
    skip_without_cuda(device)
    _, labels = blob_embeddings(1, 10, 9, 80, seed=5)
    codes = torch.randn(labels.max() + 1, 4, generator=torch.Generator().manual_seed(2))
    emb = codes[labels].permute(3, 0, 1, 2).contiguous()
    inside = labels.nonzero()
    seeds = torch.cat([inside[:: max(1, len(inside) // 5)], border_seeds(10, 9, 80)])
    out = assert_same_as_reference(emb.to(device), seeds.to(device), 1.0, connectivity)
    if connectivity == 0:
        expected = (
            labels[None] == labels[seeds[:, 0], seeds[:, 1], seeds[:, 2]][:, None, None, None]
        )
        assert torch.equal(out.cpu(), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_seed_outside_mask_is_empty(device):
    skip_without_cuda(device)
    emb = torch.zeros(2, 4, 4, 4, device=device)  # everything passes
    mask = torch.ones(4, 4, 4, dtype=torch.bool, device=device)
    mask[1, 2, 3] = False
    mask[:, :, 0] = False
    seeds = torch.tensor([[1, 2, 3], [0, 0, 1], [3, 3, 0]], device=device)
    for conn in CONNECTIVITIES:
        out = affinity_grow(emb, seeds, 0.9, conn, mask)
        assert out[0].sum() == 0 and out[2].sum() == 0
        assert torch.equal(out[1], mask)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(device, dtype):
    skip_without_cuda(device)
    emb, labels = blob_embeddings(6, 12, 10, 66, seed=7, dtype=dtype)
    seeds = torch.cat([labels.nonzero()[::97], border_seeds(12, 10, 66)])
    for conn in CONNECTIVITIES:
        assert_same_as_reference(emb.to(device), seeds.to(device), lam(2.5), conn)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    skip_without_cuda(device)
    g = torch.Generator().manual_seed(4)
    base = torch.randn(6, 9, 70, 4, generator=g).to(device)
    emb = base.permute(3, 0, 1, 2)[:, :, ::2]  # (4, 6, 5, 70), strided
    assert not emb.is_contiguous()
    seeds = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 4, 2, 1, 3, 2], [0, 69, 35, 64, 63, 1]]).t()
    seeds = seeds.contiguous().t().contiguous().t()  # (6, 3) transposed storage
    mask = (torch.rand(70, 5, 6, generator=g) < 0.9).permute(2, 1, 0).to(device)
    for conn in CONNECTIVITIES:
        assert_same_as_reference(emb, seeds.to(device), lam(9.0), conn, mask)


def test_threads_give_the_same_result():
    emb, labels = blob_embeddings(4, 16, 14, 40, seed=9)
    seeds = labels.nonzero()[::13]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = affinity_grow(emb, seeds, lam(2.0), 26, packed=True).words
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, affinity_grow(emb, seeds, lam(2.0), 26, packed=True).words)


@pytest.mark.parametrize("device", DEVICES)
def test_packing(device):
    skip_without_cuda(device)
    g = torch.Generator().manual_seed(5)
    for D in (1, 63, 64, 65, 130):
        masks = (torch.rand(3, 4, 5, D, generator=g) < 0.5).to(device)
        packed = pack_masks(masks)
        assert packed.words.shape == (3, 4, 5, (D + 63) // 64) and packed.shape == (4, 5, D)
        assert torch.equal(unpack_masks(packed), masks)
        assert torch.equal(packed.unpack(), masks)
        # bit d % 64 of word d // 64, bits past D zero
        bits = (packed.words[..., :, None] >> torch.arange(64, device=device)) & 1
        assert torch.equal(bits.flatten(-2)[..., :D].bool(), masks)
        assert bits.flatten(-2)[..., D:].sum() == 0
        assert torch.equal(union_masks(packed), masks.any(0))
        assert torch.equal(packed.union([0, 2]), masks[0] | masks[2])
        assert torch.equal(packed.union([]), torch.zeros_like(masks[0]))
        assert torch.equal(packed[1].unpack(), masks[1:2])
        assert torch.equal(packed[[2, 0]].unpack(), masks[[2, 0]])


def test_packed_output():
    emb, labels = blob_embeddings(4, 8, 7, 100, seed=2)
    seeds = labels.nonzero()[::50]
    packed = affinity_grow(emb, seeds, lam(3.0), 6, packed=True)
    assert isinstance(packed, PackedMasks) and packed.words.dtype == torch.int64
    assert packed.words.shape == (len(seeds), 8, 7, 2) and packed.shape == (8, 7, 100)
    assert torch.equal(packed.unpack(), affinity_grow(emb, seeds, lam(3.0), 6))
    seeds_list = seeds.tolist()
    assert torch.equal(affinity_grow(emb, seeds_list, lam(3.0), 6, packed=True).words, packed.words)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    skip_without_cuda(device)
    g = torch.Generator().manual_seed(6)
    emb = torch.randn(3, 5, 4, 70, generator=g).to(device)
    seeds = torch.tensor([[0, 0, 0], [4, 3, 69], [2, 1, 64]], device=device)
    mask = (torch.rand(5, 4, 70, generator=g) < 0.9).to(device)
    for conn in CONNECTIVITIES:
        torch.library.opcheck(
            torch.ops.wsls.affinity_grow.default, (emb, seeds, lam(4.0), conn, mask)
        )
    torch.library.opcheck(torch.ops.wsls.affinity_grow.default, (emb, seeds[:0], 0.5, 6, None))
    masks = (torch.rand(3, 5, 4, 70, generator=g) < 0.5).to(device)
    torch.library.opcheck(torch.ops.wsls.pack_masks.default, (masks,))
    words = torch.ops.wsls.pack_masks(masks)
    torch.library.opcheck(torch.ops.wsls.unpack_masks.default, (words, 70))


def test_torch_compile_fullgraph():
    emb, labels = blob_embeddings(4, 8, 7, 40, seed=3)
    seeds = labels.nonzero()[::20]

    def segment(e, s):
        return affinity_grow(e, s, lam(3.0), 26).sum(0)

    compiled = torch.compile(segment, fullgraph=True)
    assert torch.equal(compiled(emb, seeds), segment(emb, seeds))


def test_build_has_both_backends():
    info = build_info()
    for op in ("affinity_grow", "mask_nms", "candidate_scores", "pack_masks", "unpack_masks"):
        assert has_kernel(op, "CPU")
        assert has_kernel(op, "CUDA") == info["cuda"], op


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_matches_cpu_large():
    emb, labels = blob_embeddings(16, 60, 60, 155, n_blobs=6, seed=11)
    g = torch.Generator().manual_seed(0)
    seeds = labels.nonzero()[torch.randint(0, int((labels > 0).sum()), (40,), generator=g)]
    seeds = torch.cat([seeds, border_seeds(60, 60, 155)])
    mask = torch.zeros(60, 60, 155, dtype=torch.bool)
    mask[3:-3, 2:-2, 10:-10] = True
    for conn in CONNECTIVITIES:
        for m in (None, mask):
            for bound in (2.0, 8.0):
                cpu = affinity_grow(emb, seeds, lam(bound), conn, m, packed=True).words
                gpu = affinity_grow(
                    emb.cuda(),
                    seeds.cuda(),
                    lam(bound),
                    conn,
                    None if m is None else m.cuda(),
                    packed=True,
                ).words
                assert torch.equal(cpu, gpu.cpu()), (conn, m is None, bound)


# --- errors: one line, naming the argument ---------------------------------------------------


def _error(fn) -> str:
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).splitlines()[0]


def _grow_args():
    emb = torch.randn(3, 4, 5, 6)
    seeds = torch.tensor([[0, 1, 2], [3, 4, 5]])
    return emb, seeds, 0.5, 6, None


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda e, s, t, c, m: (e[0], s, t, c, m), "embeddings must be (K, H, W, D)"),
        (lambda e, s, t, c, m: (e.int(), s, t, c, m), "embeddings must be float32, float64"),
        (lambda e, s, t, c, m: (e[:0], s, t, c, m), "at least one channel"),
        (lambda e, s, t, c, m: (e[:, :0], s, t, c, m), "non-empty volume"),
        (lambda e, s, t, c, m: (e, s[0], t, c, m), "seeds must be (S, 3)"),
        (lambda e, s, t, c, m: (e, s[:, :2], t, c, m), "seeds must be (S, 3)"),
        (lambda e, s, t, c, m: (e, s.float(), t, c, m), "seeds must be int64"),
        (lambda e, s, t, c, m: (e, s + 1, t, c, m), "seeds[1] = (4, 5, 6) is outside the volume"),
        (lambda e, s, t, c, m: (e, -s, t, c, m), "seeds[0] = (0, -1, -2) is outside the volume"),
        (lambda e, s, t, c, m: (e, s, 0.0, c, m), "threshold (lambda) must be in (0, 1], got 0"),
        (lambda e, s, t, c, m: (e, s, 1.5, c, m), "threshold (lambda) must be in (0, 1]"),
        (lambda e, s, t, c, m: (e, s, -0.2, c, m), "threshold (lambda) must be in (0, 1]"),
        (lambda e, s, t, c, m: (e, s, math.nan, c, m), "threshold (lambda) must be in (0, 1]"),
        (lambda e, s, t, c, m: (e, s, t, 4, m), "connectivity must be 0 (the global set), 6 or 26"),
        (
            lambda e, s, t, c, m: (e, s, t, c, torch.ones(4, 5, 7, dtype=torch.bool)),
            "mask must be (H, W, D) = (4, 5, 6)",
        ),
        (lambda e, s, t, c, m: (e, s, t, c, torch.ones(4, 5, 6)), "mask must be bool"),
    ],
)
def test_bad_input_messages(mutate, expected):
    args = mutate(*_grow_args())
    message = _error(lambda: affinity_grow(*args))
    assert message.startswith("affinity_grow: ") and expected in message, message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_non_finite_embeddings(bad, dtype):
    emb, seeds, t, c, m = _grow_args()
    emb = emb.to(dtype)
    emb[2, 3, 4, 5] = bad  # far from the seeds: detected anyway
    for conn in CONNECTIVITIES:
        message = _error(lambda c=conn: affinity_grow(emb, seeds, t, c))
        assert "embeddings contain NaN or Inf" in message


@pytest.mark.parametrize("device", DEVICES)
def test_value_checks_and_debug_checks(device):
    """Seeds outside the volume and non-finite embeddings: the CPU always raises (its data are in
    host memory); CUDA raises the same lines under debug checks only (each check synchronises),
    and without them gives the seed outside the volume an empty candidate and never lets a
    non-finite voxel pass."""
    skip_without_cuda(device)
    emb, seeds, t, c, m = _grow_args()
    emb, seeds = emb.to(device), seeds.to(device)
    outside = torch.tensor([[0, 1, 2], [4, 0, 0]], device=device)
    nan_emb = emb.clone()
    nan_emb[:, 0, 1, 2] = float("nan")  # the first seed's own embedding
    for checks in (True, False):
        with debug_checks(checks):
            if device == "cpu" or checks:
                message = _error(lambda: affinity_grow(emb, outside, t, c))
                assert message.startswith("affinity_grow: seeds[1] = (4, 0, 0) is outside"), message
                message = _error(lambda: affinity_grow(nan_emb, seeds, t, c))
                assert message == "affinity_grow: embeddings contain NaN or Inf", message
            else:
                for conn in CONNECTIVITIES:
                    out = affinity_grow(emb, outside, t, conn)
                    assert out[1].sum() == 0
                    assert torch.equal(out[0], affinity_grow(emb, outside[:1], t, conn)[0])
                    assert affinity_grow(nan_emb, seeds, t, conn)[0].sum() == 0


@pytest.mark.parametrize(
    "seeds",
    [
        [[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1]],  # 3 x 4: once read as four seeds
        [0, 1, 2],
        [[[0, 1, 2]]],
        torch.zeros(3, 4, dtype=torch.int64),
        torch.zeros(12, dtype=torch.int64),
    ],
)
def test_seeds_must_be_s_by_3(seeds):
    emb, _, t, c, _ = _grow_args()
    message = _error(lambda: affinity_grow(emb, seeds, t, c))
    shape = list(torch.as_tensor(seeds).shape)
    assert message.startswith("affinity_grow: seeds must be (S, 3)"), message
    assert message.endswith(f"got shape {shape}"), message


def test_seeds_as_lists():
    emb, seeds, t, c, _ = _grow_args()
    assert affinity_grow(emb, [], t, c).shape == (0, 4, 5, 6)
    assert torch.equal(affinity_grow(emb, seeds.tolist(), t, c), affinity_grow(emb, seeds, t, c))


def test_huge_bool_output_is_refused_up_front(monkeypatch):
    """S = 1024 bool candidates of 240 x 240 x 155 would take 8.5 GiB: refused from the shapes,
    before the growth (the embeddings here are a broadcast view, so not even they are read)."""
    emb = torch.zeros(1, 1, 1, 1).expand(2, 240, 240, 155)
    seeds = torch.zeros(1024, 3, dtype=torch.int64)
    start = time.perf_counter()
    message = _error(lambda: affinity_grow(emb, seeds, 0.5, 6))
    assert time.perf_counter() - start < 1.0
    assert message.startswith(
        "affinity_grow: a bool output of S = 1024 candidates over the volume 240 x 240 x 155 "
        "needs 8.5 GiB, more than "
    ), message
    assert message.endswith("; pass packed=True (1.3 GiB)"), message
    # the limit, then the memory available on the CPU, whichever is lower
    emb, seeds, t, c, _ = _grow_args()  # 2 x 120 bytes as bool
    monkeypatch.setattr(affinity_grow_module, "MAX_BOOL_BYTES", 200)
    message = _error(lambda: affinity_grow(emb, seeds, t, c))
    assert "needs 240 B, more than the limit of bool outputs" in message, message
    assert affinity_grow(emb, seeds, t, c, packed=True).words.shape == (2, 4, 5, 1)
    monkeypatch.setattr(affinity_grow_module, "MAX_BOOL_BYTES", 8 << 30)
    monkeypatch.setattr(affinity_grow_module, "_available_host_bytes", lambda: 100)
    message = _error(lambda: affinity_grow(emb, seeds, t, c))
    assert "needs 240 B, more than the memory available (100 B)" in message, message


def test_packing_errors():
    assert "pack_masks: masks must be bool (S, H, W, D)" in _error(
        lambda: pack_masks(torch.ones(2, 3, 4, 5))
    )
    words = torch.zeros(2, 3, 4, 2, dtype=torch.int64)
    assert "unpack_masks: depth 200 does not fit packed rows of 2 words" in _error(
        lambda: torch.ops.wsls.unpack_masks(words, 200)
    )
    assert "unpack_masks: masks must be packed candidates" in _error(
        lambda: torch.ops.wsls.unpack_masks(words.int(), 100)
    )


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_device_mismatch_message():
    emb, seeds, t, c, m = _grow_args()
    message = _error(lambda: affinity_grow(emb.cuda(), seeds, t, c))
    assert "seeds is on cpu but embeddings is on cuda" in message
    message = _error(
        lambda: affinity_grow(emb.cuda(), seeds.cuda(), t, c, torch.ones(4, 5, 6).bool())
    )
    assert "mask is on cpu but embeddings is on cuda" in message
