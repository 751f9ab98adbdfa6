"""Chat records and buckets: plain data, one bucket each, owned by the right model."""

from __future__ import annotations

import pytest_rigging as rg
from pytest_rigging.model import Answer
from pytest_rigging.plugin.matrix import build_cells
from pytest_rigging.plugin.stats import Recorder, bucket, chat_record, tabulate_items
from tests.conftest import FakeGenerator


async def test_judge_chats_count_for_their_own_generator() -> None:
    own, judge = FakeGenerator(model="cell"), FakeGenerator(model="openai/judge-model")
    [cell] = build_cells(["echo!cell-id"], [rg.GenerateParams()])
    recorder = Recorder()
    answer = await own.chat("<answer>x</answer>").until_parsed_as(Answer).run()
    verdict = await judge.chat("fine?").run()
    recorder.add("t::a", [answer, verdict], True, cell, own, 0)
    chats = recorder.take("t::a")
    assert [(c["model"], c["label"], c["outcome"], c["sample"]) for c in chats] == [
        ("echo!cell-id", "cell-id", "first_try", 1),
        ("fakegenerator!openai/judge-model", "judge-model", "first_try", 1),
    ]
    assert recorder.take("t::a") == []
    rows = tabulate_items(
        [
            {
                "nodeid": "t::a",
                "model": "echo!cell-id",
                "label": "cell-id",
                "params": "{}",
                "cell": cell.id,
                "outcome": "passed",
                "samples": None,
                "duration": 0.0,
                "chats": chats,
            }
        ],
        by_params=False,
    )
    assert [(r["model"], r["label"], r["chats"], r["items_passed"]) for r in rows] == [
        ("echo!cell-id", "cell-id", 1, 1),
        ("fakegenerator!openai/judge-model", "judge-model", 1, 0),
    ]


async def test_completions_are_recorded_as_text() -> None:
    completion = await FakeGenerator(model="c").complete("Once").run()
    record = chat_record(completion, False, ("m", "m", "{}"), None)
    assert record["conversation"] == [{"role": "text", "content": "OnceOnce"}]
    assert record["outcome"] is None


async def test_buckets() -> None:
    failed = (
        await FakeGenerator(model="f")
        .chat("no")
        .until_parsed_as(Answer, max_rounds=1)
        .run(on_failed="include")
    )
    assert bucket(failed, True) == "exhausted"
    failed.error = rg.GenerationError("down", reason="connection")
    assert bucket(failed, True) == "error" and bucket(failed, False) == "error"
