"""Progress of a long run: a rich progress bar with rate and ETA on a terminal, plain log lines
otherwise (CI logs, nohup, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """Counts units of work (filter views, images) towards ``total``."""

    def __init__(self, total: int, stream: TextIO | None = None, unit: str = "filters") -> None:
        self.total, self.unit = total, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._bar = None
        if self.stream.isatty() and total > 0:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )
            self._task = self._bar.add_task("starting", total=total, rate="")
            self._bar.start()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, added: int, what: str) -> None:
        self.done += added
        rate = self.rate()
        if self._bar is not None:
            self._bar.update(self._task, advance=added, description=what, rate=f"{rate:.2f} {self.unit}/s")
            return
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.stream.write(f"{what}  {self.unit} {self.done}/{self.total}  {rate:.2f} {self.unit}/s  ETA {duration(eta)}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
