"""Cross-validation of the method on many real cases, per case, beside the trivial baseline.

k-fold over any list of dataset folders (each read with its own layout), or train on some
folders and test on others (cross-dataset). Per test case: Dice, sensitivity, specificity,
HD95, predicted/true volume, the lambda chosen, the time, for the method (and the paper's
variant), beside FLAIR z-scored in the brain above a threshold tuned on the training folds,
with and without its largest component. Patch (image-level) labels only for training; voxel
masks tune the baseline's threshold and score. A fold whose results exist is not recomputed.

    python benchmarks/eval_cv.py --data ../shared/data/brats2015 ~/wsls-data/brats2018 \
        --folds 5 --out cv20
    python benchmarks/eval_cv.py --train ../shared/data/brats2015 \
        --test ~/wsls-data/brats2018 --out cross_2015_to_2018
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from wsls.baselines.threshold import ThresholdBaseline
from wsls.data.cache import VolumeCache
from wsls.data.preprocess import brain_mask  # noqa: E402
from wsls.io.csvfile import write_csv  # noqa: E402
from wsls.io.layouts import open_dataset
from wsls.method.config import WSLSConfig, paper_variant  # noqa: E402
from wsls.method.presets import preset_config  # noqa: E402
from wsls.method.segment import segment_volume  # noqa: E402
from wsls.method.trained import load_models, save_models  # noqa: E402
from wsls.metrics import evaluate as case_metrics  # noqa: E402
from wsls.training.pipeline import train_wsls  # noqa: E402

BASELINE, BASELINE_LCC = "FLAIR threshold", "FLAIR threshold + LCC"


@dataclass
class Item:
    """One case: where it came from, its reference, and what scoring needs on the full grid."""

    source: str
    ref: object
    light: SimpleNamespace  # id, image (FLAIR only), modalities, mask, brain, spacing


def _load_items(folders: list[str], modalities: tuple[str, ...]) -> list[Item]:
    items = []
    for folder in folders:
        dataset = open_dataset(folder, "auto", modalities)
        for ref in dataset:
            case = ref.load()
            brain = case.brain if case.brain is not None else brain_mask(case.image)
            light = SimpleNamespace(
                id=case.id,
                image=case.channel("flair")[None].copy(),
                modalities=("flair",),
                mask=case.mask,
                brain=brain,
                spacing=case.spacing,
            )
            items.append(Item(Path(folder).name, ref, light))
    return items


def _folds(items: list[Item], k: int) -> list[list[int]]:
    """Round-robin over the cases in folder order: every fold mixes the sources."""
    return [list(range(i, len(items), k)) for i in range(k)]


def _score(pred, item: Item) -> dict:
    light = item.light
    row = case_metrics(pred, light.mask, light.brain, light.spacing)
    true = int(np.count_nonzero(light.mask & light.brain))
    row["volume_ratio"] = int(np.count_nonzero(pred & light.brain)) / max(true, 1)
    return row


def _diagnostics(result, prep, config) -> dict:
    """The quality verdict and its measures, and (dx_, against the prepared-grid truth) where
    the method's evidence lay."""
    from wsls.method.confident import supported_lesion
    from wsls.metrics import dice

    brain, truth, maps = prep.brain, prep.mask & prep.brain, result.maps
    posterior = (maps.posterior >= 0.5) & brain
    support = supported_lesion(maps.acam, brain, maps.posterior, config.confident)
    hot = (maps.acam >= 0.5) & brain
    row = {"verdict": result.quality.verdict, "flags": "; ".join(result.quality.flags)}
    row.update({f"q_{k}": v for k, v in result.quality.measures.items()})
    row.update(
        {
            "dx_acam_max_in_lesion": float(maps.acam[truth].max()) if truth.any() else math.nan,
            "dx_hot_in_lesion": float((hot & truth).sum() / max(int(hot.sum()), 1)),
            "dx_posterior_dice": dice(posterior, truth),
            "dx_support_dice": dice(support, truth),
        }
    )
    return row


def _run_fold(name, train, test, config, variants, cache, out, log, reuse, overrides):
    fold_file = out / f"{name}.json"
    if fold_file.exists():
        return json.loads(fold_file.read_text())
    rows = []
    baselines = {
        label: ThresholdBaseline("flair", largest_component=lcc).fit([it.light for it in train])
        for label, lcc in ((BASELINE, False), (BASELINE_LCC, True))
    }
    trained = {}
    for variant in variants:
        if reuse is not None:  # the trained networks of another run, this run's settings
            models = load_models(reuse / name / variant / "bundle")
            settings = with_overrides(VARIANTS[variant](config), overrides)
            trained[variant] = (replace(models, config=settings), math.nan)
            continue
        if variant != variants[0]:  # the same classifier: its finished run is reused
            shared = out / name / variants[0] / "runs" / "classifier"
            target = out / name / variant / "runs" / "classifier"
            if shared.exists() and not target.exists():
                shutil.copytree(shared, target)
        tick = time.perf_counter()
        models = train_wsls(
            [cache.get(it.ref) for it in train],
            out / name / variant,
            VARIANTS[variant](config),
            resume=True,
            progress=False,
            log=lambda _m: None,
        )
        trained[variant] = (models, time.perf_counter() - tick)
        save_models(models, out / name / variant / "bundle")
        log(f"  {name} {variant}: trained on {len(train)} cases in {trained[variant][1]:.0f} s")
    for it in test:
        prep = cache.get(it.ref)
        base = {"fold": name, "case": it.light.id, "source": it.source}
        base["true_voxels"] = int(np.count_nonzero(it.light.mask & it.light.brain))
        for variant, (models, train_seconds) in trained.items():
            tick = time.perf_counter()
            result = segment_volume(
                models.classifier, models.embedding, prep.image, prep.brain, models.config
            )
            seconds = time.perf_counter() - tick
            pred = prep.to_original(result.mask)
            row = {**base, "method": variant, **_score(pred, it)}
            row["lambda"] = result.regions.threshold if result.regions else math.nan
            row.update(_diagnostics(result, prep, models.config))
            row["seconds"] = seconds
            row["train_seconds"] = train_seconds
            rows.append(row)
        for label, baseline in baselines.items():
            pred = baseline.predict(it.light)
            rows.append(
                {**base, "method": label, **_score(pred, it), "threshold": baseline.threshold}
            )
        line = ", ".join(f"{r['method']} {r['dice']:.3f}" for r in rows if r["case"] == it.light.id)
        log(f"  {it.light.id}: {line}")
    fold_file.write_text(json.dumps(rows, indent=1, default=float))
    return rows


VARIANTS = {"wsls": lambda c: c, "paper": paper_variant}


def with_overrides(config: WSLSConfig, overrides: list[str]) -> WSLSConfig:
    """``config`` with dotted settings changed: ["regions.connectivity=0", ...]."""
    data = config.to_dict()
    for item in overrides:
        key, _, text = item.partition("=")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node[part]
        if last not in node:
            raise SystemExit(f"--set: no setting {key!r}")
        node[last] = value
    return WSLSConfig.from_dict(data)


def _summary(rows: list[dict], variants: list[str]) -> str:
    """The per-case table (Dice of each method, the main variant's volume ratio, lambda and
    quality verdict), means, and the counts the acceptance asks for."""
    methods = [*variants, BASELINE, BASELINE_LCC]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    by = {(r["case"], r["method"]): r for r in rows}
    main = variants[0]
    lines = [
        "| case | source | true voxels | "
        + " | ".join(methods)
        + f" | {main}: volume ratio | lambda | verdict |",
        "|---" * (len(methods) + 6) + "|",
    ]
    for case in cases:
        r = by[(case, main)]
        cells = [f"{by[(case, m)]['dice']:.3f}" if (case, m) in by else "-" for m in methods]
        lines.append(
            f"| {case} | {r['source']} | {r['true_voxels']} | "
            + " | ".join(cells)
            + f" | {r['volume_ratio']:.2f} | {r['lambda']:.3g} | {r.get('verdict', '-')} |"
        )
    means = []
    for m in methods:
        d = [by[(c, m)]["dice"] for c in cases if (c, m) in by]
        means.append(f"**{np.mean(d):.3f} ± {np.std(d, ddof=1) if len(d) > 1 else 0:.3f}**")
    lines.append("| mean ± sd | | | " + " | ".join(means) + " | | | |")
    dice = np.array([by[(c, main)]["dice"] for c in cases])
    lcc = np.array([by[(c, BASELINE_LCC)]["dice"] for c in cases])
    ratio = np.array([by[(c, main)]["volume_ratio"] for c in cases])
    passed = np.array([by[(c, main)].get("verdict") == "ok" for c in cases])
    lines += [
        "",
        f"- {main}: mean Dice {dice.mean():.3f}; above {BASELINE_LCC} on "
        f"{int((dice > lcc).sum())} of {len(cases)}; lowest {dice.min():.3f}; "
        f"below 0.5 on {int((dice < 0.5).sum())}; volume ratio in [0.5, 2] on "
        f"{int(((ratio >= 0.5) & (ratio <= 2)).sum())}, above 2 on {int((ratio > 2).sum())}",
        f"- quality verdict: {int(passed.sum())} ok, {int((~passed).sum())} to check; lowest Dice "
        f"of the ok ones {dice[passed].min() if passed.any() else float('nan'):.3f}; cases "
        f"under 0.5 not flagged: {int(((dice < 0.5) & passed).sum())}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", help="dataset folders for k-fold cross-validation")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--train", nargs="+", help="cross-dataset: training folders")
    parser.add_argument("--test", nargs="+", help="cross-dataset: test folders")
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="tumour", choices=("tumour", "ms", "stroke"))
    parser.add_argument("--modalities", nargs="+", help="default: the preset's")
    parser.add_argument("--test-only", nargs="*", help="cross-dataset: test only these case ids")
    parser.add_argument("--variants", nargs="+", default=["wsls", "paper"], choices=list(VARIANTS))
    parser.add_argument("--only-folds", type=int, nargs="*", help="run only these (1-based)")
    parser.add_argument(
        "--reuse", type=Path, help="segment with the bundles of this earlier run (no training)"
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE",
        help="settings to change, e.g. regions.connectivity=0 (JSON values)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if bool(args.data) == bool(args.train or args.test):
        parser.error("give either --data (k-fold) or --train and --test (cross-dataset)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = preset_config(args.preset)
    if args.modalities:
        config = replace(config, modalities=tuple(args.modalities))
    config = with_overrides(config, args.set)
    cache = VolumeCache(config.preprocess, out / "cache")
    start = time.perf_counter()
    if args.data:
        items = _load_items(args.data, config.modalities)
        plan = [
            (
                f"fold{i + 1}",
                [items[j] for j in range(len(items)) if j not in set(f)],
                [items[j] for j in f],
            )
            for i, f in enumerate(_folds(items, args.folds))
        ]
    else:
        train, test = (
            _load_items(args.train, config.modalities),
            _load_items(args.test, config.modalities),
        )
        if args.test_only:
            test = [it for it in test if it.light.id in set(args.test_only)]
        plan = [("cross", train, test)]
    rows = []
    for i, (name, train, test) in enumerate(plan, start=1):
        if args.only_folds and i not in args.only_folds:
            continue
        print(f"[eval_cv] {name}: train {len(train)}, test {len(test)}", flush=True)
        rows += _run_fold(
            name,
            train,
            test,
            config,
            args.variants,
            cache,
            out,
            lambda m: print(m, flush=True),
            args.reuse,
            args.set,
        )
    write_csv(out / "per_case.csv", rows)
    command = "python benchmarks/eval_cv.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = f"command: {command}\n\n" + _summary(rows, args.variants)
    (out / "summary.md").write_text(text)
    print(text)
    print(f"[eval_cv] {time.perf_counter() - start:.0f} s; {out / 'per_case.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
