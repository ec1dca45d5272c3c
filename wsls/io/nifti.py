"""Medical image I/O: NIfTI through nibabel (NRRD through pynrrd when installed).

Arrays inside wsls are in canonical RAS voxel order: axis 0 runs to the patient's Right,
axis 1 to Anterior, axis 2 to Superior (the closest such order for oblique scans). Loading
reorients explicitly and remembers how; :func:`save_like` undoes it, so a written mask has the
original file's voxel order, affine and header and lies exactly on the scan in any viewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsls.errors import DataError, input_remark
from wsls.io import orientation
from wsls.io.atomic import atomic_path
from wsls.io.resample import resample_to_grid

PathLike = str | Path
_AFFINE_ATOL_MM = 1e-3
PLAUSIBLE_SPACING_MM = (0.2, 10.0)  # voxel sizes outside this range are warned about
_NRRD_SUFFIXES = (".nrrd", ".nhdr")
WRITABLE_SUFFIXES = (".nii", ".nii.gz", ".nrrd")  # .nhdr would write two files


@dataclass(frozen=True)
class Geometry:
    """Where a canonical array lies in the world, and how to get back to the file's order.

    Attributes:
        affine: (4, 4) voxel-to-world (RAS+, mm) matrix of the canonical array.
        original_affine: (4, 4) affine of the file as stored.
        original_shape: spatial shape (3,) of the file's array.
        ornt: (3, 2) orientation file -> canonical (see :mod:`wsls.io.orientation`).
        header: the file's header (nibabel header, NRRD header dict, or None).
    """

    affine: np.ndarray
    original_affine: np.ndarray
    original_shape: tuple[int, int, int]
    ornt: np.ndarray
    header: Any = None

    @classmethod
    def from_file_affine(
        cls, affine: np.ndarray, shape: Sequence[int], header: Any = None
    ) -> Geometry:
        """Geometry of a file-order array of spatial ``shape`` with voxel-to-world ``affine``."""
        affine = np.asarray(affine, dtype=np.float64)
        shape3 = tuple(int(s) for s in shape[:3])
        ornt = orientation.canonical_ornt(affine)
        canon = orientation.canonical_affine(affine, shape3, ornt)
        return cls(canon, affine, shape3, ornt, header)  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape of the canonical array."""
        return orientation.canonical_shape(self.original_shape, self.ornt)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical axes."""
        return orientation.spacing_of(self.affine)

    @property
    def axcodes(self) -> str:
        """Axis codes of the file as stored, e.g. 'LPS'."""
        return orientation.axcodes_of(self.original_affine)

    def to_original(self, array: np.ndarray) -> np.ndarray:
        """Canonical (..., H, W, D) -> the file's voxel order."""
        return orientation.from_canonical(array, self.ornt)

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """The file's voxel order (..., h, w, d) -> canonical."""
        return orientation.to_canonical(array, self.ornt)


@dataclass
class Volume:
    """A multi-modal image in canonical RAS order with its geometry.

    Attributes:
        data: (C, H, W, D) float32, canonical RAS voxel order.
        affine: (4, 4) voxel-to-world matrix of ``data`` (mm).
        original_affine: (4, 4) affine of the file(s) as stored.
        original_shape: spatial shape of the file's array (before reorientation).
        header: header of the first file (used as the template when saving), or None.
        modalities: one name per channel.
        paths: the files read, in channel order.
        ornt: (3, 2) orientation file -> canonical.
    """

    data: np.ndarray
    affine: np.ndarray
    original_affine: np.ndarray
    original_shape: tuple[int, int, int]
    header: Any
    modalities: tuple[str, ...]
    paths: tuple[Path, ...] = ()
    ornt: np.ndarray = field(default_factory=lambda: np.array([[0, 1], [1, 1], [2, 1]], float))

    @property
    def geometry(self) -> Geometry:
        return Geometry(
            self.affine, self.original_affine, self.original_shape, self.ornt, self.header
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial (H, W, D) of ``data``."""
        return tuple(self.data.shape[-3:])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return orientation.spacing_of(self.affine)

    @classmethod
    def from_array(
        cls,
        data: np.ndarray,
        affine: np.ndarray | None = None,
        modalities: Sequence[str] | None = None,
        header: Any = None,
    ) -> Volume:
        """Wrap an in-memory (C, h, w, d) array given in the voxel order of ``affine``.

        With ``affine=None`` the array is taken as canonical RAS with 1 mm voxels.
        """
        data = np.asarray(data, dtype=np.float32)
        if data.ndim == 3:
            data = data[None]
        if data.ndim != 4:
            raise ValueError(f"expected a (C, H, W, D) array, got shape {data.shape}")
        geom = Geometry.from_file_affine(
            np.eye(4) if affine is None else affine, data.shape[-3:], header
        )
        names = tuple(modalities) if modalities else tuple(f"ch{c}" for c in range(len(data)))
        if len(names) != len(data):
            raise ValueError(f"{len(names)} modality names for {len(data)} channels")
        return cls(
            geom.to_canonical(data),
            geom.affine,
            geom.original_affine,
            geom.original_shape,
            header,
            names,
            (),
            geom.ornt,
        )


@dataclass
class _Raw:
    """One file as stored: array in file order (float32, spatial first), affine, header."""

    path: Path
    array: np.ndarray
    affine: np.ndarray
    header: Any


def _nrrd_module(path: Path):
    try:
        import nrrd
    except ImportError:
        raise DataError(
            path, "reading NRRD needs the 'pynrrd' package (pip install pynrrd)"
        ) from None
    return nrrd


def _is_nrrd(path: Path) -> bool:
    return path.name.lower().endswith(_NRRD_SUFFIXES)


def _read_raw(path: PathLike, what: str = "image") -> _Raw:
    """Read one file with every failure turned into a one-line :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"{what} file not found")
    if path.is_dir():
        raise DataError(path, f"is a folder, not an {what} file")
    if _is_nrrd(path):
        from wsls.io.nrrd import read_nrrd

        array, affine, header = read_nrrd(path, _nrrd_module(path))
    else:
        import nibabel as nib

        try:
            img = nib.load(str(path))
        except Exception as err:  # nibabel raises many types for unreadable headers
            raise DataError(
                path, f"not a readable NIfTI/Analyze {what} ({_one_line(err)})"
            ) from None
        try:
            array = img.get_fdata(dtype=np.float32, caching="unchanged")
        except Exception as err:  # EOFError, zlib.error, OSError, ValueError ...
            raise DataError(
                path,
                f"cannot read the voxel data, the file is truncated or corrupt ({_one_line(err)})",
            ) from None
        affine, header = np.asarray(img.affine, dtype=np.float64), img.header
    check_affine(affine, path)
    array = _squeeze_extra_axes(path, array)
    return _Raw(path, array, affine, header)


def read_image(path: PathLike, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Every voxel of one file, as stored: (array in file order, float32; affine).

    Raises:
        DataError: a missing, unreadable or truncated file (the whole data is read).
    """
    raw = _read_raw(path, what)
    return raw.array, raw.affine


def image_grid(path: PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """(spatial shape, affine) of an image file from its header alone (no voxel data read).

    Raises:
        DataError: a missing or unreadable header.
    """
    path = Path(path)
    if _is_nrrd(path):
        array, affine = read_image(path)
        return tuple(array.shape[:3]), affine
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for unreadable headers
        raise DataError(path, f"not a readable NIfTI/Analyze image ({_one_line(err)})") from None
    return tuple(int(s) for s in img.shape[:3]), np.asarray(img.affine, dtype=np.float64)


def same_grid(
    shape: Sequence[int], affine: np.ndarray, ref_shape: Sequence[int], ref_affine: np.ndarray
) -> bool:
    """Same spatial shape and the same affine within 0.001 mm."""
    return tuple(shape[:3]) == tuple(ref_shape[:3]) and np.allclose(
        affine, ref_affine, rtol=0, atol=_AFFINE_ATOL_MM
    )


def check_affine(affine: np.ndarray, source: PathLike) -> None:
    """Refuse a voxel-to-world matrix that places no voxel: non-finite, or singular (a zero
    voxel size, or axes that coincide; an all-zero sform is one).

    Raises:
        DataError: naming ``source`` and what is wrong.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise DataError(
            source, "the voxel-to-world affine (sform/qform) holds NaN or infinite values"
        )
    axes = affine[:3, :3]
    sizes = np.linalg.norm(axes, axis=0)
    if sizes.min() <= 1e-6 or abs(np.linalg.det(axes)) <= 1e-6 * float(np.prod(sizes)):
        raise DataError(
            source,
            "the voxel-to-world affine (sform/qform) is singular (voxel sizes "
            f"{_fmt_spacing(affine)} mm, or axes that coincide): the header gives no usable "
            "geometry; fix it (e.g. with nibabel or fslorient) and try again",
        )


def implausible_spacing(affine: np.ndarray) -> str | None:
    """A one-line remark when a voxel size lies outside :data:`PLAUSIBLE_SPACING_MM`."""
    spacing = orientation.spacing_of(affine)
    low, high = PLAUSIBLE_SPACING_MM
    if all(low <= s <= high for s in spacing):
        return None
    return (
        f"voxel size {_fmt_spacing(affine)} mm is implausible for a brain MRI (expected "
        f"{low:g} to {high:g} mm): check the header's voxel size; volumes in ml and the "
        "resampling to the model's grid depend on it"
    )


def warn_implausible_spacing(affine: np.ndarray, source: PathLike) -> None:
    """Remark (:func:`~wsls.errors.input_remark`, one line) on an implausible voxel size."""
    remark = implausible_spacing(affine)
    if remark is not None:
        input_remark(f"{source}: {remark}")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _squeeze_extra_axes(path: Path, array: np.ndarray) -> np.ndarray:
    """Accept (H,W,D) and (H,W,D,C) (also (H,W,D,1,C)); reject 2D images."""
    if array.ndim > 3:
        keep = [a for a in range(3, array.ndim) if array.shape[a] != 1]
        array = array.reshape(*array.shape[:3], *[array.shape[a] for a in keep])
    shape_txt = "x".join(str(s) for s in array.shape)
    if array.ndim < 3 or min(array.shape[:3]) == 1:
        raise DataError(path, f"is a 2D image (shape {shape_txt}); wsls needs a 3D volume")
    if array.ndim > 4:
        raise DataError(path, f"has {array.ndim} dimensions (shape {shape_txt}); expected 3D or 4D")
    return array


def _check_finite(raw: _Raw) -> None:
    finite = np.isfinite(raw.array)
    if not finite.all():
        bad = raw.array[~finite]
        n_nan, n_inf = int(np.isnan(bad).sum()), int(np.isinf(bad).sum())
        raise DataError(raw.path, f"contains {n_nan} NaN and {n_inf} infinite voxels")


def _grid_text(raw: _Raw) -> str:
    shape = "x".join(str(s) for s in raw.array.shape[:3])
    return f"{shape} {orientation.axcodes_of(raw.affine)} spacing {_fmt_spacing(raw.affine)}"


def grid_difference(
    shape: Sequence[int], affine: np.ndarray, ref_shape: Sequence[int], ref_affine: np.ndarray
) -> str:
    """What differs between two voxel grids, in words: shape, spacing, axis codes, the
    rotation, and the offset of the first voxel's centre in mm (e.g. "origin shifted by
    (5, 0, 0) mm (5 mm)")."""
    affine, ref_affine = np.asarray(affine, np.float64), np.asarray(ref_affine, np.float64)
    parts = []
    shape3, ref3 = tuple(int(s) for s in shape[:3]), tuple(int(s) for s in ref_shape[:3])
    if shape3 != ref3:
        parts.append(f"shape {'x'.join(map(str, shape3))} vs {'x'.join(map(str, ref3))}")
    spacing, ref_spacing = _fmt_spacing(affine), _fmt_spacing(ref_affine)
    if not np.allclose(orientation.spacing_of(affine), orientation.spacing_of(ref_affine),
                       atol=_AFFINE_ATOL_MM):  # fmt: skip
        parts.append(f"spacing {spacing} vs {ref_spacing} mm")
    codes, ref_codes = orientation.axcodes_of(affine), orientation.axcodes_of(ref_affine)
    if codes != ref_codes:
        parts.append(f"axis codes {codes} vs {ref_codes}")
    elif not np.allclose(affine[:3, :3], ref_affine[:3, :3], atol=_AFFINE_ATOL_MM) and (
        np.allclose(
            orientation.spacing_of(affine), orientation.spacing_of(ref_affine), atol=_AFFINE_ATOL_MM
        )  # fmt: skip
    ):
        parts.append("axis directions (a rotation or shear)")
    shift = affine[:3, 3] - ref_affine[:3, 3]
    if not np.allclose(shift, 0.0, atol=_AFFINE_ATOL_MM):
        text = ", ".join(f"{v:g}" for v in np.round(shift, 3))
        parts.append(f"origin shifted by ({text}) mm ({np.linalg.norm(shift):.3g} mm)")
    return "; ".join(parts) or "the affines differ by less than 0.001 mm"


def _fmt_spacing(affine: np.ndarray) -> str:
    return "x".join(f"{s:g}" for s in np.round(orientation.spacing_of(affine), 3))


def _default_names(raws: Sequence[_Raw]) -> list[str]:
    names: list[str] = []
    for raw in raws:
        stem = _stem(raw.path).lower()
        if raw.array.ndim == 4:
            names.extend(f"{stem}_{c}" for c in range(raw.array.shape[3]))
        else:
            names.append(stem)
    return names


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".img", ".hdr", ".mha"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def load_volume(
    paths: PathLike | Sequence[PathLike],
    modalities: Sequence[str] | None = None,
    *,
    on_grid_mismatch: str = "error",
    check_finite: bool = True,
) -> Volume:
    """Load one case's images as a (C, H, W, D) float32 canonical RAS array.

    Args:
        paths: one 4D file (channels last in the file) or 3D file, or a list of files, one per
            modality, in the wanted channel order.
        modalities: one name per channel (default: the file names).
        on_grid_mismatch: ``"error"`` raises when files lie on different voxel grids;
            ``"resample"`` resamples them (trilinear) onto the first file's grid by affine.
        check_finite: raise on NaN or infinite voxels.
    Returns:
        A :class:`Volume`; its geometry is the first file's.
    Raises:
        DataError: a missing, unreadable, truncated, 2D or non-finite file, files on different
            grids, or a modality count that does not match the channels.
    """
    path_list = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not path_list:
        raise DataError("load_volume", "no image files given")
    raws = [_read_raw(p) for p in path_list]
    ref = raws[0]
    for raw in raws[1:]:
        if same_grid(raw.array.shape, raw.affine, ref.array.shape, ref.affine):
            continue
        if on_grid_mismatch != "resample":
            difference = grid_difference(raw.array.shape, raw.affine, ref.array.shape, ref.affine)
            raise DataError(
                raw.path,
                f"lies on a different voxel grid than {ref.path.name}: {difference} "
                f"({_grid_text(raw)} vs {_grid_text(ref)}); all modalities must be "
                "co-registered on one grid (resample them onto one, e.g. with ANTs or FSL)",
            )
        moved = np.moveaxis(raw.array, 3, 0) if raw.array.ndim == 4 else raw.array
        moved = resample_to_grid(moved, raw.affine, ref.array.shape[:3], ref.affine, order=1)
        raw.array = np.moveaxis(moved, 0, 3) if raw.array.ndim == 4 else moved
    if check_finite:
        for raw in raws:
            _check_finite(raw)
    warn_implausible_spacing(ref.affine, ref.path)
    channels = [np.moveaxis(r.array, 3, 0) if r.array.ndim == 4 else r.array[None] for r in raws]
    stack = channels[0] if len(channels) == 1 else np.concatenate(channels, axis=0)
    names = list(modalities) if modalities is not None else _default_names(raws)
    if len(names) != stack.shape[0]:
        raise DataError(
            ref.path,
            f"{stack.shape[0]} image channels but {len(names)} modality names ({', '.join(names)})",
        )
    geom = Geometry.from_file_affine(ref.affine, ref.array.shape[:3], ref.header)
    data = geom.to_canonical(stack.astype(np.float32, copy=False))
    return Volume(
        data,
        geom.affine,
        geom.original_affine,
        geom.original_shape,
        ref.header,
        tuple(names),
        tuple(path_list),
        geom.ornt,
    )


def load_labels(
    path: PathLike, like: Volume | Geometry, *, on_grid_mismatch: str = "error"
) -> np.ndarray:
    """Load a label map or mask onto the canonical grid of ``like``.

    Args:
        path: a 3D file (a trailing singleton 4th axis is accepted).
        like: the image (or its geometry) the map belongs to.
        on_grid_mismatch: ``"error"`` or ``"resample"`` (nearest neighbour, by affine).
    Returns:
        (H, W, D) float32 values as stored (scaled), in canonical order.
    Raises:
        DataError: unreadable/truncated/2D/non-finite file, or a shape or affine that differs
            from the image's.
    """
    geom = like.geometry if isinstance(like, Volume) else like
    raw = _read_raw(path, what="mask")
    if raw.array.ndim != 3:
        raise DataError(raw.path, f"a mask must be 3D, got shape {raw.array.shape}")
    _check_finite(raw)
    image_shape = tuple(geom.original_shape)
    same_shape = raw.array.shape == image_shape
    same_affine = np.allclose(raw.affine, geom.original_affine, rtol=0, atol=_AFFINE_ATOL_MM)
    if not (same_shape and same_affine):
        if on_grid_mismatch == "resample":
            array = resample_to_grid(
                raw.array, raw.affine, image_shape, geom.original_affine, order=0
            )
            return geom.to_canonical(array)
        difference = grid_difference(raw.array.shape, raw.affine, image_shape, geom.original_affine)
        raise DataError(
            raw.path,
            f"mask {difference} (mask vs image): the mask must lie on the image's voxel grid",
        )
    return geom.to_canonical(raw.array)


def load_mask(
    path: PathLike,
    like: Volume | Geometry,
    threshold: float = 0.5,
    *,
    on_grid_mismatch: str = "error",
) -> np.ndarray:
    """Load a binary mask: (H, W, D) bool, ``value > threshold``, on ``like``'s canonical grid."""
    return load_labels(path, like, on_grid_mismatch=on_grid_mismatch) > threshold


def _output_dtype(array: np.ndarray, dtype: Any) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    if array.dtype == np.bool_:
        return np.dtype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for candidate in (np.uint8, np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return np.dtype(candidate)
        return np.dtype(np.int64)
    return np.dtype(np.float32)


def save_like(
    array: np.ndarray,
    reference: Volume | Geometry,
    path: PathLike,
    dtype: Any = None,
) -> Path:
    """Write a canonical-order mask or map in the reference file's orientation, affine, header.

    Args:
        array: (H, W, D) or (C, H, W, D) on the reference's canonical grid.
        reference: the loaded image (or its geometry) it belongs to.
        path: ``.nii``/``.nii.gz`` (NIfTI-1) or ``.nrrd`` (needs pynrrd).
        dtype: stored type; default uint8 for bool masks, the smallest fitting integer type for
            integer labels, float32 for maps.
    Returns:
        The written path. The file is written atomically (a temporary file beside it, renamed
        into place): a failure leaves the previous file, if any, untouched.
    Raises:
        DataError: a shape that is not the reference's, a name without a writable suffix.
        OSError: the file system refused the write (full disk, read-only...), naming ``path``.
    """
    geom = reference.geometry if isinstance(reference, Volume) else reference
    path = Path(path)
    array = np.asarray(array)
    if tuple(array.shape[-3:]) != tuple(geom.shape) or array.ndim not in (3, 4):
        raise DataError(
            path,
            f"cannot save an array of shape {array.shape}: the reference grid is {geom.shape}",
        )
    out_dtype = _output_dtype(array, dtype)
    file_order = geom.to_original(array).astype(out_dtype, copy=False)
    if file_order.ndim == 4:
        file_order = np.ascontiguousarray(np.moveaxis(file_order, 0, -1))
    if not path.name.lower().endswith(WRITABLE_SUFFIXES):
        raise DataError(path, "cannot write: the name must end in .nii, .nii.gz or .nrrd")
    nrrd = _nrrd_module(path) if _is_nrrd(path) else None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:  # a crash or a full disk leaves the old file (or none)
            if nrrd is not None:
                from wsls.io.nrrd import write_nrrd

                write_nrrd(tmp, file_order, geom.original_affine, geom.header, nrrd)
            else:
                _write_nifti(tmp, file_order, geom, is_mask=array.dtype == np.bool_)
    except (DataError, OSError):
        raise
    except Exception as err:
        raise DataError(path, f"cannot write ({_one_line(err)})") from None
    return path


def _write_nifti(path: Path, file_order: np.ndarray, geom: Geometry, is_mask: bool) -> None:
    import nibabel as nib

    if isinstance(geom.header, nib.Nifti1Header):
        header = geom.header.copy()
    elif geom.header is not None and hasattr(geom.header, "get_data_shape"):
        header = nib.Nifti1Header.from_header(geom.header)
    else:
        header = nib.Nifti1Header()
        header.set_xyzt_units("mm")
    header.set_data_dtype(file_order.dtype)
    header.set_data_shape(file_order.shape)
    header.set_slope_inter(None, None)  # stored values are the values: no scaling
    header["cal_min"], header["cal_max"] = 0.0, 0.0
    header.set_intent("label" if is_mask else "none")
    header["descrip"] = b"wsls"
    img = nib.Nifti1Image(file_order, geom.original_affine, header=header)
    nib.save(img, str(path))
