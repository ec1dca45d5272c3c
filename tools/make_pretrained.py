"""Put a trained bundle into the package as a shipped model, with its model card.

    python tools/make_pretrained.py runs/default_tumour/bundle wsls/pretrained/tumour \
        --cv-summary results/cv20/summary.md

The card records what the bundle's configuration says of its training (cases, sources, seed,
wsls version, git commit), the data terms, the modalities and file naming it expects, the
cross-validation figures (the summary that benchmarks/eval_cv.py wrote, and the command that
wrote it) and its intended use.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from wsls.io.modalities import naming_hint

TERMS = (
    "BraTS 2015 and 2018 training data (Menze et al., IEEE TMI 2015; Bakas et al., Sci Data "
    "2017; Bakas et al., arXiv:1811.02629): for research; cite these works when you use the model"
)
USE = (
    "research only, not diagnosis or treatment planning: a weakly supervised model (patch labels, "
    "no voxel labels) for whole-tumour masks of gliomas on skull-stripped scans; check every mask "
    "whose quality verdict says 'check'"
)


def cv_figures(summary: Path) -> dict[str, str]:
    """The headline lines of an eval_cv summary.md."""
    text = summary.read_text()
    lines = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    command = re.search(r"^command: (.*)$", text, re.M)
    out = {"summary": " | ".join(lines)}
    if command:
        out["command"] = command.group(1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("target", type=Path, help="wsls/pretrained/<name>")
    parser.add_argument("--title", default="Whole tumour (glioma), FLAIR + T1c")
    parser.add_argument("--cv-summary", type=Path, help="eval_cv's summary.md for the card")
    args = parser.parse_args(argv)
    document = json.loads((args.bundle / "config.json").read_text())
    method = document["config"]["method"]
    training = document["config"].get("training", {})
    args.target.mkdir(parents=True, exist_ok=True)
    for old in args.target.glob("*.safetensors"):
        old.unlink()
    for name in ["config.json", *(w["file"] for w in document["weights"].values())]:
        shutil.copyfile(args.bundle / name, args.target / name)
    card = {
        "name": args.target.name,
        "title": args.title,
        "lesion": "whole tumour (BraTS labels > 0: oedema, necrosis, enhancing tumour)",
        "preset": method.get("preset", "tumour"),
        "modalities": naming_hint(method["modalities"]),
        "training_data": {
            "cases": len(training.get("cases", [])),
            "sources": ", ".join(
                s.get("data", "?").rsplit("/", 1)[-1] for s in training.get("sources", [])
            ),
            "ids": ", ".join(training.get("cases", [])),
        },
        "data_terms": TERMS,
        "intended_use": USE,
        "rebuild": "tools/train_default.sh (the data: ../shared/data and get_brats2018.sh)",
        "provenance": {
            k: training[k] for k in ("wsls_version", "git_commit", "seed") if k in training
        },
    }
    if args.cv_summary:
        card["cross_validation"] = cv_figures(args.cv_summary)
    (args.target / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    size = sum(p.stat().st_size for p in args.target.iterdir()) / 1e6
    print(f"{args.target}: {len(list(args.target.iterdir()))} files, {size:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
