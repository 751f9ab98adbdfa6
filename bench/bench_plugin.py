"""The plugin end to end: does a `pytest` run of an eval matrix take about as long as a
plain script making the same calls, and does the plugin keep pytest's start-up cheap?

(1) Matrix throughput: 20 cases x 3 models x 2 params sets x 5 runs = 600 litellm calls
    against the loopback server (200 ms a reply), at most 50 in flight. We time the wall
    time of the whole `pytest` process, including start-up, litellm's import and teardown,
    because that is what a user waits for. The baselines, measured in the same run:
    - the floor: a fresh python making the same 600 `litellm.acompletion` calls (same
      kwargs as our generator) under `asyncio.Semaphore(50)`;
    - the same suite written the naive way, without the plugin: one item per (case,
      model, params), each awaiting its own 5 samples, run serially and with `-n 2`.
    Every pytest run must report 120 passed, the server must see 600 requests per run,
    and our run must have had 50 of them in flight at once.
(2) Collection: `pytest --collect-only -q` of 1,000 matrix items (100 cases x 10 `echo!`
    models) against 1,000 plain `parametrize` items with `-p no:rigging`, and bare pytest
    on a one-test file with and without the plugin (its start-up cost).

The suites are written into a temporary directory, each with its own pytest.ini.

Run: .venv/bin/python bench/bench_plugin.py [--profile] [--naive-repeats N] [--free-form]
(--profile also runs py-spy over all threads when `py-spy` is on PATH or PY_SPY names it.)
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import typing as t
from dataclasses import dataclass
from pathlib import Path

from _common import (
    CountingServer,
    Row,
    ServerCounts,
    counting_llm_server_process,
    fmt,
    median,
    print_table,
    profile_file_top,
    progress,
    spread,
    timed_process,
)

CASES = 20
MODELS = ("openai/m1", "openai/m2", "openai/m3")
TEMPERATURES = (0.2, 0.8)
RUNS = 5
CALLS = CASES * len(MODELS) * len(TEMPERATURES) * RUNS  # 600
ITEMS = CASES * len(MODELS) * len(TEMPERATURES)  # 120
LIMIT = 50
LATENCY = 0.2
FAST_ROUNDS = 4  # ours and the plain script, order alternating
NAIVE_ROUNDS = 2  # each naive run takes 20-35 s
MATRIX_TARGET = 1.15

COLLECT_CASES = 100
COLLECT_MODELS = 10
COLLECT_ROUNDS = 7
STARTUP_TARGET_MS = 100.0

# Figures the project measured earlier on the same matrix, for context only.
REFERENCE = (
    ("plain script", 8.0),
    ("naive serial", 33.0),
    ("naive -n 2", 20.0),
    ("inspect_ai", 15.0),
    ("rigging", 25.0),
    ("promptfoo", 7.2),
)

INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
"""

# The pipeline both plugin suites declare, one case per item.
PIPELINE = f"""\
import pytest

CASES = [f"case {{i}}" for i in range({CASES})]


@pytest.fixture
def rig_pipeline(rig_generator, case):
    return rig_generator.chat(f"Question {{case}}")

"""

OURS_SUITE = (
    PIPELINE
    + f"""
@pytest.mark.parametrize("case", CASES)
@pytest.mark.rig(runs={RUNS})
def test_matrix(rig_chat, case):
    assert rig_chat.last.content == f"Question {{case}}"
"""
)

# Without the plugin, as the README's "first eval test" does it: one item per
# (case, model, params), each awaiting its own samples.
NAIVE_SUITE = f"""\
import pytest

import pytest_rigging as rg

CASES = [f"case {{i}}" for i in range({CASES})]


@pytest.mark.asyncio
@pytest.mark.parametrize("temperature", {list(TEMPERATURES)!r})
@pytest.mark.parametrize("model", {list(MODELS)!r})
@pytest.mark.parametrize("case", CASES)
async def test_matrix(case, model, temperature):
    generator = rg.get_generator(model, params=rg.GenerateParams(temperature=temperature))
    chats = await generator.chat(f"Question {{case}}").run_many({RUNS})
    assert [c.last.content for c in chats] == [f"Question {{case}}"] * {RUNS}
"""

# With the plugin, but free-form: the item awaits `rig_pipeline` itself, one at a time.
FREE_FORM_SUITE = (
    PIPELINE
    + f"""
@pytest.mark.parametrize("case", CASES)
async def test_matrix(rig_pipeline, case):
    chats = await rig_pipeline.run_many({RUNS})
    assert [c.last.content for c in chats] == [f"Question {{case}}"] * {RUNS}
"""
)

# The floor. It sends what our litellm generator sends (params, timeout, no retries,
# drop_params); the base URL and key come from the environment, as for pytest.
PLAIN_SCRIPT = f"""\
import asyncio
import json
import time

start = time.perf_counter()
import litellm

imported = time.perf_counter()
MODELS = {list(MODELS)!r}
TEMPERATURES = {list(TEMPERATURES)!r}
CASES = [f"case {{i}}" for i in range({CASES})]
JOBS = [(m, t, c) for c in CASES for m in MODELS for t in TEMPERATURES for _ in range({RUNS})]


async def main():
    gate = asyncio.Semaphore({LIMIT})

    async def one(model, temperature, case):
        async with gate:
            response = await litellm.acompletion(
                model=model,
                messages=[{{"role": "user", "content": f"Question {{case}}"}}],
                temperature=temperature,
                timeout=60.0,
                num_retries=0,
                max_retries=0,
                drop_params=True,
            )
            return response.choices[0].message.content

    return await asyncio.gather(*(one(*job) for job in JOBS))


replies = asyncio.run(main())
right = sum(r == f"Question {{c}}" for r, (_, _, c) in zip(replies, JOBS))
done = time.perf_counter()
print(json.dumps({{"right": right, "import_s": imported - start, "calls_s": done - imported}}))
"""

COLLECT_RIG = f"""\
import pytest


@pytest.mark.parametrize("case", range({COLLECT_CASES}))
def test_item(rig_chat, case):
    pass
"""

COLLECT_PLAIN = f"""\
import pytest


@pytest.mark.parametrize("model", [f"echo!m{{i}}" for i in range({COLLECT_MODELS})])
@pytest.mark.parametrize("case", range({COLLECT_CASES}))
def test_item(case, model):
    pass
"""

BARE = "def test_one():\n    pass\n"

PYTEST = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q")
MATRIX_OPTIONS = (
    "--rig-concurrency",
    str(LIMIT),
    "--rig-models",
    ",".join(MODELS),
    *(arg for t_ in TEMPERATURES for arg in ("--rig-params", f"temperature={t_}")),
)


def write_suite(root: Path, name: str, files: dict[str, str]) -> Path:
    """A directory with its own pytest.ini, so the repo's config plays no part."""
    directory = root / name
    directory.mkdir()
    (directory / "pytest.ini").write_text(INI)
    for filename, text in files.items():
        (directory / filename).write_text(text)
    return directory


def child_env(base: str, root: Path) -> dict[str, str]:
    """Our environment, pointing litellm's OpenAI provider at the loopback server.

    Bytecode caching is on, in a cache under `root`, as on a developer's machine: with
    PYTHONDONTWRITEBYTECODE (set on the project's machine), every pytest run would compile
    the repo's modules and re-run assertion rewriting on every plugin's modules again.
    """
    skip = ("PYTEST_", "PY_COLORS", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        PYTHONPYCACHEPREFIX=str(root / "pycache"),
        OPENAI_BASE_URL=base,
        OPENAI_API_BASE=base,
        OPENAI_API_KEY="test-key",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    return env


# Part 1: the matrix


@dataclass
class MatrixRun:
    """One whole-process run of one side, and what it and the server reported."""

    seconds: float
    counts: ServerCounts
    passed: int  # pytest's "N passed", or the plain script's right replies
    problems: str  # pytest's failed/error counts, or a crash's last line
    inner: dict[str, float]  # pytest's own session time, or the script's phase timings


def summary(output: str) -> tuple[int, str, float | None]:
    """From pytest's last line: passed count, failure/error counts, session seconds."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    passed = re.search(r"(\d+) passed", last)
    bad = re.findall(r"\d+ (?:failed|errors?)", last)
    session = re.search(r" in ([\d.]+)s", last)
    return (
        int(passed.group(1)) if passed else 0,
        ", ".join(bad) if bad or passed else last[-200:],
        float(session.group(1)) if session else None,
    )


def run_pytest(
    server: CountingServer, directory: Path, args: t.Sequence[str], env: dict[str, str]
) -> MatrixRun:
    seconds, done = timed_process([*PYTEST, *args], directory, env)
    passed, problems, session = summary(done.stdout)
    if done.returncode != 0 and not problems:
        problems = f"exit {done.returncode}"
    return MatrixRun(
        seconds,
        server.take_counts(),
        passed,
        problems,
        {} if session is None else {"session": session},
    )


def run_plain(server: CountingServer, directory: Path, env: dict[str, str]) -> MatrixRun:
    seconds, done = timed_process([sys.executable, "plain.py"], directory, env)
    counts = server.take_counts()
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return MatrixRun(seconds, counts, 0, f"exit {done.returncode}: {tail}", {})
    inner = {"import": float(data["import_s"]), "calls": float(data["calls_s"])}
    return MatrixRun(seconds, counts, int(data["right"]), "", inner)


def check(
    name: str, runs: t.Sequence[MatrixRun], expect_passed: int, expect_peak: int | None
) -> list[str]:
    """What went wrong in `runs`, as readable lines (none when all is well)."""
    found = []
    for index, run in enumerate(runs, 1):
        where = f"{name} run {index}"
        if run.passed != expect_passed or run.problems:
            found.append(f"{where}: {run.passed} passed (want {expect_passed}) {run.problems}")
        if run.counts.requests != CALLS:
            found.append(f"{where}: server saw {run.counts.requests} requests (want {CALLS})")
        if expect_peak is not None and run.counts.max_in_flight != expect_peak:
            found.append(
                f"{where}: {run.counts.max_in_flight} requests in flight at most "
                f"(want {expect_peak})"
            )
    return found


def seconds_of(runs: t.Sequence[MatrixRun]) -> list[float]:
    return [r.seconds for r in runs]


def peaks(runs: t.Sequence[MatrixRun]) -> str:
    return "/".join(sorted({str(r.counts.max_in_flight) for r in runs}))


def where_the_time_goes(ours: t.Sequence[MatrixRun], plain: t.Sequence[MatrixRun]) -> Row:
    """Split each side's wall time: pytest's own session timer against its start-up and
    teardown; the script's litellm import and calls against the interpreter's own."""
    if not all("session" in r.inner for r in ours) or not all(r.inner for r in plain):
        return Row("    where the time goes", "n/a", "n/a", "", "", None)
    session = median([r.inner["session"] for r in ours])
    imported = median([r.inner["import"] for r in plain])
    calls = median([r.inner["calls"] for r in plain])
    return Row(
        "    where the time goes (medians)",
        f"session {fmt(session)} s + rest {fmt(median(seconds_of(ours)) - session)} s",
        f"import litellm {fmt(imported)} s + calls {fmt(calls)} s "
        f"+ rest {fmt(median(seconds_of(plain)) - imported - calls)} s",
        "",
        "session = litellm import + calls",
        None,
    )


def matrix_part(
    root: Path, naive_rounds: int, free_form: bool, profile: bool
) -> tuple[list[Row], list[str], str]:
    ours_dir = write_suite(root, "ours", {"test_matrix.py": OURS_SUITE})
    naive_dir = write_suite(root, "naive", {"test_matrix.py": NAIVE_SUITE})
    plain_dir = write_suite(root, "plain", {"plain.py": PLAIN_SCRIPT})
    free_dir = write_suite(root, "free_form", {"test_matrix.py": FREE_FORM_SUITE})
    ours_args = [*MATRIX_OPTIONS, "test_matrix.py"]
    naive_args = ["-p", "no:rigging", "test_matrix.py"]
    free_args = [*MATRIX_OPTIONS, "test_matrix.py"]

    ours: list[MatrixRun] = []
    plain: list[MatrixRun] = []
    serial: list[MatrixRun] = []
    xdist: list[MatrixRun] = []
    extra: dict[str, MatrixRun] = {}
    profile_text = ""
    with counting_llm_server_process(LATENCY) as server:
        env = child_env(server.base, root)
        progress("warm-up: one run of each side, to fill the bytecode cache")
        run_pytest(server, ours_dir, ours_args, env)
        run_plain(server, plain_dir, env)
        for index in range(FAST_ROUNDS):
            progress(f"matrix round {index + 1}/{FAST_ROUNDS}: pytest (ours) and plain script")
            if index % 2 == 0:
                ours.append(run_pytest(server, ours_dir, ours_args, env))
                plain.append(run_plain(server, plain_dir, env))
            else:
                plain.append(run_plain(server, plain_dir, env))
                ours.append(run_pytest(server, ours_dir, ours_args, env))
        for index in range(naive_rounds):
            progress(f"naive round {index + 1}/{naive_rounds}: serial and -n 2 (~55 s)")
            runs = [
                (serial, naive_args),
                (xdist, ["-n", "2", *naive_args]),
            ]
            for into, args in runs if index % 2 == 0 else reversed(runs):
                into.append(run_pytest(server, naive_dir, args, env))
        if free_form:
            progress("free-form with the plugin: serial and -n 2, once each (~65 s)")
            extra["serial"] = run_pytest(server, free_dir, free_args, env)
            extra["-n 2"] = run_pytest(server, free_dir, ["-n", "2", *free_args], env)
        if profile:
            profile_text = profile_matrix(server, ours_dir, plain_dir, ours_args, env)

    problems = [
        *check("ours", ours, ITEMS, LIMIT),
        *check("plain", plain, CALLS, LIMIT),
        *check("naive serial", serial, ITEMS, None),
        *check("naive -n 2", xdist, ITEMS, None),
        *(p for name, run in extra.items() for p in check(f"free-form {name}", [run], ITEMS, None)),
    ]
    ours_s, plain_s = seconds_of(ours), seconds_of(plain)
    ratio = median(ours_s) / median(plain_s)
    ideal = math.ceil(CALLS / LIMIT) * LATENCY
    rows = [
        Row(
            f"(1) pytest, {ITEMS} items / {CALLS} calls, limit {LIMIT}",
            spread(ours_s, unit=" s"),
            f"plain script {spread(plain_s, unit=' s')}",
            f"{ratio:.2f}x",
            f"<= {MATRIX_TARGET}x plain",
            ratio <= MATRIX_TARGET,
        ),
        Row(
            "    naive, no plugin, serial",
            "",
            spread(seconds_of(serial), unit=" s"),
            f"ours {median(seconds_of(serial)) / median(ours_s):.1f}x faster",
            "",
            None,
        ),
        Row(
            "    naive, no plugin, -n 2",
            "",
            spread(seconds_of(xdist), unit=" s"),
            f"ours {median(seconds_of(xdist)) / median(ours_s):.1f}x faster",
            "",
            None,
        ),
    ]
    for name, run in extra.items():
        rows.append(
            Row(
                f"    free-form with the plugin, {name}",
                "",
                f"{fmt(run.seconds)} s (peak {run.counts.max_in_flight} in flight)",
                f"ours {run.seconds / median(ours_s):.1f}x faster",
                "",
                None,
            )
        )
    rows += [
        Row(
            f"    vs the ideal ceil({CALLS}/{LIMIT}) x {LATENCY} s",
            f"{fmt(median(ours_s))} s",
            f"ideal {fmt(ideal)} s",
            f"{median(ours_s) / ideal:.2f}x (plain {median(plain_s) / ideal:.2f}x)",
            "",
            None,
        ),
        where_the_time_goes(ours, plain),
        Row(
            "    correctness: passed / server requests / peak in flight",
            f"{ITEMS} / {CALLS} / {peaks(ours)} per run",
            f"plain {peaks(plain)}; naive {peaks(serial)} serial, {peaks(xdist)} with -n 2",
            "",
            f"{ITEMS} passed, {CALLS} calls, peak {LIMIT}",
            not problems,
        ),
    ]
    notes = [
        f"wall time of the whole process (start-up, litellm import, teardown); median "
        f"(min-max) of {FAST_ROUNDS} runs for ours and the plain script (order alternating) "
        f"and {naive_rounds} for each naive variant; bytecode cache on and warm (one untimed "
        "run of each side first)",
        "naive: one item per (case, model, params) awaiting `run_many(5)`, with "
        "-p no:rigging (with the plugin on, its scheduler keeps one function's items on one "
        "xdist worker; see --free-form)",
        "reference only, measured earlier by the project on this matrix, not in this run: "
        + ", ".join(f"{name} {fmt(value)} s" for name, value in REFERENCE),
        *problems,
    ]
    return rows, notes, profile_text


# Part 2: collection


def collected_count(output: str) -> int:
    found = re.search(r"(\d+) tests? collected", output)
    return int(found.group(1)) if found else -1


def collection_part(root: Path) -> tuple[list[Row], list[str]]:
    rig_dir = write_suite(root, "collect_rig", {"test_collect.py": COLLECT_RIG})
    plain_dir = write_suite(root, "collect_plain", {"test_collect.py": COLLECT_PLAIN})
    bare_dir = write_suite(root, "bare", {"test_bare.py": BARE})
    models = ",".join(f"echo!m{i}" for i in range(COLLECT_MODELS))
    items = COLLECT_CASES * COLLECT_MODELS
    env = child_env("http://127.0.0.1:9/v1", root)  # nothing is called while collecting
    commands: dict[str, tuple[Path, list[str], int]] = {
        "rig": (rig_dir, ["--collect-only", "--rig-models", models, "test_collect.py"], items),
        "plain": (plain_dir, ["-p", "no:rigging", "--collect-only", "test_collect.py"], items),
        "bare+plugin": (bare_dir, ["--collect-only", "test_bare.py"], 1),
        "bare": (bare_dir, ["-p", "no:rigging", "--collect-only", "test_bare.py"], 1),
    }
    names = list(commands)
    times: dict[str, list[float]] = collections.defaultdict(list)
    problems = []
    for index in range(COLLECT_ROUNDS + 1):  # the first round is a warm-up
        progress(f"collection round {index}/{COLLECT_ROUNDS}")
        for name in names[index % 4 :] + names[: index % 4]:
            directory, args, want = commands[name]
            seconds, done = timed_process([*PYTEST, *args], directory, env)
            got = collected_count(done.stdout)
            if got != want:
                problems.append(f"{name}: collected {got}, want {want} (exit {done.returncode})")
            if index:
                times[name].append(seconds)

    def paired(a: str, b: str) -> float:
        """Median of the per-round differences, steadier than a difference of medians."""
        return median([x - y for x, y in zip(times[a], times[b], strict=True)])

    startup = paired("bare+plugin", "bare")
    added = paired("rig", "plain")
    rows = [
        Row(
            "(2) start-up: bare pytest --collect-only, 1 test",
            spread(times["bare+plugin"], 1000, " ms"),
            f"-p no:rigging {spread(times['bare'], 1000, ' ms')}",
            f"+{fmt(startup * 1000)} ms",
            f"+ < {STARTUP_TARGET_MS:.0f} ms",
            startup * 1000 < STARTUP_TARGET_MS,
        ),
        Row(
            f"    {items:,} matrix items ({COLLECT_CASES} cases x {COLLECT_MODELS} echo models)",
            spread(times["rig"], 1000, " ms"),
            f"{items:,} parametrize items, -p no:rigging {spread(times['plain'], 1000, ' ms')}",
            f"+{fmt(added * 1000)} ms",
            "",
            None,
        ),
        Row(
            "    per item, beyond start-up",
            f"{fmt((added - startup) / items * 1e6)} us added",
            f"plain pytest {fmt(paired('plain', 'bare') / items * 1e6)} us/item",
            f"ours {fmt(paired('rig', 'bare+plugin') / items * 1e6)} us/item",
            "",
            None,
        ),
    ]
    notes = [
        f"whole `pytest -p no:cacheprovider -q --collect-only` processes, {COLLECT_ROUNDS} "
        "rounds after a warm-up, order rotating, bytecode cache on; differences are medians "
        "of per-round differences",
        *problems,
    ]
    return rows, notes


# Profiles


def py_spy() -> str | None:
    return os.environ.get("PY_SPY") or shutil.which("py-spy")


SPY_CATEGORIES = (
    ("imports (litellm's, mostly)", ("_find_and_load",)),
    ("pytest's gc.collect at exit", ("gc_collect_harder",)),
    ("litellm / openai / httpx per call", ("litellm/", "openai/", "httpx/", "aiohttp/")),
    ("pytest and the plugin", ("_pytest/", "pluggy/", "pytest_rigging/")),
    ("asyncio loop itself", ("asyncio/",)),
)


def spy_summary(raw: Path, rate: int) -> str:
    """py-spy's samples of all threads, by what they were doing, in seconds of CPU."""
    samples: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack.endswith("(concurrent/futures/thread.py:81)"):
            category = "thread-pool workers waiting (py-spy counts them)"
        elif not stack.strip():
            category = "no Python frame"
        else:
            category = next(
                (name for name, marks in SPY_CATEGORIES if any(m in stack for m in marks)),
                "other",
            )
        samples[category] += int(count)
    return ", ".join(f"{name} {count / rate:.2f} s" for name, count in samples.most_common())


def profile_matrix(
    server: CountingServer,
    ours_dir: Path,
    plain_dir: Path,
    ours_args: list[str],
    env: dict[str, str],
) -> str:
    """cProfile of our pytest process (its main thread: pytest, and waiting for the
    plugin's loop thread), and py-spy of both sides (all threads) when it is installed."""
    out = []
    prof = ours_dir / "ours.prof"
    progress("profile: cProfile of the pytest process")
    seconds, _ = timed_process(
        [sys.executable, "-m", "cProfile", "-o", str(prof), *PYTEST[1:], *ours_args], ours_dir, env
    )
    server.take_counts()
    out.append(f"-- cProfile of our pytest run ({fmt(seconds)} s; main thread only) --")
    out.append(profile_file_top(prof, top=25))
    spy = py_spy()
    if spy is None:
        out.append("-- py-spy not found (pip install py-spy, or set PY_SPY) --")
        return "\n".join(out)
    rate = 200
    for name, directory, argv in (
        ("pytest (ours)", ours_dir, [*PYTEST, *ours_args]),
        ("plain script", plain_dir, [sys.executable, "plain.py"]),
    ):
        progress(f"profile: py-spy of {name}")
        raw = directory / "spy.txt"
        record = [spy, "record", "-r", str(rate), "-f", "raw", "-o", str(raw), "--", *argv]
        done = subprocess.run(
            record, cwd=directory, env=env, capture_output=True, text=True, check=False
        )
        server.take_counts()
        if not raw.exists():
            out.append(f"-- py-spy of {name} failed: {done.stderr.strip()[-200:]} --")
            continue
        out.append(f"-- py-spy of {name}, all threads, CPU seconds: {spy_summary(raw, rate)}")
    return "\n".join(out)


def startup_imports(root: Path, top: int = 12) -> str:
    """What the plugin imports while pytest starts: `-X importtime` of bare pytest, our
    top-level imports and the slowest modules they pull in (cumulative ms)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *PYTEST[1:], "--collect-only", "test_bare.py"],
        cwd=root / "bare",
        env=child_env("http://127.0.0.1:9/v1", root),
        capture_output=True,
        text=True,
        check=False,
    )
    rows: list[tuple[int, int, str]] = []  # (nesting level, cumulative us, module)
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()[1:]  # nesting shows as two spaces per level
            level = (len(name) - len(name.lstrip())) // 2
            rows.append((level, int(parts[1]), name.strip()))
    lines = ["-- -X importtime of bare pytest: our top-level imports, cumulative ms --"]
    for index, (level, cumulative, name) in enumerate(rows):
        if level or not name.startswith("pytest_rigging"):
            continue
        lines.append(f"{cumulative / 1000:8.1f}  {name}")
        children = []
        for child_level, child_cumulative, child in reversed(rows[:index]):
            if child_level == 0:
                break
            children.append((child_cumulative, "  " * child_level + child))
        lines += [f"{us / 1000:8.1f}  {name}" for us, name in sorted(children, reverse=True)[:top]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="The plugin: matrix throughput, collection.")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile/py-spy our run, -X importtime start-up"
    )
    parser.add_argument(
        "--naive-repeats", type=int, default=NAIVE_ROUNDS, help="runs of each naive variant"
    )
    parser.add_argument(
        "--free-form",
        action="store_true",
        help="also time the free-form (rig_pipeline) suite with the plugin on, once each",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as tmp:
        root = Path(tmp)
        matrix_rows, matrix_notes, profile = matrix_part(
            root, max(1, args.naive_repeats), args.free_form, args.profile
        )
        collect_rows, collect_notes = collection_part(root)
        print_table("plugin: matrix wall time", matrix_rows, matrix_notes)
        print_table("plugin: collection and start-up", collect_rows, collect_notes)
        if args.profile:
            print()
            print(profile)
            print(startup_imports(root))


if __name__ == "__main__":
    main()
