"""``wsls demo``: the whole method on the embedded phantom, end to end, in minutes on a CPU.

Writes a phantom dataset (BraTS layout: tumour cases and lesion-free ones), trains the method
(ACAM classifier, representation model) and the baselines (CAM(GAP), CAM(GMP), WS-UNet,
S-UNet) briefly on the training cases, evaluates on held-out cases (tables 1 and 2 with the
FLAIR-threshold baseline), writes the figure and the segmentation of one held-out case, and
prints where everything is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsls.io.atomic import atomic_write_text
from wsls.method.config import StageSchedule, WSLSConfig

ALL_BASELINES = ("classifier_gap", "classifier_gmp", "ws_unet", "s_unet")


@dataclass(frozen=True)
class DemoPlan:
    """The demo's size.

    Attributes:
        cases: phantom cases written; the last ``test_cases`` with a tumour are held out.
        healthy: how many of them are lesion-free (chosen by seed; all in the training set,
            as negatives for the classifier).
        shape: phantom grid (the phantom's field of view is 240x240x155 mm).
        seed: the dataset seed.
        classifier, embedding, segmenter: training schedules (epochs, samples per epoch).
    """

    cases: int
    test_cases: int
    healthy: int
    shape: tuple[int, int, int]
    seed: int
    classifier: StageSchedule
    embedding: StageSchedule
    segmenter: StageSchedule


FULL = DemoPlan(
    cases=12,
    test_cases=4,
    healthy=2,
    shape=(96, 96, 64),
    seed=7,
    classifier=StageSchedule(12, 480),
    embedding=StageSchedule(3, 60),
    segmenter=StageSchedule(16, 240),
)
QUICK = DemoPlan(
    cases=8,
    test_cases=3,
    healthy=1,
    shape=(80, 80, 52),
    seed=7,
    classifier=StageSchedule(5, 320),
    embedding=StageSchedule(2, 40),
    segmenter=StageSchedule(6, 160),
)


def demo_config(plan: DemoPlan) -> WSLSConfig:
    """The method's configuration for the demo: FLAIR and T1c like BraTS, the phantom's own
    grid (2.5-3 mm voxels: no further downsampling), 24^3 patches for the classifiers and the
    U-Nets, brief schedules. The classifier's windows see the whole brain: the tumour preset's
    3-voxel edge is 3 mm on BraTS's grid, but 8-9 mm of cortex on the phantom's."""
    from wsls.data.patches import PatchConfig
    from wsls.data.preprocess import PreprocessConfig
    from wsls.training.segmenter import SegmenterTrainConfig

    return WSLSConfig(
        modalities=("flair", "t1c"),
        preprocess=PreprocessConfig(downsample=1.0, pad_to_multiple=8),
        classifier_scale=1,  # the phantom's voxels are already coarse
        window_edge=0,
        patch=PatchConfig(size=24, min_lesion_voxels=40, flip_lr=True),
        classifier=plan.classifier,
        embedding_schedule=plan.embedding,
        segmenter=SegmenterTrainConfig(patch=PatchConfig(size=24, min_lesion_voxels=1)),
        segmenter_schedule=plan.segmenter,
    )


def _healthy_fraction(plan: DemoPlan) -> float:
    return plan.healthy / plan.cases


def run_demo(
    out_dir: str | Path = "demo_out",
    *,
    quick: bool = False,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo; returns a summary (paths, timings, the main Dice figures).

    Args:
        out_dir: everything goes there: data/, run/ (bundle, checkpoints), evaluation/,
            segmentation/, summary.json.
        quick: a smaller run in about half the time (3 held-out phantoms instead of 4).
    """
    import wsls
    from wsls.evaluation.evaluate import (
        ACAM,
        CAM_GAP,
        CAM_GMP,
        LOCALISATION,
        SEGMENTATION,
        WS_UNET,
        WSR,
        EvalConfig,
        evaluate,
    )
    from wsls.io.layouts import open_dataset
    from wsls.phantom.generate import write_phantom_dataset

    plan = QUICK if quick else FULL
    out = Path(out_dir)
    times: dict[str, float] = {}
    start = time.perf_counter()
    data = out / "data"
    log(f"[demo] {'quick ' if quick else ''}demo into {out.resolve()}")
    log(f"[demo] 1/4 writing {plan.cases} phantom cases {plan.shape} ({plan.healthy} lesion-free)")
    write_phantom_dataset(
        data, plan.cases, plan.shape, plan.seed, _healthy_fraction(plan), lesions="tumour"
    )
    cases = list(open_dataset(data, "brats", ("flair", "t1c")))
    test_cases = [c for c in cases if c.load().mask.any()][-plan.test_cases :]
    train_cases = [c for c in cases if c not in test_cases]  # with the lesion-free cases
    times["data"] = time.perf_counter() - start

    log(f"[demo] 2/4 training on {len(train_cases)} cases (method + 4 baselines)")
    tick = time.perf_counter()
    bundle = wsls.train(
        train_cases,
        out / "run",
        demo_config(plan),
        baselines=ALL_BASELINES,
        device=device,
        progress=progress,
        cache=False,
        log=log,
    )
    times["train"] = time.perf_counter() - tick

    log(f"[demo] 3/4 evaluating on {len(test_cases)} held-out cases")
    tick = time.perf_counter()
    models = wsls.load(bundle)
    evaluation = evaluate(
        models,
        test_cases,
        train_cases,
        config=EvalConfig(progress=progress),
        out_dir=out / "evaluation",
        log=log,
    )
    times["evaluate"] = time.perf_counter() - tick

    log("[demo] 4/4 segmenting one held-out case with wsls.segment")
    tick = time.perf_counter()
    shown = test_cases[-1]
    seg = wsls.segment(list(shown.image_paths), models, case_id=shown.id)
    log(f"[demo] {shown.id}: {seg.lesion_ml:.1f} ml, quality {seg.quality.summary()}")
    mask_path = seg.save(out / "segmentation" / f"{shown.id}_lesion.nii.gz")
    acam_path = seg.save_acam(out / "segmentation" / f"{shown.id}_acam.nii.gz")
    times["segment"] = time.perf_counter() - tick
    times["total"] = time.perf_counter() - start

    baseline = "FLAIR threshold"
    summary = {
        "quick": quick,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "dice": {
            name: evaluation.mean(table, name)
            for table, name in (
                (LOCALISATION, CAM_GMP),
                (LOCALISATION, CAM_GAP),
                (LOCALISATION, ACAM),
                (SEGMENTATION, WS_UNET),
                (SEGMENTATION, WSR),
                (SEGMENTATION, "S-UNet"),
                (SEGMENTATION, baseline),
                (SEGMENTATION, baseline + " + largest component"),
            )
        },
        "verdicts": evaluation.verdicts(),
        "files": {
            "data": str(data),
            "bundle": str(bundle),
            "tables": str(evaluation.files.get("tables")),
            "figure": str(evaluation.files.get("figure")),
            "segmentation": str(mask_path),
            "acam": str(acam_path),
        },
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    log("")
    log(evaluation.markdown())
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in times.items() if k != "total")
    log(f"[demo] done in {times['total']:.0f} s ({steps})")
    for name, path in summary["files"].items():
        log(f"[demo]   {name:<13} {path}")
    log(f"[demo]   {'summary':<13} {out / 'summary.json'}")
    return summary
