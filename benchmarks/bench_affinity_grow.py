"""Batched affinity region growing + mask NMS (wsls.ops.affinity_grow, candidate_scores, mask_nms)
against per-seed baselines, in one process: the scipy reference (wsls.ops.reference), a tuned
per-seed scipy pipeline and a per-seed cc3d pipeline.

Embeddings (K = 16) are piecewise constant over a few random ellipsoids plus noise (the tests'
blob_embeddings); seeds are random voxels inside the blobs, as the pipeline picks confident lesion
voxels, so regions are blob-sized: neither empty nor the volume. lambda = 0.95, connectivity 6.

Per-seed baselines, each seed: its thresholded affinity over the whole volume, then the
component holding the seed.
  reference:  wsls.ops.reference.affinity_grow (d2 summed channel by channel in torch, exactly
              like the kernels; scipy.ndimage.label) and reference.mask_nms (exact IoU matrix by
              chunked matrix products, greedy loop).
  scipy:      d2 = |f|^2 - 2 f.e + |e|^2 with one matrix-vector product per seed (|e|^2 once for
              all seeds, counted once), scipy.ndimage.label.
  cc3d:       the same d2, cc3d.connected_components (connected-components-3d).
They are timed on a subset of seeds and scaled linearly to S (said in the table). NMS for the
scipy and cc3d pipelines is not timed (at least the reference NMS): their ratios use growth only,
so they understate ours.

On CUDA the per-seed peer is cupyx.scipy.ndimage.label (the same d2 by a matrix-vector product
on the GPU, thresholded, labelled, the seed's component kept; timed on a subset of seeds and
scaled to S; CuPy is optional: the column says so when it is absent). The table adds ours'
memory bandwidth as a share of the device's peak (common.peak_memory_bandwidth), counting the
embeddings read once and the packed masks written once, and reports the target: S = 256 seeds
grown + NMS on 240x240x155 under 100 ms.

Run: python benchmarks/bench_affinity_grow.py [--device cpu|cuda|all] [--quick]
  --quick: one volume (CPU: 120x120x78; CUDA: 240x240x155, the target's).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from common import (  # noqa: E402
    chosen_devices,
    fmt_mb,
    fmt_share,
    median_seconds,
    parse_timing_args,
    peak_extra_bytes,
    print_ceilings,
    print_table,
    report_target,
    timing_parser,
)

from tests.test_op_affinity_grow import blob_embeddings  # noqa: E402
from wsls.ops import (  # noqa: E402
    affinity_grow,
    build_info,
    candidate_scores,
    mask_nms,
    reference,
)

LAMBDA = 0.95
CONNECTIVITY = 6
IOU = 0.5
K = 16
NOISE = 0.05
VOLUMES = {"120x120x78": (120, 120, 78), "240x240x155": (240, 240, 155)}
SEED_COUNTS = (64, 256)
TARGET = ("240x240x155", 256, 0.1)  # volume, S, seconds for grow + NMS


def make_problem(shape, n_seeds, seed=0):
    H, W, D = shape
    emb, labels = blob_embeddings(K, H, W, D, n_blobs=6, noise=NOISE, seed=seed)
    g = torch.Generator().manual_seed(seed)
    inside = labels.nonzero()
    seeds = inside[torch.randint(0, len(inside), (max(n_seeds),), generator=g)]
    acam = (labels > 0).float() * 0.8 + 0.1 * torch.rand(labels.shape, generator=g)
    return emb, seeds, acam


def ours_pipeline(emb, seeds, acam):
    packed = affinity_grow(emb, seeds, LAMBDA, CONNECTIVITY, packed=True)
    scores = candidate_scores(packed, acam)
    return mask_nms(packed, scores, IOU)


def seed_times(fn, seeds, n):
    """Mean seconds per seed of fn(seed) over seeds 1..n (seed 0 warms up: imports, caches)."""
    fn(seeds[0].tolist())
    start = time.perf_counter()
    for s in seeds[1 : n + 1].tolist():
        fn(s)
    return (time.perf_counter() - start) / n


def baselines(emb, seeds, n_sub, with_cc3d):
    """Per-seed seconds of the reference, scipy and cc3d growth, and the seed-independent
    setup of the last two (|e|^2)."""
    from scipy import ndimage

    K_, H, W, D = emb.shape
    bound = reference.affinity_bound(LAMBDA)
    out = {}
    out["reference"] = seed_times(
        lambda s: reference.affinity_grow(emb, torch.tensor([s]), LAMBDA, CONNECTIVITY),
        seeds,
        n_sub,
    )
    flat = emb.reshape(K_, -1)
    start = time.perf_counter()
    norms = (flat * flat).sum(0)
    out["setup"] = time.perf_counter() - start
    structure = ndimage.generate_binary_structure(3, 1)

    def passing(s):
        f = emb[:, s[0], s[1], s[2]]
        d2 = norms - 2.0 * (f @ flat) + (f * f).sum()
        return (d2 <= bound).reshape(H, W, D).numpy()

    def scipy_seed(s):
        labels, _ = ndimage.label(passing(s), structure=structure)
        return labels == labels[s[0], s[1], s[2]]

    out["scipy"] = seed_times(scipy_seed, seeds, n_sub)
    if with_cc3d:
        import cc3d

        def cc3d_seed(s):
            labels = cc3d.connected_components(passing(s), connectivity=6)
            return labels == labels[s[0], s[1], s[2]]

        out["cc3d"] = seed_times(cc3d_seed, seeds, n_sub)
    return out


def cpu_case(vname, emb, seeds, acam, base, min_run_time, with_cc3d):
    """One (volume, S) row of each CPU table."""
    S = len(seeds)
    packed = affinity_grow(emb, seeds, LAMBDA, CONNECTIVITY, packed=True)
    scores = candidate_scores(packed, acam)

    def grow(mask_form=True):
        return affinity_grow(emb, seeds, LAMBDA, CONNECTIVITY, packed=mask_form)

    t_grow = median_seconds(grow, min_run_time)
    t_scores = median_seconds(lambda: candidate_scores(packed, acam), min_run_time)
    t_nms = median_seconds(lambda: mask_nms(packed, scores, IOU), min_run_time)
    t_ours = t_grow + t_nms
    kept = mask_nms(packed, scores, IOU)
    masks = packed.unpack()  # the reference NMS on the bool masks (plain PyTorch)
    start = time.perf_counter()
    ref_kept = reference.mask_nms(masks, scores, IOU)
    t_ref_nms = time.perf_counter() - start
    assert ref_kept.tolist() == kept.tolist(), "NMS differs from the reference"
    sizes = masks.flatten(1).sum(1).double()
    del masks
    ref_total = base["reference"] * S + t_ref_nms
    scipy_total = base["scipy"] * S + base["setup"]
    row = [
        vname,
        str(S),
        f"{t_grow * 1e3:.0f}",
        f"{t_scores * 1e3:.0f}",
        f"{t_nms * 1e3:.1f}",
        f"{t_ours * 1e3:.0f}",
        f"{ref_total:.1f} ({base['reference'] * 1e3:.0f}/seed, NMS {t_ref_nms:.1f})",
        f"{ref_total / t_ours:.1f}x",
        f"{scipy_total:.1f} ({base['scipy'] * 1e3:.0f}/seed)",
        f"{scipy_total / t_ours:.1f}x",
    ]
    if with_cc3d:
        cc3d_total = base["cc3d"] * S + base["setup"]
        row += [f"{cc3d_total:.1f} ({base['cc3d'] * 1e3:.0f}/seed)", f"{cc3d_total / t_ours:.1f}x"]
    bool_peak = peak_extra_bytes(lambda: grow(False)) if S == 64 else None
    mem_row = [
        vname,
        str(S),
        f"{sizes.median():.0f} ({100 * sizes.median() / emb[0].numel():.1f} %)",
        f"{len(kept)}",
        fmt_mb(packed.words.numel() * 8),
        fmt_mb(peak_extra_bytes(grow)),
        fmt_mb(bool_peak),
    ]
    return row, mem_row


def bench_cpu(quick: bool, min_run_time: float) -> None:
    try:
        import cc3d  # noqa: F401

        with_cc3d = True
    except ImportError:
        print("cc3d (connected-components-3d) is not installed: its column is skipped")
        with_cc3d = False
    print(f"\n### cpu: {torch.get_num_threads()} threads\n")
    rows, mem_rows = [], []
    volumes = {"120x120x78": VOLUMES["120x120x78"]} if quick else VOLUMES
    n_sub = 4 if quick else 8
    for vname, shape in volumes.items():
        emb, all_seeds, acam = make_problem(shape, SEED_COUNTS)
        base = baselines(emb, all_seeds, n_sub, with_cc3d)
        for S in SEED_COUNTS:
            row, mem_row = cpu_case(vname, emb, all_seeds[:S], acam, base, min_run_time, with_cc3d)
            rows.append(row)
            mem_rows.append(mem_row)
    print(f"per-seed baselines: mean over {n_sub} seeds (after one warm-up seed), times S\n")
    headers = [
        "volume",
        "S",
        "ours grow ms",
        "ours scores ms",
        "ours NMS ms",
        "ours grow+NMS ms",
        "reference grow+NMS s",
        "ref / ours",
        "scipy grow s",
        "scipy / ours",
    ]
    if with_cc3d:
        headers += ["cc3d grow s", "cc3d / ours"]
    print_table(headers, rows)
    print()
    print_table(
        [
            "volume",
            "S",
            "median region voxels",
            "kept",
            "packed output MB",
            "packed peak extra MB",
            "bool peak extra MB",
        ],
        mem_rows,
    )


def cupy_seed_times(emb_d, seeds, n):
    """Mean seconds per seed of the cupyx.scipy.ndimage.label pipeline on the GPU over seeds
    1..n (seed 0 warms up), and seed 0's mask (a CuPy bool array) to check against ours (the
    same voxels unless a d2 lands within rounding of the bound)."""
    import cupy
    from cupyx.scipy import ndimage as cnd

    K_, H, W, D = emb_d.shape
    bound = reference.affinity_bound(LAMBDA)
    flat = emb_d.reshape(K_, -1)
    norms = (flat * flat).sum(0)
    structure = cupy.asarray(cnd.generate_binary_structure(3, 1))

    def seed_mask(s):
        f = emb_d[:, s[0], s[1], s[2]]
        d2 = norms - 2.0 * (f @ flat) + (f * f).sum()
        passing = cupy.from_dlpack((d2 <= bound).reshape(H, W, D).to(torch.uint8))
        labels, _ = cnd.label(passing, structure=structure)
        return labels == labels[s[0], s[1], s[2]]

    first = seed_mask(seeds[0].tolist())
    cupy.cuda.get_current_stream().synchronize()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for s in seeds[1 : n + 1].tolist():
        seed_mask(s)
    cupy.cuda.get_current_stream().synchronize()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n, first


def cuda_case(vname, emb, seeds, acam, min_run_time, peak=None, cupy_n=0):
    """One (volume, S) row of the CUDA table; emb and acam on the CPU. Also returns the
    seconds of grow + NMS."""
    emb_d, seeds_d, acam_d = emb.cuda(), seeds.cuda(), acam.cuda()

    def grow(connectivity=CONNECTIVITY):
        return affinity_grow(emb_d, seeds_d, LAMBDA, connectivity, packed=True)

    packed = grow()
    scores = candidate_scores(packed, acam_d)
    cpu = affinity_grow(emb, seeds, LAMBDA, CONNECTIVITY, packed=True)
    same = torch.equal(cpu.words, packed.words.cpu())
    same_nms = mask_nms(cpu, scores.cpu(), IOU).tolist() == mask_nms(packed, scores, IOU).tolist()
    t_grow = median_seconds(grow, min_run_time)
    t_scores = median_seconds(lambda: candidate_scores(packed, acam_d), min_run_time)
    t_nms = median_seconds(lambda: mask_nms(packed, scores, IOU), min_run_time)
    t_all = median_seconds(lambda: ours_pipeline(emb_d, seeds_d, acam_d), min_run_time)
    t_global = median_seconds(lambda: grow(0), min_run_time)
    # the fewest bytes: the embeddings read once, the packed masks written once
    moved = emb_d.numel() * emb_d.element_size() + packed.words.numel() * 8
    if cupy_n:
        per_seed, first = cupy_seed_times(emb_d, seeds_d, cupy_n)
        cupy_total = per_seed * len(seeds)
        theirs = torch.from_dlpack(first.astype("uint8")).bool()
        agree = torch.equal(theirs, packed[0].unpack()[0])
        cupy_cells = [
            f"{cupy_total * 1e3:.1f} ({per_seed * 1e3:.2f}/seed{'' if agree else ', DIFFERS'})",
            f"{cupy_total / t_grow:.1f}x",
        ]
    else:
        cupy_cells = ["n/a", "n/a"]
    row = [
        vname,
        str(len(seeds)),
        f"{t_grow * 1e3:.2f}",
        f"{t_global * 1e3:.2f}",
        f"{t_scores * 1e3:.2f}",
        f"{t_nms * 1e3:.2f}",
        f"{(t_grow + t_nms) * 1e3:.2f}",
        f"{t_all * 1e3:.2f}",
        fmt_mb(peak_extra_bytes(grow, "cuda")),
        "yes" if same and same_nms else "NO",
        fmt_share(moved / t_grow, peak),
        *cupy_cells,
    ]
    return row, t_grow + t_nms


def bench_cuda(quick: bool, min_run_time: float) -> None:
    print(f"\n### cuda: {torch.cuda.get_device_name()}\n")
    peak, _ = print_ceilings()
    try:
        import cupy  # noqa: F401
        from cupyx.scipy import ndimage  # noqa: F401

        cupy_n = 4 if quick else 8
        print(f"cupyx.scipy.ndimage.label per seed: mean over {cupy_n} seeds (after one), times S")
    except ImportError as exc:
        cupy_n = 0
        print(f"CuPy is not installed ({exc}): the cupyx.scipy.ndimage.label column is skipped")
    print()
    rows, totals = [], {}
    volumes = {"240x240x155": VOLUMES["240x240x155"]} if quick else VOLUMES
    for vname, shape in volumes.items():
        emb, all_seeds, acam = make_problem(shape, SEED_COUNTS)
        for S in SEED_COUNTS:
            row, totals[(vname, S)] = cuda_case(
                vname, emb, all_seeds[:S], acam, min_run_time, peak, cupy_n
            )
            rows.append(row)
    print_table(
        [
            "volume",
            "S",
            "grow ms",
            "grow (connectivity 0) ms",
            "scores ms",
            "NMS ms",
            "grow+NMS ms",
            "grow+scores+NMS ms",
            "peak extra MB",
            "same as CPU",
            "grow % of peak bandwidth",
            "cupyx label grow ms",
            "cupyx / ours grow",
        ],
        rows,
    )
    print()
    vname, S, limit = TARGET
    t = totals.get((vname, S))
    report_target(
        f"growth of S = {S} seeds + NMS on {vname} < {limit * 1e3:.0f} ms",
        f"{t * 1e3:.1f} ms" if t else "n/a",
        None if t is None else t < limit,
    )


def main() -> None:
    parser = timing_parser(__doc__, "one volume (CPU: the small one; CUDA: the target's)")
    args = parse_timing_args(parser, build_info())
    print(
        f"K = {K}, lambda = {LAMBDA}, connectivity {CONNECTIVITY}, IoU threshold {IOU}, "
        f"embedding noise {NOISE}, numpy {np.__version__}"
    )
    for device in chosen_devices(args.device):
        (bench_cpu if device == "cpu" else bench_cuda)(args.quick, args.min_run_time)


if __name__ == "__main__":
    main()
