"""wsls.io: medical image files (NIfTI, NRRD) in canonical orientation and back, dataset layouts
(BraTS, MS, ISLES, CSV manifests), cases on disk and in memory, and atomic writes. nibabel is
imported only when a file is read or written."""
