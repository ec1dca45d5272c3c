"""Several classifiers of one architecture, trained alike from different seeds.

Which region a classifier trained on patch labels lights up depends on its seed on borderline
scans; the method reads each member's maps and keeps, per volume, the member whose lesion
estimate the others agree with (``wsls.method.consensus``). Averaging the members' maps instead
moved the hot region off the lesion on the shared BraTS cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from wsls.models.classifier import Classifier3D, ClassifierOutput, ClassifierSpec


@dataclass(frozen=True)
class EnsembleSpec:
    """member: the members' ``ClassifierSpec`` (as a dict); size: how many members."""

    member: dict[str, Any] = field(default_factory=dict)
    size: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 2:
            raise ValueError(f"EnsembleSpec: size must be an integer >= 2, got {self.size!r}")
        ClassifierSpec(**self.member)  # the members' architecture must be valid


class ClassifierEnsemble(nn.Module):
    """``size`` classifiers; ``forward`` gives their mean output (patch classification)."""

    def __init__(self, spec: EnsembleSpec) -> None:
        super().__init__()
        self.spec = spec
        member = ClassifierSpec(**spec.member)
        self.members = nn.ModuleList(Classifier3D(member) for _ in range(spec.size))

    @classmethod
    def of(cls, members: Sequence[Classifier3D]) -> ClassifierEnsemble:
        """An ensemble holding these trained classifiers (same architecture)."""
        specs = {m.spec for m in members}
        if len(specs) != 1:
            raise ValueError("ClassifierEnsemble.of: the members' architectures differ")
        ensemble = cls(EnsembleSpec(asdict(members[0].spec), len(members)))
        for mine, trained in zip(ensemble.members, members, strict=True):
            mine.load_state_dict(trained.state_dict())
        return ensemble.to(next(members[0].parameters()).device)

    def spec_dict(self) -> dict:
        return {"kind": "classifier_ensemble", **asdict(self.spec)}

    def forward(self, x: Tensor) -> ClassifierOutput:
        outs = [member(x) for member in self.members]
        return ClassifierOutput(*(torch.stack(parts).mean(0) for parts in zip(*outs, strict=True)))


def classifier_members(classifier: nn.Module) -> list[Classifier3D]:
    """The classifiers of a method: an ensemble's members, or the classifier itself."""
    if isinstance(classifier, ClassifierEnsemble):
        return list(classifier.members)
    return [classifier]
