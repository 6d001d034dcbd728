"""Progress lines: a redrawn bar on a terminal, one final line when piped."""

from __future__ import annotations

import io

from wharf_cli.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_output_gets_one_plain_line() -> None:
    out = io.StringIO()
    bar = Progress("rendering", 10, stream=out)
    for done in range(11):
        bar.update(done)
    bar.close("ok")

    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].split()[:2] == ["rendering", "10/10"]
    assert lines[0].endswith("ok")


def test_a_terminal_gets_a_bar_that_ends_full() -> None:
    out = Terminal()
    bar = Progress("rendering", 4, stream=out)
    bar.update(2)
    bar.update(9)  # more than the total counts as done
    bar.close("ok")

    last = out.getvalue().rstrip("\n").split("\r")[-1]
    assert "[" + "#" * 30 + "]" in last
    assert "4/4" in last and last.endswith("ok")
