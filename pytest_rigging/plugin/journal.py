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

One file per worker, appended in length-prefixed frames with one `write` each, so that a
worker killed mid-write leaves at most a torn last frame, which readers ignore. The folder
is private to the run (`tempfile.mkdtemp`) and removed with it.
"""

from __future__ import annotations

import json
import pickle
import struct
import threading
import typing as t
from pathlib import Path

from pytest_rigging.plugin.records import CellRecord, ChatRecord

if t.TYPE_CHECKING:
    from pytest_rigging._result import Result
    from pytest_rigging.generator.base import Generator

_HEADER = struct.Struct("<I")
REQUEUED = "requeued.json"


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


class Salvage(t.NamedTuple):
    """What the journals hold of one item: which worker sent which sample, and what
    finished, by sample (a later frame for the same sample wins: a rerun's)."""

    sent: dict[int, str]
    done: dict[int, Done]
    free: list[ChatRecord]

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
                "sample": sample,
                "outcome": "error",
                "recovery_rounds": 0,
                "error_kind": "infrastructure",
                "error": lost_message(sample, worker),
                "input_tokens": 0,
                "output_tokens": 0,
                "latency": 0.0,
                "generator_id": cell["model"],
                "conversation": [],
            }
            for sample, worker in sorted(self.sent.items())
            if sample not in self.done
        ]


def lost_message(sample: int, worker: str, *, in_flight: bool = True) -> str:
    """Why a sample has no answer although its call went out."""
    why = (
        "which crashed while its call was in flight"
        if in_flight
        else "which crashed; its chats could not be carried over (they don't pickle)"
    )
    return f"sample {sample} lost with xdist worker {worker}, {why}"


class Journal:
    """One worker's journal; written from pytest's thread and the engine's loop."""

    def __init__(self, folder: Path, worker: str) -> None:
        self.folder = folder
        self.path = folder / f"{worker}.journal"
        self._lock = threading.Lock()
        self._file: t.BinaryIO | None = None
        self._requeued: tuple[float, dict[str, str]] = (0.0, {})

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
        worker can hand them to the test; None when they can't be pickled."""
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

    def _write(self, frame: Sent | Done) -> None:
        data = pickle.dumps(tuple(frame), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._file is None:
                self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 (closed in close)
            self._file.write(_HEADER.pack(len(data)) + data)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def requeued(self) -> dict[str, str]:
        """Items the controller took back from a crashed worker, and which worker that
        was; re-read only when the file changes (a stat per test function otherwise)."""
        try:
            stamp = (self.folder / REQUEUED).stat().st_mtime
        except OSError:
            return {}
        if stamp != self._requeued[0]:
            self._requeued = (stamp, json.loads((self.folder / REQUEUED).read_text()))
        return self._requeued[1]


def write_requeued(folder: Path, items: dict[str, str]) -> None:
    """On the controller: add `items` (node id: the crashed worker) to the requeued list,
    atomically (workers read it while it changes)."""
    path = folder / REQUEUED
    known = json.loads(path.read_text()) if path.exists() else {}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**known, **items}))
    temporary.replace(path)


def salvage(folder: Path, nodeids: t.Collection[str] | None = None) -> dict[str, Salvage]:
    """Everything the journals in `folder` hold, by item (only `nodeids`' if given)."""
    found: dict[str, Salvage] = {}
    for path in sorted(folder.glob("*.journal")):
        worker = path.stem
        for frame in _frames(path):
            if nodeids is not None and frame.nodeid not in nodeids:
                continue
            entry = found.setdefault(frame.nodeid, Salvage({}, {}, []))
            if isinstance(frame, Sent):
                entry.sent[frame.sample] = worker
            elif frame.sample is None:
                entry.free.extend(frame.records)
            else:
                entry.done[frame.sample] = frame
    return found


def _frames(path: Path) -> t.Iterator[Sent | Done]:
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
            fields = pickle.loads(data[offset : offset + size])
        except Exception:
            return
        offset += size
        yield Sent(*fields) if len(fields) == 2 else Done(*fields)
