"""`--rig-inspect-log DIR`: one inspect_ai eval log per test function and cell, each with
every sample, read back by inspect_ai's own reader when it is installed (the dev extra
installs it on Python 3.11+)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pytest_rigging.plugin.inspect_log import eval_logs, write_logs
from pytest_rigging.plugin.records import ChatRecord, ItemRecord
from tests.conftest import ini

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


def run_suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
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
        "--rig-report", "r.json", "--rig-inspect-log", "logs", "-p", "no:randomly", *args,
    )  # fmt: skip


def logs_of(folder: Path) -> dict[str, dict[str, object]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(folder.iterdir())}


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
        assert re.fullmatch(rf"{stamp}_test-suite.py--test-(answer|plain)_[0-9a-f]{{22}}\.json", name)
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
