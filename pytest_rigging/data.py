"""Chats as flat rows (one per message) and pandas DataFrames, and back.

A row repeats its chat's fields (`chat_*` columns) so a table of messages can be filtered,
grouped and joined on `chat_id` without nested data. Rows hold JSON values only, so they
can be written as JSON lines as they are; pandas is needed only for the DataFrame functions
(`pip install 'pytest-rigging[data]'`).
"""

from __future__ import annotations

import json
import typing as t
from datetime import datetime

from pydantic import JsonValue, TypeAdapter
from typing_extensions import TypedDict

from pytest_rigging.chat import Chat
from pytest_rigging.message import Message, Role

if t.TYPE_CHECKING:
    import pandas as pd

JsonObject = dict[str, JsonValue]


class MessageRow(TypedDict):
    """One message of a chat, with the chat's fields repeated (as in rigging's rows).

    `content` is the message's text, for reading and filtering; `content_parts` (all of
    its parts, images and audio included) is what a message is rebuilt from. `chat_error`
    is the error's text: an exception cannot be rebuilt from it, so it is not read back.
    """

    chat_id: str
    chat_timestamp: str
    chat_metadata: JsonObject
    chat_generator_id: str | None
    chat_params: JsonObject | None
    chat_stop_reason: str | None
    chat_usage: JsonObject | None
    chat_extra: JsonObject
    chat_failed: bool
    chat_error: str | None
    chat_recovery_rounds: int
    chat_latency: float
    generated: bool
    message_id: str
    role: Role
    content: str
    content_parts: list[JsonObject]
    metadata: JsonObject
    tool_calls: list[JsonObject] | None
    tool_call_id: str | None


COLUMNS: tuple[str, ...] = tuple(MessageRow.__annotations__)
"""The columns of `chats_to_df`, in order: the keys of a `MessageRow`."""
_JSON_COLUMNS = (
    "chat_metadata",
    "chat_params",
    "chat_usage",
    "chat_extra",
    "content_parts",
    "metadata",
    "tool_calls",
)
"""Columns whose values are nested, kept in a DataFrame as JSON text."""
_DTYPES = {
    **dict.fromkeys(COLUMNS, "string"),
    "chat_timestamp": "datetime64[us, UTC]",
    "chat_failed": "bool",
    "chat_recovery_rounds": "int64",
    "chat_latency": "float64",
    "generated": "bool",
    "role": "category",
}
_ROWS: TypeAdapter[list[MessageRow]] = TypeAdapter(list[MessageRow])


def _dataframe() -> type[pd.DataFrame]:
    """pandas' DataFrame, imported on first use: the rows need no pandas."""
    try:
        from pandas import DataFrame
    except ImportError as error:
        raise ImportError(
            "chats_to_df and df_to_chats need pandas: pip install 'pytest-rigging[data]'"
        ) from error
    return DataFrame


def flatten_chats(chats: Chat | t.Sequence[Chat]) -> list[MessageRow]:
    """One row per message, the sent messages of each chat before its generated ones."""
    rows: list[MessageRow] = []
    for chat in [chats] if isinstance(chats, Chat) else chats:
        dumped = chat.model_dump(mode="json", include={"uuid", "timestamp", "metadata", "extra"})
        params = chat.params.model_dump(mode="json", exclude_none=True) if chat.params else None
        usage = chat.usage.model_dump(mode="json") if chat.usage else None
        error = str(chat.error) if chat.error is not None else None
        for generated, messages in ((False, chat.messages), (True, chat.generated)):
            rows.extend(
                MessageRow(
                    chat_id=dumped["uuid"],
                    chat_timestamp=dumped["timestamp"],
                    chat_metadata=dumped["metadata"],
                    chat_generator_id=chat.generator_id,
                    chat_params=params,
                    chat_stop_reason=chat.stop_reason,
                    chat_usage=usage,
                    chat_extra=dumped["extra"],
                    chat_failed=chat.failed,
                    chat_error=error,
                    chat_recovery_rounds=chat.recovery_rounds,
                    chat_latency=chat.latency,
                    generated=generated,
                    message_id=str(message.uuid),
                    role=message.role,
                    content=message.content,
                    content_parts=[
                        p.model_dump(mode="json", exclude_none=True) for p in message.content_parts
                    ],
                    metadata=message.model_dump(mode="json", include={"metadata"})["metadata"],
                    tool_calls=[c.model_dump(mode="json") for c in message.tool_calls]
                    if message.tool_calls is not None
                    else None,
                    tool_call_id=message.tool_call_id,
                )
                for message in messages
            )
    return rows


def _message(row: MessageRow) -> Message:
    message = Message(
        row["role"],
        uuid=row["message_id"],
        content_parts=row["content_parts"],
        metadata=row["metadata"],
        tool_calls=row.get("tool_calls"),
        tool_call_id=row.get("tool_call_id"),
    )
    # An edited `content` would otherwise be dropped without a word.
    if message.content != row["content"]:
        raise ValueError(
            f"message {row['message_id']}: content {row['content']!r} is not the text of its "
            f"content_parts ({message.content!r}); edit content_parts instead"
        )
    return message


def _chat(rows: list[MessageRow]) -> Chat:
    first = rows[0]
    return Chat.model_validate(
        {
            "uuid": first["chat_id"],
            "timestamp": first["chat_timestamp"],
            "messages": [_message(row) for row in rows if not row["generated"]],
            "generated": [_message(row) for row in rows if row["generated"]],
            "metadata": first["chat_metadata"],
            "generator_id": first["chat_generator_id"],
            "params": first["chat_params"],
            "stop_reason": first["chat_stop_reason"],
            "usage": first["chat_usage"],
            "extra": first["chat_extra"],
            "failed": first["chat_failed"],
            "recovery_rounds": first["chat_recovery_rounds"],
            "latency": first["chat_latency"],
        }
    )


def _chats(rows: object) -> list[Chat]:
    grouped: dict[str, list[MessageRow]] = {}
    for row in _ROWS.validate_python(rows):
        grouped.setdefault(row["chat_id"], []).append(row)
    return [_chat(chat_rows) for chat_rows in grouped.values()]


def unflatten_chats(rows: t.Sequence[MessageRow]) -> list[Chat]:
    """The chats of `flatten_chats` rows, in order of first appearance (rigging sorts them
    by id); a chat's fields are read from its first row."""
    return _chats(rows)


def chats_to_df(chats: Chat | t.Sequence[Chat]) -> pd.DataFrame:
    """The rows of `flatten_chats` as a DataFrame, nested values as JSON text."""
    df = _dataframe()(flatten_chats(chats), columns=list(COLUMNS))
    for column in _JSON_COLUMNS:
        df[column] = df[column].map(lambda v: None if v is None else json.dumps(v))
    return df.astype(_DTYPES)


def _decoded(value: object, column: str, index: object) -> JsonValue:
    if value is None:
        return None
    try:
        return t.cast("JsonValue", json.loads(t.cast("str", value)))
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"row {index}: column {column!r} does not hold JSON text: {error}"
        ) from error


def df_to_chats(df: pd.DataFrame) -> list[Chat]:
    """The chats of a `chats_to_df` DataFrame (every column of it needed), in order of
    first appearance."""
    if not isinstance(df, _dataframe()):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [column for column in COLUMNS if column not in df.columns]
    if missing:
        raise ValueError(f"the DataFrame lacks the columns {', '.join(missing)} (see chats_to_df)")
    table = df[list(COLUMNS)]
    table = table.astype(object).where(table.notna(), None)
    rows: list[dict[str, object]] = []
    for index, record in zip(table.index, table.to_dict("records"), strict=True):
        row: dict[str, object] = {str(k): v for k, v in record.items()}
        for column in _JSON_COLUMNS:
            row[column] = _decoded(row[column], column, index)
        timestamp = row["chat_timestamp"]
        if isinstance(timestamp, datetime):
            row["chat_timestamp"] = timestamp.isoformat()
        rows.append(row)
    return _chats(rows)
