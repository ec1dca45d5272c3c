"""The erase test: does the classifier still see a lesion once the mask is gone?

A mask on the lesion takes the classifier's evidence with it: with the mask (and a margin
around it) replaced by normal tissue, the best window's lesion probability falls to what the
classifier gives a lesion-free brain. A mask beside the lesion, or on a part of it only, leaves
the lesion (or the rest of it) in the image, and the probability stays high. No label is
needed, so the quality verdict can use it on any scan, and the method can look again where the
classifier still sees the lesion (``wsls.method.segment``).
"""

from __future__ import annotations

from torch import Tensor, nn

from wsls.method.config import WSLSConfig
from wsls.method.maps import member_views
from wsls.morphology import dilate


def erase(image: Tensor, brain: Tensor, region: Tensor) -> Tensor:
    """A copy of ``image`` (C, H, W, D) whose ``region`` voxels hold, per channel, the median
    of the brain outside it (normal tissue, as far as one value can be)."""
    region = region & brain
    rest = brain & ~region
    out = image.clone()
    if not bool(region.any()) or not bool(rest.any()):
        return out
    for channel in out:
        channel[region] = channel[rest].median()
    return out


def erased_view(image: Tensor, brain: Tensor, mask: Tensor, config: WSLSConfig) -> Tensor:
    """The volume with the mask, dilated by ``quality.erase_margin`` voxels, erased."""
    margin = config.quality.erase_margin
    return erase(image, brain, dilate(mask, margin) if margin else mask)


def erased_probability(
    classifier: nn.Module, image: Tensor, brain: Tensor, mask: Tensor, config: WSLSConfig
) -> float:
    """The classifier's lesion probability (its best window's; for an ensemble, the highest of
    its members') of the volume with the mask erased (:func:`erased_view`).

    Args:
        image (C, H, W, D), brain and mask (H, W, D) bool: tensors on the classifier's device.
    """
    views = member_views(classifier, erased_view(image, brain, mask, config), brain, config)
    return max(probability for _, _, probability in views)
