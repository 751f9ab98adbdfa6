"""Cassettes: `--rig-record none|once|new_episodes|all` records model calls and replays them.

At the generator level, not HTTP: every call a pipeline makes goes through an interceptor
(`generator.base.calls_intercepted`), whatever the provider, litellm's, native, offline or
a user's. A recording is keyed by the generator's identity (no secret, no config), the
conversation (or text), the params that shape the reply, the sample's index, and the call's
rank among the sample's identical calls, so `runs=5` replays five recordings. It holds the
reply, usage, stop reason and latency, so a replayed run reports the same table.

One JSON file per test module (`cassettes/test_capitals.json` beside it), entries sorted
by key, secrets masked, so that re-recording an unchanged suite changes nothing. New
entries are written when the run ends, atomically; under xdist each worker hands its own to
the controller through the run's folder, and the controller writes each file once.

A miss names the closest recording, found among those that share the most with the call
(the item that recorded it, the generator, the sample, the call's rank), so that a prompt
edit failing every call of a suite fails it fast; how a call differs from it is told for a
module's first `EXPLAINED` items that miss, and later ones name the recording only.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import itertools
import json
import os
import threading
import time
import typing as t
from pathlib import Path

import pytest
from typing_extensions import NotRequired, TypedDict

from pytest_rigging._concurrency import in_force
from pytest_rigging._secrets import known_secrets, redact
from pytest_rigging.generator.base import (
    GeneratedMessage,
    GeneratedText,
    GenerateParams,
    Generator,
    Usage,
)
from pytest_rigging.message import Message, MessageDict
from pytest_rigging.plugin.options import given
from pytest_rigging.plugin.records import sample_number, write_json
from pytest_rigging.plugin.samples import CallRefused
from pytest_rigging.tools.calls import ToolCall

MODES = ("none", "once", "new_episodes", "all")
FORMAT = "pytest-rigging-cassette"
VERSION = 1
UNKEYED = ("api_base", "timeout", "extra_headers")
"""Params that say how to reach a model, not what it answers (headers may hold a key)."""
EXPLAINED = 3
"""A module's first items that miss (in each process: an xdist worker reads its cassettes
itself) are told how each call differs from its closest recording; after a prompt edit the
rest would tell the same story again."""


class CassetteError(CallRefused):
    """A call that can't be answered: a miss where only replay is allowed, or a cassette
    that can't be read. It fails the item; nothing is recorded over it."""


class Reply(TypedDict):
    content: str
    stop_reason: str | None
    usage: list[int] | None
    latency: float | None
    tool_calls: NotRequired[list[dict[str, t.Any]]]
    """The tools the reply called, as OpenAI's API writes them (absent: none)."""


class Entry(TypedDict):
    request: dict[str, t.Any]
    reply: Reply
    item: NotRequired[str]
    """The test item that recorded it: `--rig-record all` replaces an item's recordings."""


class Where(t.NamedTuple):
    """The item (and sample) making calls: which cassette (its module's), and how calls
    are told apart."""

    nodeid: str
    module: Path
    sample: int | None


_where: contextvars.ContextVar[Where | None] = contextvars.ContextVar(
    "pytest_rigging_cassette_where", default=None
)


@contextlib.contextmanager
def at(where: Where) -> t.Iterator[None]:
    """Calls made within this block (and the tasks it starts) are the item's, for its
    sample `where.sample` (None: a free-form test's own calls)."""
    token = _where.set(where)
    try:
        yield
    finally:
        _where.reset(token)


def current() -> Where | None:
    """Whose calls are being made here (handed to the engine's loop with the work)."""
    return _where.get()


_replay_listener: contextvars.ContextVar[t.Callable[[], None] | None] = contextvars.ContextVar(
    "pytest_rigging_replay_listener", default=None
)


def replays_heard(
    listener: t.Callable[[], None],
) -> contextlib.AbstractContextManager[t.Callable[[], None] | None]:
    """Within this block (and the tasks it starts), `listener()` runs as a recording
    answers a call: a replay sends nothing, so `calls_heard` listeners never hear of it."""
    return in_force(_replay_listener, listener)


class Cassette:
    """One module's recordings: those read from its file, and those made in this run."""

    def __init__(self, path: Path, shown: str) -> None:
        self.path = path
        self.shown = shown
        self.existed = path.exists()
        self.error: str | None = None
        self.recorded: dict[str, Entry] = {}
        self.new: dict[str, Entry] = {}
        self._index: _Index | None = None
        self._explained: set[str] = set()
        self._lock = threading.Lock()
        if self.existed:
            try:
                self.recorded = _read(path, shown)
            except CassetteError as error:
                self.error = str(error)

    def miss(self, request: dict[str, t.Any], nodeid: str, mode: str) -> str:
        """Why `nodeid`'s call has no answer: which recording comes closest and, for the
        module's first `EXPLAINED` items that miss, how the call differs from it. Only
        replay-only modes miss, and they record nothing: `recorded` is all there is."""
        head = f"no recording in {self.shown} for this call (--rig-record {mode} replays only)"
        if not self.recorded:
            return f"{head}; the cassette holds no recording (record with --rig-record once)"
        with self._lock:
            if self._index is None:
                self._index = _Index(list(self.recorded.values()))
            index = self._index
            explained = nodeid in self._explained or len(self._explained) < EXPLAINED
            if explained:
                self._explained.add(nodeid)
        wanted = dict(_leaves(request))
        closest, leaves = index.closest(wanted, _facets(nodeid, request))
        if not explained:
            return (
                f"{head}; the closest recording is {_label(closest)} (how calls differ from "
                f"their closest recordings is shown for this module's first {EXPLAINED} "
                "items that missed)"
            )
        differences = _differences(wanted, leaves)
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        return f"{head}; the closest recording differs in {shown}"


class _Facets(t.NamedTuple):
    """What a call shares with its own recordings, each as JSON (a cassette edited by hand
    may hold anything there); the index masks them in this order."""

    item: str
    generator: str
    sample: str
    call: str
    """The call's rank among the sample's identical calls."""


def _facets(nodeid: str | None, request: dict[str, t.Any]) -> _Facets:
    return _Facets(
        _key(nodeid),
        _key(request.get("generator")),
        _key(request.get("sample")),
        _key(request.get("call")),
    )


_MASKS = list(itertools.product((True, False), repeat=len(_Facets._fields)))
"""Which facets a bucket of the index keeps: every combination."""
_LEVELS = [
    [mask for mask in _MASKS if sum(mask) == shared]
    for shared in range(len(_Facets._fields), -1, -1)
]
"""The combinations of facets, those of the most facets first."""


class _Index:
    """A cassette's recordings by every combination of their facets, so that a miss is
    compared only with the recordings that share the most facets with it (its own item's
    recording for the same sample and call, after a prompt edit), not with all of them."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.leaves = [dict(_leaves(entry["request"])) for entry in entries]
        self.buckets: dict[tuple[bool, ...], dict[tuple[str, ...], list[int]]] = {
            mask: {} for mask in _MASKS
        }
        for number, entry in enumerate(entries):
            facets = _facets(entry.get("item"), entry["request"])
            for mask, bucket in self.buckets.items():
                bucket.setdefault(_kept(facets, mask), []).append(number)

    def closest(self, wanted: dict[str, t.Any], facets: _Facets) -> tuple[Entry, dict[str, t.Any]]:
        """The recording nearest `wanted` (a call's leaves), and its leaves."""
        for level in _LEVELS:  # the last level, sharing nothing, holds every recording
            found = sorted(
                {n for mask in level for n in self.buckets[mask].get(_kept(facets, mask), ())}
            )
            if found:
                break
        best = min(found, key=lambda n: _distance(wanted, self.leaves[n]))
        return self.entries[best], self.leaves[best]


def _kept(facets: _Facets, mask: tuple[bool, ...]) -> tuple[str, ...]:
    return tuple(facet for facet, kept in zip(facets, mask, strict=True) if kept)


def _label(entry: Entry) -> str:
    """A recording as a person finds it: its item's (or, recorded without one, its
    generator's and what it asked), sample and call, numbered from 1 as samples are shown
    everywhere (the file indexes both from 0)."""
    request = entry["request"]
    sample, call = request.get("sample"), request.get("call")
    rank = (f"sample {sample_number(sample)}, " if isinstance(sample, int) else "") + (
        f"call {call + 1}" if isinstance(call, int) else f"call {call}"
    )
    item = entry.get("item")
    if item:
        return f"{item}'s {rank}"
    messages = request.get("messages")
    asked = (
        messages[-1].get("content")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict)
        else request.get("text")
    )
    return f"{request.get('generator')}'s {rank}, asking {_short(asked)}"


def _read(path: Path, shown: str) -> dict[str, Entry]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CassetteError(f"cannot read cassette {shown}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise CassetteError(
            f"cassette {shown} is not valid JSON at line {error.lineno}, column {error.colno}: "
            f"{error.msg} (fix it, or delete it to record again)"
        ) from None
    except UnicodeDecodeError:
        raise CassetteError(f"cassette {shown} is not UTF-8 text") from None
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(entries, list):
        raise CassetteError(f"{shown} is not a pytest-rigging cassette")
    if doc.get("version") != VERSION:
        raise CassetteError(
            f"cassette {shown} is of version {doc.get('version')!r}; this version reads "
            f"{VERSION} (record it again with --rig-record all)"
        )
    found: dict[str, Entry] = {}
    for index, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("request"), dict)
            and isinstance(entry.get("reply"), dict)
            and isinstance(entry["reply"].get("content"), str)
        ):
            raise CassetteError(f"cassette {shown}: entry {index} has no request or reply")
        found[_key(entry["request"])] = t.cast(Entry, entry)
    return found


def _recorded(message: Message) -> MessageDict:
    """A message as a cassette keys and stores it: images and audio by the SHA-256 of their
    data, so a cassette holds no media and a key stays short."""
    sent = message.to_dict()
    if isinstance(sent["content"], str):
        return sent
    parts = []
    for part in sent["content"]:
        if part.get("type") == "image_url" and part["image_url"]["url"].startswith("data:"):
            url = part["image_url"]["url"]
            part = {**part, "image_url": {**part["image_url"], "url": _digest(url)}}
        elif part.get("type") == "input_audio":
            part = {
                **part,
                "input_audio": {
                    **part["input_audio"],
                    "data": _digest(part["input_audio"]["data"]),
                },
            }
        parts.append(part)
    return {**sent, "content": parts}


def _digest(data: str) -> str:
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def _key(value: object) -> str:
    """JSON-semantic: key order and whitespace don't matter."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Tapes:
    """Every cassette of the run, and the interceptor that answers calls from them."""

    def __init__(self, mode: str, rootdir: Path) -> None:
        self.mode = mode
        self.rootdir = rootdir
        self.gate: t.Callable[[], None] | None = None
        """Called before each call that is made for real (the budget's), not for replays."""
        self._cassettes: dict[Path, Cassette] = {}
        self._ranks: dict[str, dict[tuple[int | None, str], int]] = {}
        self._lock = threading.Lock()

    def begin(self, nodeid: str) -> None:
        """The item starts (again, if a rerun plugin runs it twice): its calls rank from 0."""
        with self._lock:
            self._ranks.pop(nodeid, None)

    def cassette(self, module: Path) -> Cassette:
        path = module.parent / "cassettes" / f"{module.stem}.json"
        with self._lock:
            if path not in self._cassettes:
                try:
                    shown = path.relative_to(self.rootdir).as_posix()
                except ValueError:
                    shown = str(path)
                self._cassettes[path] = Cassette(path, shown)
            return self._cassettes[path]

    async def message(
        self,
        generator: Generator,
        messages: list[Message],
        params: GenerateParams,
        call: t.Callable[[], t.Awaitable[GeneratedMessage]],
    ) -> GeneratedMessage:
        asked = {"messages": [_recorded(m) for m in messages]}
        reply = await self._answer(generator, asked, params, call)
        generated = _generated(reply).to_generated_message()
        if "tool_calls" in reply:
            generated.message.tool_calls = [ToolCall.model_validate(c) for c in reply["tool_calls"]]
        return generated

    async def text(
        self,
        generator: Generator,
        text: str,
        params: GenerateParams,
        call: t.Callable[[], t.Awaitable[GeneratedText]],
    ) -> GeneratedText:
        return _generated(await self._answer(generator, {"text": text}, params, call))

    async def _answer(
        self,
        generator: Generator,
        asked: dict[str, t.Any],
        params: GenerateParams,
        call: t.Callable[[], t.Awaitable[GeneratedMessage | GeneratedText]],
    ) -> Reply:
        where = _where.get()
        if where is None:  # no item's: a fixture's, say
            if self.mode == "none":
                raise CassetteError(
                    "a model call outside a rig test's samples or body (a fixture's?) has no "
                    "cassette, and --rig-record none makes no call"
                )
            return _reply(await call(), None)
        cassette = self.cassette(where.module)
        if cassette.error is not None:
            raise CassetteError(cassette.error)
        request = self._request(generator, asked, params, where)
        key = _key(request)
        replay_only = self.mode == "none" or (self.mode == "once" and cassette.existed)
        if self.mode != "all":
            found = cassette.new.get(key) or cassette.recorded.get(key)
            if found is not None:
                replayed = _replay_listener.get()
                if replayed is not None:
                    replayed()
                return found["reply"]
            if replay_only:
                raise CassetteError(cassette.miss(request, where.nodeid, self.mode))
        if self.gate is not None:
            self.gate()
        started = time.perf_counter()
        generated = await call()
        reply = _reply(generated, time.perf_counter() - started)
        entry: Entry = {"request": request, "reply": _masked(reply), "item": where.nodeid}
        with self._lock:
            cassette.new[key] = _earlier(cassette.new.get(key), entry)
        return reply

    def _request(
        self, generator: Generator, asked: dict[str, t.Any], params: GenerateParams, where: Where
    ) -> dict[str, t.Any]:
        """The call as it is keyed and stored: secrets masked everywhere."""
        shaping = {k: v for k, v in params.to_dict().items() if k not in UNKEYED}
        request = {
            "generator": self._identity(generator),
            **asked,
            "params": shaping,
            "sample": where.sample,
        }
        masked = json.loads(redact(_key(request), known_secrets()))
        with self._lock:
            ranks = self._ranks.setdefault(where.nodeid, {})
            rank_key = (where.sample, _key(masked))
            masked["call"] = ranks.get(rank_key, 0)
            ranks[rank_key] = masked["call"] + 1
        return t.cast(dict[str, t.Any], masked)

    def _identity(self, generator: Generator) -> str:
        """The generator's identifier without params, config or secret, rooted
        (`rooted`), so that a run started from another directory finds its recordings."""
        return rooted(generator.to_identifier(GenerateParams(), with_config=False), self.rootdir)

    def recorded(self) -> dict[str, list[Entry]]:
        """This run's new entries, per cassette file."""
        return {str(path): list(c.new.values()) for path, c in self._cassettes.items() if c.new}


def _earlier(kept: Entry | None, new: Entry) -> Entry:
    """Of two recordings of one call by different items (two items whose judge was asked
    the same), the one whose item sorts first: the file is the same whichever item ran
    first, in whichever process."""
    if kept is None or new.get("item", "") < kept.get("item", ""):
        return new
    return kept


def rooted(identifier: str, rootdir: Path) -> str:
    """`identifier` with a model that is a file (a `scripted!` rules file) named by its path
    from the rootdir: the same whichever directory the run started from."""
    provider, bang, rest = identifier.partition("!")
    model, comma, tail = rest.partition(",")
    if bang and Path(model).is_file():
        with contextlib.suppress(ValueError):  # another drive: keep the path as it is
            model = Path(os.path.relpath(Path(model).resolve(), rootdir)).as_posix()
    return f"{provider}{bang}{model}{comma}{tail}"


def _generated(reply: Reply) -> GeneratedText:
    """A recorded reply as the generator gave it (as text: a chat takes it as a message)."""
    tokens = reply["usage"]
    return GeneratedText(
        text=reply["content"],
        stop_reason=reply["stop_reason"],
        usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1]) if tokens else None,
        latency=reply["latency"],
    )


def _reply(generated: GeneratedMessage | GeneratedText, timed: float | None) -> Reply:
    """What is kept of a reply; its latency the provider's own count, else as timed here."""
    content = (
        generated.message.content if isinstance(generated, GeneratedMessage) else generated.text
    )
    usage = generated.usage
    latency = generated.latency if generated.latency is not None else timed
    reply: Reply = {
        "content": content,
        "stop_reason": generated.stop_reason,
        "usage": [usage.input_tokens, usage.output_tokens] if usage is not None else None,
        # to the millisecond: finer would change at every recording of an unchanged suite
        "latency": round(latency, 3) if latency is not None else None,
    }
    if isinstance(generated, GeneratedMessage) and generated.message.tool_calls:
        reply["tool_calls"] = [call.model_dump() for call in generated.message.tool_calls]
    return reply


def _masked(reply: Reply) -> Reply:
    secrets = known_secrets()
    masked: Reply = {**reply, "content": redact(reply["content"], secrets)}
    if "tool_calls" in reply:
        masked["tool_calls"] = json.loads(redact(_key(reply["tool_calls"]), secrets))
    return masked


def _leaves(value: t.Any, path: str = "") -> t.Iterator[tuple[str, t.Any]]:
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _leaves(value[key], f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
        if not value:
            yield path, []
    else:
        yield path, value


def _distance(one: dict[str, t.Any], other: dict[str, t.Any]) -> float:
    """How far apart two calls' leaves are: one for each leaf that differs, less the share
    of it the two have in common at its start and end (a prompt edited in one place)."""
    differing = [k for k in one.keys() | other.keys() if one.get(k) != other.get(k)]
    return len(differing) - sum(_alike(str(one.get(k)), str(other.get(k))) for k in differing)


def _alike(one: str, other: str) -> float:
    """The share of the longer text that its common start and end with the other cover: a
    few slice comparisons, where difflib's ratio compares every part with every other."""
    start = _common_start(one, other)
    end = _common_start(one[start:][::-1], other[start:][::-1])
    return (start + end) / max(len(one), len(other), 1)


def _common_start(one: str, other: str) -> int:
    """The length of the longest common prefix, halving by slices (compared in C)."""
    low, high = 0, min(len(one), len(other))
    while low < high:
        middle = (low + high + 1) // 2
        if one[:middle] == other[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _differences(wanted: dict[str, t.Any], recorded: dict[str, t.Any]) -> list[str]:
    out = []
    for path in sorted(wanted.keys() | recorded.keys()):
        here, there = wanted.get(path, "(absent)"), recorded.get(path, "(absent)")
        if here != there:
            texts = isinstance(here, str) and isinstance(there, str)
            at = _common_start(here, there) if texts else 0
            out.append(f"{path}: {_short(here, at)} here, {_short(there, at)} recorded")
    return out


def _short(value: t.Any, parts_at: int = 0) -> str:
    """A value as a miss shows it: a long text from a little before `parts_at`, where it
    parts from the text it is compared with (a prompt edited in its middle), and cut."""
    if isinstance(value, str) and parts_at > 20:
        value = "..." + value[parts_at - 20 :]
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + '..."'


def write(recorded: t.Iterable[dict[str, list[Entry]]], mode: str) -> list[str]:
    """Add new entries (from every process that recorded) to their cassette files, each
    written whole or not at all; under `all`, an item that recorded replaces what it had
    recorded before. A file that can't be read is left as it is. The problems, as lines."""
    by_path: dict[str, dict[str, Entry]] = {}
    for part in recorded:
        for name, made in part.items():
            entries = by_path.setdefault(name, {})
            for entry in made:
                key = _key(entry["request"])
                entries[key] = _earlier(entries.get(key), entry)
    problems = []
    for path_text, entries in sorted(by_path.items()):
        path = Path(path_text)
        try:
            existing = _read(path, path_text) if path.exists() else {}
        except CassetteError as error:
            problems.append(f"{error}: its new recordings were not written")
            continue
        if mode == "all":
            again = {e.get("item") for e in entries.values()}
            existing = {k: e for k, e in existing.items() if e.get("item") not in again}
        merged = {**existing, **entries}
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "entries": [merged[key] for key in sorted(merged)],
        }
        try:
            write_json(path, doc, sort_keys=True)  # the same bytes on every system
        except OSError as error:
            problems.append(f"cannot write cassette {path_text}: {error.strerror}")
    return problems


def read_tapes(config: pytest.Config) -> Tapes | None:
    """`--rig-record MODE` (or ini `rig_record`): the run's cassettes; None without it."""
    setting = given(config, "record")
    if setting is None:
        return None
    mode, where = setting.value.strip(), setting.where
    if mode not in MODES:
        raise pytest.UsageError(f"{where}: expected one of {', '.join(MODES)}, got {mode!r}")
    return Tapes(mode, config.rootpath)


def dump(folder: Path, worker: str, recorded: dict[str, list[Entry]]) -> None:
    """An xdist worker's new recordings, for the controller to write."""
    (folder / f"cassettes-{worker}.json").write_text(json.dumps(recorded), encoding="utf-8")


def dumped(folder: Path) -> list[dict[str, list[Entry]]]:
    """What the workers dumped."""
    files = sorted(folder.glob("cassettes-*.json"))
    return [json.loads(path.read_text(encoding="utf-8")) for path in files]
