"""Tables as CSV files, written atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsls.io.atomic import atomic_write_text


def write_csv(
    path: str | Path, rows: Sequence[Mapping[str, Any]], empty_columns: Sequence[str] = ("method",)
) -> Path:
    """Rows (dicts) as CSV with the union of their keys as columns (``empty_columns`` when
    there is no row), floats to 6 digits; the folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns or list(empty_columns))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return atomic_write_text(path, text.getvalue())
