"""Dataset layouts: find the cases in a folder (or a CSV manifest) and describe each as a CaseRef.

Every layout names modalities canonically ("flair", "t1", "t1c", "t2", "dwi", "adc"), so
``modalities=("flair", "t1c")`` means the same thing for BraTS, MS and CSV data.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wsls.errors import DataError
from wsls.io.case import (
    ANY_LESION,
    BRATS_WHOLE_TUMOUR,
    CaseRef,
    LesionDefinition,
)
from wsls.io.modalities import CANONICAL_ORDER, canonical_modality, normalise_modalities

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr")
_SEPARATORS = re.compile(r"[_\-]")


def _is_image_file(name: str) -> bool:
    return name.lower().endswith(_IMAGE_SUFFIXES) and not name.startswith(".")


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def walk(root: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk`` that follows symbolic links to folders (case folders linked into a dataset
    are found) and visits each real folder once (a link cycle ends there)."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        yield dirpath, dirnames, filenames


def image_stem(path: Path) -> str:
    """A file's name without its image suffix (.nii.gz, .nii, .nrrd, .nhdr; else its last)."""
    stem = _stem(path.name)
    return path.stem if stem == path.name else stem


def is_image_path(path: Path) -> bool:
    """An existing, not hidden file with an image suffix."""
    return path.is_file() and _is_image_file(path.name)


def _name_tokens(stem: str) -> list[str]:
    """Candidate role names in a file stem: the stem, its suffixes, then its prefixes.

    'BraTS20_Training_001_t1ce' -> [..., 't1ce'], 'Flair_subtrMeanDivStd' -> [..., 'flair'].
    """
    lower = stem.lower()
    cuts = [m.start() for m in _SEPARATORS.finditer(lower)]
    suffixes = [lower[c + 1 :] for c in cuts]
    prefixes = [lower[:c] for c in reversed(cuts)]
    return [lower, *suffixes, *prefixes]


class Layout:
    """A discovered dataset: a list of :class:`CaseRef` in a stable (sorted) order.

    Attributes:
        root: the folder or manifest file.
        cases: the cases found.
        modalities: canonical modality names, in channel order.
        notes: remarks made during discovery (e.g. modalities missing from some cases).
    """

    name = "layout"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cases: list[CaseRef] = []
        self.modalities: tuple[str, ...] = ()
        self.notes: list[str] = []
        if not self.root.exists():
            raise DataError(self.root, "dataset folder or manifest not found")

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[CaseRef]:
        return iter(self.cases)

    def __getitem__(self, key: int | str) -> CaseRef:
        if isinstance(key, str):
            for case in self.cases:
                if case.id == key:
                    return case
            raise KeyError(f"no case {key!r} in {self.root}")
        return self.cases[key]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.root)!r}, {len(self)} cases, "
            f"modalities={self.modalities})"
        )


class _FolderLayout(Layout):
    """One folder per case, files recognised by name tokens (see ``roles``)."""

    roles: dict[str, str] = {}
    lesion: LesionDefinition = ANY_LESION
    example: str = ""

    def __init__(self, root: str | Path, modalities: Sequence[str] | None = None) -> None:
        super().__init__(root)
        found = self._discover()
        if not found:
            raise DataError(
                self.root,
                f"no {self.name} cases found (expected folders with files like {self.example})",
            )
        self.modalities = self._choose_modalities(found, modalities)
        for folder, files in found:
            missing = [m for m in self.modalities if m not in files]
            if missing:
                raise DataError(
                    folder,
                    f"missing modality file for {', '.join(repr(m) for m in missing)} "
                    f"(found {_modality_list(files)})",
                )
            self.cases.append(
                CaseRef(
                    id=folder.name,
                    image_paths=tuple(files[m] for m in self.modalities),
                    modalities=self.modalities,
                    mask_path=files.get("mask"),
                    brain_path=files.get("brain"),
                    lesion=self.lesion,
                )
            )

    def role_of(self, file_name: str) -> str | None:
        """The role of a file: a canonical modality, 'mask' (lesion labels), 'brain', or None."""
        for token in _name_tokens(_stem(file_name)):
            if token in self.roles:
                return self.roles[token]
        return None

    def _discover(self) -> list[tuple[Path, dict[str, Path]]]:
        found = []
        for dirpath, dirnames, filenames in walk(self.root):
            dirnames.sort()
            files: dict[str, Path] = {}
            for name in sorted(filenames):
                if not _is_image_file(name):
                    continue
                role = self.role_of(name)
                if role is None:
                    continue
                if role in files:
                    raise DataError(
                        Path(dirpath) / name,
                        f"a second file for {role!r} in one case folder "
                        f"(first: {files[role].name})",
                    )
                files[role] = Path(dirpath) / name
            if any(r not in ("mask", "brain") for r in files):
                found.append((Path(dirpath), files))
        return found

    def _choose_modalities(
        self, found: list[tuple[Path, dict[str, Path]]], wanted: Sequence[str] | None
    ) -> tuple[str, ...]:
        if wanted is not None:
            chosen = normalise_modalities(list(wanted))
            if not chosen:
                raise DataError(self.root, "an empty list of modalities was asked for")
            return chosen
        present = [set(files) for _, files in found]
        common = [m for m in CANONICAL_ORDER if all(m in p for p in present)]
        anywhere = [m for m in CANONICAL_ORDER if any(m in p for p in present)]
        if not common:
            raise DataError(self.root, "no modality is present in every case; pass modalities=")
        dropped = [m for m in anywhere if m not in common]
        if dropped:
            self.notes.append(f"modalities {dropped} are missing from some cases and not used")
        return tuple(common)


def _modality_list(files: dict[str, Path]) -> str:
    names = sorted(r for r in files if r not in ("mask", "brain"))
    return ", ".join(names) or "none"


def _role_table(extra: dict[str, str]) -> dict[str, str]:
    table = {alias: canonical_modality(alias) for alias in _MODALITY_ALIASES}
    table.update(extra)
    return table  # type: ignore[return-value]


_MODALITY_ALIASES = ("flair", "t2f", "t1", "t1n", "t1c", "t1ce", "t1gd", "t2", "t2w")


class BratsLayout(_FolderLayout):
    """BraTS: 2013-2015 DeepMedic style (``Flair_*``, ``T1c_*``, ``OTMultiClass``, ``brainmask``)
    and 2017-2021 style (``<case>_flair``, ``_t1``, ``_t1ce``, ``_t2``, ``_seg``); also 2023
    (``-t2f``, ``-t1n``, ``-t1c``, ``-t2w``, ``-seg``). Lesion = whole tumour (label > 0).
    A ``<case>_brainmask`` file, when present, is the brain mask."""

    name = "BraTS"
    roles = _role_table({"seg": "mask", "otmulticlass": "mask", "ot": "mask", "brainmask": "brain"})
    lesion = BRATS_WHOLE_TUMOUR
    example = "BraTS20_001_flair.nii.gz or Flair_subtrMeanDivStd.nii.gz"


class MSLayout(_FolderLayout):
    """MS lesions as in Lesjak et al. 2017: ``FLAIR``, ``T1``, ``T1POST``, ``T2``,
    ``GOLD_STANDARD`` (optionally prefixed ``patientNN_``). Lesion = mask > 0.5."""

    name = "MS"
    roles = {
        "flair": "flair",
        "t1": "t1",
        "t1post": "t1c",
        "t1c": "t1c",
        "t2": "t2",
        "gold_standard": "mask",
        "consensus": "mask",
        "brainmask": "brain",
    }
    lesion = LesionDefinition("MS lesion")
    example = "patient01/FLAIR.nii.gz and GOLD_STANDARD.nii.gz"


class IslesLayout(Layout):
    """ISLES 2022 BIDS: ``[rawdata/]sub-*/ses-*/{anat,dwi}/sub-*_ses-*_{dwi,adc,FLAIR}.nii.gz``
    and masks ``derivatives/sub-*/ses-*/sub-*_ses-*_msk.nii.gz``.

    FLAIR lies on another grid than DWI/ADC in ISLES 2022, so every image and the mask are
    resampled (by affine) onto the first modality's grid when grids differ.
    """

    name = "ISLES"
    _modality_suffix = {"dwi": "dwi", "adc": "adc", "flair": "flair"}
    _mask_suffixes = ("msk", "mask", "lesion", "lesionmask")

    def __init__(self, root: str | Path, modalities: Sequence[str] | None = None) -> None:
        super().__init__(root)
        images: dict[str, dict[str, Path]] = {}
        masks: dict[str, Path] = {}
        for dirpath, dirnames, filenames in walk(self.root):
            dirnames.sort()
            in_derivatives = "derivatives" in Path(dirpath).relative_to(self.root).parts
            for name in sorted(filenames):
                if not (_is_image_file(name) and name.startswith("sub-")):
                    continue
                key, _, suffix = _stem(name).rpartition("_")
                suffix = suffix.lower()
                if in_derivatives and suffix in self._mask_suffixes:
                    masks[key] = Path(dirpath) / name
                elif not in_derivatives and suffix in self._modality_suffix:
                    images.setdefault(key, {})[self._modality_suffix[suffix]] = Path(dirpath) / name
        if not images:
            raise DataError(
                self.root, "no ISLES (BIDS) cases found: expected sub-*_dwi.nii.gz files"
            )
        if modalities is None:
            self.modalities = tuple(
                m for m in ("dwi", "adc", "flair") if all(m in f for f in images.values())
            )
        else:
            self.modalities = normalise_modalities(list(modalities))
        for key in sorted(images):
            files = images[key]
            missing = [m for m in self.modalities if m not in files]
            if missing:
                raise DataError(key, f"missing modality file for {', '.join(map(repr, missing))}")
            self.cases.append(
                CaseRef(
                    id=key,
                    image_paths=tuple(files[m] for m in self.modalities),
                    modalities=self.modalities,
                    mask_path=masks.get(key),
                    lesion=LesionDefinition("stroke lesion"),
                    on_grid_mismatch="resample",
                )
            )


_ID_COLUMNS = ("case_id", "id", "case", "subject")
_IMAGE_COLUMNS = ("image", "images", "image_paths")
_MASK_COLUMNS = ("mask", "mask_path", "seg", "lesion_mask")
_BRAIN_COLUMNS = ("brain", "brain_mask", "brainmask")
_LABEL_COLUMNS = ("label", "has_lesion", "lesion", "y")
_TRUE = {"1", "1.0", "yes", "y", "true", "t", "lesion", "positive"}
_FALSE = {"0", "0.0", "no", "n", "false", "f", "healthy", "negative", "normal"}


class CsvManifest(Layout):
    """A CSV (or TSV) manifest, one case per row. Paths are relative to the manifest's folder.

    Columns (case-insensitive): ``case_id`` (or id/case/subject); images either as one
    ``image`` column (one 4D file, or several files separated by ';') or one ``image_<modality>``
    column per modality (e.g. ``image_flair,image_t1c``); optional ``mask``, ``brain_mask`` and
    ``label`` (1/0, yes/no, true/false; empty = unknown).
    """

    name = "CSV manifest"

    def __init__(self, path: str | Path, modalities: Sequence[str] | None = None) -> None:
        super().__init__(path)
        path = self.root
        if path.is_dir():
            raise DataError(path, "expected a CSV manifest file, got a folder")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(path, f"cannot read the manifest ({type(err).__name__})") from None
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        rows = [
            r
            for r in csv.reader(text.splitlines(), delimiter=delimiter)
            if any(c.strip() for c in r)
        ]
        if len(rows) < 2:
            raise DataError(path, "empty manifest: no cases listed")
        header = [h.strip().lower() for h in rows[0]]
        col = {name: i for i, name in enumerate(header)}
        id_col = _first(col, _ID_COLUMNS)
        if id_col is None:
            raise DataError(
                path, f"no case id column (one of {', '.join(_ID_COLUMNS)}) in {header}"
            )
        per_modality = [
            (h[len("image_") :], i)
            for h, i in col.items()
            if h.startswith("image_") and h != "image_paths"
        ]
        image_col = _first(col, _IMAGE_COLUMNS)
        if not per_modality and image_col is None:
            raise DataError(path, "no image column ('image' or 'image_<modality>')")
        if per_modality:
            available = {normalise_modalities([m])[0]: i for m, i in per_modality}
            chosen = normalise_modalities(list(modalities)) if modalities else tuple(available)
            for m in chosen:
                if m not in available:
                    raise DataError(path, f"no column image_{m} for modality {m!r}")
            self.modalities = chosen
        elif modalities:
            self.modalities = normalise_modalities(list(modalities))
        mask_col, brain_col = _first(col, _MASK_COLUMNS), _first(col, _BRAIN_COLUMNS)
        label_col = _first(col, _LABEL_COLUMNS)
        seen: set[str] = set()
        for line_no, row in enumerate(rows[1:], start=2):
            row = row + [""] * (len(header) - len(row))
            where = f"{path} line {line_no}"
            case_id = row[id_col].strip()
            if not case_id:
                raise DataError(where, "empty case id")
            if case_id in seen:
                raise DataError(where, f"case id {case_id!r} appears twice")
            seen.add(case_id)
            if per_modality:
                cells = [row[available[m]] for m in self.modalities]
            else:
                cells = [c for c in re.split(r"[;|]", row[image_col]) if c.strip()]
            if not cells or any(not c.strip() for c in cells):
                raise DataError(where, f"case {case_id!r} has an empty image path")
            image_paths = tuple(self._resolve(c, where) for c in cells)
            if (
                len(image_paths) > 1
                and self.modalities
                and len(self.modalities) != len(image_paths)
            ):
                raise DataError(
                    where, f"{len(image_paths)} image files but modalities {self.modalities}"
                )
            self.cases.append(
                CaseRef(
                    id=case_id,
                    image_paths=image_paths,
                    modalities=self.modalities,  # empty: names come from the files
                    mask_path=self._optional(row, mask_col, where),
                    brain_path=self._optional(row, brain_col, where),
                    lesion=ANY_LESION,
                    label=_parse_label(row[label_col], where) if label_col is not None else None,
                )
            )

    def _resolve(self, cell: str, where: str) -> Path:
        p = Path(cell.strip()).expanduser()
        p = p if p.is_absolute() else self.root.parent / p
        if not p.exists():
            raise DataError(p, f"image file not found ({where})")
        return p

    def _optional(self, row: list[str], column: int | None, where: str) -> Path | None:
        if column is None or not row[column].strip():
            return None
        p = Path(row[column].strip()).expanduser()
        p = p if p.is_absolute() else self.root.parent / p
        if not p.exists():
            raise DataError(p, f"mask file not found ({where})")
        return p


def _first(columns: dict[str, int], names: Sequence[str]) -> int | None:
    for name in names:
        if name in columns:
            return columns[name]
    return None


def _parse_label(cell: str, where: str) -> float | None:
    value = cell.strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return 1.0
    if value in _FALSE:
        return 0.0
    raise DataError(where, f"label {cell!r} is not one of 1/0, yes/no, true/false")


_LAYOUTS = {"brats": BratsLayout, "ms": MSLayout, "isles": IslesLayout, "csv": CsvManifest}


def detect_layout(root: str | Path) -> str:
    """Guess the layout name of a folder or file: 'brats', 'ms', 'isles' or 'csv'."""
    root = Path(root)
    if not root.exists():
        raise DataError(root, "dataset folder or manifest not found")
    if root.is_file():
        if root.suffix.lower() in (".csv", ".tsv"):
            return "csv"
        raise DataError(root, "a single file is not a dataset; pass a folder or a CSV manifest")
    ms, brats = MSLayout.roles, BratsLayout.roles
    saw_brats_image = saw_brats_label = False
    for dirpath, dirnames, filenames in walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).parts
        if "derivatives" in rel or any(d.startswith("sub-") for d in rel):
            return "isles"
        for name in filenames:
            if not _is_image_file(name):
                continue
            tokens = _name_tokens(_stem(name))
            if any(ms.get(t) == "mask" and t in ("gold_standard", "consensus") for t in tokens):
                return "ms"
            role = next((brats[t] for t in tokens if t in brats), None)
            saw_brats_image |= role is not None and role not in ("mask", "brain")
            saw_brats_label |= role in ("mask", "brain")
        if saw_brats_image and saw_brats_label:
            return "brats"
    csvs = sorted(p for p in root.iterdir() if p.suffix.lower() in (".csv", ".tsv"))
    if saw_brats_image:
        return "brats"
    if len(csvs) == 1:
        return "csv"
    raise DataError(
        root, "cannot tell the dataset layout; pass layout='brats', 'ms', 'isles' or 'csv'"
    )


def open_dataset(
    root: str | Path, layout: str = "auto", modalities: Sequence[str] | None = None
) -> Layout:
    """Discover the cases of a dataset.

    Args:
        root: a dataset folder, or a CSV/TSV manifest (a folder holding exactly one manifest
            also works with layout 'csv' or 'auto').
        layout: 'auto', 'brats', 'ms', 'isles' or 'csv'.
        modalities: canonical names in channel order (default: those every case has).
    Returns:
        A :class:`Layout` (iterable of :class:`CaseRef`).
    """
    root = Path(root)
    name = detect_layout(root) if layout == "auto" else layout.lower()
    if name not in _LAYOUTS:
        raise DataError(root, f"unknown layout {layout!r}; use one of auto, {', '.join(_LAYOUTS)}")
    if name == "csv" and root.is_dir():
        csvs = sorted(p for p in root.iterdir() if p.suffix.lower() in (".csv", ".tsv"))
        if len(csvs) != 1:
            raise DataError(root, f"expected one CSV manifest in the folder, found {len(csvs)}")
        root = csvs[0]
    return _LAYOUTS[name](root, modalities)


def _is_path(item: Any) -> bool:
    return isinstance(item, str | Path)


def open_datasets(
    data: Any, layout: str, modalities: Sequence[str]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """The cases of ``data`` and where they came from (one source per dataset).

    Args:
        data: a dataset folder or CSV manifest, a list of them (each read with its own
            layout), a ``Layout``, or a list of ``CaseRef`` / ``Case`` / ``Prepared``.
        layout: 'auto' or a layout name, for every folder given.
    Returns:
        (cases, sources): sources are {"data": folder, "layout": name, "cases": ids}.
    """
    if _is_path(data) or isinstance(data, Layout):
        data = [data]
    items = list(data)
    if not items:
        raise DataError("data", "no cases given")
    if not all(_is_path(d) or isinstance(d, Layout) for d in items):
        return items, [{"data": None, "layout": "in memory", "cases": [c.id for c in items]}]
    cases, sources = [], []
    for entry in items:
        dataset = entry if isinstance(entry, Layout) else open_dataset(entry, layout, modalities)
        cases.extend(dataset)
        sources.append(
            {
                "data": str(dataset.root.resolve()),
                "layout": dataset.name,
                "cases": [c.id for c in dataset],
                "notes": dataset.notes,
            }
        )
    ids = [c.id for c in cases]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise DataError("data", f"case ids occur in more than one dataset: {', '.join(twice)}")
    return cases, sources
