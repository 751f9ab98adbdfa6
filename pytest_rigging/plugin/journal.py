"""What an xdist worker leaves on disk, so that nothing it finished dies with it.

A worker's figures reach the controller on its test reports, item by item; what it holds
for items not reported yet is lost when it stops abruptly: at Ctrl-C (the controller
stops listening before its workers can hand anything over) or when it crashes (kill -9,
out of memory). So each worker appends to a journal, in the folder the controller handed
out, each sample's first model call as it goes out and each finished sample (its report
records, and its chats) as it lands. Then:

- the controller reads the journals at the end of an interrupted run for items that never
  reported, and when a worker crashes, for the item it was running;
- a worker handed the rest of a crashed worker's test function (the controller lists those
  items in `requeued.json`) takes the samples that finished there from the journal, and
  never sends again a sample whose call went out there (its answer died with the worker:
  that sample is an error, named as lost).

Each attempt at an item (a rerun plugin's too, or the attempt of the worker that took it
back) opens with a `Start` frame and holds all that attempt did, replayed samples
included, so that readers keep the latest attempt only. One file per worker, appended in
length-prefixed frames, so that a worker killed mid-write leaves at most a torn last frame,
which readers ignore. The folder is private to the run (`tempfile.mkdtemp`) and removed
with it. Journaling is best effort: a write that fails turns the journal off with a
warning, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import struct
import threading
import time
import typing as t
import warnings
from pathlib import Path

from pytest_rigging.plugin.records import CellRecord, ChatRecord, sample_number

if t.TYPE_CHECKING:
    from pytest_rigging._result import Result
    from pytest_rigging.generator.base import Generator

_HEADER = struct.Struct("<I")
REQUEUED = "requeued.json"


class Start(t.NamedTuple):
    """An attempt at item `nodeid` begins (`stamp`: `time.time_ns()`, to order attempts
    written by different workers)."""

    nodeid: str
    stamp: int


class Sent(t.NamedTuple):
    """Sample `sample` of item `nodeid` made its first model call."""

    nodeid: str
    sample: int


class Done(t.NamedTuple):
    """A finished sample (`sample` is None for chats a free-form test ran itself): its
    report records and, for matrix samples, its chats pickled as (chat, own) pairs."""

    nodeid: str
    sample: int | None
    records: list[ChatRecord]
    chats: bytes | None

    def restored(self) -> list[tuple[Result, bool]]:
        """The (chat, own) pairs, generator-less; none when they couldn't be pickled, or
        can't be rebuilt here (an exception a user's code put in a chat, say)."""
        try:
            return pickle.loads(self.chats) if self.chats else []
        except Exception:
            return []


Frame = Start | Sent | Done
_KINDS: dict[str, type[Start] | type[Sent] | type[Done]] = {
    "start": Start,
    "sent": Sent,
    "done": Done,
}
_TAGS = {kind: tag for tag, kind in _KINDS.items()}


@dataclasses.dataclass
class Salvage:
    """What the journals hold of one item's latest attempt: which worker sent which
    sample, and what finished, by sample."""

    stamp: int = -1
    sent: dict[int, str] = dataclasses.field(default_factory=dict)
    done: dict[int, Done] = dataclasses.field(default_factory=dict)
    free: list[ChatRecord] = dataclasses.field(default_factory=list)

    @property
    def records(self) -> list[ChatRecord]:
        return [r for _, d in sorted(self.done.items()) for r in d.records] + self.free

    def in_flight(self, cell: CellRecord) -> list[ChatRecord]:
        """The samples whose call went out but never finished, as errored chats."""
        return [
            {
                "model": cell["model"],
                "label": cell["label"],
                "params": cell["params"],
                "sample": sample_number(sample),
                "outcome": "error",
                "recovery_rounds": 0,
                "error_kind": "infrastructure",
                "error": lost_message(sample, worker),
                "input_tokens": 0,
                "output_tokens": 0,
                "latency": 0.0,
                "generator_id": cell["model"],
                "conversation": [],
                "check": None,
                "check_message": None,
            }
            for sample, worker in sorted(self.sent.items())
            if sample not in self.done
        ]


def lost_message(sample: int, worker: str, *, in_flight: bool = True) -> str:
    """Why sample `sample` (its index) has no answer although its call went out."""
    why = (
        "which crashed while its call was in flight"
        if in_flight
        else "which crashed; its chats could not be carried over"
    )
    return f"sample {sample_number(sample)} lost with xdist worker {worker}, {why}"


class Journal:
    """One worker's journal; written from pytest's thread and the engine's loop."""

    def __init__(self, folder: Path, worker: str) -> None:
        self.folder = folder
        self.path = folder / f"{worker}.journal"
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._broken = False
        self._requeued: tuple[tuple[int, int], frozenset[str]] = ((0, 0), frozenset())

    def start(self, nodeid: str) -> None:
        self._write(Start(nodeid, time.time_ns()))

    def sent(self, nodeid: str, sample: int) -> None:
        self._write(Sent(nodeid, sample))

    def done(
        self,
        nodeid: str,
        sample: int | None,
        records: list[ChatRecord],
        chats: t.Sequence[Result],
        generator: Generator,
    ) -> None:
        """Record a finished sample. Its chats (matrix samples only) are kept pickled
        without their generator (`own` says whether it was the cell's), so that another
        worker can hand them to the test; None when they can't be pickled. A sample
        cancelled before it finished (no chats) is not done."""
        if not chats:
            return
        blob = None
        if sample is not None:
            kept = [
                (c.model_copy(update={"generator": None}), c.generator is generator) for c in chats
            ]
            try:
                blob = pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # metadata a user put there, say: the records still count
                blob = None
        self._write(Done(nodeid, sample, records, blob))

    def replay(self, frame: Done) -> None:
        """Another worker's finished sample, taken over: part of this attempt now."""
        self._write(frame)

    def _write(self, frame: Frame) -> None:
        data = pickle.dumps((_TAGS[type(frame)], *frame), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(data)) + data)
        with self._lock:
            if self._broken:
                return
            try:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as error:
                self._broken = True
                from pytest_rigging.plugin.state import RiggingWarning

                warnings.warn(
                    RiggingWarning(
                        f"cannot write the worker journal {self.path} ({error}): what this "
                        "worker finishes is lost if it is interrupted or crashes"
                    ),
                    stacklevel=1,
                )

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def requeued(self) -> frozenset[str]:
        """Items the controller took back from a crashed worker; re-read only when the file
        is replaced (a stat per test function otherwise)."""
        try:
            status = (self.folder / REQUEUED).stat()
        except OSError:
            return frozenset()
        stamp = (status.st_ino, status.st_mtime_ns)
        if stamp != self._requeued[0]:
            items = json.loads((self.folder / REQUEUED).read_text())
            self._requeued = (stamp, frozenset(items))
        return self._requeued[1]


def write_requeued(folder: Path, items: t.Iterable[str]) -> None:
    """On the controller: add `items` to the requeued list, atomically (workers read it
    while it changes)."""
    path = folder / REQUEUED
    known = json.loads(path.read_text()) if path.exists() else []
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(sorted({*known, *items})))
    temporary.replace(path)


def salvage(folder: Path, nodeids: t.Collection[str] | None = None) -> dict[str, Salvage]:
    """What the journals in `folder` hold of each item's latest attempt (of `nodeids`'
    only, if given)."""
    found: dict[str, Salvage] = {}
    for path in folder.glob("*.journal"):
        worker = path.stem
        current: dict[str, Salvage] = {}  # this file's attempt in progress, per item
        for frame in _frames(path):
            if nodeids is not None and frame.nodeid not in nodeids:
                continue
            if isinstance(frame, Start):
                current[frame.nodeid] = Salvage(stamp=frame.stamp)
                continue
            entry = current.setdefault(frame.nodeid, Salvage())
            if isinstance(frame, Sent):
                entry.sent[frame.sample] = worker
            elif frame.sample is None:
                entry.free.extend(frame.records)
            else:
                entry.done[frame.sample] = frame
        for nodeid, entry in current.items():
            if nodeid not in found or entry.stamp > found[nodeid].stamp:
                found[nodeid] = entry
    return found


def _frames(path: Path) -> t.Iterator[Frame]:
    """The frames of one journal; a torn or unreadable tail (a worker killed mid-write)
    ends it."""
    data = path.read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        (size,) = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        if offset + size > len(data):
            return
        try:
            tag, *fields = pickle.loads(data[offset : offset + size])
            frame = _KINDS[tag](*fields)
        except Exception:
            return
        offset += size
        yield frame
