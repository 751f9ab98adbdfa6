"""Near the wire: the native providers (`openai!`, `anthropic!`) end to end, and the
plugin at scale.

(1) The 600-call matrix: 20 cases x 3 models x 2 temperatures x 5 runs against the loopback
    server (200 ms a reply), at most 50 calls in flight, as whole `pytest` processes:
    - ours on `openai!m1..m3` models, serially, with `-n 2` and with `-n 4`;
    - ours on litellm's route (`openai/m1..m3`), serially, with `-n 2` and with `-n 4`;
    - the transport floor: a fresh python sending the same 600 requests with
      `http.client` from 50 threads (keep-alive, no JSON beyond the body).
    Wall time from spawn to exit, CPU per call (user + system of the whole process tree)
    and the peak RSS of the tree (xdist workers included), polled from /proc.
(2) Scale: 10,000 items (2,500 cases x 4 `openai!` models, `rig_chat`, 50 ms a reply, limit
    64) against bare pytest running 10,000 trivial parametrized items (`-p no:rigging`); for
    context, the same items on instant `echo!` models (the plugin's own cost), pytest alone
    running items with rig items' fixture chain, and the network floor (the same 10,000
    requests from 64 `http.client` threads).
(3) Import: `import pytest_rigging` plus the native provider, and a first call, in a fresh
    python: wall time, RSS, and whether litellm got imported.

Each side is timed `--rounds` times (default 3), the order rotating; medians are printed.
Run: .venv/bin/python bench/bench_native.py [--rounds N] [--skip-scale | --only-scale]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

from _common import Row, counting_llm_server_process, median, print_table, progress, spread

CASES, MODELS, TEMPERATURES, RUNS = 20, ("m1", "m2", "m3"), (0.2, 0.8), 5
CALLS = CASES * len(MODELS) * len(TEMPERATURES) * RUNS  # 600
LIMIT, LATENCY = 50, 0.2
FLOOR_TARGET = 1.35
SCALE_CASES, SCALE_MODELS, SCALE_LIMIT, SCALE_LATENCY = 2500, 4, 64, 0.05
SCALE_TARGET = 2.0
IMPORT_TARGET_MS = 100.0

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
MATRIX = f"""\
import pytest


@pytest.fixture
def rig_pipeline(rig_generator, case):
    return rig_generator.chat(f"Question {{case}}")


@pytest.mark.parametrize("case", range({CASES}))
@pytest.mark.rig(runs={RUNS})
def test_matrix(rig_chat, case):
    assert rig_chat.last.content == f"Question {{case}}"
"""
SCALE = f"""\
import pytest


@pytest.fixture
def rig_pipeline(rig_generator, case):
    return rig_generator.chat(f"q{{case}}")


@pytest.mark.parametrize("case", range({SCALE_CASES}))
def test_scale(rig_chat, case):
    assert rig_chat.last.content == f"q{{case}}"
"""
BARE = f"""\
import pytest


@pytest.mark.parametrize("case", range({SCALE_CASES * SCALE_MODELS}))
def test_bare(case):
    assert case >= 0
"""


def floor_script(jobs: str, threads: int) -> str:
    """A fresh python sending requests with `http.client` from `threads` threads (keep-alive,
    no JSON beyond the body): the transport floor. `jobs` is code that fills the queue
    `jobs` with (model, params, prompt) tuples."""
    return f"""\
import http.client, json, os, queue, threading, urllib.parse

base = urllib.parse.urlparse(os.environ["OPENAI_BASE_URL"])
jobs = queue.Queue()
{jobs}
right = []


def worker():
    connection = http.client.HTTPConnection(base.hostname, base.port)
    while True:
        try:
            model, params, prompt = jobs.get_nowait()
        except queue.Empty:
            return
        body = json.dumps({{"model": model, **params,
                           "messages": [{{"role": "user", "content": prompt}}]}})
        connection.request("POST", base.path + "/chat/completions", body,
                           {{"content-type": "application/json", "authorization": "Bearer k"}})
        reply = json.loads(connection.getresponse().read())
        right.append(reply["choices"][0]["message"]["content"] == prompt)


threads = [threading.Thread(target=worker) for _ in range({threads})]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sum(right), "passed")
"""


FLOOR = floor_script(
    f"""\
for case in range({CASES}):
    for model in {list(MODELS)!r}:
        for temperature in {list(TEMPERATURES)!r}:
            for _ in range({RUNS}):
                jobs.put((model, {{"temperature": temperature}}, f"Question {{case}}"))""",
    LIMIT,
)
IMPORT = """\
import asyncio, os, sys, time
start = time.perf_counter()
import pytest_rigging as rg
from pytest_rigging.generator import openai_
imported = time.perf_counter()

async def first():
    generator = rg.get_generator("openai!m")
    chat = await generator.chat("hi").run()
    await generator.aclose()
    return chat

asyncio.run(first())
called = time.perf_counter()
rss = int(next(x for x in open("/proc/self/status") if x.startswith("VmRSS")).split()[1])
print((imported - start) * 1000, (called - imported) * 1000, rss / 1024, "litellm" in sys.modules)
"""


@dataclass
class Measured:
    """One whole-process run: wall seconds, CPU seconds of the tree, peak tree RSS (MB)."""

    wall: float
    cpu: float
    rss: float
    out: str


def tree_rss(root: int) -> float:
    """RSS of `root` and all its descendants, in MB (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")]
        total += int(rss[0]) if rss else 0
    return total / 1024


def measured(argv: t.Sequence[str], cwd: Path, env: dict[str, str]) -> Measured:
    """Run `argv` to its end; wall time, CPU of the whole tree, peak RSS of the tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    child = subprocess.Popen(
        list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = [0.0]

    def poll() -> None:
        while child.poll() is None:
            peak[0] = max(peak[0], tree_rss(child.pid))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, _ = child.communicate(timeout=600)
    wall = time.perf_counter() - start
    poller.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(wall, cpu, peak[0], out)


def passed(out: str) -> int:
    found = re.findall(r"(\d+) passed", out)
    return int(found[-1]) if found else 0


def environment(base: str, root: Path) -> dict[str, str]:
    skip = ("PYTEST_", "PY_COLORS", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        PYTHONPYCACHEPREFIX=str(root / "pycache"),
        OPENAI_BASE_URL=base,
        OPENAI_API_KEY="test-key",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    return env


def rounds_of(
    sides: dict[str, t.Callable[[], Measured]], rounds: int, expect: dict[str, int]
) -> dict[str, list[Measured]]:
    """Each side `rounds` times, the order rotating, after one untimed warm-up each;
    every run must pass what `expect` says."""
    for name, run in sides.items():
        progress(f"warm-up: {name}")
        run()
    results: dict[str, list[Measured]] = {name: [] for name in sides}
    names = list(sides)
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            progress(f"round {index + 1}: {name}")
            run = sides[name]()
            if passed(run.out) != expect[name]:
                raise SystemExit(f"{name}: expected {expect[name]} passed, got:\n{run.out[-2000:]}")
            results[name].append(run)
    return results


def summarise(runs: list[Measured]) -> tuple[float, str, float, float]:
    walls = [r.wall for r in runs]
    return (
        median(walls),
        spread(walls, unit=" s"),
        median([r.cpu for r in runs]),
        max(r.rss for r in runs),
    )


def matrix(root: Path, rounds: int) -> list[Row]:
    directory = root / "matrix"
    directory.mkdir()
    (directory / "pytest.ini").write_text(INI)
    (directory / "test_matrix.py").write_text(MATRIX)
    (directory / "floor.py").write_text(FLOOR)
    with counting_llm_server_process(LATENCY) as server:
        env = environment(server.base, root)
        params = [a for t_ in TEMPERATURES for a in ("--rig-params", f"temperature={t_}")]

        def ours(prefix: str, *extra: str) -> t.Callable[[], Measured]:
            models = ",".join(f"{prefix}{m}" for m in MODELS)
            argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
            argv += ["--rig-concurrency", str(LIMIT), "--rig-models", models, *params, *extra]
            return lambda: measured(argv, directory, env)

        sides = {
            "floor": lambda: measured([sys.executable, "floor.py"], directory, env),
            "native": ours("openai!"),
            "native -n 2": ours("openai!", "-n", "2"),
            "native -n 4": ours("openai!", "-n", "4"),
            "litellm": ours("openai/"),
            "litellm -n 2": ours("openai/", "-n", "2"),
            "litellm -n 4": ours("openai/", "-n", "4"),
        }
        expect = {name: (CALLS if name == "floor" else CALLS // RUNS) for name in sides}
        results = rounds_of(sides, rounds, expect)
        server.take_counts()
    floor, floor_spread, floor_cpu, floor_rss = summarise(results["floor"])
    rows = []
    for name in ("native", "native -n 2", "native -n 4", "litellm", "litellm -n 2", "litellm -n 4"):
        wall, wall_spread, cpu, rss = summarise(results[name])
        rows.append(
            Row(
                f"matrix 600 calls: {name}",
                wall_spread,
                f"floor {floor_spread}",
                f"{wall / floor:.2f}x",
                f"<= {FLOOR_TARGET}x floor" if name == "native" else "-",
                wall / floor <= FLOOR_TARGET if name == "native" else None,
            )
        )
        rows.append(
            Row(
                f"  CPU per call, peak RSS of the tree: {name}",
                f"{cpu / CALLS * 1000:.2f} ms, {rss:.0f} MB",
                f"floor {floor_cpu / CALLS * 1000:.2f} ms, {floor_rss:.0f} MB",
                "-",
                "-",
                None,
            )
        )
    own = xdist_cost(root, rounds)
    for name in ("native -n 2", "native -n 4", "litellm -n 2", "litellm -n 4"):
        route, workers = name.split()[0], name.split()[-1]
        serial = summarise(results[route])[0]
        wall = summarise(results[name])[0]
        added, xdist_added = wall - serial, own[f"-n {workers}"] - own["serial"]
        rows.append(
            Row(
                f"matrix: {name} vs serial",
                f"{wall:.2f} s ({added:+.2f} s)",
                f"serial {serial:.2f} s; xdist alone adds {xdist_added:+.2f} s",
                f"{wall / serial:.2f}x",
                "no slower",
                wall <= serial * 1.05,
            )
        )
    return rows


TRIVIAL = f"""\
import pytest


@pytest.mark.parametrize("case", range({CASES * len(MODELS) * len(TEMPERATURES)}))
def test_trivial(case):
    assert case >= 0
"""


def xdist_cost(root: Path, rounds: int) -> dict[str, float]:
    """What xdist itself adds to a run on this machine: a trivial suite of as many items
    as the matrix, `-p no:rigging`, serially and with `-n 2` / `-n 4` (median seconds)."""
    directory = root / "trivial"
    directory.mkdir()
    (directory / "pytest.ini").write_text(INI)
    (directory / "test_trivial.py").write_text(TRIVIAL)
    env = environment("http://127.0.0.1:9/v1", root)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:rigging"]
    sides = {
        name: (lambda extra=extra: measured([*argv, *extra], directory, env))
        for name, extra in (("serial", []), ("-n 2", ["-n", "2"]), ("-n 4", ["-n", "4"]))
    }
    items = CASES * len(MODELS) * len(TEMPERATURES)
    results = rounds_of(sides, rounds, dict.fromkeys(sides, items))
    return {name: median([r.wall for r in runs]) for name, runs in results.items()}


SCALE_FLOOR = floor_script(
    f"""\
for case in range({SCALE_CASES}):
    for model in range({SCALE_MODELS}):
        jobs.put((f"s{{model}}", {{}}, f"q{{case}}"))""",
    SCALE_LIMIT,
)
FIXTURE_CHAIN = f"""\
import pytest


@pytest.fixture
def cell(request):
    return request.param


@pytest.fixture
def generator(request, cell):
    return cell


@pytest.fixture
def pipeline(generator, case):
    return (generator, case)


@pytest.fixture
def chat(request, pipeline):
    return pipeline


@pytest.mark.parametrize("cell", range({SCALE_MODELS}), indirect=True)
@pytest.mark.parametrize("case", range({SCALE_CASES}))
def test_chain(chat, case):
    assert chat[1] == case
"""
"""What pytest alone costs for items shaped like rig items: four fixtures in a chain, three
of them asking for `request` (`rig_cell`, `rig_generator`, `rig_pipeline`, `rig_chat`)."""


def scale(root: Path, rounds: int) -> list[Row]:
    directory = root / "scale"
    directory.mkdir()
    (directory / "pytest.ini").write_text(INI)
    (directory / "test_scale.py").write_text(SCALE)
    bare = root / "bare"
    bare.mkdir()
    (bare / "pytest.ini").write_text(INI)
    (bare / "test_bare.py").write_text(BARE)
    (bare / "floor.py").write_text(SCALE_FLOOR)
    chain = root / "chain"
    chain.mkdir()
    (chain / "pytest.ini").write_text(INI)
    (chain / "test_chain.py").write_text(FIXTURE_CHAIN)
    items = SCALE_CASES * SCALE_MODELS
    with counting_llm_server_process(SCALE_LATENCY) as server:
        env = environment(server.base, root)
        models = ",".join(f"openai!s{i}" for i in range(SCALE_MODELS))
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        instant = ",".join(f"echo!s{i}" for i in range(SCALE_MODELS))
        sides = {
            "bare": lambda: measured([*argv, "-p", "no:rigging"], bare, env),
            "chain": lambda: measured([*argv, "-p", "no:rigging"], chain, env),
            "floor": lambda: measured([sys.executable, "floor.py"], bare, env),
            "ours": lambda: measured(
                [*argv, "--rig-concurrency", str(SCALE_LIMIT), "--rig-models", models],
                directory,
                env,
            ),
            "instant": lambda: measured([*argv, "--rig-models", instant], directory, env),
        }
        results = rounds_of(sides, rounds, dict.fromkeys(sides, items))
        requests = server.take_counts().requests - items * (rounds + 1)  # less the floor's
    ours, ours_spread, _, ours_rss = summarise(results["ours"])
    base, base_spread, _, base_rss = summarise(results["bare"])
    instant, instant_spread, _, instant_rss = summarise(results["instant"])
    chain_wall, chain_spread, _, _ = summarise(results["chain"])
    floor, floor_spread, _, _ = summarise(results["floor"])
    network = items / SCALE_LIMIT * SCALE_LATENCY
    return [
        Row(
            f"scale: {items:,} items, pytest alone with rig items' fixture chain (context)",
            chain_spread,
            f"bare pytest {base:.1f} s",
            f"{chain_wall / base:.2f}x",
            "-",
            None,
        ),
        Row(
            f"scale: {items:,} items, 4 instant echo! models (the plugin's own cost)",
            f"{instant_spread}, {instant_rss:.0f} MB",
            f"bare pytest {base:.1f} s",
            f"{instant / base:.2f}x",
            "-",
            None,
        ),
        Row(
            "  per item beyond bare pytest",
            f"{(instant - base) / items * 1e6:.0f} us",
            f"bare {base / items * 1e6:.0f} us an item",
            "-",
            "-",
            None,
        ),
        Row(
            f"scale: {items:,} items, 4 openai! models, 50 ms, limit {SCALE_LIMIT}",
            f"{ours_spread}, {ours_rss:.0f} MB",
            f"bare pytest {base_spread}, {base_rss:.0f} MB",
            f"{ours / base:.2f}x",
            f"<= {SCALE_TARGET}x bare",
            ours / base <= SCALE_TARGET,
        ),
        Row(
            "  scale: the network floor (context)",
            f"{ours:.1f} s",
            f"{floor_spread}: http.client from {SCALE_LIMIT} threads; {network:.1f} s in theory",
            f"{ours / floor:.2f}x",
            "-",
            None,
        ),
        Row(
            "  scale: requests the server saw from ours (warm-up and rounds)",
            str(requests),
            str(items * (rounds + 1)),
            "-",
            "all, once",
            requests == items * (rounds + 1),
        ),
    ]


def importing(root: Path) -> list[Row]:
    with counting_llm_server_process(0.0) as server:
        env = environment(server.base, root)
        runs = []
        for _ in range(5):
            done = subprocess.run(
                [sys.executable, "-c", IMPORT], env=env, capture_output=True, text=True, check=True
            )
            runs.append(done.stdout.split())
    imported = median([float(r[0]) for r in runs])
    called = median([float(r[1]) for r in runs])
    rss = median([float(r[2]) for r in runs])
    litellm = any(r[3] == "True" for r in runs)
    return [
        Row(
            "import pytest_rigging + openai_ (fresh python)",
            f"{imported:.1f} ms",
            "-",
            "-",
            f"< {IMPORT_TARGET_MS:.0f} ms",
            imported < IMPORT_TARGET_MS,
        ),
        Row(
            "  first openai! call, process RSS",
            f"{called:.1f} ms, {rss:.0f} MB",
            "-",
            "-",
            "-",
            None,
        ),
        Row("  litellm imported?", "yes" if litellm else "no", "-", "-", "no", not litellm),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--only-scale", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="ignored (run_all.sh passes it to every script)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        rows = [] if args.only_scale else importing(root) + matrix(root, args.rounds)
        if not args.skip_scale:
            rows += scale(root, args.rounds)
    print_table(
        "native providers and the plugin at scale (medians; spreads are min-max)",
        rows,
        [f"2 cores shared; {os.cpu_count()} CPUs seen; python {sys.version.split()[0]}"],
    )


if __name__ == "__main__":
    main()
