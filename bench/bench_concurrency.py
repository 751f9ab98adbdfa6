"""Concurrency: does a batch take as long as the model's latency allows, and no longer?

(a) 1,000 chats on the offline `echo` generator that waits 100 ms per reply, 100 at a
    time: ideally 10 waves x 100 ms = 1.0 s.
(b) 600 chats through litellm against the loopback test server (200 ms per reply), 50
    at a time: ideally 12 x 200 ms = 2.4 s, but litellm's own per-call cost adds to that,
    so the baseline is a plain asyncio script making the same `litellm.acompletion`
    calls under `asyncio.Semaphore(50)`, alternated with ours in the same process.
(c) Lending idle slots: 40 chats of a healthy model (native route, 240 ms per reply) under
    a shared limit of 4 with an even share (2) for each model, as the plugin sets it, alone
    and beside a model that answers 500 and waits out its backoff. The healthy model should
    keep its pace alone (within 1.3x); for context, the same beside the failing model when
    it can't borrow (its own `max_connections=2`), as before the limit lent idle slots.

Run: .venv/bin/python bench/bench_concurrency.py [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import typing as t

from _common import (
    Row,
    add_repo_to_path,
    fmt,
    llm_server_process,
    median,
    print_table,
    profile_top_async,
    progress,
    spread,
    time_async,
)

import pytest_rigging as rg
from pytest_rigging._concurrency import FairLimit, shared_limit

ECHO_COUNT = 1_000
ECHO_LATENCY = 0.1
ECHO_CONNECTIONS = 100
ECHO_REPEATS = 5
ECHO_TARGET = 1.2

LLM_COUNT = 600
LLM_LATENCY = 0.2
LLM_CONNECTIONS = 50
LLM_ROUNDS = 4  # each round runs both sides, order alternating
LLM_TARGET = 1.15

LEND_COUNT = 40
LEND_LATENCY = 0.24
LEND_LIMIT = 4
LEND_ROUNDS = 3
LEND_TARGET = 1.3


async def echo_side() -> tuple[list[float], list[float]]:
    """Seconds per repeat for our pipeline, and for bare asyncio sleeps under a semaphore."""
    generator = rg.get_generator(
        f"echo!x,latency={ECHO_LATENCY},max_connections={ECHO_CONNECTIONS}"
    )
    inputs = [f"question {i}" for i in range(ECHO_COUNT)]

    async def ours() -> None:
        chats = await generator.chat().run_batch(inputs)
        assert len(chats) == ECHO_COUNT

    async def plain() -> None:
        gate = asyncio.Semaphore(ECHO_CONNECTIONS)

        async def one() -> None:
            async with gate:
                await asyncio.sleep(ECHO_LATENCY)

        await asyncio.gather(*(one() for _ in range(ECHO_COUNT)))

    ours_s: list[float] = []
    plain_s: list[float] = []
    for _ in range(ECHO_REPEATS):
        ours_s += await time_async(ours, 1)
        plain_s += await time_async(plain, 1)
    return ours_s, plain_s


def litellm_kwargs(base: str) -> dict[str, t.Any]:
    """What our litellm generator passes to `litellm.acompletion`, besides messages."""
    return {
        "model": "openai/bench-model",
        "api_base": base,
        "api_key": "test-key",
        "timeout": 60.0,
        "num_retries": 0,
        "max_retries": 0,
        "drop_params": True,
    }


async def litellm_side(base: str, profile: bool) -> tuple[list[float], list[float], str]:
    """Seconds per run for our pipeline and for the plain script, alternating order; and
    a profile of one more run of ours when asked (on this loop: litellm's clients are
    bound to it)."""
    import litellm

    litellm.suppress_debug_info = True
    generator = rg.get_generator(
        f"openai/bench-model,api_base={base},api_key=test-key,max_connections={LLM_CONNECTIONS}"
    )
    inputs = [f"question {i}" for i in range(LLM_COUNT)]
    kwargs = litellm_kwargs(base)

    async def ours() -> None:
        chats = await generator.chat().run_batch(inputs)
        assert len(chats) == LLM_COUNT and not any(c.failed for c in chats)

    async def plain() -> None:
        gate = asyncio.Semaphore(LLM_CONNECTIONS)

        async def one(text: str) -> str:
            async with gate:
                response = await litellm.acompletion(
                    messages=[{"role": "user", "content": text}], **kwargs
                )
                return str(response.choices[0].message.content)

        replies = await asyncio.gather(*(one(text) for text in inputs))
        assert len(replies) == LLM_COUNT

    await generator.chat("warm-up").run()
    await litellm.acompletion(messages=[{"role": "user", "content": "warm-up"}], **kwargs)
    ours_s: list[float] = []
    plain_s: list[float] = []
    for index in range(LLM_ROUNDS):
        progress(f"litellm round {index + 1}/{LLM_ROUNDS}")
        if index % 2 == 0:
            ours_s += await time_async(ours, 1)
            plain_s += await time_async(plain, 1)
        else:
            plain_s += await time_async(plain, 1)
            ours_s += await time_async(ours, 1)
    return ours_s, plain_s, (await profile_top_async(ours, top=25) if profile else "")


async def lending_side(base: str) -> tuple[list[float], list[float], list[float]]:
    """Seconds for the healthy model's batch: alone, beside the failing model, and beside it
    with an even share each (the failing model's retries keep it busy throughout)."""
    inputs = [f"question {i}" for i in range(LEND_COUNT)]
    common = f"api_base={base},api_key=test-key"

    def healthy(connections: int) -> rg.Generator:
        return rg.get_generator(f"openai!healthy,{common},max_connections={connections}")

    failing = rg.get_generator(
        f"openai!failing,{common},max_retries=6,backoff=0.5,max_connections={LEND_LIMIT}"
    )

    async def batch(generator: rg.Generator, beside: bool) -> float:
        limit = FairLimit(LEND_LIMIT)
        if beside:  # an even share each, as the plugin gives the cells of a test (alone: all)
            for each in (generator, failing):
                limit.set_share(id(each), LEND_LIMIT // 2)
        with shared_limit(limit):
            other = (
                asyncio.ensure_future(failing.chat().run_batch(inputs, on_failed="include"))
                if beside
                else None
            )
            seconds = (await time_async(lambda: generator.chat().run_batch(inputs), 1))[0]
            if other is not None:
                other.cancel()
                await asyncio.gather(other, return_exceptions=True)
        return seconds

    await healthy(LEND_LIMIT).chat("warm-up").run()
    alone: list[float] = []
    lent: list[float] = []
    even: list[float] = []
    for index in range(LEND_ROUNDS):
        progress(f"lending round {index + 1}/{LEND_ROUNDS}")
        alone.append(await batch(healthy(LEND_LIMIT), beside=False))
        lent.append(await batch(healthy(LEND_LIMIT), beside=True))
        even.append(await batch(healthy(LEND_LIMIT // 2), beside=True))
    return alone, lent, even


def main() -> None:
    parser = argparse.ArgumentParser(description="Batch wall time against ideal concurrency.")
    parser.add_argument("--profile", action="store_true", help="cProfile our litellm batch")
    args = parser.parse_args()
    add_repo_to_path()

    progress(f"echo: {ECHO_REPEATS} repeats of {ECHO_COUNT} chats")
    echo_ours, echo_plain = asyncio.run(echo_side())
    echo_ideal = ECHO_COUNT / ECHO_CONNECTIONS * ECHO_LATENCY
    echo_ratio = median(echo_ours) / echo_ideal

    progress(f"litellm: {LLM_ROUNDS} rounds of {LLM_COUNT} chats, ours and plain")
    with llm_server_process(LLM_LATENCY) as base:
        llm_ours, llm_plain, profile = asyncio.run(litellm_side(base, args.profile))
    llm_ideal = LLM_COUNT / LLM_CONNECTIONS * LLM_LATENCY
    llm_ratio = median(llm_ours) / median(llm_plain)

    progress(f"lending: {LEND_ROUNDS} rounds of {LEND_COUNT} chats, alone and beside")
    with llm_server_process(LEND_LATENCY, failing=["failing"]) as base:
        alone, lent, even = asyncio.run(lending_side(base))
    lend_ratio = median(lent) / median(alone)

    rows = [
        Row(
            f"(a) echo {ECHO_COUNT} chats, 100 ms, limit {ECHO_CONNECTIONS}",
            spread(echo_ours, unit=" s"),
            f"ideal {fmt(echo_ideal)} s",
            f"{echo_ratio:.2f}x",
            f"<= {ECHO_TARGET}x ideal",
            echo_ratio <= ECHO_TARGET,
        ),
        Row(
            "    context: bare asyncio.sleep + Semaphore",
            "",
            spread(echo_plain, unit=" s"),
            f"{median(echo_ours) / median(echo_plain):.2f}x",
            "",
            None,
        ),
        Row(
            f"(b) litellm {LLM_COUNT} chats, 200 ms, limit {LLM_CONNECTIONS}",
            spread(llm_ours, unit=" s"),
            f"plain {spread(llm_plain, unit=' s')}",
            f"{llm_ratio:.2f}x",
            f"<= {LLM_TARGET}x plain",
            llm_ratio <= LLM_TARGET,
        ),
        Row(
            "    vs the ideal 12 x 200 ms",
            f"{fmt(median(llm_ours))} s",
            f"ideal {fmt(llm_ideal)} s",
            f"{median(llm_ours) / llm_ideal:.2f}x (plain {median(llm_plain) / llm_ideal:.2f}x)",
            "",
            None,
        ),
        Row(
            f"(c) healthy {LEND_COUNT} chats beside a failing model, limit {LEND_LIMIT}",
            spread(lent, unit=" s"),
            f"alone {spread(alone, unit=' s')}",
            f"{lend_ratio:.2f}x",
            f"<= {LEND_TARGET}x alone",
            lend_ratio <= LEND_TARGET,
        ),
        Row(
            f"    context: held to an even share ({LEND_LIMIT // 2}) beside it",
            spread(even, unit=" s"),
            f"alone {spread(alone, unit=' s')}",
            f"{median(even) / median(alone):.2f}x",
            "",
            None,
        ),
    ]
    print_table(
        "concurrency: batch wall time",
        rows,
        [
            f"median (min-max) of {ECHO_REPEATS} (a), {LLM_ROUNDS} (b) and {LEND_ROUNDS} (c) "
            "runs; (b) alternates which side goes first, after one warm-up call each",
            "(b) server: tests.llm_server.LLMServer in a child process (its threads do not "
            "share our GIL); both sides send the same acompletion kwargs",
        ],
    )
    if args.profile:
        print(f"\n-- cProfile of our litellm run_batch({LLM_COUNT}) --")
        print(profile)


if __name__ == "__main__":
    main()
