"""A worker's journal: what survives it, read back whatever state it was left in."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest

import pytest_rigging as rg
from pytest_rigging._concurrency import calls_heard
from pytest_rigging.error import ExhaustedMaxRoundsError, GenerationError
from pytest_rigging.model import Answer
from pytest_rigging.plugin import RiggingWarning
from pytest_rigging.plugin.journal import Journal, salvage, write_requeued
from pytest_rigging.plugin.matrix import build_cells
from pytest_rigging.plugin.stats import Recorder
from tests.conftest import FakeGenerator


async def test_a_journal_reads_back_what_finished_and_what_was_sent(tmp_path: Path) -> None:
    generator = FakeGenerator(model="cell")
    [cell] = build_cells(["echo!cell"], [rg.GenerateParams()])
    journal = Journal(tmp_path, "gw0")
    recorder = Recorder(journal)
    chat = await generator.chat("<answer>x</answer>").until_parsed_as(Answer).run()
    journal.sent("t::a", 0)
    recorder.add("t::a", [chat], True, cell, generator, 0)
    journal.sent("t::a", 1)  # its answer never came: the worker died
    recorder.add("t::free", [chat], False, cell, generator, None)  # a free-form test's own
    journal.close()
    with open(tmp_path / "gw0.journal", "ab") as torn:  # killed in the middle of a write
        torn.write(b"\x40\x00\x00\x00partial")

    found = salvage(tmp_path)
    assert found["t::a"].sent == {0: "gw0", 1: "gw0"}
    assert list(found["t::a"].done) == [0]
    [(kept, own)] = pickle.loads(found["t::a"].done[0].chats)
    assert own and kept.generator is None and kept.last.content == "<answer>x</answer>"
    assert [r["outcome"] for r in found["t::a"].records] == ["first_try"]
    assert found["t::free"].done == {} and [r["sample"] for r in found["t::free"].records] == [None]
    assert set(salvage(tmp_path, {"t::free"})) == {"t::free"}


async def test_chats_that_cannot_be_pickled_keep_their_records(tmp_path: Path) -> None:
    generator = FakeGenerator(model="cell")
    [cell] = build_cells(["echo!cell"], [rg.GenerateParams()])
    recorder = Recorder(Journal(tmp_path, "gw1"))
    chat = (await generator.chat("hi").run()).meta(callback=lambda: None)
    recorder.add("t::a", [chat], False, cell, generator, 0)
    recorder.journal.close()  # type: ignore[union-attr]
    done = salvage(tmp_path)["t::a"].done[0]
    assert done.chats is None and len(done.records) == 1


async def test_only_each_items_latest_attempt_counts(tmp_path: Path) -> None:
    """A rerun's attempt replaces the first one's, whichever worker's journal holds it."""
    generator = FakeGenerator(model="x")
    chat = await generator.chat("hi").run()
    first, second = Journal(tmp_path, "gw0"), Journal(tmp_path, "gw10")
    record = {"outcome": "error"}
    first.start("t::a")
    for sample in (0, 1):
        first.sent("t::a", sample)
        first.done("t::a", sample, [record], [chat], generator)  # type: ignore[list-item]
    first.start("t::a")  # a rerun: sample 0 finishes again, sample 1 is in flight
    first.sent("t::a", 0)
    first.done("t::a", 0, [record, record], [chat], generator)  # type: ignore[list-item]
    first.sent("t::a", 1)
    first.done("t::a", 2, [], [], generator)  # cancelled before it finished: not done
    first.close()
    found = salvage(tmp_path)["t::a"]
    assert (sorted(found.done), found.sent, len(found.records)) == ([0], {0: "gw0", 1: "gw0"}, 2)
    [lost] = found.in_flight({"model": "m", "label": "m", "params": "{}", "cell": "c"})
    assert lost["sample"] == 2  # index 1: numbered from 1, as everywhere it is shown
    assert (
        lost["error"]
        == "sample 2 lost with xdist worker gw0, which crashed while its call was in flight"
    )
    second.start("t::a")  # taken back by another worker, later
    second.close()
    assert salvage(tmp_path)["t::a"].sent == {}


def test_requeued_items_are_read_once_per_change(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "gw0")
    assert journal.requeued() == frozenset()
    write_requeued(tmp_path, ["t::b"])
    assert journal.requeued() == {"t::b"}
    write_requeued(tmp_path, ["t::c"])
    assert journal.requeued() == {"t::b", "t::c"}


def test_a_journal_that_cannot_be_written_warns_once_and_the_run_goes_on(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "gone", "gw0")
    with pytest.warns(RiggingWarning, match=r"cannot write the worker journal .*gone/gw0\.journal"):
        journal.sent("t::a", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        journal.sent("t::a", 1)  # off now: no second warning


async def test_a_call_listener_that_fails_gives_its_slot_back() -> None:
    generator = FakeGenerator(model="m", max_connections=1)

    def broken() -> None:
        raise OSError("disk full")

    with calls_heard(broken), pytest.raises(OSError, match="disk full"):
        await generator.chat("hi").run()
    assert (await generator.chat("again").run()).last.content  # the one slot is free


def test_errors_that_chats_carry_survive_pickling() -> None:
    exhausted = pickle.loads(pickle.dumps(ExhaustedMaxRoundsError(3, "no <answer>")))
    assert (exhausted.max_rounds, str(exhausted)) == (
        3,
        "Exhausted max rounds (3) while parsing: no <answer>",
    )
    failed = pickle.loads(pickle.dumps(GenerationError("503", reason="server", latency=1.5)))
    assert (str(failed), failed.reason, failed.latency) == ("503", "server", 1.5)


async def test_calls_heard_hears_each_call_as_it_goes_out() -> None:
    generator = FakeGenerator(model="m")
    heard: list[int] = []
    with calls_heard(lambda: heard.append(len(heard))):
        await generator.chat("hi").run_many(3)
    await generator.chat("unheard").run()
    assert heard == [0, 1, 2]
