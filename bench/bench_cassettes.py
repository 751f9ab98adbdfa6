"""Cassette misses: does a replay whose every call misses fail about as fast as a clean one?

A suite of 100 cases x 2 `echo!` models x `rig(runs=5)` (200 items, 1,000 calls) is
recorded once (`--rig-record once`), then replayed with `--rig-record none`: as it is (the
clean replay, 200 passed) and with its system prompt edited (the miss run: each of the
1,000 calls misses against the 1,000 recordings, 200 errors). Target: the miss run within
2x of the clean replay. A smaller suite at the size the issue met (24 cases, 240
recordings, the prompt edited for 20 cases: 200 misses, 40 errors) is timed too. For
context, pytest alone (`-p no:rigging`) on 200 items whose fixture, in a conftest, passes or
fails with `pytest.fail(..., pytrace=False)`: what reporting 200 such errors costs pytest.

Whole `pytest` processes, timed from spawn to exit, after one untimed warm-up of each
(bytecode cache on), in rounds whose order alternates.

With `--baseline-tree DIR` (a checkout of the code before: `git archive REV | tar -x -C
DIR`), every run is made with a python that imports pytest_rigging from DIR too (a venv
made in the temporary directory, whose .pth names DIR first), in the same rounds. The old
code compared each miss with every recording through difflib: at 1,000 x 1,000 its miss
run takes 45-120 s, so it runs once, cut at `--baseline-timeout` seconds.

Run: .venv/bin/python bench/bench_cassettes.py [--baseline-tree DIR] [--rounds N] [--profile]
(~1 minute; a baseline tree adds 1-5, most of them the old code's 1,000-miss run; --profile
adds cProfile of our 1,000-miss run)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _common import (
    Row,
    fmt,
    median,
    print_table,
    profile_file_top,
    progress,
    python_seeing,
    spread,
    timed_process,
)
from bench_plugin import child_env, write_suite

from pytest_rigging.plugin.cassettes import EXPLAINED  # items told how their calls differ

MODELS = "echo!m1,echo!m2"
RUNS = 5
TARGET = 2.0
ROUNDS = 3
BASELINE_TIMEOUT = 300.0
EDITED = {"BENCH_SYSTEM": "Answer in two words."}
PYTEST = ("-m", "pytest", "-p", "no:cacheprovider", "-q")
RIGGED = (*PYTEST, "--rig-models", MODELS, "--rig-record")

SUITE = """\
import os

import pytest

import pytest_rigging as rg

RECORDED = "Answer in one word."
SYSTEM = os.environ.get("BENCH_SYSTEM", RECORDED)


@pytest.fixture
def rig_pipeline(rig_generator, case):
    system = SYSTEM if case < {edited} else RECORDED
    return rig_generator.chat([rg.Message("system", system), rg.Message("user", f"Q{{case}}")])


@pytest.mark.parametrize("case", range({cases}))
@pytest.mark.rig(runs={runs})
def test_answer(rig_chat, case):
    assert rig_chat.last.content == f"Q{{case}}"
"""

# pytest alone: the same number of items, erroring in a fixture outside the test module
FLOOR_CONFTEST = """\
import os

import pytest


@pytest.fixture
def answer(case):
    if "BENCH_SYSTEM" in os.environ:
        pytest.fail(f"no recording for case {case}", pytrace=False)
"""

FLOOR_SUITE = """\
import pytest


@pytest.mark.parametrize("model", ["m1", "m2"])
@pytest.mark.parametrize("case", range({cases}))
def test_answer(answer, case, model):
    pass
"""


@dataclass(frozen=True)
class Size:
    """A suite: `cases` x 2 models x `RUNS` recordings, of which `edited` cases miss."""

    name: str
    cases: int
    edited: int

    @property
    def items(self) -> int:
        return self.cases * 2

    @property
    def recordings(self) -> int:
        return self.items * RUNS

    @property
    def misses(self) -> int:
        return self.edited * 2 * RUNS


BENCH = Size("bench", 100, 100)
ISSUE = Size("issue", 24, 20)


@dataclass
class Side:
    """What is measured: the pytest command, and the tree it imports pytest_rigging from."""

    name: str
    argv: list[str]
    tree: str


FLOOR = Side("pytest alone", [sys.executable, *PYTEST, "-p", "no:rigging"], "-")


@dataclass
class Run:
    seconds: float
    outcomes: dict[str, int]  # pytest's closing line: passed, errors, ...
    explained: int  # items whose miss says how the call differs
    named: int  # items whose miss names the closest recording only
    timed_out: bool = False


def pytest_run(side: Side, directory: Path, env: dict[str, str], timeout: float = 600) -> Run:
    try:
        seconds, done = timed_process(side.argv, directory, env, timeout)
    except subprocess.TimeoutExpired:
        return Run(timeout, {}, 0, 0, timed_out=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    closing = lines[-1] if lines else ""
    outcomes = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?)", closing)}
    misses = [line for line in lines if line.startswith("no recording in")]
    return Run(
        seconds,
        {("errors" if k == "error" else k): v for k, v in outcomes.items()},
        sum("the closest recording differs in" in line for line in misses),
        sum("the closest recording is " in line for line in misses),
    )


def which_tree(python: str) -> str:
    """Where `python` imports pytest_rigging from: a baseline must not see our tree."""
    done = subprocess.run(
        [
            python,
            "-c",
            "import pathlib, pytest_rigging as r; print(pathlib.Path(r.__file__).parent.parent)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    return done.stdout.strip()


def record(root: Path, size: Size, env: dict[str, str]) -> Path:
    suite = SUITE.format(cases=size.cases, edited=size.edited, runs=RUNS)
    directory = write_suite(root, size.name, {"test_answers.py": suite})
    done = subprocess.run(
        [sys.executable, *RIGGED, "once"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if f"{size.items} passed" not in done.stdout:
        raise SystemExit(f"recording the {size.name} suite failed:\n{done.stdout[-2000:]}")
    return directory


def measure(
    subjects: list[tuple[Side, Path]], env: dict[str, str], rounds: int, cut: dict[str, float]
) -> dict[tuple[str, str], list[Run]]:
    """Clean replays and miss runs of each side in its suite's directory, `rounds` times,
    order alternating; a side named in `cut` has its miss run made once, cut at that many
    seconds."""
    runs: dict[tuple[str, str], list[Run]] = {}
    envs = {"clean": env, "miss": {**env, **EDITED}}
    plan = [(side, directory, kind) for side, directory in subjects for kind in envs]
    for side, directory, kind in plan:  # warm-up: the bytecode cache, the page cache
        if kind == "clean" or side.name not in cut:
            pytest_run(side, directory, envs[kind])
    for index in range(rounds):
        progress(f"{subjects[0][1].name}: round {index + 1}/{rounds}")
        for side, directory, kind in plan if index % 2 == 0 else reversed(plan):
            if kind == "miss" and side.name in cut:
                if index:
                    continue
                progress(f"{side.name}: one miss run, cut at {cut[side.name]:.0f} s")
            timeout = cut.get(side.name, 600.0) if kind == "miss" else 600.0
            run = pytest_run(side, directory, envs[kind], timeout)
            runs.setdefault((side.name, kind), []).append(run)
    return runs


def problems_of(runs: dict[tuple[str, str], list[Run]], size: Size, ours: str) -> list[str]:
    """What a run got wrong: its outcomes, or (ours) how many misses were explained."""
    found = []
    for (name, kind), done in runs.items():
        for run in done:
            if run.timed_out:
                continue
            errors = size.edited * 2 if kind == "miss" else 0
            want = {"passed": size.items - errors, "errors": errors}
            got = {k: run.outcomes.get(k, 0) for k in ("passed", "failed", "errors")}
            if got != {**want, "failed": 0}:
                found.append(f"{size.name} {name} {kind}: {got}, want {want}")
            if (
                name == ours
                and kind == "miss"
                and (run.explained, run.named)
                != (
                    EXPLAINED,
                    errors - EXPLAINED,
                )
            ):
                found.append(
                    f"{size.name} {name} miss: {run.explained} explained, {run.named} named "
                    f"(want {EXPLAINED} and {errors - EXPLAINED})"
                )
    return found


def rows_of(
    runs: dict[tuple[str, str], list[Run]], size: Size, sides: list[Side], target: bool
) -> list[Row]:
    rows = []
    for side in sides:
        clean = [r.seconds for r in runs[(side.name, "clean")]]
        miss = runs[(side.name, "miss")]
        if any(r.timed_out for r in miss):
            shown, ratio = f"> {fmt(miss[0].seconds)} s (cut)", miss[0].seconds / median(clean)
            ratio_text = f"> {ratio:.1f}x"
        else:
            shown = spread([r.seconds for r in miss], unit=" s")
            ratio = median([r.seconds for r in miss]) / median(clean)
            ratio_text = f"{ratio:.2f}x"
        judged = target and side is not FLOOR
        rows.append(
            Row(
                f"{side.name}: {size.misses:,} misses / {size.recordings:,} recordings"
                if side is not FLOOR
                else f"    pytest alone: {size.items} errors in a conftest fixture",
                shown,
                f"clean replay {spread(clean, unit=' s')}"
                if side is not FLOOR
                else f"{size.items} passed {spread(clean, unit=' s')}",
                ratio_text,
                f"<= {TARGET}x clean" if judged else "",
                (ratio <= TARGET and not any(r.timed_out for r in miss)) if judged else None,
            )
        )
    return rows


def beyond_pytest(runs: dict[tuple[str, str], list[Run]], size: Size) -> Row:
    """What a miss run adds to a clean replay, beyond what pytest's reporting of as many
    errors costs it alone."""

    def added(name: str) -> float:
        return median([r.seconds for r in runs[(name, "miss")]]) - median(
            [r.seconds for r in runs[(name, "clean")]]
        )

    ours, floor = added("ours"), added(FLOOR.name)
    return Row(
        "    ours' miss run, beyond pytest's own cost of its errors",
        f"+{fmt(ours - floor)} s ({fmt((ours - floor) / size.items * 1000)} ms an item)",
        f"pytest alone +{fmt(floor)} s, ours +{fmt(ours)} s",
        "",
        "",
        None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Cassette misses against a clean replay.")
    parser.add_argument("--baseline-tree", type=Path, help="a checkout of the code before")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of each run")
    parser.add_argument(
        "--baseline-timeout",
        type=float,
        default=BASELINE_TIMEOUT,
        help="seconds after which the baseline's 1,000-miss run is cut",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile our 1,000-miss run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-cassettes-") as tmp:
        root = Path(tmp)
        env = child_env("http://127.0.0.1:9/v1", root)  # echo! models: nothing is called
        env.pop("BENCH_SYSTEM", None)
        sides = [Side("ours", [sys.executable, *RIGGED, "none"], which_tree(sys.executable))]
        if args.baseline_tree is not None:
            python = str(python_seeing(args.baseline_tree.resolve(), root / "baseline-venv"))
            sides.append(Side("before", [python, *RIGGED, "none"], which_tree(python)))
            if sides[1].tree == sides[0].tree:
                raise SystemExit(f"the baseline python imports our tree ({sides[0].tree})")
        notes = [f"{side.name}: pytest_rigging from {side.tree}" for side in sides]
        floor = write_suite(
            root,
            "floor",
            {
                "conftest.py": FLOOR_CONFTEST,
                "test_answers.py": FLOOR_SUITE.format(cases=BENCH.cases),
            },
        )
        rows: list[Row] = []
        for size, cut in ((BENCH, {"before": args.baseline_timeout}), (ISSUE, {})):
            progress(f"recording the {size.name} suite ({size.recordings} calls)")
            directory = record(root, size, env)
            subjects = [(side, directory) for side in sides]
            if size is BENCH:
                subjects.append((FLOOR, floor))
            runs = measure(subjects, env, max(1, args.rounds), cut)
            rows += rows_of(runs, size, [s for s, _ in subjects], target=size is BENCH)
            if size is BENCH:
                rows.append(beyond_pytest(runs, size))
            notes += problems_of(runs, size, "ours")
        notes.insert(
            0,
            f"whole `pytest -q --rig-record none` processes, {MODELS}, rig(runs={RUNS}); "
            f"median (min-max) of {max(1, args.rounds)} rounds after a warm-up, order "
            "alternating; the baseline's 1,000-miss run once, cut at "
            f"{fmt(args.baseline_timeout)} s",
        )
        print_table("cassettes: a replay whose calls miss, against a clean one", rows, notes)
        if args.profile:
            prof = root / "miss.prof"
            argv = [sys.executable, "-m", "cProfile", "-o", str(prof), *RIGGED, "none"]
            seconds, _ = timed_process(argv, root / BENCH.name, {**env, **EDITED})
            print(f"\n-- cProfile of our 1,000-miss run ({fmt(seconds)} s; pytest's thread) --")
            print(profile_file_top(prof, top=25))


if __name__ == "__main__":
    main()
