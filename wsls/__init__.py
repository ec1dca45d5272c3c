"""wsls: weakly supervised 3D brain lesion segmentation from image-level labels.

Importing the package is cheap: the compiled ops load with ``wsls.ops`` and the
I/O stack (nibabel, scipy) with ``wsls.data``.
"""

__version__ = "0.1.0"
