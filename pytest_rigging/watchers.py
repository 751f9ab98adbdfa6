"""Watchers that keep every chat a pipeline finishes, as JSON lines in a file.

A watcher is called with each run's finished chats. One watcher may serve runs that
finish together, on one event loop or on several threads: each call writes its lines in
one piece under a lock, so lines never interleave. Known secrets are masked in every line.
"""

from __future__ import annotations

import asyncio
import json
import threading
import typing as t
from pathlib import Path

from pytest_rigging._secrets import known_secrets, redact
from pytest_rigging.chat import WatchChatCallback
from pytest_rigging.data import flatten_chats

if t.TYPE_CHECKING:
    from pytest_rigging.chat import Chat


class _JsonlFile:
    """A file that calls append to (truncated by the first call, with `replace`)."""

    def __init__(self, file: str | Path, replace: bool) -> None:
        # Checked now, not after a run whose chats would then be lost.
        path = Path(file)
        if path.is_dir():
            raise IsADirectoryError(f"cannot write chats to '{path}': it is a directory")
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"cannot write chats to '{path}': directory '{path.parent}' does not exist"
            )
        self.path = path
        self._truncate = replace
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock:
            with self.path.open("w" if self._truncate else "a", encoding="utf-8") as f:
                f.write(text)
            self._truncate = False

    async def write(self, lines: t.Iterable[str]) -> None:
        """Write `lines`; the file work runs on a thread, so the event loop never waits
        for another thread's write."""
        secrets = known_secrets()
        text = "".join(redact(line, secrets) + "\n" for line in lines)
        await asyncio.to_thread(self._write, text)


def write_chats_to_jsonl(file: str | Path, *, replace: bool = False) -> WatchChatCallback:
    """A watcher appending each chat to `file` as one JSON line (`replace`: the first
    call empties the file first)."""
    target = _JsonlFile(file, replace)

    async def write_chats(chats: list[Chat]) -> None:
        await target.write(chat.model_dump_json(exclude_none=True) for chat in chats)

    return write_chats


def write_messages_to_jsonl(file: str | Path, *, replace: bool = False) -> WatchChatCallback:
    """A watcher appending each message of each chat to `file` as one JSON line: a
    `pytest_rigging.data.MessageRow` (the chat's fields repeated, as in `chats_to_df`)."""
    target = _JsonlFile(file, replace)

    async def write_messages(chats: list[Chat]) -> None:
        await target.write(json.dumps(row, ensure_ascii=False) for row in flatten_chats(chats))

    return write_messages
