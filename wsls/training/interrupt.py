"""Graceful stops: SIGINT (Ctrl-C) and SIGTERM (schedulers, ``kill``) ask the training loop to
stop at the next step boundary, where it writes a checkpoint, instead of killing it mid-update.

A second Ctrl-C raises KeyboardInterrupt at once: the loop aborts and writes nothing.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (after writing a checkpoint) or aborted by a second Ctrl-C
    or a KeyboardInterrupt (writing nothing).

    Attributes:
        checkpoint: the checkpoint written, or None when the run was aborted.
        signum: the signal that asked for the stop (None for a KeyboardInterrupt exception).
        epoch, step: where training stopped (the next step to run on resume).
    """

    def __init__(
        self, message: str, checkpoint: Path | None, signum: int | None, epoch: int, step: int
    ) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signum = signum
        self.epoch = epoch
        self.step = step

    def __str__(self) -> str:
        return str(self.args[0])


class StopRequests:
    """Context manager that turns SIGINT/SIGTERM into a flag (:attr:`signum`).

    Handlers are installed only in the main thread (Python allows no other) and the previous
    handlers are restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True) -> None:
        self.signum: int | None = None
        self.announce = announce
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce:
            name = signal.Signals(signum).name
            print(
                f"\n{name}: stopping after this step and writing a checkpoint "
                "(Ctrl-C again to abort at once)",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # type: ignore[arg-type]
        self._previous.clear()


def signal_name(signum: int | None) -> str:
    """'SIGTERM' for a signal number; 'KeyboardInterrupt' for None."""
    return signal.Signals(signum).name if signum is not None else "KeyboardInterrupt"
