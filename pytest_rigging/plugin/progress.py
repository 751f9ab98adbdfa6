"""A live status line while a test function's samples run.

A group of samples can take minutes against real providers, during which pytest itself
prints nothing. On a terminal, one line beneath pytest's own is rewritten in place
(samples done/total, errors so far, elapsed, time left at the recent pace or how long
nothing has finished) and erased before pytest writes again, the cursor back where pytest
left it: pytest's lines stay whole, [%] column and all. Where other output could tear
such a line (output not captured, live logs, a reporter other than pytest's), or when
output is not a terminal (CI logs), a line is written every few seconds at most instead.
Groups quicker than that show nothing. Nothing at `-q`, and nothing on xdist workers
(their output never reaches a screen).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import typing as t

import pytest

from pytest_rigging.plugin._compat import (
    current_column,
    line_width,
    output_shown,
    restart_line,
    write_aside,
)

TTY_INTERVAL = 0.2
LOG_INTERVAL = 10.0
RECENT = 10.0
"""Seconds over which the pace forgets: a finish this long ago weighs 1/e of one now."""
STALL_AFTER = 10.0
STALL_FACTOR = 3.0
"""A group has stalled when nothing finished for this many times its longest wait between
finishes so far, and at least `STALL_AFTER` seconds."""


@dataclasses.dataclass(frozen=True)
class Pace:
    """How fast a group's samples finished lately: finishes over the time they took, each
    weighted by how recent it is, taken at each finish.

    Between finishes the time left counts down, so a slow call never makes it climb; once
    nothing has finished for much longer than usual, the group has stalled and there is no
    estimate. Frozen and replaced whole at each finish: the engine's thread counts while
    pytest's reads.
    """

    last: float
    """When a sample last finished (when the group began, before any did)."""
    finishes: float = 0.0
    span: float = 0.0
    longest: float = 0.0
    """The longest wait between finishes so far, stalls aside."""

    def finished(self, now: float) -> Pace:
        waited = max(now - self.last, 0.0)
        decay = math.exp(-waited / RECENT)
        longest = self.longest if self.stalled(now) else max(self.longest, waited)
        span = self.span * decay + RECENT * (1 - decay)
        return Pace(now, self.finishes * decay + 1, span, longest)

    def stalled(self, now: float) -> bool:
        quiet = now - self.last
        return self.finishes > 0 and quiet > max(STALL_AFTER, STALL_FACTOR * self.longest)

    def left(self, now: float, remaining: int) -> float | None:
        """Seconds until `remaining` more samples finish at this pace: None before the
        first finish (no pace yet), once overdue, or stalled."""
        if not self.finishes or self.stalled(now):
            return None
        left = remaining * self.span / self.finishes - (now - self.last)
        return left if left > 0 else None


class Progress:
    """Counts one group's samples (from the engine's loop thread) and shows them (from the
    main thread, while it waits for an item's samples)."""

    def __init__(self, config: pytest.Config, *, shown: bool = True) -> None:
        self.config = config
        self.shown = shown  # False where output never reaches a screen (an xdist worker)
        self.nodeid = self.name = ""
        self.total = 0
        self.done = 0
        self.errors = 0
        self.started = 0.0
        self.pace = Pace(0.0)
        self._shown_at = 0.0
        self._showing = False  # a log line was written for the item waiting
        self._back: str | None = None
        """What erases the status line and puts the cursor back on pytest's (while drawn)."""

    def start(self, nodeid: str, name: str, total: int) -> None:
        """A group begins, while item `nodeid` is being set up."""
        self.nodeid, self.name, self.total, self.done, self.errors = nodeid, name, total, 0, 0
        self.started = self._shown_at = time.monotonic()
        self.pace = Pace(self.started)

    def sample_done(self, errored: bool) -> None:
        self.pace = self.pace.finished(time.monotonic())
        self.done += 1
        self.errors += errored

    def line(self, now: float) -> str:
        elapsed = now - self.started
        text = f"rigging: {self.name}: {self.done}/{self.total} samples"
        text += f", {self.errors} error{'s' if self.errors != 1 else ''}, {elapsed:.0f}s elapsed"
        if self.done < self.total:
            pace = self.pace
            left = pace.left(now, self.total - self.done)
            if pace.stalled(now):
                text += f", stalled for {now - pace.last:.0f}s"
            elif left is not None:
                text += f", ~{math.ceil(left)}s left"
        return text

    def show(self) -> None:
        """Called every few tenths of a second while the group runs."""
        terminal = self._terminal()
        if terminal is None:
            return
        now = time.monotonic()
        if now - self._shown_at < (TTY_INTERVAL if self.in_place else LOG_INTERVAL):
            return
        self._shown_at = now
        with self._uncaptured():
            if self.in_place:
                self._draw(terminal, self.line(now))
                return
            if not self._showing:
                terminal.ensure_newline()
                self._showing = True
            terminal.write_line(self.line(now))

    def finish(self) -> None:
        """An item has its samples and pytest is about to report it: erase the status line,
        or after log lines, write the final figures and let pytest resume its line below."""
        terminal = self._terminal()
        if terminal is None:
            return
        if self._back is not None:
            with self._uncaptured():
                write_aside(terminal, self._back)
            self._back = None
        if not self._showing:
            return
        self._showing = False
        with self._uncaptured():
            terminal.write_line(self.line(time.monotonic()))
            # pytest re-prints the item it was writing a result for (at -v), or the file
            # whose results (at the default verbosity) go on one line.
            restart_line(terminal)
            if self.config.get_verbosity() <= 0:
                terminal.write_fspath_result(self.nodeid, "")

    @functools.cached_property
    def in_place(self) -> bool:
        """Whether the status line is drawn in place: by pytest's own reporter, on a
        terminal that moves its cursor, where nothing else writes while samples run
        (output not captured, or live logs, would come in the middle of it)."""
        terminal = self._terminal()
        return (
            type(terminal) is pytest.TerminalReporter
            and bool(terminal.isatty)  # a method from pytest 8.4.1, a bool before
            and os.environ.get("TERM") != "dumb"
            and self.config.getoption("capture", None) in ("fd", "sys")
            and not _live_logs(self.config)
        )

    def _draw(self, terminal: pytest.TerminalReporter, text: str) -> None:
        """The status line, on a line of its own beneath pytest's (or on pytest's, while
        it is empty), cut to the width pytest draws its lines at so that it never wraps."""
        width = line_width(self.config)
        lead = ""
        if self._back is None:
            written = current_column(terminal)
            column = written % width
            if written and not column:
                return  # pytest's line fills its last row: no column to come back to
            if column:
                lead = "\n"
                self._back = f"\r\x1b[K\x1b[A\r\x1b[{column}C"
            else:
                self._back = "\r\x1b[K"
        write_aside(terminal, f"{lead}\r{text[: width - 1]}\x1b[K")

    def _terminal(self) -> t.Any:
        if self.config.get_verbosity() < 0 or not self.shown:
            return None
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def _uncaptured(self) -> t.ContextManager[None]:
        """pytest captures output while an item is set up: step aside for the status line,
        as pytest's own live logging does."""
        return output_shown(self.config)


def _live_logs(config: pytest.Config) -> bool:
    """Whether pytest shows log records as they come (`log_cli`), from any thread."""
    try:
        return bool(config.getini("log_cli")) or config.getoption("log_cli_level") is not None
    except ValueError:  # the logging plugin is off: no such setting
        return False
