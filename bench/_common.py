"""Helpers the benchmarks share: timing, result tables, shared inputs, the rigging venv.

Standard library only, because `_rigging_side.py` imports it too, from rigging's venv.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import sysconfig
import time
import typing as t
import venv
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# litellm otherwise tries to download its price map on import, and there is no internet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RIGGING_VENV = BENCH_DIR / ".venv-rigging"
RIGGING_SIDE = BENCH_DIR / "_rigging_side.py"
SETUP_SCRIPT = BENCH_DIR / "setup_rigging_venv.sh"

T = t.TypeVar("T")


def add_repo_to_path() -> None:
    """Make `tests.llm_server` importable when a script is run as `python bench/x.py`."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


# Timing


def median(values: t.Sequence[float]) -> float:
    return statistics.median(values)


def time_call(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of `fn`, each after a full garbage collection."""
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


async def time_async(fn: Callable[[], Awaitable[object]], repeats: int) -> list[float]:
    """`time_call` for coroutines, on the running loop (loop start-up is not timed)."""
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return times


def spread(values: t.Sequence[float], scale: float = 1.0, unit: str = "") -> str:
    """`median (min-max)`, for showing how noisy a figure was."""
    return (
        f"{fmt(median(values) * scale)}{unit} "
        f"({fmt(min(values) * scale)}-{fmt(max(values) * scale)})"
    )


def fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def profile_top(fn: Callable[[], object], top: int = 20) -> str:
    """cProfile one call of `fn`: the `top` functions by own time, then by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    return _top(profiler, top)


async def profile_top_async(fn: Callable[[], Awaitable[object]], top: int = 20) -> str:
    """`profile_top` for a coroutine, on the running loop (all of it is profiled)."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await fn()
    finally:
        profiler.disable()
    return _top(profiler, top)


def _top(profiler: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# Result tables


@dataclass
class Row:
    """One line of a result table: our figure beside its baseline, and the verdict."""

    metric: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: context only, no target

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else ("yes" if self.met else "NO")


def print_table(title: str, rows: t.Sequence[Row], notes: t.Sequence[str] = ()) -> None:
    header = ("metric", "ours", "baseline", "ratio", "target", "met?")
    cells = [header, *((r.metric, r.ours, r.baseline, r.ratio, r.target, r.verdict) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    print(f"\n== {title} ==")
    for index, line in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    for note in notes:
        print(f"  note: {note}")
    sys.stdout.flush()


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


# Shared inputs

_PROSE = (
    "The committee reviewed the quarterly figures and found them broadly in line with "
    "forecasts, although several regional offices reported delays. "
)


def tagged_text(size: int) -> str:
    """`size` characters of prose with an `<answer>` element about every 100 characters."""
    parts = []
    total = 0
    index = 0
    while total < size:
        start = (index * 37) % (len(_PROSE) - 80)
        part = f"{_PROSE[start : start + 60]}<answer>value {index}</answer> "
        parts.append(part)
        total += len(part)
        index += 1
    return "".join(parts)[:size]


def hostile_text(repeats: int) -> str:
    """Opening tags with no closing tag: the input that makes a backtracking regex explode."""
    return "<answer> " * repeats


# The rigging 3.3.5 baseline, run in its own venv

_rigging_python: Path | None = None
_rigging_checked = False


def rigging_python() -> Path | None:
    """The rigging venv's python, creating the venv if needed; None if it can't be made.

    Set BENCH_SKIP_RIGGING=1 to leave rigging out.
    """
    global _rigging_python, _rigging_checked
    if _rigging_checked:
        return _rigging_python
    _rigging_checked = True
    if os.environ.get("BENCH_SKIP_RIGGING"):
        return None
    python = RIGGING_VENV / "bin" / "python"
    if not (RIGGING_VENV / ".rigging-3.3.5-ok").exists():
        progress("creating bench/.venv-rigging (pip install rigging==3.3.5, once)")
        done = subprocess.run(
            ["bash", str(SETUP_SCRIPT)],
            env={**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            progress("rigging venv could not be made: " + " | ".join(tail))
            return None
    _rigging_python = python
    return python


@dataclass
class RiggingResult:
    """What one run of `_rigging_side.py` gave: its JSON, or why there is none."""

    data: dict[str, t.Any] | None
    problem: str | None = None


def run_rigging(args: t.Sequence[str], timeout: float) -> RiggingResult:
    """Run `_rigging_side.py args` with rigging's python; its last stdout line is JSON."""
    python = rigging_python()
    if python is None:
        return RiggingResult(None, "rigging not available")
    try:
        done = subprocess.run(
            [str(python), str(RIGGING_SIDE), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=BENCH_DIR,
        )
    except subprocess.TimeoutExpired:
        return RiggingResult(None, f"timed out after {timeout:.0f} s")
    for line in reversed(done.stdout.strip().splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                return RiggingResult(data)
    tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
    return RiggingResult(None, f"rigging side failed (exit {done.returncode}): {tail[0]}")


# The loopback LLM server, in a process of its own so it does not compete for our GIL


@contextlib.contextmanager
def llm_server_process(latency: float, failing: t.Sequence[str] = ()) -> Iterator[str]:
    """Run `tests.llm_server.LLMServer` (with `latency`; the `failing` models answer 500
    at once) in a child process; yield its OpenAI base URL (`http://127.0.0.1:PORT/v1`)."""
    with counting_llm_server_process(latency, failing) as server:
        yield server.base


# The same server, answering "how many requests, and how many at once?" between runs

_COUNTING_SERVER_CODE = """
import json
import sys
from tests.llm_server import LLMServer

def fail(server):
    for model in sys.argv[2:]:  # these models answer 500, at once
        server.fail_next(10**9, status=500, model=model, delay=0)

with LLMServer(latency=float(sys.argv[1])) as server:
    fail(server)
    print(server.openai_base, flush=True)
    for _ in sys.stdin:
        counts = {"requests": len(server.requests), "max_in_flight": server.max_in_flight}
        server.reset()
        fail(server)
        print(json.dumps(counts), flush=True)
"""


@dataclass
class ServerCounts:
    """What the server saw since the last count: requests, and the most at one moment."""

    requests: int
    max_in_flight: int


class CountingServer:
    """A handle on the server child: its base URL, and its counts on demand."""

    def __init__(self, base: str, child: subprocess.Popen[str]) -> None:
        self.base = base
        self._child = child

    def take_counts(self) -> ServerCounts:
        """The counts since the previous call (the server forgets its requests)."""
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write("\n")
        self._child.stdin.flush()
        data = json.loads(self._child.stdout.readline())
        return ServerCounts(int(data["requests"]), int(data["max_in_flight"]))


@contextlib.contextmanager
def counting_llm_server_process(
    latency: float, failing: t.Sequence[str] = ()
) -> Iterator[CountingServer]:
    """`llm_server_process` for when other processes are the clients: the counts let a
    benchmark check that every call reached the server, and how many ran at once."""
    child = subprocess.Popen(
        [sys.executable, "-c", _COUNTING_SERVER_CODE, str(latency), *failing],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        base = child.stdout.readline().strip()
        if not base.startswith("http"):
            raise RuntimeError("the loopback LLM server did not start")
        yield CountingServer(base, child)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# Whole processes


def timed_process(
    argv: t.Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall seconds of one child process from spawn to exit (start-up and teardown
    included, which in-process timers miss), and what it printed."""
    gc.collect()
    start = time.perf_counter()
    done = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return time.perf_counter() - start, done


def profile_file_top(path: Path, top: int = 20) -> str:
    """`profile_top` for a profile another process wrote (`python -m cProfile -o path`)."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def python_seeing(tree: Path, where: Path) -> Path:
    """A python that imports pytest_rigging from `tree` and everything else from what this
    interpreter sees: a venv at `where` whose .pth names `tree` first, then this
    interpreter's site directories that hold no pytest_rigging of their own (the A/B
    venvs of the README: each side sees one tree only)."""
    venv.EnvBuilder(with_pip=False).create(where)
    stdlib = Path(sysconfig.get_paths()["stdlib"]).parent
    seen = [
        entry
        for entry in (Path(path).resolve() for path in sys.path if path)
        if entry.is_dir()
        and not (entry / "pytest_rigging" / "__init__.py").exists()
        and not entry.is_relative_to(stdlib)
        and entry != BENCH_DIR
    ]
    site = Path(sysconfig.get_path("purelib", vars={"base": str(where), "platbase": str(where)}))
    (site / "zz_tree.pth").write_text("".join(f"{path}\n" for path in [tree, *seen]))
    return where / "bin" / "python"
