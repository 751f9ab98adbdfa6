"""Chat and completion pipelines on in-process generators: steps, failure modes, the run
family, broadcasting, bounded concurrency and cancellation."""

from __future__ import annotations

import asyncio
import random
import typing as t

import pytest

import pytest_rigging as rg
from pytest_rigging._concurrency import FairLimit, Slot, shared_limit, slot_released
from pytest_rigging._pipeline import observe
from pytest_rigging.error import ProcessingError
from pytest_rigging.message import Message
from pytest_rigging.model import Answer, YesNoAnswer
from tests.conftest import FakeGenerator, replying


async def test_run_gives_one_chat_with_the_whole_conversation(fake: FakeGenerator) -> None:
    chat = await fake.chat([{"role": "system", "content": "Be brief."}, "hello"]).run()
    assert [str(m) for m in chat.all] == [
        "[system]: Be brief.",
        "[user]: hello",
        "[assistant]: hello",
    ]
    assert len(chat) == 3
    assert chat.conversation == "[system]: Be brief.\n\n[user]: hello\n\n[assistant]: hello"
    assert chat.last.content == "hello"
    assert chat.generator is fake
    assert chat.generator_id == "fakegenerator!fake"
    assert fake.to_identifier() == "fakegenerator!fake,max_connections=4"
    assert not chat.failed and chat.error is None and chat.error_kind is None


async def test_params_precedence_identifier_generator_pipeline_call() -> None:
    generator = rg.get_generator(
        "echo!x,temperature=0.1,top_p=0.1,max_tokens=1,seed=1",
        params=rg.GenerateParams(top_p=0.2, max_tokens=2, seed=2),
    )
    pipeline = generator.chat("hi").with_(max_tokens=3, seed=3)
    [chat] = await pipeline.run_batch(["hi"], [rg.GenerateParams(seed=4)])
    assert chat.params is not None
    assert (
        chat.params.temperature,
        chat.params.top_p,
        chat.params.max_tokens,
        chat.params.seed,
    ) == (
        0.1,
        0.2,
        3,
        4,
    )
    assert chat.generator_id == "echo!x,temperature=0.1,max_tokens=3,top_p=0.2,seed=4"


async def test_run_many_with_map_that_continues_some_chats() -> None:
    jokes = iter(["a spider joke", "a chicken joke", "a mouse joke"])

    def reply(messages: list[Message]) -> str:
        return "Because." if messages[-1].content.startswith("Why") else next(jokes)

    generator = FakeGenerator(model="jokes", reply=reply, max_connections=1)

    async def check_animal(chats: list[rg.Chat]) -> list[rg.Chat]:
        return [
            await chat.continue_("Why did you pick that animal?").meta(questioned=True).run()
            if "mouse" in chat.last.content
            else chat
            for chat in chats
        ]

    chats = await generator.chat("Tell me a joke.").meta(kind="joke").map(check_animal).run_many(3)
    assert [c.metadata for c in chats] == [
        {"kind": "joke"},
        {"kind": "joke"},
        {"kind": "joke", "questioned": True},
    ]
    assert [len(c) for c in chats] == [2, 2, 4]
    assert chats[2].conversation.endswith(
        "[user]: Why did you pick that animal?\n\n[assistant]: Because."
    )


async def test_then_callbacks_replace_keep_or_recurse(fake: FakeGenerator) -> None:
    seen: list[str] = []

    def keep(chat: rg.Chat) -> None:
        seen.append(chat.last.content)

    async def replace(chat: rg.Chat) -> rg.Chat:
        return chat.meta(replaced=True)

    def recurse(chat: rg.Chat) -> rg.ChatPipeline:
        return chat.continue_("again")

    chat = await fake.chat("one").then(keep).then(replace).then(recurse).run()
    assert seen == ["one"]
    assert chat.metadata == {"replaced": True}
    assert [m.content for m in chat.all] == ["one", "one", "again", "again"]


async def test_then_returning_junk_is_a_clear_error(fake: FakeGenerator) -> None:
    def junk(chat: rg.Chat) -> int:
        return 3

    with pytest.raises(ProcessingError, match="then callback 'junk' returned int: return a result"):
        await fake.chat("x").then(junk).run()


async def test_map_must_return_one_chat_per_chat(fake: FakeGenerator) -> None:
    def drop(chats: list[rg.Chat]) -> list[rg.Chat]:
        return chats[:1]

    with pytest.raises(ProcessingError, match="map callback 'drop' returned 1 results for 2"):
        await fake.chat().map(drop).run_batch(["a", "b"])


async def test_steps_after_a_map_still_run_per_chat(fake: FakeGenerator) -> None:
    order: list[str] = []

    def before(chat: rg.Chat) -> None:
        order.append("then:" + chat.last.content)

    def barrier(chats: list[rg.Chat]) -> list[rg.Chat]:
        order.append(f"map:{len(chats)}")
        return chats

    def after(chat: rg.Chat) -> rg.Chat:
        return chat.meta(after=True)

    chats = await fake.chat().then(before).map(barrier).then(after).run_batch(["a", "b", "c"])
    assert sorted(order[:3]) == ["then:a", "then:b", "then:c"] and order[3] == "map:3"
    assert all(c.metadata == {"after": True} for c in chats)


async def test_until_parsed_as_recovers_with_a_clear_message() -> None:
    generator = replying("Paris", "<answer>Paris</answer>")
    chat = (
        await generator.chat("Capital of France?")
        .until_parsed_as(Answer, attempt_recovery=True)
        .run()
    )
    assert chat.last.parse(Answer).content == "Paris"
    assert chat.recovery_rounds == 1
    # As in rigging 3, the final chat holds the whole exchange: what was sent the second
    # time, and the reply that parsed.
    retried = generator.calls[1][0]
    assert [m.role for m in retried] == ["user", "assistant", "user"]
    assert chat.messages == retried and [m.content for m in chat.generated] == [
        "<answer>Paris</answer>"
    ]
    assert [m.content for m in chat.all[:2]] == ["Capital of France?", "Paris"]
    recovery = retried[2].content
    assert "<system-error>\nFailed to find '<answer></answer>' in text\n</system-error>" in recovery
    assert "Rewrite your whole message" in recovery and "<answer></answer>" in recovery


async def test_validation_errors_use_validation_error_tags() -> None:
    generator = replying(
        "<yes-no-answer>perhaps</yes-no-answer>", "<yes-no-answer>yes</yes-no-answer>"
    )
    chat = await generator.chat("?").until_parsed_as(YesNoAnswer).run()
    assert chat.last.parse(YesNoAnswer).boolean is True
    assert "<validation-error>" in generator.calls[1][0][-1].content
    assert "expected yes/no/true/false" in generator.calls[1][0][-1].content


async def test_without_recovery_the_model_is_simply_asked_again() -> None:
    generator = replying("no", "still no", "<answer>ok</answer>")
    chat = await generator.chat("q").until_parsed_as(Answer, attempt_recovery=False).run()
    assert chat.recovery_rounds == 2
    assert [len(messages) for messages, _ in generator.calls] == [1, 1, 1]


async def test_exhaustion_raises_or_is_absorbed() -> None:
    generator = replying("never")
    pipeline = generator.chat("q").until_parsed_as(Answer, max_rounds=3)
    with pytest.raises(
        rg.ExhaustedMaxRoundsError,
        match=r"Exhausted max rounds \(3\) while parsing: Failed to find",
    ):
        await pipeline.run()
    assert len(generator.calls) == 3
    failed = await pipeline.run(on_failed="include")
    assert failed.failed and failed.error_kind == "parse"
    assert failed.recovery_rounds == 2
    assert failed.conversation.endswith(
        "[assistant]: never\n\n[error]: Exhausted max rounds (3) while parsing: "
        "Failed to find '<answer></answer>' in text"
    )
    # the failed chat shows each of the three replies and both requests to rewrite
    assert [m.role for m in failed.all] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert [m.content for m in failed.all if m.role == "assistant"] == ["never"] * 3
    # either name catches it: rigging 3's MaxDepthError is a subclass of the seed's
    assert isinstance(failed.error, rg.MaxDepthError)
    with pytest.raises(rg.MaxDepthError, match=r"Exhausted max rounds \(3\)"):
        await pipeline.run()
    # rigging 3 counts recoveries, max_depth: 2 recoveries are 3 replies
    generator.calls.clear()
    assert (
        await generator.chat("q").until_parsed_as(Answer, max_depth=2).run_many(1, on_failed="skip")
        == []
    )
    assert len(generator.calls) == 3


def test_until_parsed_as_argument_errors(fake: FakeGenerator) -> None:
    with pytest.raises(ValueError, match="needs at least one model"):
        fake.chat().until_parsed_as()
    with pytest.raises(TypeError, match="takes Model subclasses, got <class 'str'>"):
        fake.chat().until_parsed_as(str)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_rounds must be at least 1, got 0"):
        fake.chat().until_parsed_as(Answer, max_rounds=0)


async def test_on_failed_modes_in_a_batch() -> None:
    generator = FakeGenerator(model="m", reply=lambda ms: ms[-1].content)
    pipeline = generator.chat().until_parsed_as(Answer, max_rounds=1)
    inputs = ["<answer>1</answer>", "nope", "<answer>3</answer>"]
    with pytest.raises(rg.ExhaustedMaxRoundsError):
        await pipeline.run_batch(inputs)
    skipped = await pipeline.run_batch(inputs, on_failed="skip")
    assert [c.last.parse(Answer).content for c in skipped] == ["1", "3"]
    included = await pipeline.run_batch(inputs, on_failed="include")
    assert [c.failed for c in included] == [False, True, False]
    assert isinstance(included[1].error, rg.ExhaustedMaxRoundsError)
    # .catch sets the pipeline's default
    assert len(await pipeline.clone().catch(on_failed="skip").run_batch(inputs)) == 2


async def test_errors_not_caught_always_raise() -> None:
    def boom(messages: list[Message]) -> str:
        raise KeyError("boom")

    pipeline = FakeGenerator(model="m", reply=boom).chat()
    with pytest.raises(KeyError, match="boom"):
        await pipeline.run_batch(["a"], on_failed="skip")
    chats = await pipeline.catch(KeyError).run_batch(["a", "b"], on_failed="include")
    assert [type(c.error) for c in chats] == [KeyError, KeyError]
    assert chats[0].error_kind == "other"
    assert [m.content for m in chats[0].all] == ["a"]


async def test_generation_errors_are_infrastructure_and_absorbed() -> None:
    def flaky(messages: list[Message]) -> str:
        if messages[-1].content == "bad":
            raise rg.GenerationError("server error from fake", reason="server")
        return "ok"

    chats = (
        await FakeGenerator(model="m", reply=flaky)
        .chat()
        .run_batch(["a", "bad"], on_failed="include")
    )
    assert [c.error_kind for c in chats] == [None, "infrastructure"]


async def test_bad_on_failed_values(fake: FakeGenerator) -> None:
    with pytest.raises(ValueError, match="on_failed='skip' has nothing to skip to in a single run"):
        await fake.chat("x").run(on_failed="skip")
    with pytest.raises(
        ValueError, match="on_failed must be one of raise, skip, include, got 'ignore'"
    ):
        await fake.chat("x").run_many(1, on_failed="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run_many needs a count of 0 or more, got -1"):
        await fake.chat("x").run_many(-1)


async def test_run_batch_inputs(fake: FakeGenerator) -> None:
    pipeline = fake.chat({"role": "system", "content": "sys"})
    [one] = await pipeline.run_batch("a bare string is one input")
    assert [m.content for m in one.all] == [
        "sys",
        "a bare string is one input",
        "a bare string is one input",
    ]
    chats = await pipeline.run_batch(
        [
            "text",
            {"role": "user", "content": "dict"},
            ["first", Message(role="user", content="second")],
        ]
    )
    assert [[m.content for m in c.messages] for c in chats] == [
        ["sys", "text"],
        ["sys", "dict"],
        ["sys", "first", "second"],
    ]
    assert await pipeline.run_batch([]) == []
    assert [m.to_dict() for m in pipeline.messages] == [{"role": "system", "content": "sys"}]


async def test_run_batch_broadcasts_either_side(fake: FakeGenerator) -> None:
    temps = [rg.GenerateParams(temperature=t) for t in (0.6, 0.9, 1.2)]
    chats = await fake.chat().run_batch(["same"], temps)
    assert [c.params.temperature for c in chats if c.params] == [0.6, 0.9, 1.2]
    assert [c.last.content for c in chats] == ["same"] * 3
    assert [p.temperature for _, p in fake.calls] == [0.6, 0.9, 1.2]
    chats = await fake.chat().run_batch(["a", "b", "c"], rg.GenerateParams(temperature=0.1))
    assert {c.params.temperature for c in chats if c.params} == {0.1}
    chats = await fake.chat().run_batch(
        ["a", "b"], [rg.GenerateParams(seed=1), rg.GenerateParams(seed=2)]
    )
    assert [(c.last.content, c.params.seed) for c in chats if c.params] == [("a", 1), ("b", 2)]


async def test_run_batch_length_mismatch_names_both_lengths(fake: FakeGenerator) -> None:
    with pytest.raises(
        ValueError,
        match="run_batch got 2 inputs and 3 params: the lengths must match, "
        "or one side must have length 1",
    ):
        await fake.chat().run_batch(["a", "b"], [rg.GenerateParams()] * 3)


async def test_run_over_order_and_skip() -> None:
    def broken(messages: list[Message]) -> str:
        raise rg.GenerationError("down", reason="connection")

    original = FakeGenerator(model="original")
    other = FakeGenerator(model="other")
    down = FakeGenerator(model="down", reply=broken)
    pipeline = original.chat("q")
    chats = await pipeline.run_over(other, "echo!third,temperature=0.5")
    assert [c.generator_id for c in chats] == [
        "fakegenerator!other",
        "echo!third,temperature=0.5",
        "fakegenerator!original",
    ]
    assert [
        c.generator.model
        for c in await pipeline.run_over(other, include_original=False)
        if c.generator
    ] == ["other"]
    skipped = await pipeline.run_over(down, other, on_failed="skip")
    assert [c.generator.model for c in skipped if c.generator] == ["other", "original"]
    with pytest.raises(ValueError, match="run_over needs at least one generator"):
        await pipeline.run_over(include_original=False)


async def test_concurrency_is_bounded_and_order_kept() -> None:
    delays = {str(i): random.Random(i).uniform(0, 0.02) for i in range(40)}

    generator = FakeGenerator(
        model="j", max_connections=7, latency=lambda messages: delays[messages[-1].content]
    )
    chats = await generator.chat().run_batch(list(delays))
    assert [c.last.content for c in chats] == list(delays)
    assert generator.peak == 7


async def test_limit_holds_across_concurrent_runs_and_nested_calls() -> None:
    generator = FakeGenerator(model="n", latency=0.01, max_connections=3)

    async def follow_up(chat: rg.Chat) -> rg.Chat:
        return await chat.continue_("more").run()

    await asyncio.gather(
        generator.chat().then(follow_up).run_batch([str(i) for i in range(10)]),
        generator.chat().run_many(10),
    )
    assert generator.peak == 3
    assert len(generator.calls) == 30


async def test_cancelling_a_huge_batch_leaves_nothing_running() -> None:
    generator = FakeGenerator(model="slow", latency=60, max_connections=100)
    run = asyncio.ensure_future(generator.chat().run_batch([str(i) for i in range(10_000)]))
    await asyncio.sleep(0.05)
    assert generator.in_flight == 100
    assert len(asyncio.all_tasks()) == 102  # this test, the run, its 100 workers
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert generator.in_flight == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_first_error_in_raise_mode_cancels_the_rest() -> None:
    def reply(messages: list[Message]) -> str:
        if messages[-1].content == "0":
            raise RuntimeError("first one fails")
        return "ok"

    generator = FakeGenerator(
        model="mixed",
        reply=reply,
        max_connections=50,
        latency=lambda messages: 0 if messages[-1].content == "0" else 60,
    )
    with pytest.raises(RuntimeError, match="first one fails"):
        await asyncio.wait_for(generator.chat().run_batch([str(i) for i in range(200)]), 5)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_chat_continue_fork_restart(fake: FakeGenerator) -> None:
    chat = await fake.chat(["a"]).meta(tag=1).run()
    cont = await chat.continue_("b").run()
    assert [m.content for m in cont.all] == ["a", "a", "b", "b"]
    assert cont.metadata == {"tag": 1}
    forked = await chat.fork("c").run()
    assert [m.content for m in forked.all] == ["a", "c", "c"]
    other = FakeGenerator(model="other")
    restarted = await chat.restart(generator=other).run()
    assert restarted.generator is other and [m.content for m in restarted.all] == ["a", "a"]


async def test_pipeline_builders_add_fork_clone(fake: FakeGenerator) -> None:
    base = fake.chat("a")
    forked = base.fork("b")
    base.add({"role": "assistant", "content": "noted"})
    assert [m.content for m in base.messages] == ["a", "noted"]
    assert [m.content for m in forked.messages] == ["a", "b"]
    clone = base.clone().then(lambda c: c.meta(x=1))
    assert base.steps == [] and len(clone.steps) == 1


async def test_chats_do_not_share_state(fake: FakeGenerator) -> None:
    pipeline = fake.chat("a")
    first, second = await pipeline.run_many(2)
    first.meta(only_first=True)
    assert second.metadata == {}
    pipeline.add("later")
    assert [m.content for m in first.messages] == ["a"]


async def test_completion_pipeline_run_family(fake: FakeGenerator) -> None:
    pipeline = fake.complete("Once upon a time")
    completion = await pipeline.run()
    assert completion.generated == "Once upon a time"
    assert completion.all == "Once upon a timeOnce upon a time"
    batch = await pipeline.run_batch([", a", ", b"])
    assert [c.text for c in batch] == ["Once upon a time, a", "Once upon a time, b"]
    many = await pipeline.run_many(3, params=rg.GenerateParams(temperature=0.3))
    assert [c.generator_id for c in many] == ["fakegenerator!fake,temperature=0.3"] * 3
    over = await pipeline.run_over(FakeGenerator(model="other"))
    assert [c.generator.model for c in over if c.generator] == ["other", "fake"]
    assert (await completion.continue_("!").run()).text == completion.all + "!"


async def test_completion_until_parsed_as_regenerates() -> None:
    generator = replying("junk", "<answer>42</answer>")
    completion = await generator.complete("Q: ").until_parsed_as(Answer).run()
    assert completion.parse(Answer).content == "42"
    assert completion.recovery_rounds == 1
    failed = (
        await replying("junk")
        .complete("Q: ")
        .until_parsed_as(Answer, max_rounds=2)
        .run(on_failed="include")
    )
    assert failed.failed and failed.error_kind == "parse"


async def test_shared_limit_bounds_calls_across_generators() -> None:
    state = {"now": 0, "peak": 0}

    def enter(messages: list[Message]) -> float:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        return 0.02

    def leave(messages: list[Message]) -> str:
        state["now"] -= 1
        return "ok"

    generators = [
        FakeGenerator(model=str(i), latency=enter, reply=leave, max_connections=10)
        for i in range(3)
    ]
    with shared_limit(4) as semaphore:
        await asyncio.gather(*(g.chat("x").run_many(10) for g in generators))
    assert state["peak"] == 4
    assert sum(len(g.calls) for g in generators) == 30
    assert not semaphore.locked()
    # Outside the block, only each generator's own limit applies.
    state["peak"] = 0
    await asyncio.gather(*(g.chat("x").run_many(10) for g in generators))
    assert state["peak"] == 30


async def _turns() -> None:
    """Long enough for a limit to hand out its slots and their takers to wake."""
    for _ in range(3):
        await asyncio.sleep(0)


async def _granted(limit: FairLimit, key: int, **kwargs: bool) -> asyncio.Task[None]:
    """A task taking a slot of `limit` for `key`, once the limit has had its turn."""
    task = asyncio.ensure_future(limit.acquire(key, **kwargs))
    await _turns()
    return task


async def test_fair_limit_holds_keys_to_their_shares_and_lends_backoff_slots() -> None:
    """A hanging key holds its share and no more, however late the other's calls come; a
    slot given back for a backoff is lent, and returns to its key at the next one freed."""
    limit = FairLimit(4)
    hanging, healthy = 1, 2
    limit.set_share(hanging, 2)
    limit.set_share(healthy, 2)
    held = [await _granted(limit, hanging) for _ in range(2)]
    third = await _granted(limit, hanging)
    assert all(t.done() for t in held) and not third.done()  # two idle slots, not its share
    late = [await _granted(limit, healthy) for _ in range(2)]
    assert all(t.done() for t in late)  # at once, though they came last
    limit.release(healthy, stepping_away=True)  # waiting out a backoff: lent meanwhile
    await _turns()
    assert third.done()
    back = await _granted(limit, healthy, returning=True)
    also = await _granted(limit, hanging)
    assert not back.done()  # every slot is taken
    limit.release(hanging)
    await _turns()
    assert back.done() and not also.done()  # its own slot back, before the borrower's next
    also.cancel()
    await asyncio.gather(also, return_exceptions=True)
    for key in (hanging, hanging, healthy, healthy):
        limit.release(key)
    assert not limit.locked()
    with pytest.raises(RuntimeError, match=r"FairLimit\.release: key 2 holds no slot"):
        limit.release(healthy)


async def test_a_call_cancelled_while_taking_its_slot_back_gives_nothing_back_twice() -> None:
    """Cancelled during its backoff, then again while it waits for its slot back: the call
    ends cancelled, and the limit and the generator's own semaphore count true."""
    limit, own = FairLimit(1), asyncio.Semaphore(5)
    started = asyncio.Event()

    async def backing_off() -> None:
        async with Slot(own, key=1):
            started.set()
            async with slot_released():
                await asyncio.sleep(10)

    with shared_limit(limit):
        task = asyncio.ensure_future(backing_off())
        await started.wait()
        other = Slot(own, key=2)
        await other.acquire()  # takes the slot given back
        task.cancel()  # the first cancel lands in the backoff...
        for _ in range(3):
            await _turns()
        task.cancel()  # ...a second one while it waits to take its slot back
        with pytest.raises(asyncio.CancelledError):
            await task
        other.release()
    assert (limit.locked(), own._value) == (False, 5)
    again = await _granted(limit, 1)
    assert again.done()
    limit.release(1)


async def test_observe_reports_outermost_runs_failures_included() -> None:
    seen: list[tuple[list[str], bool]] = []

    def record(results: t.Sequence[rg.Chat], parses: bool) -> None:
        seen.append(([r.last.content + ("!" if r.failed else "") for r in results], parses))

    async def follow_up(chats: list[rg.Chat]) -> list[rg.Chat]:
        return [await chat.continue_("nested").run() for chat in chats]

    generator = FakeGenerator(model="m")
    with observe(record):
        await generator.chat().map(follow_up).run_batch(["a", "b"])
        parsing = generator.chat().until_parsed_as(Answer, max_rounds=1)
        await parsing.run_batch(["<answer>1</answer>", "no"], on_failed="skip")
        with pytest.raises(rg.ExhaustedMaxRoundsError):
            await parsing.fork("never").run()
    await generator.chat("outside").run()
    assert seen == [
        (["nested", "nested"], False),
        (["<answer>1</answer>", "no!"], True),
        (["never!"], True),
    ]


async def test_usage_and_latency_cover_every_recovery_round() -> None:
    generator = replying("nope", "still nope", "<answer>ok</answer>")
    generator.latency = 0.01
    chat = await generator.chat("q").until_parsed_as(Answer).run()
    assert chat.recovery_rounds == 2
    assert chat.usage == rg.Usage(input_tokens=3, output_tokens=3)
    assert chat.latency >= 0.03
