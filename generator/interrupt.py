"""Ctrl-C in a long run: the first one asks the run to stop at the next safe point (after the batch
in flight is saved), the second one stops at once (``KeyboardInterrupt``)."""

from __future__ import annotations

import signal


class StopFlag:
    """A context in which the first SIGINT sets ``stop`` instead of raising."""

    def __init__(self) -> None:
        self.stop = False
        self._old = None

    def __enter__(self) -> "StopFlag":
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum, frame) -> None:
        self.stop = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
