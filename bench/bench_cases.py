"""Cases from a file at scale: does collecting 100,000 JSONL cases (`rig_cases`) take about
as long as collecting the same 100,000 rows written inline in `parametrize`, and does a run's
memory follow the cases it selects rather than the file's size?

(1) Collection: `pytest --collect-only -q` of a test over 100,000 support tickets (a
    `ticket_id`, a question of ~300 characters, a short answer, a list of 1-3 tags) read by
    `@pytest.mark.rig_cases("cases.jsonl", id="ticket_id")`, against the baseline: the same
    rows as a list literal of tuples in the test module and a literal list of the same ids,
    under `@pytest.mark.parametrize("question,answer,tags", CASES, ids=IDS)`. Both tests ask
    for the same three fields, both collect the same 100,000 item ids, both run with the
    plugin loaded, and the baseline's bytecode is cached (it pays for loading its literal,
    not for compiling it). Also: `rig_cases` with content-hash ids (no `id=`); for context
    the rows as `pytest.param(..., id=...)`; and both as matrix tests (`rig_chat`, a
    `rig_pipeline` asking for `question`, the default `echo!` model). Target: `rig_cases`
    within 1.5x of inline `parametrize`, in wall time.
(2) Memory: peak RSS of collecting a file of 100,000 rows of ~2 KB (~200 MB) whole, with
    `sample=10000`, `sample=1000` and `limit=1000`, beside pytest collecting one plain test.
    Target: memory follows the cases selected (`sample=`, which reads every row, holds no
    more than `limit=`, which stops early).
(3) Context: what the plugin costs a suite of plain tests (its collection hooks run for
    every function pytest collects): 10,000 plain functions, with and without `-p no:rigging`.

Whole processes, timed from spawn to exit (CPU time and peak RSS from the process's own
rusage), after one untimed warm-up of each (which writes the bytecode caches), in rounds
whose order rotates.

Run: .venv/bin/python bench/bench_cases.py [--cases N] [--rounds R] [--skip-matrix] [--profile]
(~8 minutes at the defaults; `--cases 20000 --rounds 2` takes ~1.5; --profile adds cProfile
of one `rig_cases` collection)
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import Row, fmt, median, print_table, profile_file_top, progress, spread
from bench_plugin import child_env, write_suite

CASES = 100_000
ROUNDS = 3
TARGET = 1.5
QUESTION_CHARS = 300
BIG_QUESTION_CHARS = 2_000  # the memory part's rows: ~2 KB each
SELECTED = 1_000
PLAIN_FUNCTIONS = 10_000
PYTEST = ("-m", "pytest", "-p", "no:cacheprovider", "-q", "--collect-only")

WORDS = [
    "order",
    "invoice",
    "refund",
    "account",
    "password",
    "delivery",
    "parcel",
    "courier",
    "warehouse",
    "subscription",
    "renewal",
    "discount",
    "coupon",
    "checkout",
    "payment",
    "card",
    "declined",
    "address",
    "postcode",
    "tracking",
    "number",
    "damaged",
    "missing",
    "item",
    "replacement",
    "exchange",
    "warranty",
    "receipt",
    "store",
    "branch",
    "manager",
    "weekend",
    "holiday",
    "opening",
    "hours",
    "app",
    "login",
    "email",
    "notification",
    "settings",
]
TAGS = ("billing", "shipping", "account", "returns", "app", "store", "urgent", "vip")


@dataclass(frozen=True)
class Ticket:
    """One case of the generated dataset."""

    ticket_id: str
    question: str
    answer: str
    tags: list[str]


def tickets(count: int, question_chars: int) -> Iterator[Ticket]:
    """`count` tickets with questions of about `question_chars` characters, the same on
    every run (seeded)."""
    draw = random.Random(20)
    for index in range(count):
        words: list[str] = []
        size = 0
        wanted = question_chars + draw.randint(-question_chars // 5, question_chars // 5)
        while size < wanted:
            word = draw.choice(WORDS)
            words.append(word)
            size += len(word) + 1
        question = f"Ticket {index}: " + " ".join(words).capitalize() + "?"
        answer = f"Please {draw.choice(WORDS)} the {draw.choice(WORDS)} (ref {index})."
        tags = draw.sample(TAGS, draw.randint(1, 3))
        yield Ticket(f"T-{index:06d}", question, answer, tags)


def write_jsonl(path: Path, rows: Iterator[Ticket]) -> int:
    """The rows as JSONL; returns the file's size."""
    with path.open("w", encoding="utf-8") as file:
        for row in rows:
            record = {
                "ticket_id": row.ticket_id,
                "question": row.question,
                "answer": row.answer,
                "tags": row.tags,
            }
            file.write(json.dumps(record) + "\n")
    return path.stat().st_size


PIPELINE = """\
@pytest.fixture
def rig_pipeline(rig_generator, question):
    return rig_generator.chat(question)
"""


def _test(matrix: bool) -> str:
    if matrix:
        return "def test_case(rig_chat, answer, tags):\n    pass\n"
    return "def test_case(question, answer, tags):\n    pass\n"


def write_inline(path: Path, rows: list[Ticket], params: bool, matrix: bool) -> None:
    """The baseline test module: the rows as a list literal (tuples and a list of ids, or
    `pytest.param`s each with its id)."""
    with path.open("w", encoding="utf-8") as file:
        file.write("import pytest\n\n\n" + (PIPELINE + "\n\n" if matrix else "") + "CASES = [\n")
        for r in rows:
            if params:
                file.write(
                    f"    pytest.param({r.question!r}, {r.answer!r}, {r.tags!r}, "
                    f"id={r.ticket_id!r}),\n"
                )
            else:
                file.write(f"    ({r.question!r}, {r.answer!r}, {r.tags!r}),\n")
        if params:
            file.write('\n]\n\n\n@pytest.mark.parametrize("question,answer,tags", CASES)\n')
        else:
            file.write("]\nIDS = [\n")
            file.writelines(f"    {r.ticket_id!r},\n" for r in rows)
            file.write(
                '\n]\n\n\n@pytest.mark.parametrize("question,answer,tags", CASES, ids=IDS)\n'
            )
        file.write(_test(matrix))


def cases_module(marker_args: str, matrix: bool = False) -> str:
    head = "import pytest\n\n\n" + (PIPELINE + "\n\n" if matrix else "")
    return f"{head}@pytest.mark.rig_cases({marker_args})\n{_test(matrix)}"


@dataclass
class Run:
    """One whole `pytest` process: wall seconds, CPU seconds (user + system), peak RSS,
    what it printed."""

    seconds: float
    cpu: float
    peak_bytes: int
    output: str
    returncode: int


# Runs argv and reports its child's figures. A child's ru_maxrss includes the RSS of the
# process it was started from (Linux folds the old address space's high-water mark in at
# exec, and subprocess uses vfork), so pytest is started from this small interpreter, not
# from the benchmark, which may hold the generated rows.
LAUNCHER = """
import json, resource, subprocess, sys, time
with open(sys.argv[1], "wb") as out:
    start = time.perf_counter()
    done = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps([seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, done.returncode]))
"""


def run_pytest(argv: list[str], cwd: Path, env: dict[str, str]) -> Run:
    """Wall time of `argv` from spawn to exit, its CPU time and its peak RSS."""
    with tempfile.NamedTemporaryFile(prefix="bench-cases-out-") as out:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, out.name, *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, cpu, peak_kb, returncode = json.loads(done.stdout)
        output = Path(out.name).read_text(encoding="utf-8", errors="replace")
    return Run(seconds, cpu, peak_kb * 1024, output, returncode)


def collected(output: str) -> int | None:
    for line in reversed(output.splitlines()):
        words = line.split()
        if len(words) >= 3 and words[1:3] in (["tests", "collected"], ["test", "collected"]):
            return int(words[0])
    return None


@dataclass(frozen=True)
class Side:
    """One suite to collect: its directory, its pytest arguments, the items it must
    collect."""

    name: str
    directory: Path
    args: tuple[str, ...]
    items: int

    def argv(self) -> list[str]:
        return [sys.executable, *PYTEST, *self.args]


Runs = dict[str, list[Run]]


def measure(sides: list[Side], env: dict[str, str], rounds: int, problems: list[str]) -> Runs:
    """Each side `rounds` times after a warm-up, the order rotating each round; a run that
    fails or collects the wrong number of items is a problem."""
    runs: Runs = {side.name: [] for side in sides}
    for index in range(rounds + 1):
        progress(f"round {index}/{rounds}" + (" (warm-up)" if not index else ""))
        shift = index % len(sides)
        for side in sides[shift:] + sides[:shift]:
            run = run_pytest(side.argv(), side.directory, env)
            got = collected(run.output)
            if got != side.items or run.returncode != 0:
                tail = " | ".join(run.output.strip().splitlines()[-3:])
                problems.append(
                    f"{side.name}: collected {got}, want {side.items} "
                    f"(exit {run.returncode}): {tail}"
                )
            if index:
                runs[side.name].append(run)
    return runs


def mb(value: float) -> str:
    return f"{fmt(value / 2**20)} MB"


def walls(runs: list[Run]) -> list[float]:
    return [r.seconds for r in runs]


def cpus(runs: list[Run]) -> list[float]:
    return [r.cpu for r in runs]


def peak(runs: list[Run]) -> float:
    return median([r.peak_bytes for r in runs])


def compared(
    runs: Runs, name: str, baseline: str, floor: str, cases: int, judged: bool
) -> list[Row]:
    """`name` beside `baseline`: wall time (judged against the target when `judged`), CPU
    time, cost per case beyond pytest's start-up (`floor`), peak RSS."""
    ours, base, start = runs[name], runs[baseline], median(walls(runs[floor]))
    ratio = median(walls(ours)) / median(walls(base))
    per_case = [(median(walls(r)) - start) / cases * 1e6 for r in (ours, base)]
    return [
        Row(
            f"{name}: {cases:,} cases",
            spread(walls(ours), unit=" s"),
            f"{baseline} {spread(walls(base), unit=' s')}",
            f"{ratio:.2f}x",
            f"<= {TARGET}x" if judged else "",
            ratio <= TARGET if judged else None,
        ),
        Row(
            "    CPU (user + system)",
            spread(cpus(ours), unit=" s"),
            spread(cpus(base), unit=" s"),
            f"{median(cpus(ours)) / median(cpus(base)):.2f}x",
            "",
            None,
        ),
        Row(
            "    per case, beyond start-up",
            f"{fmt(per_case[0])} us",
            f"{fmt(per_case[1])} us",
            f"+{fmt(per_case[0] - per_case[1])} us",
            "",
            None,
        ),
        Row("    peak RSS", mb(peak(ours)), mb(peak(base)), "", "", None),
    ]


def collection_part(root: Path, env: dict[str, str], count: int, rounds: int, matrix: bool) -> Path:
    progress(f"writing {count:,} cases as JSONL and as inline parametrize")
    suite = write_suite(
        root,
        "collect",
        {
            "test_one.py": "def test_one():\n    pass\n",
            "test_cases_id.py": cases_module('"cases.jsonl", id="ticket_id"'),
            "test_cases_hash.py": cases_module('"cases.jsonl"'),
            "test_matrix_cases.py": cases_module('"cases.jsonl", id="ticket_id"', matrix=True),
        },
    )
    rows = list(tickets(count, QUESTION_CHARS))
    size = write_jsonl(suite / "cases.jsonl", iter(rows))
    write_inline(suite / "test_inline.py", rows, params=False, matrix=False)
    write_inline(suite / "test_params.py", rows, params=True, matrix=False)
    if matrix:
        write_inline(suite / "test_matrix_inline.py", rows, params=False, matrix=True)
    del rows
    sides = [
        Side("pytest, one plain test", suite, ("test_one.py",), 1),
        Side("inline parametrize", suite, ("test_inline.py",), count),
        Side("rig_cases, id=", suite, ("test_cases_id.py",), count),
        Side("rig_cases, content-hash ids", suite, ("test_cases_hash.py",), count),
        Side("inline pytest.param(..., id=)", suite, ("test_params.py",), count),
    ]
    if matrix:
        sides += [
            Side("matrix, inline parametrize", suite, ("test_matrix_inline.py",), count),
            Side("matrix, rig_cases id=", suite, ("test_matrix_cases.py",), count),
        ]
    problems: list[str] = []
    runs = measure(sides, env, rounds, problems)
    floor = sides[0].name
    rows = [
        *compared(runs, "rig_cases, id=", "inline parametrize", floor, count, True),
        *compared(runs, "rig_cases, content-hash ids", "inline parametrize", floor, count, True),
        *compared(runs, "inline pytest.param(..., id=)", "inline parametrize", floor, count, False),
    ]
    if matrix:
        rows += compared(
            runs, "matrix, rig_cases id=", "matrix, inline parametrize", floor, count, True
        )
    rows.append(
        Row(floor, spread(walls(runs[floor]), unit=" s"), "", "", "", None),
    )
    print_table(
        f"rig_cases: collecting {count:,} JSONL cases ({mb(size)}) against inline parametrize",
        rows,
        [
            f"whole `pytest -q --collect-only` processes; median (min-max) of {rounds} "
            "rounds after a warm-up, order rotating; bytecode cached",
            *problems,
        ],
    )
    return suite


def memory_part(root: Path, env: dict[str, str], count: int, rounds: int) -> None:
    progress(f"writing {count:,} cases of ~{BIG_QUESTION_CHARS:,} characters")
    selections = {
        f"sample={SELECTED * 10:,}": f"sample={SELECTED * 10}",
        f"sample={SELECTED:,}": f"sample={SELECTED}",
        f"limit={SELECTED:,}": f"limit={SELECTED}",
    }
    files = {"test_one.py": "def test_one():\n    pass\n"}
    files["test_whole.py"] = cases_module('"big.jsonl", id="ticket_id"')
    for index, argument in enumerate(selections.values()):
        files[f"test_part{index}.py"] = cases_module(f'"big.jsonl", id="ticket_id", {argument}')
    big = write_suite(root, "memory", files)
    size = write_jsonl(big / "big.jsonl", tickets(count, BIG_QUESTION_CHARS))
    sides = [
        Side("pytest, one plain test", big, ("test_one.py",), 1),
        Side(f"whole file ({count:,} cases)", big, ("test_whole.py",), count),
    ]
    for index, (name, argument) in enumerate(selections.items()):
        selected = min(count, int(argument.split("=")[1]))
        sides.append(Side(name, big, (f"test_part{index}.py",), selected))
    problems: list[str] = []
    runs = measure(sides, env, rounds, problems)
    base = peak(runs[sides[0].name])
    rows = [
        Row(sides[0].name, mb(base), spread(walls(runs[sides[0].name]), unit=" s"), "", "", None)
    ]
    for side in sides[1:]:
        added = peak(runs[side.name]) - base
        rows.append(
            Row(
                f"{side.name}: {side.items:,} cases",
                f"{mb(peak(runs[side.name]))} (+{mb(added)})",
                spread(walls(runs[side.name]), unit=" s"),
                f"{fmt(added / side.items / 1024)} KB a case",
                "",
                None,
            )
        )
    print_table(
        f"rig_cases: peak RSS collecting {count:,} cases of ~2 KB ({mb(size)})",
        rows,
        [
            "columns: peak RSS (added to pytest's own), collection wall time, RSS added per "
            f"case; ru_maxrss of whole `pytest --collect-only` processes, median of {rounds}",
            *problems,
        ],
    )


def plain_part(root: Path, env: dict[str, str], rounds: int) -> None:
    modules = {
        f"test_plain_{m}.py": "".join(f"def test_{i}():\n    pass\n\n\n" for i in range(500))
        for m in range(PLAIN_FUNCTIONS // 500)
    }
    plain = write_suite(root, "plain", modules)
    sides = [
        Side("plugin on", plain, (), PLAIN_FUNCTIONS),
        Side("-p no:rigging", plain, ("-p", "no:rigging"), PLAIN_FUNCTIONS),
    ]
    problems: list[str] = []
    runs = measure(sides, env, max(rounds, 5), problems)
    on, off = runs["plugin on"], runs["-p no:rigging"]
    added = [a.cpu - b.cpu for a, b in zip(on, off, strict=True)]
    print_table(
        f"the plugin in a suite of {PLAIN_FUNCTIONS:,} plain test functions",
        [
            Row(
                "collection, wall",
                spread(walls(on), unit=" s"),
                spread(walls(off), unit=" s"),
                "",
                "",
                None,
            ),
            Row(
                "collection, CPU",
                spread(cpus(on), unit=" s"),
                spread(cpus(off), unit=" s"),
                "",
                "",
                None,
            ),
            Row(
                "    added CPU (median of each round's difference)",
                f"+{fmt(median(added) * 1000)} ms",
                "",
                f"{fmt(median(added) / PLAIN_FUNCTIONS * 1e6)} us a function",
                "",
                None,
            ),
        ],
        ["ours: plugin on; baseline: -p no:rigging", *problems],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="rig_cases at scale: collection and memory.")
    parser.add_argument("--cases", type=int, default=CASES, help="rows in each dataset")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of each run")
    parser.add_argument("--skip-matrix", action="store_true", help="leave the matrix out")
    parser.add_argument("--profile", action="store_true", help="cProfile one collection")
    args = parser.parse_args()
    count, rounds = args.cases, max(1, args.rounds)

    with tempfile.TemporaryDirectory(prefix="bench-cases-") as tmp:
        root = Path(tmp)
        env = child_env("http://127.0.0.1:9/v1", root)  # echo!: nothing is called
        suite = collection_part(root, env, count, rounds, not args.skip_matrix)
        memory_part(root, env, count, max(1, rounds - 1))
        plain_part(root, env, rounds)
        if args.profile:
            prof = root / "cases.prof"
            argv = [sys.executable, "-m", "cProfile", "-o", str(prof), *PYTEST]
            run = run_pytest([*argv, "test_cases_id.py"], suite, env)
            print(f"\n-- cProfile of collecting {count:,} rig_cases ({fmt(run.seconds)} s) --")
            print(profile_file_top(prof, top=30))


if __name__ == "__main__":
    main()
