"""`--rig-inspect-log DIR`: one inspect_ai eval log per test function and cell, each with
every sample, read back by inspect_ai's own reader when it is installed (the dev extra
installs it on Python 3.11+)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pytest_rigging.plugin.cli import main
from pytest_rigging.plugin.inspect_log import eval_logs, write_logs
from pytest_rigging.plugin.records import ChatRecord, ItemRecord, ReportDocument, RunSettings
from tests.conftest import INTERRUPTED_ON_THIRD, ONE_ITEM, chat_record, ini

SUITE = """
import os
import pytest
from pytest_rigging.model import Answer

@pytest.fixture
def rig_pipeline(rig_generator, question):
    asked = f"{question} {os.environ['RIG_INSPECT_TOKEN']}"
    return rig_generator.chat(asked).until_parsed_as(Answer, max_rounds=2)

@pytest.mark.rig_cases("cases.jsonl", id="name")
@pytest.mark.rig(runs=3, min_pass=1)
def test_answer(rig_chat, question):
    said = rig_chat.last.parse(Answer).content
    assert said == "ok", f"said {said}"

@pytest.mark.parametrize("question", ["plain"])
def test_plain(rig_chat, question):
    pass
"""

MODELS = {
    # case a: right, wrong, right; case b: recovers; the plain test: right
    "steady": (
        '[[rules]]\nmatch = "system-error"\non = "conversation"\nreply = "<answer>ok</answer>"\n'
        '\n[[rules]]\nmatch = "^first"\nreplies = ["<answer>ok</answer>", "<answer>no</answer>"]\n'
        '\n[[rules]]\nmatch = "^second"\nreply = "no tags"\n'
        '\n[[rules]]\nmatch = "."\nreply = "<answer>ok</answer>"\n'
    ),
    "never": 'default = "no tags at all"\n',
}
SECRET_PARAM = "sk-inspect-param-31337"
SECRET_TOKEN = "inspect-token-value-5151"


def run_suite(pytester: pytest.Pytester, *args: str, folder: str = "logs") -> pytest.RunResult:
    ini(pytester)
    pytester.makefile(
        ".jsonl",
        cases='{"name": "a", "question": "first"}\n{"name": "b", "question": "second"}\n',
    )
    pytester.makepyfile(test_suite=SUITE)
    for name, rules in MODELS.items():
        (pytester.path / f"{name}.toml").write_text(rules)
    return pytester.runpytest(
        "--rig-models", "scripted!steady.toml,scripted!never.toml",
        "--rig-params", f"extra.api_key={SECRET_PARAM}",
        "--rig-report", "r.json", "--rig-inspect-log", folder, "-p", "no:randomly", *args,
    )  # fmt: skip


def logs_of(folder: Path) -> dict[str, dict[str, object]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(folder.iterdir())}


def timeless(folder: Path) -> dict[str, dict[str, object]]:
    """The logs in `folder` by their names but for the run's time, without what tells one
    run from another (its time and ids, how long calls took)."""
    logs = {}
    for name, log in logs_of(folder).items():
        for key in ("created", "run_id", "eval_id"):
            del log["eval"][key]
        del log["stats"]["started_at"], log["stats"]["completed_at"]
        for sample in log["samples"]:
            del sample["total_time"]
        logs[name.split("_", 1)[1]] = log
    return logs


def within(ours: object, theirs: object, where: str = "log") -> None:
    """Everything we wrote is in what inspect made of it: no field it doesn't know (which
    its models would drop without a word), no value it changed."""
    if isinstance(ours, dict):
        assert isinstance(theirs, dict), where
        for key, value in ours.items():
            assert key in theirs, f"{where}.{key} is not in inspect's log format"
            within(value, theirs[key], f"{where}.{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(ours) == len(theirs), where
        for index, (mine, its) in enumerate(zip(ours, theirs, strict=True)):
            within(mine, its, f"{where}[{index}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} read back as {theirs!r}"


def read_back(folder: Path) -> None:
    """Each log in `folder` read by inspect_ai as `inspect view` reads it: listed by its
    file name, its header streamed, the whole log validated by inspect's own models."""
    inspect_log = pytest.importorskip("inspect_ai.log")
    listed = inspect_log.list_eval_logs(str(folder))
    assert len(listed) == len(list(folder.iterdir()))
    for info in listed:
        log = inspect_log.read_eval_log(info)
        assert inspect_log.read_eval_log(info, header_only=True).eval == log.eval
        assert info.task.replace("-", "_") == log.eval.task.replace("::", "__")
        ours = json.loads(Path(info.name.removeprefix("file://")).read_text())
        within(ours, log.model_dump(mode="json", exclude_none=True))


@pytest.mark.plugin
def test_a_log_per_test_function_and_cell_with_every_sample(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 models x (2 cases x 3 samples, and 1 item of 1): a log for each test function and
    model, named as inspect names its own; each sample with its parse outcome and check as
    the JSON report has them, a failed check's message as its explanation; no secret (of
    a params set, or in a conversation) in any log; and inspect_ai reads every log."""
    monkeypatch.setenv("RIG_INSPECT_TOKEN", SECRET_TOKEN)
    result = run_suite(pytester)
    result.assert_outcomes(passed=4, failed=2)
    logs = logs_of(pytester.path / "logs")
    stamp = r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-00-00"
    for name in logs:
        assert re.fullmatch(
            rf"{stamp}_test-suite.py--test-(answer|plain)_[0-9a-f]{{22}}\.json", name
        )
    cells = sorted((log["eval"]["task"], log["eval"]["model"]) for log in logs.values())
    assert cells == [
        (f"test_suite.py::test_{name}", f"scripted!{model}.toml")
        for name in ("answer", "plain")
        for model in ("never", "steady")
    ]
    report = json.loads((pytester.path / "r.json").read_text())
    chats = {
        (item["nodeid"], chat["sample"]): chat for item in report["items"] for chat in item["chats"]
    }
    outcomes = set()
    for log in logs.values():
        spec = log["eval"]
        assert spec["metadata"]["params"] == "extra.api_key=***"
        expected = [(case, n) for case in "ab" for n in (1, 2, 3)]
        if spec["task"].endswith("test_plain"):
            expected = [("plain", 1)]
        assert [(s["id"], s["epoch"]) for s in log["samples"]] == expected
        for sample in log["samples"]:
            chat = chats[(sample["metadata"]["nodeid"], sample["epoch"])]
            assert chat["model"] == spec["model"]
            assert sample["messages"] == chat["conversation"]
            parse, check = sample["scores"]["parse"], sample["scores"]["check"]
            assert (parse["answer"], check["answer"]) == (chat["outcome"], chat["check"])
            assert check.get("explanation") == chat["check_message"]
            outcomes.add((parse["value"], parse["answer"], check["value"], check["answer"]))
    assert outcomes == {
        ("C", "first_try", "C", "passed"),
        ("C", "first_try", "I", "failed"),
        ("C", "recovered", "C", "passed"),
        ("I", "exhausted", "I", "failed"),
        ("I", "exhausted", "C", "passed"),  # test_plain passes whatever the model says
    }
    text = "".join(path.read_text() for path in (pytester.path / "logs").iterdir())
    assert SECRET_PARAM not in text and SECRET_TOKEN not in text
    assert "said no" in text
    read_back(pytester.path / "logs")


def test_the_logs_are_the_same_under_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller writes the logs from the records its workers sent: the same logs
    (but for the run's time and ids) in the same files as a single process writes."""
    monkeypatch.setenv("RIG_INSPECT_TOKEN", SECRET_TOKEN)
    run_suite(pytester, folder="serial").assert_outcomes(passed=4, failed=2)
    run_suite(pytester, "-n", "2", folder="xdist").assert_outcomes(passed=4, failed=2)

    serial = timeless(pytester.path / "serial")
    assert len(serial) == 4
    assert timeless(pytester.path / "xdist") == serial


def test_merged_shards_give_the_logs_of_one_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`merge --inspect-log DIR` writes from the shards' reports the logs one run writes; a
    folder it can't write is an error naming it (exit 2)."""
    monkeypatch.setenv("RIG_INSPECT_TOKEN", SECRET_TOKEN)
    run_suite(pytester, folder="whole")
    for shard in ("1/2", "2/2"):
        report = f"s{shard[0]}.json"
        run_suite(pytester, "--rig-shard", shard, "--rig-report", report, folder="unused")
    shards = [str(pytester.path / f"s{n}.json") for n in (1, 2)]
    assert main(["merge", *shards, "--inspect-log", str(pytester.path / "merged")]) == 0
    assert timeless(pytester.path / "merged") == timeless(pytester.path / "whole")
    capsys.readouterr()
    assert main(["merge", *shards, "--inspect-log", str(pytester.path / "r.json")]) == 2
    assert (
        capsys.readouterr().err == f"error: cannot write {pytester.path / 'r.json'}: File exists\n"
    )


@pytest.mark.plugin
def test_a_file_in_place_of_the_folder_is_a_warning_naming_it(pytester: pytest.Pytester) -> None:
    ini(pytester, "rig_inspect_log = taken")
    pytester.makepyfile(ONE_ITEM)
    (pytester.path / "taken").write_text("")
    result = pytester.runpytest("-W", "always::UserWarning")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*RiggingWarning: cannot write ini rig_inspect_log */taken: [[]Errno 17] File exists: *"]
    )
    assert (pytester.path / "taken").read_text() == ""


def test_a_blank_folder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest("--rig-inspect-log", " ")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [
        "ERROR: --rig-inspect-log: ' ' is not a folder path"
    ]


def test_an_interrupted_run_is_a_cancelled_log_of_what_finished(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(INTERRUPTED_ON_THIRD)
    result = pytester.runpytest_subprocess("--rig-inspect-log", "logs", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    [log] = logs_of(pytester.path / "logs").values()
    assert log["status"] == "cancelled"
    assert [(s["id"], s["metadata"]["item_outcome"]) for s in log["samples"]] == [
        ("one", "passed"),
        ("three", "interrupted"),
        ("two", "passed"),
    ]
    assert [s.get("error", {}).get("message") for s in log["samples"]] == [
        None,
        "interrupted: the run stopped before the test checked this sample",
        None,
    ]
    assert log["results"]["completed_samples"] == 2


def chat(sample: int | None, reply: str, **fields: object) -> ChatRecord:
    conversation = [("system", "be brief"), ("user", "question"), ("assistant", reply)]
    return chat_record(sample, conversation, "openai/m", "m", **{"cost": 0.25, **fields})


def item(name: str, outcome: str, chats: list[ChatRecord], **fields: object) -> ItemRecord:
    record: ItemRecord = {
        "nodeid": f"tests/test_x.py::{name}",
        "model": "openai/m",
        "label": "m",
        "params": "{}",
        "cell": "m",
        "outcome": outcome,
        "samples": None,
        "duration": 1.0,
        "chats": chats,
    }
    record.update(fields)  # type: ignore[typeddict-item]
    return record


NO = "no <answer>"
ITEMS = [
    item(
        "test_a[one-m]",
        "failed",
        [
            chat(1, "ok"),
            chat(2, "no", check="failed", check_message="AssertionError: said no"),
            chat(3, "<answer>", outcome="recovered", recovery_rounds=1),
            chat(4, "", outcome="exhausted", recovery_rounds=2, error=NO),
            chat(5, "", outcome="error", error="HTTP 500", check=None, cost=None),
            chat(6, "ok", check="error", check_message="GenerationError: the judge is down"),
        ],
        case={"id": "one", "hash": "abc", "source": "cases.jsonl", "dataset": "def"},
    ),
    item("test_a[two-m]", "passed", [chat(None, "a lone \udc80 surrogate </script>")]),
    item("test_a[skipped-m]", "skipped", []),
    item("test_b[m]", "passed", [chat(1, "x", check=None), chat(2, "y", check=None)]),
    item("test_c[m]", "error", [chat(1, "x")], lost="lost with xdist worker gw0, which crashed"),
]


def test_every_outcome_as_scores_and_errors() -> None:
    """Parse outcomes and checks as inspect's C/I scores with what they were as the answer;
    an infrastructure error (the call's, the checks', a lost worker's) as the sample's
    error, not a score; a sample nothing judged alone (`rig_chats`) has no check score; an
    item with no sample finished has none; each score's accuracy over what it scored."""
    began = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    logs = eval_logs(ITEMS, began, began, interrupted=False)
    assert [log["eval"]["task"] for log in logs] == [
        "test_x.py::test_a",
        "test_x.py::test_b",
        "test_x.py::test_c",
    ]
    a, b, c = logs

    def scored(score: dict[str, str] | None) -> tuple[str, ...] | None:
        return None if score is None else tuple(score.values())

    shown = [
        (
            s["id"],
            s["epoch"],
            scored(s["scores"].get("parse")),
            scored(s["scores"].get("check")),
            s.get("error", {}).get("message"),
        )
        for s in a["samples"]
    ]
    first_try = ("C", "first_try", "parsed on the first try")
    passed = ("C", "passed")
    assert shown == [
        ("one", 1, first_try, passed, None),
        ("one", 2, first_try, ("I", "failed", "AssertionError: said no"), None),
        ("one", 3, ("C", "recovered", "parsed after 1 recovery round"), passed, None),
        ("one", 4, ("I", "exhausted", f"not parsed after 2 recovery rounds: {NO}"), passed, None),
        ("one", 5, None, None, "HTTP 500"),
        ("one", 6, first_try, None, "GenerationError: the judge is down"),
        ("two", 1, first_try, passed, None),
    ]  # fmt: skip
    assert a["samples"][0]["metadata"]["case"]["hash"] == "abc"
    assert a["samples"][0]["model_usage"] == {
        "openai/m": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5, "total_cost": 0.25}
    }
    assert a["stats"]["model_usage"]["openai/m"]["total_tokens"] == 35
    assert a["samples"][-1]["output"]["choices"][0]["message"]["content"] == (
        "a lone \\udc80 surrogate </script>"
    )
    results = a["results"]["scores"]
    assert [
        (s["name"], s["scored_samples"], s["metrics"]["accuracy"]["value"]) for s in results
    ] == [
        ("parse", 6, 5 / 6),
        ("check", 5, 4 / 5),
    ]
    assert a["results"]["completed_samples"] == 5
    assert [(s["id"], s["epoch"], list(s["scores"])) for s in b["samples"]] == [
        ("test_b", 1, ["parse"]),
        ("test_b", 2, ["parse"]),
    ]
    assert b["results"]["scores"][1]["metrics"] == {}
    assert c["samples"][0]["error"]["message"] == "lost with xdist worker gw0, which crashed"


def test_every_outcome_reads_back_in_inspect(tmp_path: Path) -> None:
    settings: RunSettings = {"started": "2026-01-02T03:04:05+00:00", "interrupted": True}
    doc: ReportDocument = {
        "version": 2,
        "settings": settings,
        "models": [],
        "cells": [],
        "gates": [],
        "items": ITEMS,
    }
    written = write_logs(tmp_path, doc)
    assert [path.name.split("_")[:2] for path in written] == [
        ["2026-01-02T03-04-05-00-00", f"test-x.py--test-{name}"] for name in "abc"
    ]
    read_back(tmp_path)
