"""wsls.data: from image files on disk to normalised arrays and patches, and back.

nibabel is imported only when a file is read or written, so this package imports without it.
"""

from wsls.data.baseline import ThresholdBaseline, largest_component
from wsls.data.cache import VolumeCache
from wsls.data.case import (
    BRATS_ENHANCING,
    BRATS_TUMOUR_CORE,
    BRATS_WHOLE_TUMOUR,
    Case,
    CaseRef,
    LesionDefinition,
)
from wsls.data.errors import DataError
from wsls.data.layouts import (
    BratsLayout,
    CsvManifest,
    IslesLayout,
    Layout,
    MSLayout,
    detect_layout,
    open_dataset,
)
from wsls.data.loader import PatchLoader, build_patch_loader
from wsls.data.nifti import Geometry, Volume, load_labels, load_mask, load_volume, save_like
from wsls.data.patches import PatchConfig, PatchDataset, PatchSampler, PatchSpec, patch_positions
from wsls.data.phantom import Phantom, PhantomConfig, make_phantom, write_phantom_dataset
from wsls.data.preprocess import (
    CropBox,
    Prepared,
    PreprocessConfig,
    bounding_box,
    brain_mask,
    preprocess,
    zscore_in_brain,
)

__all__ = [
    "BRATS_ENHANCING",
    "BRATS_TUMOUR_CORE",
    "BRATS_WHOLE_TUMOUR",
    "BratsLayout",
    "Case",
    "CaseRef",
    "CropBox",
    "CsvManifest",
    "DataError",
    "Geometry",
    "IslesLayout",
    "Layout",
    "LesionDefinition",
    "MSLayout",
    "PatchConfig",
    "PatchDataset",
    "PatchLoader",
    "PatchSampler",
    "PatchSpec",
    "Phantom",
    "PhantomConfig",
    "Prepared",
    "PreprocessConfig",
    "ThresholdBaseline",
    "Volume",
    "VolumeCache",
    "bounding_box",
    "brain_mask",
    "build_patch_loader",
    "detect_layout",
    "largest_component",
    "load_labels",
    "load_mask",
    "load_volume",
    "make_phantom",
    "open_dataset",
    "patch_positions",
    "preprocess",
    "save_like",
    "write_phantom_dataset",
    "zscore_in_brain",
]
