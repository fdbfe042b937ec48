"""The progress bar of long-running commands (pure logic, fake clock)."""

from __future__ import annotations

import io

from consumer.progress import ProgressBar


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_output_prints_a_line_every_two_seconds_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = ProgressBar(1000, out, clock)
    for done in (100, 200, 300):
        clock.now += 1.0
        bar.update(done)
    clock.now += 0.5
    bar.update(1000, final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # t=1 (first), t=3, then the final line
    assert lines[0] == "[###...........................]  10.0% 100/1000 records 100/s 1.0s"
    assert "100.0% 1000/1000 records 286/s 3.5s" in lines[-1]


def test_a_terminal_gets_one_rewritten_line():
    out, clock = Terminal(), Clock()
    bar = ProgressBar(10, out, clock)
    for done in range(1, 11):
        clock.now += 0.2
        bar.update(done)
    bar.update(10, final=True)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") == 11
    assert "100.0% 10/10 records" in text.rsplit("\r", 1)[1]


def test_an_empty_total_does_not_divide_by_zero():
    out = io.StringIO()
    ProgressBar(0, out, Clock()).update(0, final=True)
    assert "0/0 records" in out.getvalue()
