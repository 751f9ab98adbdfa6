"""A live status line while a test function's samples run.

A group of samples can take minutes against real providers, during which pytest itself
prints nothing. On a terminal, one line is rewritten in place through pytest's terminal
reporter (samples done/total, errors so far, elapsed, rough time left), and left with the
final figures when the group ends; when output is not a terminal (CI logs), a line is
written every few seconds at most. Groups quicker than that show nothing. Nothing at
`-q`, and nothing on xdist workers (their output never reaches a screen).
"""

from __future__ import annotations

import shutil
import time
import typing as t

import pytest

from pytest_rigging.plugin._compat import output_shown, restart_line

TTY_INTERVAL = 0.2
LOG_INTERVAL = 10.0


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
        self._shown_at = 0.0
        self._showing = False

    def start(self, nodeid: str, name: str, total: int) -> None:
        """A group begins, while item `nodeid` is being set up."""
        self.nodeid, self.name, self.total, self.done, self.errors = nodeid, name, total, 0, 0
        self.started = self._shown_at = time.monotonic()

    def sample_done(self, errored: bool) -> None:
        self.done += 1
        self.errors += errored

    def line(self, now: float) -> str:
        elapsed = now - self.started
        text = f"rigging: {self.name}: {self.done}/{self.total} samples"
        text += f", {self.errors} error{'s' if self.errors != 1 else ''}, {elapsed:.0f}s elapsed"
        if 0 < self.done < self.total:
            text += f", ~{elapsed / self.done * (self.total - self.done):.0f}s left"
        return text

    def show(self) -> None:
        """Called every few tenths of a second while the group runs."""
        terminal = self._terminal()
        if terminal is None:
            return
        now = time.monotonic()
        tty = bool(terminal.isatty)  # a method from pytest 8.4.1, a bool before
        if now - self._shown_at < (TTY_INTERVAL if tty else LOG_INTERVAL):
            return
        self._shown_at = now
        with self._uncaptured():
            if not self._showing:
                terminal.ensure_newline()
                self._showing = True
            self._write(terminal, tty, now)

    def finish(self) -> None:
        """Leave the final figures, and let pytest resume its own line below them."""
        terminal = self._terminal()
        if terminal is None or not self._showing:
            return
        self._showing = False
        with self._uncaptured():
            self._write(terminal, bool(terminal.isatty), time.monotonic())
            # pytest re-prints the item it was writing a result for (at -v), or the file
            # whose results (at the default verbosity) go on one line.
            restart_line(terminal)
            if self.config.get_verbosity() <= 0:
                terminal.write_fspath_result(self.nodeid, "")

    def _write(self, terminal: t.Any, tty: bool, now: float) -> None:
        if tty:
            width = shutil.get_terminal_size().columns
            terminal.rewrite(self.line(now)[: max(width - 1, 20)], erase=True)
        else:
            terminal.write_line(self.line(now))

    def _terminal(self) -> t.Any:
        if self.config.get_verbosity() < 0 or not self.shown:
            return None
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def _uncaptured(self) -> t.ContextManager[None]:
        """pytest captures output while an item is set up: step aside for the status line,
        as pytest's own live logging does."""
        return output_shown(self.config)
