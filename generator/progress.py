"""Progress of a long run: a bar on a terminal, plain log lines otherwise (CI logs, nohup)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(self, total: int, layers: int, stream: TextIO | None = None) -> None:
        self.total, self.layers = total, layers
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.start = time.monotonic()

    def update(self, added: int, layer: str, layer_number: int) -> None:
        self.done += added
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        text = (
            f"layer {layer_number}/{self.layers} {layer}  filters {self.done}/{self.total}  "
            f"{rate:.2f} filters/s  ETA {_duration(eta)}"
        )
        if self.tty:
            width = 24
            filled = int(width * self.done / max(1, self.total))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
