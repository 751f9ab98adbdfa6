"""How the browser tests and `bench/bench_page.py` start Debian's chromium: light to
import (a bench script needs it without the test suite's fixtures, which import litellm)."""

from __future__ import annotations

import shutil
import typing as t

ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Headless, asking nothing of the network on its own (a closed network refuses its
background connections)."""


def launch(playwright: t.Any) -> t.Any:
    """Debian's chromium through Playwright's sync API, as every page test opens it."""
    return playwright.chromium.launch(executable_path=shutil.which("chromium"), args=list(ARGS))
