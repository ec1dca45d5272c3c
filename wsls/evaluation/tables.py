"""Evaluation tables: per-case rows summarised per method (mean ± sd), as CSV and Markdown."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wsls.metrics import summarise

METRICS = ("dice", "sensitivity", "specificity", "hd95", "dice_prepared")
HEADERS = {
    "dice": "Dice",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "hd95": "HD95 (mm)",
    "dice_prepared": "Dice (prepared grid)",
}


def summary_rows(
    per_case: Iterable[Mapping[str, Any]], table: str, methods: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per method of ``table``: n, mean and sd of each metric, the threshold(s) used.

    Args:
        per_case: rows with keys table, method, case, the metrics, threshold.
        methods: the order of the rows (methods with no rows are left out).
    """
    rows = [r for r in per_case if r["table"] == table]
    out = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        stats = summarise({m: r[m] for m in METRICS if m in r} for r in mine)
        row: dict[str, Any] = {"table": table, "method": method, "n": len(mine)}
        for metric in METRICS:
            if metric in stats:
                row[f"{metric}_mean"] = stats[metric].mean
                row[f"{metric}_sd"] = stats[metric].sd
        thresholds = sorted({r["threshold"] for r in mine if r.get("threshold") is not None})
        row["threshold"] = "; ".join(_fmt_threshold(t) for t in thresholds)
        out.append(row)
    return out


def _fmt_threshold(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(mean: float, sd: float, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def markdown(summary: Sequence[Mapping[str, Any]], title: str) -> str:
    """A Markdown table of :func:`summary_rows` output."""
    metrics = [m for m in METRICS if any(f"{m}_mean" in r for r in summary)]
    head = ["method", *[HEADERS[m] for m in metrics], "threshold", "n"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary:
        digits = {"hd95": 1, "specificity": 4}
        cells = [
            _cell(row.get(f"{m}_mean"), row.get(f"{m}_sd", 0.0), digits.get(m, 3)) for m in metrics
        ]
        lines.append(
            "| "
            + " | ".join([row["method"], *cells, row.get("threshold") or "-", str(row["n"])])
            + " |"
        )
    return "\n".join(lines) + "\n"
