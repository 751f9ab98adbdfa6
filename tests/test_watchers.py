"""The JSON-lines watchers: what each line holds, appending and replacing, lines kept whole
under concurrent runs, secrets masked, and bad paths refused."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import typing as t
from pathlib import Path

import pytest

from pytest_rigging.chat import Chat
from pytest_rigging.data import COLUMNS, flatten_chats, unflatten_chats
from pytest_rigging.generator import get_generator
from pytest_rigging.message import Message
from pytest_rigging.watchers import (
    WatchChatCallback,
    write_chats_to_jsonl,
    write_messages_to_jsonl,
)

Maker = t.Callable[..., WatchChatCallback]

BIG = "x" * 200_000
"""Long lines, so that a write torn by another would leave a line that does not parse."""


def chat(text: str) -> Chat:
    return Chat(messages=[Message("user", text)], generated=[Message("assistant", text)])


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


async def test_each_chat_line_loads_back_as_the_chat(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    chats = await get_generator("echo!x").chat("hi").run_many(2)
    await write_chats_to_jsonl(path)(chats)

    loaded = [Chat.model_validate_json(line) for line in lines(path)]
    assert [c.uuid for c in loaded] == [c.uuid for c in chats]
    assert [c.generated[0].content for c in loaded] == ["hi", "hi"]
    assert loaded[0].generator_id == "echo!x"


async def test_each_message_line_is_a_row_of_flatten_chats(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    chats = [chat("one"), chat("é two")]
    await write_messages_to_jsonl(path)(chats)

    rows = [json.loads(line) for line in lines(path)]
    assert rows == flatten_chats(chats)
    assert all(tuple(row) == COLUMNS for row in rows)
    assert [c.uuid for c in unflatten_chats(rows)] == [c.uuid for c in chats]


async def test_pipelines_that_watch_write_every_run(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    watcher = write_messages_to_jsonl(path)
    echo = get_generator("echo!x")
    runs = await asyncio.gather(
        echo.chat("a").watch(watcher).run_many(3), echo.chat("b").watch(watcher).run()
    )
    rows = [json.loads(line) for line in lines(path)]
    assert len(rows) == 8
    assert {row["chat_id"] for row in rows} == {str(c.uuid) for c in [*runs[0], runs[1]]}


async def test_calls_append_to_what_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_text('{"earlier": true}\n')
    watcher = write_chats_to_jsonl(path)
    await watcher([chat("a")])
    await watcher([chat("b"), chat("c")])
    assert len(lines(path)) == 4
    assert lines(path)[0] == '{"earlier": true}'


@pytest.mark.parametrize("make", [write_chats_to_jsonl, write_messages_to_jsonl])
async def test_replace_empties_the_file_on_the_first_call_only(make: Maker, tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("stale\n")
    watcher = make(path, replace=True)
    assert lines(path) == ["stale"]  # making the watcher leaves the file alone

    await watcher([])
    assert lines(path) == []
    await watcher([chat("a")])
    await watcher([chat("b")])
    assert "a" in lines(path)[0]
    assert "b" in lines(path)[-1]


async def test_replace_keeps_the_first_calls_lines_of_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "new.jsonl"
    watcher = write_chats_to_jsonl(path, replace=True)
    assert not path.exists()
    await watcher([chat("a")])
    await watcher([chat("b")])
    assert len(lines(path)) == 2


@pytest.mark.parametrize("make", [write_chats_to_jsonl, write_messages_to_jsonl])
async def test_concurrent_calls_on_one_loop_keep_lines_whole(make: Maker, tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    watcher = make(path)
    batches = [[chat(f"{i}{BIG}"), chat(f"{i}")] for i in range(12)]
    await asyncio.gather(*(watcher(batch) for batch in batches))

    loaded = [json.loads(line) for line in lines(path)]  # a torn line would not parse
    per_batch = 2 if make is write_chats_to_jsonl else 4
    assert len(loaded) == per_batch * len(batches)


async def test_calls_from_several_threads_keep_lines_whole(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    watcher = write_chats_to_jsonl(path)

    def run(i: int) -> None:
        asyncio.run(watcher([chat(f"{i}{BIG}") for _ in range(3)]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    chats = [Chat.model_validate_json(line) for line in lines(path)]
    assert len(chats) == 24
    # Each call's chats stay together.
    firsts = [c.messages[0].content[0] for c in chats]
    assert all(len(set(firsts[i : i + 3])) == 1 for i in range(0, 24, 3))


async def test_concurrent_first_calls_replace_the_file_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_text("stale\n")
    opened = Path.open

    def slow_open(self: Path, *args: t.Any, **kwargs: t.Any) -> t.IO[t.Any]:
        time.sleep(0.02)  # widen the window in which a second call could also truncate
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", slow_open)
    watcher = write_chats_to_jsonl(path, replace=True)
    await asyncio.gather(*(watcher([chat(str(i))]) for i in range(6)))
    monkeypatch.undo()
    assert sorted(Chat.model_validate_json(line).last.content for line in lines(path)) == list(
        "012345"
    )


@pytest.mark.parametrize("make", [write_chats_to_jsonl, write_messages_to_jsonl])
async def test_known_secrets_are_masked(
    make: Maker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WATCHER_TEST_API_KEY", "sk-watcher-secret-1234")
    path = tmp_path / "out.jsonl"
    await make(path)([chat("my key is sk-watcher-secret-1234")])
    text = path.read_text()
    assert "sk-watcher-secret-1234" not in text
    assert "my key is ***" in text


@pytest.mark.parametrize("make", [write_chats_to_jsonl, write_messages_to_jsonl])
def test_a_directory_is_refused(make: Maker, tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=r"cannot write chats to '.*': it is a directory"):
        make(tmp_path)


@pytest.mark.parametrize("make", [write_chats_to_jsonl, write_messages_to_jsonl])
def test_a_missing_directory_is_refused(make: Maker, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"directory '.*nowhere' does not exist"):
        make(tmp_path / "nowhere" / "out.jsonl")
