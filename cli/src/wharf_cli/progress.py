"""A one-line progress bar for the terminal, redrawn in place; plain lines when piped."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30


class Progress:
    """Shows `done` of `total` for one step; `close` leaves the final line behind."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self._stream = stream or sys.stdout
        self._started = time.monotonic()
        self._tty = self._stream.isatty()
        self._shown = -1

    def update(self, done: int, note: str = "") -> None:
        """Record progress; redraw when on a terminal."""
        self.done = min(done, self.total)
        if not self._tty or self.done == self._shown:
            return
        self._shown = self.done
        self._stream.write("\r" + self._line(note))
        self._stream.flush()

    def close(self, note: str = "") -> None:
        """Print the last state on its own line."""
        prefix = "\r" if self._tty else ""
        self._stream.write(prefix + self._line(note) + "\n")
        self._stream.flush()

    def _line(self, note: str) -> str:
        filled = _WIDTH * self.done // self.total
        bar = "#" * filled + "-" * (_WIDTH - filled)
        elapsed = time.monotonic() - self._started
        text = f"  {self.label:<22} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s"
        return f"{text} {note}".rstrip()
