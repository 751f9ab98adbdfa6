"""The README's main command: the offline example runs and shows real differences."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "capitals.py"


def test_offline_example_table() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=True, timeout=120
    )
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert rows == [
        ["careful", "4", "4", "0", "0", "0", "4/4"],
        ["sloppy", "4", "0", "4", "0", "0", "3/4"],
        ["stubborn", "4", "0", "0", "4", "0", "0/4"],
    ]
    assert "litellm" not in result.stderr
