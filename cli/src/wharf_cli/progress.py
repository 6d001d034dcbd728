"""Progress of one step of a long command: a tqdm bar on a terminal, one plain line when piped."""

from __future__ import annotations

import shutil
import sys
import time
from typing import Never, TextIO

from tqdm import tqdm


class Progress:
    """Shows `done` of `total` for one step; `close` leaves the final state behind."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self._stream = stream or sys.stdout
        self._started = time.monotonic()
        self._bar: tqdm[Never] | None = None
        if self._stream.isatty():
            # A terminal that reports no size (a bare pty) still gets a bar.
            size = shutil.get_terminal_size((100, 24))
            self._bar = tqdm(
                total=self.total,
                desc=f"  {label:<22}",
                file=self._stream,
                ascii=" #",
                ncols=size.columns,
                nrows=size.lines,
                bar_format="{desc} [{bar:30}] {n}/{total} {elapsed}{postfix}",
            )

    def update(self, done: int, note: str = "") -> None:
        """Record progress; the bar redraws itself at most a few times a second."""
        self.done = min(done, self.total)
        if self._bar is not None and self.done != self._bar.n:
            self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(self.done - self._bar.n)

    def close(self, note: str = "") -> None:
        """Leave the last state on its own line."""
        if self._bar is not None:
            self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(self.done - self._bar.n)
            self._bar.close()
            return
        elapsed = time.monotonic() - self._started
        line = f"  {self.label:<22} {self.done}/{self.total} {elapsed:5.1f}s {note}".rstrip()
        self._stream.write(line + "\n")
        self._stream.flush()
