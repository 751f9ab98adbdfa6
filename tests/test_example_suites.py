"""The README's main command: the example suites run offline and pass on the simulated
models they ship with; a model that never follows the format fails them all."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SUITES = Path(__file__).resolve().parents[1] / "example_suites"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(SUITES), "-p", "no:cacheprovider", "-rA", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=SUITES.parent,
    )


def test_example_suites_pass_offline() -> None:
    result = run()
    assert result.returncode == 0, result.stdout
    assert " 18 passed" in result.stdout
    assert "scripted!" in result.stdout and "(ini)" in result.stdout


def test_example_suites_under_xdist() -> None:
    result = run("-n", "2")
    assert result.returncode == 0, result.stdout
    assert " 18 passed" in result.stdout


def test_a_model_that_ignores_the_format_fails_every_parsing_case() -> None:
    result = run("--rig-models", f"scripted!{SUITES / 'models' / 'stubborn.toml'}")
    assert result.returncode == 1
    assert "0/5 samples passed, needed 4" in result.stdout
    assert "MissingModelError: Failed to find '<answer></answer>' in text" in result.stdout
    assert "8 failed, 1 passed" in result.stdout


def test_the_shipped_cassettes_replay_and_re_record_unchanged(tmp_path: Path) -> None:
    """`--rig-record none` replays the example suites from the cassettes they ship (from
    another directory and under xdist too), and recording them again changes no byte."""
    result = run("--rig-record", "none", "-n", "2")
    assert result.returncode == 0 and " 18 passed" in result.stdout, result.stdout
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
    assert len(shipped) == 4
    for path in shipped:
        assert (copy / "cassettes" / path.name).read_bytes() == path.read_bytes(), path.name
