"""The ``wsls`` command: demo, train, segment, models, evaluate, bench.

User mistakes (:class:`wsls.errors.UserError`: bad data, bundles, settings, usage) and
``OSError`` (missing files, a full disk) print one line to stderr and exit with status 1 (2 for
bad command-line usage); ``--debug`` shows the traceback. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsls.errors import UserError

BASELINE_NAMES = {
    "gap": "classifier_gap",
    "gmp": "classifier_gmp",
    "ws_unet": "ws_unet",
    "s_unet": "s_unet",
}
LAYOUTS = ("auto", "brats", "ms", "isles", "csv")


def _err(message: str) -> None:
    print(f"wsls: error: {message}", file=sys.stderr)


# ---------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from wsls.demo import run_demo
    from wsls.io.outputs import check_output
    from wsls.runtime import resolve_device

    check_output(args.out, kind="folder", what="demo folder")
    resolve_device(args.device, "auto")
    run_demo(args.out, quick=args.quick, device=args.device, progress=not args.no_progress)
    return 0


# ---------------------------------------------------------------- train


def _baselines(names: Sequence[str]) -> tuple[str, ...]:
    if not names or list(names) == ["none"]:
        return ()
    if "all" in names:
        return tuple(BASELINE_NAMES.values())
    out = []
    for name in names:
        key = name.lower().removeprefix("classifier_").replace("-", "_")
        if key not in BASELINE_NAMES:
            raise UserError(
                f"unknown baseline {name!r}; choose from all, none, {', '.join(BASELINE_NAMES)}"
            )
        out.append(BASELINE_NAMES[key])
    return tuple(dict.fromkeys(out))


def _config(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from wsls.method.config import StageSchedule
    from wsls.method.presets import preset_config

    config = preset_config(args.preset)
    if args.config:
        path = Path(args.config)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON ({err})") from None
        data = data.get("method", data)  # a bundle's config.json works too
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object of settings")
        config = config.updated(data)
    if args.modalities:
        from wsls.io.modalities import normalise_modalities

        config = replace(config, modalities=normalise_modalities(args.modalities))
    if args.epochs is not None or args.patches is not None:
        old = config.classifier
        config = replace(
            config,
            classifier=StageSchedule(
                args.epochs if args.epochs is not None else old.epochs,
                args.patches if args.patches is not None else old.per_epoch,
            ),
        )
    if args.members is not None:
        config = replace(config, classifier_members=args.members)
    return config


def _at_least(args: argparse.Namespace, **minimums: int) -> None:
    """Refuse command-line numbers below their minimum before any work (one line)."""
    for name, low in minimums.items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be >= {low}, got {value}")


def cmd_train(args: argparse.Namespace) -> int:
    from wsls.training.run import train

    _at_least(args, epochs=1, patches=1, members=1, workers=1)
    config = _config(args)
    bundle = train(
        args.data,
        args.out,
        config,
        layout=args.layout,
        baselines=_baselines(args.baselines),
        val_data=args.val,
        resume=args.resume,
        device=args.device,
        progress=not args.no_progress,
        cache=not args.no_cache,
        workers=args.workers,
    )
    from wsls.runtime import placement

    if placement().rank == 0:
        print(f"model bundle: {bundle}")
    return 0


# ---------------------------------------------------------------- segment


_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd")


def _single_output(args: argparse.Namespace) -> bool:
    """-o names a file (one case) or a folder (many cases); a folder with an image file's
    name is refused rather than silently taken as the folder."""
    output = Path(args.output)
    if not str(output).lower().endswith(_IMAGE_SUFFIXES):
        return False
    if output.is_dir():
        raise UserError(
            f"-o {output} is an existing folder with an image file's name: for one case give "
            "a file name (move the folder away), for many cases a folder name without "
            ".nii/.nii.gz/.nrrd"
        )
    return True


def _check_segment_outputs(args: argparse.Namespace, single: bool) -> None:
    """Before any work: the outputs can be written, overwrite no input, and stay out of the
    model bundle."""
    from wsls.inputs import input_files
    from wsls.io.outputs import check_output
    from wsls.method.trained import bundle_path

    bundle = bundle_path(args.model)
    if not single:
        check_output(args.output, kind="folder", bundles=[bundle], what="output folder")
        return
    inputs = input_files(args.inputs)
    if args.brain:
        inputs.append(Path(args.brain))
    outputs = [Path(args.output)] + ([_acam_path(Path(args.output))] if args.acam else [])
    for output in outputs:
        check_output(output, inputs=inputs, bundles=[bundle])


def _model_first(args: argparse.Namespace) -> None:
    """The older form ``wsls segment MODEL INPUT... -o OUT``: a first input that is a bundle or
    run folder (it holds config.json or bundle/config.json; a case folder never does) is the
    model."""
    first = Path(args.inputs[0])
    if args.model is None and len(args.inputs) > 1:
        if (first / "config.json").is_file() or (first / "bundle" / "config.json").is_file():
            args.model, args.inputs = str(first), args.inputs[1:]


def cmd_segment(args: argparse.Namespace) -> int:
    from wsls.api import resolve_model, segment
    from wsls.batch import segment_many
    from wsls.runtime import placement, resolve_device

    _model_first(args)

    _at_least(args, seeds=1)
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise UserError(f"--threshold (lambda) must lie in (0, 1), got {args.threshold}")
    single = _single_output(args)
    _check_segment_outputs(args, single)
    device = resolve_device(args.device)
    options = {"seeds": args.seeds, "threshold": args.threshold, "strict": args.strict}
    options = {k: v for k, v in options.items() if v is not None}
    if single:
        start = time.perf_counter()
        inputs = args.inputs if len(args.inputs) > 1 else args.inputs[0]
        models = resolve_model(args.model, device)
        seg = segment(inputs, models, device=args.device, brain=args.brain, **options)
        path = seg.save(args.output)
        if args.acam:
            seg.save_acam(_acam_path(Path(args.output)))
        print(
            f"{seg.case_id}: {int(seg.mask.sum())} lesion voxels ({seg.lesion_ml:.1f} ml), "
            f"probability {seg.probability:.3f}, quality {seg.quality.summary()} -> {path} "
            f"({time.perf_counter() - start:.1f} s)"
        )
        return 0
    if args.brain:
        raise UserError("--brain needs a single case written to a .nii/.nii.gz file")
    rows = segment_many(
        args.inputs,
        args.model,
        args.output,
        layout=args.layout,
        device=args.device,
        save_acam=args.acam,
        skip_existing=args.skip_existing,
        progress=not args.no_progress,
        **options,
    )
    failed = [r for r in rows if "error" in r]
    done = [r for r in rows if "error" not in r]
    rank, world, _ = placement()
    where = f"rank {rank}/{world}: " if world > 1 else ""
    flagged = [r["case"] for r in done if r.get("quality") == "check"]
    print(f"{where}{len(done)} case(s) segmented into {args.output}, {len(failed)} failed")
    if flagged:
        print(f"{where}{len(flagged)} mask(s) to check (see summary.csv): {', '.join(flagged)}")
    return 1 if failed else 0


def _acam_path(mask_path: Path) -> Path:
    name = mask_path.name
    for suffix in (".nii.gz", ".nii", ".nrrd"):
        if name.endswith(suffix):
            return mask_path.with_name(name[: -len(suffix)] + "_acam" + suffix)
    return mask_path.with_name(name + "_acam.nii.gz")


# ---------------------------------------------------------------- evaluate


def _eval_config(args: argparse.Namespace):
    from wsls.evaluation.evaluate import EvalConfig

    return EvalConfig(
        baseline_modality=args.baseline_modality,
        baseline_normalise=not args.raw_baseline,
        hd95=not args.no_hd95,
        progress=not args.no_progress,
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from wsls.evaluation.evaluate import evaluate
    from wsls.io.outputs import check_output
    from wsls.method.trained import bundle_path

    if args.folds is not None and args.train_data:
        raise UserError("give either --train-data or --folds, not both")
    _at_least(args, folds=2)
    check_output(args.out, kind="folder", bundles=[bundle_path(args.model)], what="output folder")
    if args.folds is not None:
        from wsls.crossval import cross_validate_datasets
        from wsls.runtime import resolve_device

        resolve_device(args.device, "auto")

        result = cross_validate_datasets(
            args.model,
            args.data,
            args.folds,
            args.out,
            layout=args.layout,
            eval_config=_eval_config(args),
            resume=args.resume,
            device=args.device,
            progress=not args.no_progress,
        )
    else:
        result = evaluate(
            args.model,
            args.data,
            args.train_data,
            config=_eval_config(args),
            layout=args.layout,
            out_dir=args.out,
        )
    print()
    print(result.markdown())
    for name, path in result.files.items():
        print(f"  {name:<11} {path}")
    return 0


# ---------------------------------------------------------------- models


def cmd_models(args: argparse.Namespace) -> int:
    from wsls import pretrained

    names = args.names or pretrained.names()
    if not names:
        _err("no shipped models in this installation")
        return 1
    print("\n\n".join(pretrained.describe(name) for name in names))
    return 0


# ---------------------------------------------------------------- bench


def _benchmarks_dir() -> Path:
    here = Path(__file__).resolve().parents[1] / "benchmarks"
    if not here.is_dir():
        raise UserError(
            f"{here}: benchmarks not found (they come with the source checkout, not the wheel)"
        )
    return here


def cmd_bench(args: argparse.Namespace) -> int:
    scripts = sorted(_benchmarks_dir().glob("bench_*.py"))
    if args.only:
        wanted = {n.removeprefix("bench_").removesuffix(".py") for n in args.only}
        known = {s.stem.removeprefix("bench_") for s in scripts}
        unknown = wanted - known
        if unknown:
            raise UserError(f"unknown benchmark {sorted(unknown)}; have {', '.join(sorted(known))}")
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        code = subprocess.call([sys.executable, str(script), *args.extra])
        if code:
            failed.append(script.name)
    if failed:
        _err(f"benchmarks failed: {', '.join(failed)}")
        return 1
    return 0


# ---------------------------------------------------------------- parser

_EXAMPLES = {
    "main": """examples:
  wsls demo --quick                       # the whole method on a phantom, ~3 minutes on a CPU
  wsls train data/brats --out run --baselines all
  wsls segment case_folder/ -o lesion.nii.gz      # the shipped tumour model (wsls models)
  wsls segment scan_flair.nii.gz scan_t1c.nii.gz -o lesion.nii.gz --model run/bundle
  wsls segment data/new_cases/ -o masks/ --model run/bundle
  wsls evaluate run/bundle data/test --train-data data/train
  wsls bench --only attention_cam
""",
    "demo": """examples:
  wsls demo                 # 12 phantom cases, about 5 minutes on 2 CPU cores
  wsls demo --quick --out /tmp/demo
""",
    "train": """examples:
  wsls train ../shared/data/brats2015 --layout brats --out run --modalities flair t1c
  wsls train manifest.csv --out run --epochs 4 --baselines gap gmp ws_unet
  wsls train data --out run --resume               # continue an interrupted run
  torchrun --nproc-per-node 4 -m wsls train data --out run   # one GPU per process

A CSV manifest has columns case_id, image_<modality> (or image: one 4D file or files joined
by ';'), optional mask, brain_mask, and label (1/0: the image-level label).
""",
    "segment": """examples:
  wsls segment case_folder/ -o lesion.nii.gz                  # shipped tumour model
  wsls segment flair.nii.gz t1c.nii.gz -o lesion.nii.gz       # one file per modality
  wsls segment data/ more/*.nii.gz -o masks/ --model run/bundle --acam   # many cases
  torchrun --nproc-per-node 4 -m wsls segment data/ -o masks/ --model run/bundle  # over GPUs

Without --model the shipped tumour model segments (wsls models lists the shipped ones).
Masks are written on each input's own grid, orientation and affine (uint8, 1 = lesion).
The older form `wsls segment MODEL INPUT... -o OUT` still works.
""",
    "models": """examples:
  wsls models            # every shipped model with its card
  wsls models tumour
""",
    "evaluate": """examples:
  wsls evaluate run/bundle data/test --train-data data/train --out eval
  wsls evaluate run/bundle data                      # training cases from run/training.json
  wsls evaluate run/bundle ../shared/data/brats2015 --folds 4 --out cv   # leave-one-out, retrained

Writes table1_localisation.{csv,md}, table2_segmentation.{csv,md}, per_case.csv, tables.md and
figure2.png. Thresholds of the maps and of the FLAIR baseline are tuned on the training cases.
""",
    "bench": """examples:
  wsls bench                         # every benchmarks/bench_*.py
  wsls bench --only affinity_grow -- --device cpu --quick
  wsls bench --only data -- --only phantom --repeats 3

The scripts run with this command's OpenMP setting (OMP_WAIT_POLICY=PASSIVE unless set).
""",
}


def _parser() -> argparse.ArgumentParser:
    from wsls import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="wsls",
        description="Weakly supervised 3D brain lesion segmentation from image-level labels.",
        epilog=_EXAMPLES["main"],
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"wsls {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=help_text, description=help_text, epilog=_EXAMPLES[name], formatter_class=fmt
        )
        p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
        return p

    p = add("demo", "train and evaluate on a generated phantom, end to end")
    p.add_argument("--quick", action="store_true", help="smaller and shorter (about 3 minutes)")
    p.add_argument("--out", default="demo_out", help="output folder (default: ./demo_out)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if any)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = add("train", "train the method (and baselines) on a dataset")
    p.add_argument("data", nargs="+", help="dataset folders or CSV manifests (each its own layout)")
    p.add_argument("--out", required=True, help="run folder (the bundle goes to OUT/bundle)")
    p.add_argument("--layout", default="auto", choices=LAYOUTS, help="dataset layout")
    p.add_argument(
        "--preset",
        default="tumour",
        choices=("tumour", "ms", "stroke"),
        help="the lesion type's settings (default: tumour; saved in the bundle)",
    )
    p.add_argument("--modalities", nargs="+", help="channels in order (default: the preset's)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="cases computed at once in the per-case stages (threads; default 1)",
    )
    p.add_argument("--epochs", type=int, help="classifier epochs")
    p.add_argument("--patches", type=int, help="classifier patches per epoch")
    p.add_argument(
        "--members",
        type=int,
        help="classifiers trained from consecutive seeds; segmenting follows their consensus "
        "and flags disagreement (each costs its training and its maps per scan; default 1)",
    )
    p.add_argument("--config", help="JSON file with WSLSConfig settings (or a bundle's config)")
    p.add_argument(
        "--baselines",
        nargs="*",
        default=[],
        metavar="NAME",
        help="also train: all, or any of gap gmp ws_unet s_unet (for evaluate)",
    )
    p.add_argument("--val", help="held-out dataset that picks the classifier's best epoch")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--device", default=None, help="cpu, cuda (default: CUDA if any)")
    p.add_argument("--no-cache", action="store_true", help="do not keep prepared volumes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = add("segment", "segment scans (with the shipped tumour model, or --model)")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files (one case: one file per modality) or folders of cases",
    )
    p.add_argument(
        "--model",
        default=None,
        help="a shipped model's name (wsls models) or a bundle / run folder (default: tumour)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="a .nii/.nii.gz file (one case) or a folder (one mask per case)",
    )
    p.add_argument("--layout", default="auto", choices=LAYOUTS, help="layout of input folders")
    p.add_argument("--brain", help="brain mask file (single case)")
    p.add_argument("--acam", action="store_true", help="also write the ACAM map")
    p.add_argument("--seeds", type=int, help="region-growing seeds (default: the model's)")
    p.add_argument("--threshold", type=float, help="affinity threshold lambda (default: auto)")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep masks already written (those that read completely on the input's grid)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse inputs that look wrong (modalities in another order, misnamed files, "
        "implausible voxel sizes) instead of warning",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_segment)

    p = add("evaluate", "tables 1 and 2 and the figure on labelled cases")
    p.add_argument("model", help="model bundle (or run folder); with --folds only its config")
    p.add_argument("data", nargs="+", help="labelled dataset folders or CSV manifests (test cases)")
    p.add_argument(
        "--train-data",
        nargs="+",
        help="the training cases (thresholds are tuned on them; default: the run's record)",
    )
    p.add_argument("--folds", type=int, help="cross-validate instead: retrain on K-1 folds")
    p.add_argument("--out", default="evaluation", help="output folder (default: ./evaluation)")
    p.add_argument("--layout", default="auto", choices=LAYOUTS, help="dataset layout")
    p.add_argument("--baseline-modality", default="flair", help="trivial baseline's image")
    p.add_argument(
        "--raw-baseline",
        action="store_true",
        help="threshold the baseline image as stored (already z-scored data)",
    )
    p.add_argument("--no-hd95", action="store_true", help="skip HD95")
    p.add_argument("--resume", action="store_true", help="with --folds: reuse finished folds")
    p.add_argument("--device", default=None, help="training device with --folds")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = add("models", "list the shipped models with their model cards")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these models")
    p.set_defaults(func=cmd_models)

    p = add("bench", "run the op benchmarks (benchmarks/bench_*.py) and print their tables")
    p.add_argument("--only", nargs="+", metavar="NAME", help="e.g. attention_cam affinity_grow")
    p.add_argument("extra", nargs="*", help="arguments passed to each script (after --)")
    p.set_defaults(func=cmd_bench)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """InputWarnings as one line (``wsls: warning: ...``); others as Python shows them."""
    from wsls.errors import InputWarning

    if issubclass(category, InputWarning):
        text = " ".join(str(message).split())
        print(f"wsls: warning: {text}", file=file or sys.stderr, flush=True)
        return
    _DEFAULT_SHOWWARNING(message, category, filename, lineno, file, line)


_DEFAULT_SHOWWARNING = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wsls`` command; returns the exit status."""
    # OpenMP threads that spin while they wait cost 3-25x on a shared or oversubscribed CPU
    # (measured on a loaded 2-core machine: one BraTS case 13 s -> 4 s). Wait passively
    # unless the user chose otherwise; read when torch first loads, so set before that.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as err:  # training says where it stopped and what it wrote
        text = " ".join(str(err).split())
        _err(f"interrupted: {text}" if text else "interrupted")
        return 130
    except (UserError, OSError) as err:  # user mistakes are one line; anything else a traceback
        if args.debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        _err(f"{message} (--debug shows the traceback)")
        return 1
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
