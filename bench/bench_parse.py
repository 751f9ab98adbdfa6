"""Parsing: `Model.from_text` throughput, how it scales, and hostile input.

Model output can be long (a 10 MB log pasted back, a transcript), and it is untrusted: a
parser whose cost grows faster than the text, or that backtracks on unclosed tags, turns
one odd reply into a hung test run. Measured on `Answer`: prose with an `<answer>`
element about every 100 characters at 1 MB and 10 MB (ours vs rigging 3.3.5), and
`"<answer> " * n`, opening tags that never close, which must fail fast.

Run: .venv/bin/python bench/bench_parse.py [--profile]
"""

from __future__ import annotations

import argparse
import gc
import typing as t
from functools import partial

from _common import (
    RiggingResult,
    Row,
    fmt,
    hostile_text,
    median,
    print_table,
    profile_top,
    progress,
    run_rigging,
    spread,
    tagged_text,
    time_call,
)

from pytest_rigging.error import MissingModelError
from pytest_rigging.model import Answer

MB = 1_000_000
SIZES = {MB: 5, 10 * MB: 3}  # size: repeats
RIGGING_TIMEOUT = 60.0  # per size, per hostile run
THROUGHPUT_TARGET = 5.0  # our MB/s at least 5x rigging's
SCALING_TARGET = 12.0  # our 10 MB time within 12x our 1 MB time
HOSTILE_REPEATS = 12_000  # ~100 KB
HOSTILE_RIGGING_REPEATS = 900  # ~8 KB: rigging takes seconds already
HOSTILE_TARGET = 0.050


def hostile_fails(text: str) -> None:
    try:
        Answer.from_text(text)
    except MissingModelError:
        return
    raise AssertionError("hostile text parsed")


def main() -> None:
    parser = argparse.ArgumentParser(description="Model.from_text throughput.")
    parser.add_argument("--profile", action="store_true", help="cProfile our 10 MB parse")
    args = parser.parse_args()

    ours: dict[int, list[float]] = {}
    found: dict[int, int] = {}
    for size, repeats in SIZES.items():
        progress(f"ours: {repeats} parses of {size // MB} MB")
        text = tagged_text(size)
        found[size] = len(Answer.from_text(text))
        ours[size] = time_call(partial(Answer.from_text, text), repeats)

    hostile = hostile_text(HOSTILE_REPEATS)
    hostile_fails(hostile)
    hostile_s = time_call(lambda: hostile_fails(hostile), 7)

    rigging: dict[int, RiggingResult] = {}
    for size, repeats in SIZES.items():
        progress(f"rigging: {min(repeats, 3)} parses of {size // MB} MB")
        rigging[size] = run_rigging(
            ["parse", str(size), str(min(repeats, 3))], timeout=RIGGING_TIMEOUT
        )
    progress(f"rigging: hostile text of {len(hostile_text(HOSTILE_RIGGING_REPEATS))} chars")
    rigging_hostile = run_rigging(
        ["hostile", str(HOSTILE_RIGGING_REPEATS)], timeout=RIGGING_TIMEOUT
    )

    def rate(size: int, seconds: t.Sequence[float]) -> float:
        return size / MB / median(seconds)

    rows: list[Row] = []
    notes = [
        "MB/s = 1e6 characters (ASCII) / seconds of one Answer.from_text; median (min-max) of "
        + ", ".join(f"{r} at {s // MB} MB" for s, r in SIZES.items())
        + " (rigging: at most 3)",
    ]
    for size in SIZES:
        result = rigging[size]
        label = f"Answer.from_text, {size // MB} MB ({found[size]:,} tags)"
        ours_mbs = spread([size / MB / s for s in ours[size]], unit=" MB/s")
        if result.data is None:
            rows.append(Row(label, ours_mbs, f"rigging: {result.problem}", "", "", None))
            continue
        assert result.data["found"] == found[size], "rigging found a different number of tags"
        ratio = rate(size, ours[size]) / rate(size, result.data["seconds"])
        rows.append(
            Row(
                label,
                ours_mbs,
                "rigging " + spread([size / MB / s for s in result.data["seconds"]], unit=" MB/s"),
                f"{ratio:.1f}x faster",
                f">= {THROUGHPUT_TARGET:.0f}x rigging",
                ratio >= THROUGHPUT_TARGET,
            )
        )
    small, large = SIZES
    scaling = median(ours[large]) / median(ours[small])
    rows.append(
        Row(
            f"scaling: {large // MB} MB time / {small // MB} MB time",
            f"{fmt(median(ours[large]))} s",
            f"{fmt(median(ours[small]))} s",
            f"{scaling:.1f}x",
            f"<= {SCALING_TARGET:.0f}x",
            scaling <= SCALING_TARGET,
        )
    )
    hostile_ms = [s * 1000 for s in hostile_s]
    rows.append(
        Row(
            f'hostile "<answer> " x {HOSTILE_REPEATS} ({len(hostile) // 1000} KB) fails',
            f"{spread(hostile_ms, unit=' ms')}",
            "",
            "",
            f"< {HOSTILE_TARGET * 1000:.0f} ms",
            max(hostile_s) < HOSTILE_TARGET,
        )
    )
    rigging_chars = len(hostile_text(HOSTILE_RIGGING_REPEATS))
    if rigging_hostile.data is None:
        baseline = f"rigging: {rigging_hostile.problem}"
    else:
        baseline = (
            f"rigging {fmt(rigging_hostile.data['seconds'])} s ({rigging_hostile.data['outcome']})"
        )
    rows.append(
        Row(
            f'hostile "<answer> " x {HOSTILE_RIGGING_REPEATS} ({rigging_chars / 1000:.1f} KB)',
            "",
            baseline,
            "",
            "",
            None,
        )
    )
    notes.append(
        "hostile: ours median (min-max) of 7, met if the slowest is under target; rigging "
        f"once, on a smaller text, killed after {RIGGING_TIMEOUT:.0f} s"
    )
    print_table("parsing: Answer.from_text", rows, notes)

    if args.profile:
        print("\n-- the cyclic GC's share (same parses, gc.disable()d) --")
        for size in SIZES:
            text = tagged_text(size)
            gc.disable()
            try:
                without = median(time_call(partial(Answer.from_text, text), 3))
            finally:
                gc.enable()
            print(f"{size // MB} MB: {fmt(median(ours[size]))} s with GC, {fmt(without)} s without")
        text = tagged_text(large)
        print(f"\n-- cProfile of Answer.from_text on {large // MB} MB --")
        print(profile_top(lambda: Answer.from_text(text)))


if __name__ == "__main__":
    main()
