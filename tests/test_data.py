"""Chats to rows and DataFrames and back: shapes, round trips, and bad input."""

from __future__ import annotations

import json
import re
import sys

import pandas as pd
import pytest

from pytest_rigging.chat import Chat
from pytest_rigging.data import (
    COLUMNS,
    chats_to_df,
    df_to_chats,
    flatten_chats,
    unflatten_chats,
)
from pytest_rigging.generator import GenerateParams, Usage, get_generator
from pytest_rigging.message import ContentImageUrl, Message

PANDAS_MISSING = re.escape("pip install 'pytest-rigging[data]'")


def rich_chat() -> Chat:
    """A chat with every field that survives a round trip set to something non-default."""
    return Chat(
        messages=[
            Message("system", "be brief"),
            Message("user", ["what is this?", ContentImageUrl.from_url("https://x.test/a.png")]),
        ],
        generated=[Message("assistant", "a cat").meta(score=0.9, tags=["pet"])],
        metadata={"case": "cats", "n": 3},
        generator_id="echo!x",
        params=GenerateParams(temperature=0.5, max_tokens=20, extra={"top_logprobs": 2}),
        stop_reason="length",
        usage=Usage(input_tokens=12, output_tokens=3),
        extra={"provider": {"id": "r-1"}},
        failed=True,
        error=ValueError("no <answer> found"),
        recovery_rounds=2,
        latency=0.25,
    )


def plain_chat(text: str) -> Chat:
    """A chat with only messages: every optional field left at its default."""
    return Chat(messages=[Message("user", text)], generated=[Message("assistant", text)])


def assert_same(got: Chat, want: Chat) -> None:
    def messages(chat_messages: list[Message]) -> list[tuple[object, ...]]:
        return [(m.uuid, m.role, m.content, m.content_parts, m.metadata) for m in chat_messages]

    assert messages(got.messages) == messages(want.messages)
    assert messages(got.generated) == messages(want.generated)
    for field in (
        "uuid",
        "timestamp",
        "metadata",
        "generator_id",
        "params",
        "stop_reason",
        "usage",
        "extra",
        "failed",
        "recovery_rounds",
        "latency",
    ):
        assert getattr(got, field) == getattr(want, field), field


# Rows


def test_flatten_gives_one_row_per_message_with_the_chat_repeated() -> None:
    chat = rich_chat()
    rows = flatten_chats(chat)

    assert [tuple(row) for row in rows] == [COLUMNS] * 3
    assert [(row["role"], row["generated"]) for row in rows] == [
        ("system", False),
        ("user", False),
        ("assistant", True),
    ]
    first, image, reply = rows
    assert first["chat_id"] == reply["chat_id"] == str(chat.uuid)
    assert reply["chat_metadata"] == {"case": "cats", "n": 3}
    assert reply["chat_generator_id"] == chat.generator_id
    assert reply["chat_params"] == {
        "temperature": 0.5,
        "max_tokens": 20,
        "extra": {"top_logprobs": 2},
    }
    assert reply["chat_usage"] == {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}
    assert reply["chat_error"] == "no <answer> found"
    assert (reply["chat_failed"], reply["chat_recovery_rounds"]) == (True, 2)
    assert reply["message_id"] == str(chat.generated[0].uuid)
    assert reply["metadata"] == {"score": 0.9, "tags": ["pet"]}
    assert image["content"] == "what is this?"
    assert [part["type"] for part in image["content_parts"]] == ["text", "image_url"]
    assert json.loads(json.dumps(rows)) == rows  # JSON values only


def test_flatten_leaves_unset_fields_empty() -> None:
    (row, _) = flatten_chats([plain_chat("hi")])
    assert row["chat_generator_id"] is None
    assert row["chat_params"] is None
    assert row["chat_usage"] is None
    assert row["chat_error"] is None
    assert row["chat_extra"] == {}


def test_unflatten_rebuilds_the_chats_in_order() -> None:
    chats = [plain_chat("one"), rich_chat(), plain_chat("three")]
    rows = flatten_chats(chats)

    for got, want in zip(unflatten_chats(rows), chats, strict=True):
        assert_same(got, want)
    # As read back from JSON lines, and with the chats' rows mixed together.
    mixed = [rows[i] for i in (2, 0, 3, 1, 4, 5, 6)]
    back = unflatten_chats(json.loads(json.dumps(mixed)))
    assert [c.uuid for c in back] == [chats[1].uuid, chats[0].uuid, chats[2].uuid]
    assert_same(back[0], chats[1])


def test_unflatten_drops_the_error_but_keeps_failed() -> None:
    (back,) = unflatten_chats(flatten_chats(rich_chat()))
    assert back.failed
    assert back.error is None


def test_unflatten_nothing_gives_no_chats() -> None:
    assert unflatten_chats([]) == []
    assert flatten_chats([]) == []


def test_unflatten_rejects_a_row_missing_a_key() -> None:
    rows = flatten_chats(plain_chat("hi"))
    del rows[1]["chat_id"]
    with pytest.raises(ValueError, match=r"(?s)1\.chat_id.*Field required"):
        unflatten_chats(rows)


def test_unflatten_rejects_an_unknown_role() -> None:
    rows = flatten_chats(plain_chat("hi"))
    rows[0]["role"] = "robot"  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match=r"(?s)0\.role.*'system', 'user', 'assistant'"):
        unflatten_chats(rows)


def test_unflatten_rejects_content_edited_apart_from_its_parts() -> None:
    rows = flatten_chats(plain_chat("hi"))
    rows[0]["content"] = "edited"
    with pytest.raises(ValueError, match=r"content 'edited' is not the text of its content_parts"):
        unflatten_chats(rows)


async def test_a_real_run_round_trips() -> None:
    chat = await get_generator("echo!x").chat("hello there").run()
    (row, reply) = flatten_chats(chat)
    assert (reply["content"], reply["chat_generator_id"]) == ("hello there", "echo!x")
    assert reply["chat_usage"] is not None
    (back,) = unflatten_chats([row, reply])
    assert_same(back, chat)
    (back,) = df_to_chats(chats_to_df(chat))
    assert_same(back, chat)


# DataFrames


def test_chats_to_df_has_a_typed_column_per_row_key() -> None:
    df = chats_to_df([rich_chat(), plain_chat("hi")])

    assert tuple(df.columns) == COLUMNS
    assert len(df) == 5
    assert str(df["chat_timestamp"].dtype) == "datetime64[us, UTC]"
    assert df["role"].dtype == "category"
    assert df["generated"].dtype == bool
    assert df["content"].dtype == "string"
    assert json.loads(df["chat_usage"].iloc[0]) == {
        "input_tokens": 12,
        "output_tokens": 3,
        "total_tokens": 15,
    }
    assert df["chat_usage"].isna().iloc[-1]
    assert list(df[df["generated"]]["content"]) == ["a cat", "hi"]


def test_df_round_trips() -> None:
    chats = [rich_chat(), plain_chat("hi")]
    for got, want in zip(df_to_chats(chats_to_df(chats)), chats, strict=True):
        assert_same(got, want)


def test_a_filtered_df_gives_the_chats_with_the_rows_kept() -> None:
    df = chats_to_df([rich_chat(), plain_chat("hi")])
    (chat, _) = df_to_chats(df[df["role"] != "system"])
    assert [m.role for m in chat.all] == ["user", "assistant"]


def test_an_empty_df_keeps_its_columns() -> None:
    df = chats_to_df([])
    assert tuple(df.columns) == COLUMNS
    assert df_to_chats(df) == []


def test_df_to_chats_names_the_missing_columns() -> None:
    df = chats_to_df(plain_chat("hi")).drop(columns=["chat_params", "content_parts"])
    with pytest.raises(ValueError, match=r"lacks the columns chat_params, content_parts"):
        df_to_chats(df)


def test_df_to_chats_names_a_column_that_is_not_json() -> None:
    df = chats_to_df(plain_chat("hi"))
    df.loc[1, "chat_metadata"] = "{not json"
    with pytest.raises(ValueError, match=r"row 1: column 'chat_metadata' does not hold JSON text"):
        df_to_chats(df)


def test_df_to_chats_rejects_what_is_not_a_df() -> None:
    with pytest.raises(TypeError, match=r"expected a pandas DataFrame, got list"):
        df_to_chats(flatten_chats(plain_chat("hi")))  # type: ignore[arg-type]


def test_df_to_chats_rejects_an_invalid_value() -> None:
    df = chats_to_df(plain_chat("hi"))
    df["chat_latency"] = "slow"
    with pytest.raises(ValueError, match=r"(?s)0\.chat_latency.*valid number"):
        df_to_chats(df)


# Without pandas


@pytest.fixture
def no_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)


@pytest.mark.usefixtures("no_pandas")
def test_the_df_functions_name_the_extra_without_pandas() -> None:
    with pytest.raises(ImportError, match=PANDAS_MISSING):
        chats_to_df(plain_chat("hi"))
    with pytest.raises(ImportError, match=PANDAS_MISSING):
        df_to_chats(pd.DataFrame())


@pytest.mark.usefixtures("no_pandas")
def test_rows_need_no_pandas() -> None:
    chat = rich_chat()
    (back,) = unflatten_chats(flatten_chats(chat))
    assert_same(back, chat)


def test_tool_calls_and_call_ids_round_trip_through_a_dataframe() -> None:
    called = Message(
        "assistant", "", tool_calls=[{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]
    )
    chat = Chat([Message("user", "hi"), called, Message("tool", "x", tool_call_id="c1")], "done")
    frame = chats_to_df(chat)
    assert json.loads(frame["tool_calls"][1]) == [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    back = df_to_chats(frame)[0]
    assert [(m.tool_calls, m.tool_call_id) for m in back.all] == [
        (None, None),
        (called.tool_calls, None),
        (None, "c1"),
        (None, None),
    ]
