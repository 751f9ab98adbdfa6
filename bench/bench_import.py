"""Import cost: pytest imports the plugin in every run, so `import pytest_rigging` must
be nearly free, and must never pull in litellm (seconds and ~190 MB).

Fresh interpreters, alternating with a baseline command, medians of many runs:
`import pytest_rigging` vs `pass`, and (for context) the whole library
(`rg.ChatPipeline`, which needs pydantic) vs `import pydantic`, and rigging's import.

Run: .venv/bin/python bench/bench_import.py [--profile]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO_ROOT, Row, fmt, median, print_table, progress, rigging_python, spread

RUNS = 20
RIGGING_RUNS = 5
TARGET_MS = 100.0

PACKAGE = "import pytest_rigging"
LIBRARY = "import pytest_rigging as rg; rg.ChatPipeline"
HEAVY = ("litellm", "pydantic", "openai", "httpx")


def run_once(python: Path | str, code: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", code], check=True, cwd=REPO_ROOT, env=os.environ)
    return time.perf_counter() - start


def alternate(
    python: Path | str, code: str, baseline: str, runs: int
) -> tuple[list[float], list[float]]:
    """Seconds of `runs` fresh interpreters each running `code` and `baseline`, alternating
    which goes first, after one warm-up of each (so bytecode caches are hot)."""
    run_once(python, code)
    run_once(python, baseline)
    ours: list[float] = []
    base: list[float] = []
    for index in range(runs):
        if index % 2 == 0:
            ours.append(run_once(python, code))
            base.append(run_once(python, baseline))
        else:
            base.append(run_once(python, baseline))
            ours.append(run_once(python, code))
    return ours, base


def loaded(code: str) -> list[str]:
    """Which of the heavy packages `code` leaves in sys.modules."""
    probe = f"{code}; import sys; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=REPO_ROOT
    )
    return [m for m in done.stdout.strip().split(",") if m]


def import_time_top(code: str, top: int = 15) -> str:
    """The slowest modules by self time, from `python -X importtime`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            self_us = int(parts[0].split(":")[1])
            rows.append((self_us, int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    lines = [f"{'self ms':>8} {'cum ms':>8}  module"]
    lines += [f"{s / 1000:8.1f} {c / 1000:8.1f}  {name}" for s, c, name in rows[:top]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Import cost of pytest_rigging.")
    parser.add_argument("--profile", action="store_true", help="show -X importtime top modules")
    args = parser.parse_args()

    progress(f"{RUNS} x ({PACKAGE!r}, 'pass')")
    package_s, pass_s = alternate(sys.executable, PACKAGE, "pass", RUNS)
    progress(f"{RUNS} x ({LIBRARY!r}, 'import pydantic')")
    library_s, pydantic_s = alternate(sys.executable, LIBRARY, "import pydantic", RUNS)
    package_mods = loaded(PACKAGE)
    library_mods = loaded(LIBRARY)

    added_ms = (median(package_s) - median(pass_s)) * 1000
    library_ms = (median(library_s) - median(pydantic_s)) * 1000
    rows = [
        Row(
            f"python -c {PACKAGE!r}",
            spread(package_s, 1000, " ms"),
            f"pass {spread(pass_s, 1000, ' ms')}",
            f"+{fmt(added_ms)} ms",
            f"+ < {TARGET_MS:.0f} ms",
            added_ms < TARGET_MS,
        ),
        Row(
            "  heavy modules it loads",
            ", ".join(package_mods) or "none",
            "",
            "",
            "no litellm",
            "litellm" not in package_mods,
        ),
        Row(
            f"python -c {LIBRARY!r}",
            spread(library_s, 1000, " ms"),
            f"import pydantic {spread(pydantic_s, 1000, ' ms')}",
            f"+{fmt(library_ms)} ms",
            "",
            None,
        ),
        Row(
            "  heavy modules it loads",
            ", ".join(library_mods) or "none",
            "",
            "",
            "no litellm",
            "litellm" not in library_mods,
        ),
    ]
    notes = [f"wall time of a fresh interpreter; median (min-max) of {RUNS}, alternating"]
    rigging = rigging_python()
    if rigging is None:
        notes.append("rigging: rigging not available")
    else:
        progress(f"{RIGGING_RUNS} x ('import rigging', 'pass') in rigging's venv")
        rigging_s, rigging_pass_s = alternate(rigging, "import rigging", "pass", RIGGING_RUNS)
        rows.append(
            Row(
                "context: python -c 'import rigging' (3.3.5)",
                f"{fmt(median(package_s) * 1000)} ms (ours)",
                f"rigging {spread(rigging_s, 1000, ' ms')}",
                f"+{fmt((median(rigging_s) - median(rigging_pass_s)) * 1000)} ms over pass",
                "",
                None,
            )
        )
        notes.append(f"rigging: median of {RIGGING_RUNS}, in bench/.venv-rigging")
    print_table("import cost", rows, notes)

    if args.profile:
        for code in (PACKAGE, LIBRARY):
            print(f"\n-- python -X importtime -c {code!r}: slowest modules by self time --")
            print(import_time_top(code))


if __name__ == "__main__":
    main()
