"""A small progress bar on stderr, and the closing throughput line."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(n)`` as work is done; redraws at most every 0.2 s (a tty) or every 10 % (a log)."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None, unit: str = "items") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self._tty and now - self._last_draw >= 0.2:
            self._last_draw = now
            self._draw("\r", "")
        elif not self._tty and self.total and (decile := self.done * 10 // self.total) > self._last_decile:
            self._last_decile = decile
            self._draw("", "\n")

    def _draw(self, prefix: str, suffix: str) -> None:
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        self.stream.write(f"{prefix}{self.label} [{bar:<30}] {self.done}/{self.total} {self.rate():.0f} {self.unit}/s{suffix}")
        self.stream.flush()

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def close(self) -> None:
        if self._tty:
            self._draw("\r", "\n")
