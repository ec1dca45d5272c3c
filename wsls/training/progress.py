"""Progress bars for training epochs: running loss and speed in items per second."""

from __future__ import annotations

import time
from typing import Any


class EpochBar:
    """A tqdm bar over the steps of one epoch, or nothing when disabled.

    Disabled when ``enabled`` is False; otherwise tqdm shows it only when stderr is a terminal
    (so pytest, pipes and log files stay clean).
    """

    def __init__(self, desc: str, total: int | None, initial: int, enabled: bool) -> None:
        self._bar: Any = None
        self._start = time.perf_counter()
        self._items = 0
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit="step",
                dynamic_ncols=True,
                leave=True,
                disable=None,  # None: off when not a TTY
            )

    def update(self, mean_loss: float, items: int) -> None:
        """One step done; ``mean_loss`` is the epoch's running mean, ``items`` this step's."""
        if self._bar is None:
            return
        self._items += items
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        speed = {"loss": f"{mean_loss:.4g}", "items/s": f"{self._items / elapsed:.1f}"}
        self._bar.set_postfix(ordered_dict=speed, refresh=False)  # drawn at tqdm's own pace
        self._bar.update(1)

    def close(self, summary: str | None = None) -> None:
        """Close the bar (idempotent), showing ``summary`` instead of the running figures."""
        if self._bar is None:
            return
        if summary:
            self._bar.set_postfix_str(summary, refresh=False)
        self._bar.close()
        self._bar = None
