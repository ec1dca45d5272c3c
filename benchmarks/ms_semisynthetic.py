"""More MS training cases with known truth: a shared MS scan with each of the 30 real MS lesion
masks of the same study (lesion_masks/ms_mni, same MNI grid) pasted in with the scan's own lesion
contrast (wsls.phantom.semisynthetic.paste_into_scan). The held-out patient's mask is never
pasted (it is that patient's truth).

    python benchmarks/ms_semisynthetic.py ../shared/data/ms_lesjak2017 patient19 \
        --exclude patient26 --out ~/wsls-data/ms_semi_19
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsls.io.layouts import open_dataset
from wsls.phantom.semisynthetic import lesion_mask_files, write_pasted_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the MS dataset folder (ms_lesjak2017)")
    parser.add_argument("host", help="the patient whose scan receives the lesions")
    parser.add_argument("--masks", default=None, help="folder of MNI lesion masks")
    parser.add_argument("--exclude", nargs="*", default=[], help="patients whose masks stay out")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    data = Path(args.data)
    masks_dir = Path(args.masks) if args.masks else data.parent / "lesion_masks" / "ms_mni"
    host = open_dataset(data, "ms", ("flair", "t1", "t1c", "t2"))[args.host]
    skip = {args.host, *args.exclude}
    masks = [m for m in lesion_mask_files(masks_dir) if m.name.split("_")[0] not in skip]
    folders = write_pasted_dataset(host, masks, args.out)
    print(f"{len(folders)} cases in {args.out} ({len(masks)} pasted masks, host {args.host})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
