"""The erase test: does the classifier still see a lesion once the mask is gone?

A mask on the lesion takes the classifier's evidence with it: with the mask (and a margin
around it) replaced by normal tissue, the best window's lesion probability falls to what the
classifier gives a lesion-free brain. A mask beside the lesion, or on a part of it only, leaves
the lesion (or the rest of it) in the image, and the probability stays high. No label is
needed, so the quality verdict can use it on any scan, and the method can look again where the
classifier still sees the lesion (``wsls.method.segment``).

The test is read only where the classifier can vouch for a mask: where its probability falls
once all that it points at, before and after the mask is erased, is erased too
(:func:`evidence_region`). A classifier trained on few scans, or run on another site's, may
find a lesion in any window of a scan; erasing the true lesion then leaves it as sure as
before, and the test would fail every mask.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from wsls.method.confident import supported_lesion
from wsls.method.config import WSLSConfig
from wsls.method.maps import member_views
from wsls.method.windows import WindowMemo
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


def evidence_region(
    mask: Tensor, maps: Sequence[tuple[Tensor, Tensor]], brain: Tensor, config: WSLSConfig
) -> Tensor:
    """Everything the evidence points at: the mask and, for each (ACAM, intensity posterior)
    pair of ``maps`` (the scan's, and those of the scan with the mask erased), the voxels whose
    ACAM reaches ``confident.lesion_map`` and the lesion estimate they support."""
    region = mask.clone()
    for acam, posterior in maps:
        region |= (acam >= config.confident.lesion_map) & brain
        region |= supported_lesion(acam, brain, posterior, config.confident)
    return region


def erased_probability(
    classifier: nn.Module,
    image: Tensor,
    brain: Tensor,
    mask: Tensor,
    config: WSLSConfig,
    memos: list[WindowMemo] | None = None,
) -> float:
    """The classifier's lesion probability (its best window's; for an ensemble, the highest of
    its members') of the volume with the mask erased (:func:`erased_view`).

    Args:
        image (C, H, W, D), brain and mask (H, W, D) bool: tensors on the classifier's device.
        memos: per member, the windows of the volume's maps (``VolumeMaps.windows``), of which
            those the erased voxels do not reach are not run again.
    """
    erased = erased_view(image, brain, mask, config)
    views = member_views(classifier, erased, brain, config, memos)
    return max(probability for _, _, probability in views)
