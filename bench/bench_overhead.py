"""Pipeline overhead per chat: is the library ever the bottleneck?

`run_batch` of 5,000 inputs on a generator that replies instantly measures only what the
pipeline adds per chat (jobs, params merging, the concurrency pool, building Chats). The
floor, measured in the same run, is the least any asyncio pipeline could cost: gathering
5,000 coroutines that each build one pydantic Message. rigging 3.3.5 runs the same
pipeline in its own venv, on a smaller batch because it is far slower.

Run: .venv/bin/python bench/bench_overhead.py [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import typing as t
from functools import partial

from _common import (
    Row,
    fmt,
    median,
    print_table,
    profile_top,
    progress,
    run_rigging,
    spread,
    time_async,
)

from pytest_rigging.chat import ChatPipeline
from pytest_rigging.generator import GeneratedMessage, GenerateParams, Generator
from pytest_rigging.message import Message

COUNT = 5_000
RIGGING_COUNT = 200
REPEATS = 7
RIGGING_REPEATS = 3
MAX_CONNECTIONS = (10, 1000)  # the default, and a pool as wide as a real API allows
TARGET = 4.0  # ours within 4x of the floor


class InstantGenerator(Generator):
    """Replies at once, so only the pipeline's own cost is measured."""

    async def generate_message(
        self, messages: t.Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        return GeneratedMessage(
            message=Message(role="assistant", content=f"reply {len(messages)}"),
            stop_reason="stop",
        )


INPUTS = [f"question {i}" for i in range(COUNT)]


def pipeline(max_connections: int) -> ChatPipeline:
    generator = InstantGenerator(model="bench", max_connections=max_connections)
    return generator.chat([{"role": "system", "content": "Be brief."}])


async def run_ours(max_connections: int) -> None:
    chats = await pipeline(max_connections).run_batch(INPUTS)
    assert len(chats) == COUNT and chats[-1].last.role == "assistant"


async def floor() -> None:
    async def one(i: int) -> Message:
        return Message(role="assistant", content=f"reply {i}")

    await asyncio.gather(*(one(i) for i in range(COUNT)))


async def measure() -> dict[str, list[float]]:
    """Each side's seconds per repeat, interleaved so drift in machine load hits all."""
    results: dict[str, list[float]] = {"floor": []}
    for connections in MAX_CONNECTIONS:
        results[f"ours@{connections}"] = []
    await run_ours(10)  # warm-up: imports, pydantic schema building
    await floor()
    for _ in range(REPEATS):
        results["floor"] += await time_async(floor, 1)
        for connections in MAX_CONNECTIONS:
            results[f"ours@{connections}"] += await time_async(partial(run_ours, connections), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Pipeline overhead per chat.")
    parser.add_argument("--profile", action="store_true", help="cProfile our run_batch")
    args = parser.parse_args()

    progress(f"ours: {REPEATS} repeats of run_batch({COUNT}) + floor")
    results = asyncio.run(measure())
    floor_rate = COUNT / median(results["floor"])
    rows = [
        Row(
            "floor: gather of Message()",
            "",
            spread([COUNT / s for s in results["floor"]], unit="/s"),
            "",
            "",
            None,
        )
    ]
    for connections in MAX_CONNECTIONS:
        times = results[f"ours@{connections}"]
        rate = COUNT / median(times)
        ratio = floor_rate / rate
        rows.append(
            Row(
                f"run_batch({COUNT}), max_connections={connections}",
                spread([COUNT / s for s in times], unit="/s"),
                f"floor {fmt(floor_rate)}/s",
                f"{ratio:.2f}x slower",
                f"<= {TARGET:.0f}x floor",
                ratio <= TARGET,
            )
        )

    progress(f"rigging 3.3.5: {RIGGING_REPEATS} repeats of run_batch({RIGGING_COUNT})")
    rigging = run_rigging(["overhead", str(RIGGING_COUNT), str(RIGGING_REPEATS)], timeout=110)
    notes = [
        "chats/s = inputs / wall seconds of one run_batch; median (min-max) of "
        f"{REPEATS} repeats, interleaved with the floor; loop start-up not timed",
    ]
    if rigging.data is None:
        rows.append(Row("rigging 3.3.5 run_batch", "", "", "", "", None))
        notes.append(f"rigging: {rigging.problem}")
    else:
        rig_rate = RIGGING_COUNT / median(rigging.data["run_batch_s"])
        rig_floor = RIGGING_COUNT / median(rigging.data["floor_s"])
        ours_default = COUNT / median(results[f"ours@{MAX_CONNECTIONS[0]}"])
        rows.append(
            Row(
                f"vs rigging run_batch({RIGGING_COUNT})",
                f"{fmt(ours_default)}/s",
                spread([RIGGING_COUNT / s for s in rigging.data["run_batch_s"]], unit="/s"),
                f"{ours_default / rig_rate:,.0f}x faster",
                "",
                None,
            )
        )
        notes.append(
            f"rigging runs {RIGGING_COUNT} inputs, not {COUNT} (~30 chats/s would take minutes);"
            f" its own floor in its venv: {fmt(rig_floor)}/s"
        )
    print_table("pipeline overhead per chat (instant generator)", rows, notes)

    if args.profile:
        for connections in MAX_CONNECTIONS:
            print(f"\n-- cProfile of run_batch({COUNT}), max_connections={connections} --")
            print(profile_top(partial(asyncio.run, run_ours(connections))))


if __name__ == "__main__":
    main()
