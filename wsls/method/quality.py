"""The quality verdict: does a segmentation look reliable, judged without any label?

The method fails in a few recognisable ways: the classifier is unsure there is a lesion (low
probability); the lesion barely differs from the tissue around it in the lesion modality (so the
intensity model cannot draw its boundary); the mask grows beyond what the evidence supports,
covers an implausible share of the brain, or holds too little of the lesion estimate the
evidence supports (the regions grew elsewhere); the classifier still sees a lesion once the
mask is erased (it lies beside the mask, or only part of it is in the mask); with several
classifiers, they disagree on where the lesion is. Each is measured on the prepared grid and
compared with a bound; a segmentation that passes none is "ok", any other is "check" with the
reasons, so a user knows which masks to look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from wsls.method.config import QualityConfig
from wsls.morphology import dilate


@dataclass
class Quality:
    """flags: what looks wrong (empty: the segmentation passes); measures: the values judged."""

    flags: tuple[str, ...] = ()
    measures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.flags

    @property
    def verdict(self) -> str:
        return "ok" if self.ok else "check"

    def summary(self) -> str:
        """'ok', or 'check: <reason>; <reason>' in words."""
        return "ok" if self.ok else "check: " + "; ".join(self.flags)


def contrast(channel: Tensor, mask: Tensor, brain: Tensor, shell: int) -> float:
    """Mean of ``channel`` in the mask minus its mean in a shell around it, in units of the
    brain's standard deviation."""
    around = dilate(mask, shell) & brain & ~mask
    if not bool(mask.any()) or not bool(around.any()):
        return float("nan")
    sd = float(channel[brain].double().std(unbiased=False)) or 1.0
    return float(channel[mask].double().mean() - channel[around].double().mean()) / sd


def low_contrast(value: float, config: QualityConfig) -> bool:
    """Whether a mask whose :func:`contrast` is ``value`` barely stands out of the tissue
    around it (the verdict's flag; NaN, no shell to compare with, is not)."""
    return value < config.min_contrast


def assess(
    mask: Tensor,
    brain: Tensor,
    image: Tensor,
    probability: float,
    support: Tensor | None,
    config: QualityConfig,
    agreement: float | None = None,
    erased: float | None = None,
    evidence: float | None = None,
) -> Quality:
    """Judge one segmentation on the prepared grid.

    Args:
        mask, brain: (H, W, D) bool; image: (C, H, W, D) prepared (channel 0: the lesion
        modality); probability: the classifier's; support: the supported lesion estimate
        (None for the paper's rule); agreement: a classifier ensemble's (None for one
        classifier); erased: the classifier's probability with the mask erased
        (wsls.method.erasure; None: not measured); evidence: its probability with all of its
        evidence erased, measured where the mask fails the erase test (over the bound: the
        classifier cannot vouch for any mask, and the test is not read). Tensors on one device.
    """
    n_brain = max(int(brain.sum()), 1)
    n_mask = int(mask.sum())
    measures = {
        "probability": float(probability),
        "brain_fraction": n_mask / n_brain,
        "contrast": contrast(image[0], mask, brain, config.shell),
    }
    if support is not None:
        n_support = int(support.sum())
        measures["over_support"] = n_mask / max(n_support, 1)
        if n_support:
            measures["support_in_mask"] = int((mask & support).sum()) / n_support
    if agreement is not None:
        measures["member_agreement"] = float(agreement)
    if erased is not None:
        measures["erased_probability"] = float(erased)
    if evidence is not None:
        measures["evidence_erased_probability"] = float(evidence)
    flags = []
    if n_mask == 0:
        flags.append("empty mask")
    if probability < config.min_probability:
        flags.append(f"the classifier is unsure of a lesion (probability {probability:.2f})")
    if measures["brain_fraction"] > config.max_brain_fraction:
        flags.append(f"the mask covers {100 * measures['brain_fraction']:.0f} % of the brain")
    if n_mask and measures["brain_fraction"] < config.min_brain_fraction:
        flags.append(
            f"the mask covers only {100 * measures['brain_fraction']:.2f} % of the brain, less "
            f"than a lesion of this kind ({100 * config.min_brain_fraction:.2g} %)"
        )
    if n_mask and low_contrast(measures["contrast"], config):
        flags.append(
            f"the lesion barely differs from the tissue around it (contrast "
            f"{measures['contrast']:.2f} sd)"
        )
    if "over_support" in measures and measures["over_support"] > config.max_over_support:
        flags.append(
            f"the mask is {measures['over_support']:.1f} times the evidence-supported estimate"
        )
    if n_mask and measures.get("support_in_mask", 1.0) < config.min_support_in_mask:
        flags.append(
            f"the mask holds only {100 * measures['support_in_mask']:.0f} % of the "
            f"evidence-supported estimate"
        )
    vouches = evidence is None or evidence <= config.max_erased_probability
    if n_mask and erased is not None and erased > config.max_erased_probability and vouches:
        flags.append(
            f"the classifier still sees a lesion once the mask is erased (probability {erased:.2f})"
        )
    if agreement is not None and agreement < config.min_member_agreement:
        flags.append(
            f"the classifiers disagree on where the lesion is (their estimates overlap by "
            f"Dice {agreement:.2f})"
        )
    return Quality(tuple(flags), measures)
