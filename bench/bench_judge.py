"""Judges in the run: is every judge call in flight together with generation, so that a
judged suite takes about as long as its generation plus one judge round?

The suite: 20 cases x 2 models (`openai!model-a`, `openai!model-b`, the native route) x
`rig(runs=3)`: 40 items, 120 generation calls, each sample judged by
`rig_judge(..., reference="{answer}", judge_runs=3)` with `--rig-judge openai!judge`:
360 judge calls. Every model is on the loopback server (tests.llm_server.LLMServer, in a
child process). The models under test answer the case (model-b wrongly on odd cases) after
0.5 s (case 0) to 1.5 s (case 19), so samples finish at different times and judging can
start while generation goes on. The judge answers after 2 s (one judge round) with
`<reasoning>..</reasoning><verdict>pass|fail</verdict>`: pass when the response it is
shown is the reference it is shown. Each test asserts that its verdict says what the judge
should have said, so every run must report 40 passed.

Measured, in rounds that alternate their order (whole `pytest` processes, start-up and
teardown included, as bench_plugin.py times them):
(1) generation alone: the same suite without `rig_judge` (120 calls);
(2) the judged suite (480 calls). Target: (2) <= 1.3 x ((1) + one judge round).
From the server's log of the judged run: the peak of requests in flight (all, and judge
calls alone) against `--rig-concurrency`, how many judge calls started while generation was
still in flight, and the judge tail: from the last generation reply to the last judge
reply, in judge rounds.
(3) Context, not a target: the judged work done the way peers do it, each sample's test
body judging its own sample (`rig_run(rg.Judge(...).grade(...))`, its 3 runs together),
one body after another. That takes a judge round per sample (120 of them, ~4 minutes), so
it runs on PEER_CASES cases and its judging time is projected to the whole suite.

Why the limit is 360: it is every judge call of the run at once (and more than the 120
generation calls), so the limit never makes a call wait and the ideal judged run is
generation plus one judge round. The judge round (2 s) is longer than the spread of
generation (1 s), so unthrottled, all 360 judge calls are in flight together (from when
the last sample finishes until the first judge replies): the peak can reach the limit.
Under a smaller limit the ideal would be waves of the limit, and the ratio would measure
the limit, not the engine.

Run: .venv/bin/python bench/bench_judge.py [--rounds R] [--peer-cases N] [--profile]
(~1 minute at the defaults; --profile adds cProfile of one judged run's main thread)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import typing as t
from dataclasses import dataclass
from pathlib import Path

from _common import (
    REPO_ROOT,
    Row,
    add_repo_to_path,
    fmt,
    median,
    print_table,
    profile_file_top,
    progress,
    spread,
    timed_process,
)
from bench_plugin import child_env, summary, write_suite

add_repo_to_path()
from tests.llm_server import peak_overlap  # noqa: E402

CASES = 20
MODELS = ("openai!model-a", "openai!model-b")
RUNS = 3
JUDGE_RUNS = 3
JUDGE = "openai!judge"
LIMIT = 360
GEN_LATENCY = (0.5, 1.5)  # case 0 to case 19, evenly: samples finish at different times
JUDGE_LATENCY = 2.0
ROUNDS = 3
PEER_CASES = 2
TARGET = 1.3

ITEMS = CASES * len(MODELS)  # 40
GEN_CALLS = ITEMS * RUNS  # 120
JUDGE_CALLS = GEN_CALLS * JUDGE_RUNS  # 360

# The server: each model's reply and latency, and the log of every request's start and end
_SERVER_CODE = """
import json
import re
import sys
from tests.llm_server import LLMServer, Reply

FIRST, LAST, CASES, JUDGE = (float(arg) for arg in sys.argv[1:])
SHOWN = re.compile(
    r"\\[Reference answer\\]\\n(.*?)\\n\\n\\[Response\\]\\n(.*?)\\n\\n\\[Rubric\\]", re.DOTALL
)


def respond(request):
    if request.model == "judge":
        shown = SHOWN.search(request.last_user)
        if shown is None:
            return Reply("I see no response to grade.", delay=JUDGE)
        verdict = "pass" if shown.group(1) == shown.group(2) else "fail"
        return Reply(f"<reasoning>Compared.</reasoning><verdict>{verdict}</verdict>", delay=JUDGE)
    case = int(re.search(r"case (\\d+)", request.last_user).group(1))
    wrong = request.model == "model-b" and case % 2 == 1
    delay = FIRST + (LAST - FIRST) * case / max(1, CASES - 1)
    return Reply("I am not sure." if wrong else f"Answer {case}", delay=delay)


with LLMServer() as server:
    server.responder = respond
    print(server.openai_base, flush=True)
    for _ in sys.stdin:
        log = [[r.model, r.start, r.end, r.status] for r in server.requests]
        server.reset()
        server.responder = respond
        print(json.dumps(log), flush=True)
"""

PIPELINE = """\
import pytest

import pytest_rigging as rg

CASES = [(i, f"Answer {i}") for i in range(@CASES@)]


@pytest.fixture
def rig_pipeline(rig_generator, case):
    return rig_generator.chat(f"What is the answer to case {case}?")

"""

GENERATION_SUITE = (
    PIPELINE
    + f"""
@pytest.mark.parametrize("case,answer", CASES)
@pytest.mark.rig(runs={RUNS})
def test_answer(rig_chat, case, answer):
    assert rig_chat.last.content in (answer, "I am not sure.")
"""
)

JUDGED_SUITE = (
    PIPELINE
    + f"""
@pytest.mark.parametrize("case,answer", CASES)
@pytest.mark.rig(runs={RUNS})
@pytest.mark.rig_judge(
    "Gives the reference answer", reference="{{answer}}", judge_runs={JUDGE_RUNS}
)
def test_answer(rig_chat, rig_verdict, case, answer):
    assert rig_verdict.passed == (rig_chat.last.content == answer), rig_verdict.reasoning
"""
)

# As peers judge: the test body grades its own sample, one body at a time.
PEER_SUITE = (
    PIPELINE
    + f"""
JUDGE = rg.Judge("{JUDGE}", "Gives the reference answer", template="reference", runs={JUDGE_RUNS})


@pytest.mark.parametrize("case,answer", CASES)
@pytest.mark.rig(runs={RUNS})
def test_answer(rig_chat, rig_run, case, answer):
    asked = f"What is the answer to case {{case}}?"
    verdict = rig_run(JUDGE.grade(rig_chat.last.content, input=asked, reference=answer))
    assert verdict.passed == (rig_chat.last.content == answer), verdict.reasoning
"""
)

PYTEST = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q")
OPTIONS = ("--rig-concurrency", str(LIMIT), "--rig-models", ",".join(MODELS))
JUDGE_OPTIONS = ("--rig-judge", JUDGE)


@dataclass(frozen=True)
class Call:
    """One request the server answered, on its clock (monotonic seconds)."""

    judge: bool
    start: float
    end: float


class Server:
    """The server child: its base URL, and the log of the requests since the last ask."""

    def __init__(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-c", _SERVER_CODE, *map(str, (*GEN_LATENCY, CASES, JUDGE_LATENCY))],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._child.stdout is not None
        self.base = self._child.stdout.readline().strip()
        if not self.base.startswith("http"):
            self.close()
            raise RuntimeError("the loopback LLM server did not start")

    def calls(self) -> list[Call]:
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write("\n")
        self._child.stdin.flush()
        log = json.loads(self._child.stdout.readline())
        return [Call(model == "judge", start, end) for model, start, end, _ in log]

    def close(self) -> None:
        if self._child.stdin is not None:
            self._child.stdin.close()
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


@dataclass
class Run:
    """One whole `pytest` process and what the server saw of it."""

    seconds: float
    passed: int
    problems: str
    calls: list[Call]

    @property
    def generation(self) -> list[Call]:
        return [c for c in self.calls if not c.judge]

    @property
    def judging(self) -> list[Call]:
        return [c for c in self.calls if c.judge]

    def peak(self, judge_only: bool = False) -> int:
        """The most requests in flight at one moment."""
        return peak_overlap(self.judging if judge_only else self.calls)

    def alongside(self) -> int:
        """Judge calls started while a generation call was still in flight."""
        last_generation = max((c.end for c in self.generation), default=0.0)
        return sum(c.start < last_generation for c in self.judging)

    def tail(self) -> float:
        """Seconds from the last generation reply to the last judge reply."""
        if not self.judging or not self.generation:
            return 0.0
        return max(c.end for c in self.judging) - max(c.end for c in self.generation)


def run_pytest(server: Server, directory: Path, args: t.Sequence[str], env: dict[str, str]) -> Run:
    seconds, done = timed_process([*PYTEST, *args], directory, env)
    passed, problems, _ = summary(done.stdout)
    if done.returncode != 0 and not problems:
        problems = f"exit {done.returncode}"
    return Run(seconds, passed, problems, server.calls())


def check(name: str, runs: t.Sequence[Run], items: int, generation: int, judge: int) -> list[str]:
    """What went wrong in `runs`, as readable lines (none when all is well)."""
    found = []
    for index, run in enumerate(runs, 1):
        where = f"{name} run {index}"
        if run.passed != items or run.problems:
            found.append(f"{where}: {run.passed} passed (want {items}) {run.problems}")
        if (len(run.generation), len(run.judging)) != (generation, judge):
            found.append(
                f"{where}: the server saw {len(run.generation)} generation and "
                f"{len(run.judging)} judge calls (want {generation} and {judge})"
            )
    return found


def seconds_of(runs: t.Sequence[Run]) -> list[float]:
    return [r.seconds for r in runs]


def figures(runs: t.Sequence[Run], of: t.Callable[[Run], float]) -> str:
    return "/".join(fmt(of(r)) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description="Judged suite against generation alone.")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of (1) and (2)")
    parser.add_argument(
        "--peer-cases", type=int, default=PEER_CASES, help="cases of the peer-style run (3)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one judged run (its main thread)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-judge-") as tmp:
        root = Path(tmp)
        suites = {
            name: write_suite(root, name, {"test_judge.py": text.replace("@CASES@", str(cases))})
            for name, text, cases in (
                ("generation", GENERATION_SUITE, CASES),
                ("judged", JUDGED_SUITE, CASES),
                ("peer", PEER_SUITE, args.peer_cases),
            )
        }
        server = Server()
        try:
            env = child_env(server.base, root)
            sides: dict[str, tuple[Path, list[str]]] = {
                "generation": (suites["generation"], [*OPTIONS, "test_judge.py"]),
                "judged": (suites["judged"], [*OPTIONS, *JUDGE_OPTIONS, "test_judge.py"]),
            }
            progress("warm-up: one run of each side, to fill the bytecode cache")
            for directory, argv in sides.values():
                run_pytest(server, directory, argv, env)
            found: dict[str, list[Run]] = {name: [] for name in sides}
            for index in range(args.rounds):
                progress(f"round {index + 1}/{args.rounds}: generation alone and judged")
                order = list(sides) if index % 2 == 0 else list(reversed(sides))
                for name in order:
                    found[name].append(run_pytest(server, *sides[name], env))
            progress(f"peer-style: {args.peer_cases} cases, each body judging its own sample")
            peer = run_pytest(server, suites["peer"], [*OPTIONS, "test_judge.py"], env)
            profile = ""
            if args.profile:
                progress("profile: cProfile of one judged run")
                path = root / "judged.prof"
                argv = [sys.executable, "-m", "cProfile", "-o", str(path), *PYTEST[1:]]
                subprocess.run(
                    [*argv, *sides["judged"][1]],
                    cwd=sides["judged"][0],
                    env=env,
                    capture_output=True,
                    check=False,
                )
                server.calls()
                profile = profile_file_top(path, top=25)
        finally:
            server.close()

    generation, judged = found["generation"], found["judged"]
    peer_samples = args.peer_cases * len(MODELS) * RUNS
    problems = [
        *check("generation", generation, ITEMS, GEN_CALLS, 0),
        *check("judged", judged, ITEMS, GEN_CALLS, JUDGE_CALLS),
        *check(
            "peer-style",
            [peer],
            args.peer_cases * len(MODELS),
            peer_samples,
            peer_samples * JUDGE_RUNS,
        ),
    ]
    ideal = median(seconds_of(generation)) + JUDGE_LATENCY
    ratio = median(seconds_of(judged)) / ideal
    peer_judging = peer.tail()
    projected = median(seconds_of(generation)) + peer_judging * CASES / args.peer_cases
    rows = [
        Row(
            f"(2) judged: {GEN_CALLS} + {JUDGE_CALLS} judge calls, limit {LIMIT}",
            spread(seconds_of(judged), unit=" s"),
            f"(1) {spread(seconds_of(generation), unit=' s')} + {fmt(JUDGE_LATENCY)} s",
            f"{ratio:.2f}x",
            f"<= {TARGET}x",
            ratio <= TARGET,
        ),
        Row(
            "    peak in flight, all calls / judge calls",
            f"{figures(judged, Run.peak)} / {figures(judged, lambda r: r.peak(True))}",
            f"limit {LIMIT}",
            "",
            f"reaches {LIMIT}",
            all(r.peak() >= LIMIT for r in judged),
        ),
        Row(
            "    judge calls started while generation was in flight",
            figures(judged, Run.alongside),
            f"of {JUDGE_CALLS}",
            "",
            "",
            None,
        ),
        Row(
            "    judge tail: last generation reply to last judge reply",
            f"{figures(judged, Run.tail)} s",
            f"one judge round {fmt(JUDGE_LATENCY)} s",
            f"{median([r.tail() for r in judged]) / JUDGE_LATENCY:.1f} rounds",
            "",
            None,
        ),
        Row(
            "    calls seen by the server: generation / judge",
            figures(judged, lambda r: len(r.generation))
            + " / "
            + figures(judged, lambda r: len(r.judging)),
            f"generation alone {figures(generation, lambda r: len(r.generation))} / 0",
            "",
            f"{GEN_CALLS} / {JUDGE_CALLS}",
            not problems,
        ),
        Row(
            f"(3) context: each body judges its sample, {args.peer_cases} cases",
            f"{fmt(peer.seconds)} s (judging {fmt(peer_judging)} s)",
            f"projected to {CASES} cases: ~{fmt(projected)} s",
            f"ours {projected / median(seconds_of(judged)):.1f}x faster",
            "",
            None,
        ),
    ]
    notes = [
        f"models on the native openai! route against the loopback server: generation "
        f"{fmt(GEN_LATENCY[0])}-{fmt(GEN_LATENCY[1])} s a reply by case, the judge "
        f"{fmt(JUDGE_LATENCY)} s (one judge round)",
        f"wall time of whole pytest processes; median (min-max) of {args.rounds} rounds, order "
        "alternating, after one warm-up run of each; per-run figures are joined by /",
        "(3): projected = (1) + its judging time (first judge request to last judge reply, "
        f"from the server's log) x {CASES}/{args.peer_cases}",
        *problems,
    ]
    print_table("judges: a judged suite against its generation alone", rows, notes)
    if args.profile:
        print("\n-- cProfile of one judged pytest run (main thread) --")
        print(profile)


if __name__ == "__main__":
    main()
