"""The README's main command: the example suites run offline and pass on the simulated
models they ship with, their judged suite showing its judge's row, an unstable verdict and
its agreement with people; a model that never follows the format fails them all."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SUITES = Path(__file__).resolve().parents[1] / "example_suites"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The example suites run in a subprocess, their table whole (a terminal wide enough)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(SUITES), "-p", "no:cacheprovider", "-rA", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=SUITES.parent,
        env={**os.environ, "COLUMNS": "400"},
    )


def test_example_suites_pass_offline() -> None:
    result = run()
    assert result.returncode == 0, result.stdout
    assert " 30 passed" in result.stdout
    assert "scripted!" in result.stdout and "(ini)" in result.stdout
    judge = "scripted!models/judge.toml #"
    assert judge in result.stdout and "judge (judge)" in result.stdout
    table = result.stdout.split("rigging: parse success per model", 1)[1].splitlines()
    heads = re.split(r"\s{2,}", table[1].strip())
    rows = {}
    for line in table[3:6]:
        cells = dict(zip(heads, re.split(r"\s{2,}", line.strip()), strict=True))
        rows[cells["model"]] = cells
    assert rows["sloppy"]["unstable"] == "3 (25%)"  # the borderline reply's split verdicts
    assert rows["careful"]["unstable"] == "0 (0%)"
    assert rows["sloppy"]["judged pass [95% CI]"] == "83.3% [55.2-95.3]"
    # the refund agent's calls: sloppy's broken arguments, once in its 14 answered calls
    assert rows["careful"]["tool calls parsed [95% CI]"] == "100.0% [75.7-100.0]"
    assert rows["sloppy"]["tool calls parsed [95% CI]"] == "92.9% [68.5-98.7]"
    assert (
        f"pass judge {judge}" in result.stdout
        and ": kappa 0.67 over 12 labels, needs >= 0.60 (rig-min-judge-kappa)" in result.stdout
    )


def test_example_suites_under_xdist() -> None:
    result = run("-n", "2")
    assert result.returncode == 0, result.stdout
    assert " 30 passed" in result.stdout
    assert ": kappa 0.67 over 12 labels" in result.stdout


def test_a_model_that_ignores_the_format_fails_every_parsing_case() -> None:
    result = run("--rig-models", f"scripted!{SUITES / 'models' / 'stubborn.toml'}")
    assert result.returncode == 1
    assert "0/5 samples passed, needed 4" in result.stdout
    assert "MissingModelError: Failed to find '<answer></answer>' in text" in result.stdout
    assert "14 failed, 1 passed" in result.stdout
    assert "AssertionError: It doesn't tell the customer what to do next." in result.stdout


def test_the_shipped_cassettes_replay_and_re_record_unchanged(tmp_path: Path) -> None:
    """`--rig-record none` replays the example suites from the cassettes they ship (from
    another directory and under xdist too), and recording them again changes no byte."""
    result = run("--rig-record", "none", "-n", "2")
    assert result.returncode == 0 and " 30 passed" in result.stdout, result.stdout
    copy = tmp_path / "example_suites"
    shutil.copytree(SUITES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    rerecorded = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rig-record", "all"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=copy,
    )
    assert rerecorded.returncode == 0, rerecorded.stdout
    shipped = sorted((SUITES / "cassettes").glob("*.json"))
    assert len(shipped) == 6
    for path in shipped:
        assert (copy / "cassettes" / path.name).read_bytes() == path.read_bytes(), path.name
