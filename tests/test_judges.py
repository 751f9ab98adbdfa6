"""`@pytest.mark.rig_judge` through pytest: verdicts and outcomes per sample, unscored items
and their gate, a judge's infrastructure errors, pairwise order flips, calibration against
people's labels and its kappa gate, cassettes and baselines, collection errors, the judge's
own row and budget, and the same under xdist."""

from __future__ import annotations

import json
import typing as t

import pytest

from pytest_rigging.plugin.stats import wilson
from tests.conftest import (
    collection_error,
    ini,
    junit_properties,
    outcomes,
    rate,
    report,
    row,
)
from tests.llm_server import LLMServer

pytestmark = pytest.mark.plugin

SUITE = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, country):
    return rig_generator.chat(f"Capital of {country}?")

@pytest.mark.parametrize("country", ["France", "Italy", "Spain"])
@pytest.mark.rig(runs=3, min_pass=2)
@pytest.mark.rig_judge("Names the capital of {country} and nothing else", judge_runs=3)
def test_capital(rig_chat, rig_verdict, country):
    assert rig_verdict.passed, rig_verdict.reasoning
"""

MODEL_A = """
[[rules]]
match = "France"
reply = "Paris"
[[rules]]
match = "Italy"
replies = ["Rome", "Roma", "Rome"]
[[rules]]
match = "Spain"
reply = "Madrid"
"""
"""Right on every sample; one of Italy's answers ("Roma") splits the judge."""

MODEL_B = """
[[rules]]
match = "France"
reply = "Paris"
[[rules]]
match = "Italy"
replies = ["Milan", "Rome", "Hmm"]
[[rules]]
match = "Spain"
reply = "Lyon"
"""
"""France right; Italy one unstable fail, one pass, one the judge can't grade; Spain wrong."""

PASS = "<reasoning>Right.</reasoning><verdict>pass</verdict>"
FAIL = "<reasoning>Wrong.</reasoning><verdict>fail</verdict>"
NO_VERDICT = "I cannot decide."

JUDGE = f"""
default = "{NO_VERDICT}"
[[rules]]
match = '\\[Response\\]\\n(Paris|Rome|Madrid|Lima)\\n'
on = "conversation"
reply = "{PASS}"
[[rules]]
match = '\\[Response\\]\\nRoma\\n'
on = "conversation"
replies = ["{PASS}", "{FAIL}", "{PASS}"]
[[rules]]
match = '\\[Response\\]\\nMilan\\n'
on = "conversation"
replies = ["{FAIL}", "{PASS}", "{FAIL}"]
[[rules]]
match = '\\[Response\\]\\n(Lyon|Oslo)\\n'
on = "conversation"
reply = "{FAIL}"
"""
"""The scripted judge: its verdict depends on the answer alone (each answer that splits it
is given once in the run, so each of its three runs gets one of the three replies)."""

VERDICTS: dict[str, tuple[str, list[int], bool]] = {
    "Paris": ("passed", [3, 3], False),
    "Rome": ("passed", [3, 3], False),
    "Roma": ("passed", [2, 3], True),
    "Madrid": ("passed", [3, 3], False),
    "Milan": ("failed", [2, 3], True),
    "Lyon": ("failed", [3, 3], False),
    "Hmm": ("unscored", [0, 3], False),
}
"""The scripted judge's verdict on each answer: (outcome, agreement, unstable)."""

OUTCOMES = {
    "test_capital[France-a]": "passed",
    "test_capital[Italy-a]": "passed",
    "test_capital[Spain-a]": "passed",
    "test_capital[France-b]": "passed",
    "test_capital[Italy-b]": "unscored",
    "test_capital[Spain-b]": "failed",
}
"""Each item's outcome: Italy-b has 1 pass, 1 fail and 1 unscored of the 2 passes it needs."""

LABELS = [
    *({"input": f"Pass question {i}?", "output": "Paris", "label": True} for i in range(11)),
    {"input": "Pass question 11?", "output": "Rome", "label": False},
    *({"input": f"Fail question {i}?", "output": "Lyon", "label": False} for i in range(7)),
    {"input": "Fail question 7?", "output": "Oslo", "label": True},
]
"""20 labelled examples: the judge passes 12 (people pass 11 of them) and fails 8 (people
fail 7 of them), so it agrees with people on 18."""

ARGS = ("--rig-models", "scripted!a.toml,scripted!b.toml", "--rig-judge", "scripted!judge.toml")
SERIAL: list[str] = []
WORKERS = pytest.mark.parametrize("workers", [SERIAL, ["-n", "2"]], ids=["serial", "xdist"])


@pytest.fixture(autouse=True)
def unfitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table at its full width (a terminal's `COLUMNS` would fold its headers)."""
    monkeypatch.delenv("COLUMNS", raising=False)


def project(
    pytester: pytest.Pytester,
    suite: str = SUITE,
    judge: str = JUDGE,
    labels: t.Sequence[t.Mapping[str, object]] = (),
) -> None:
    """A project of `suite`, models a and b, the scripted judge, and `labels` (each row
    given the country the rubric names) in labels.jsonl."""
    ini(pytester)
    pytester.makepyfile(test_judged=suite)
    for name, rules in (("a", MODEL_A), ("b", MODEL_B), ("judge", judge)):
        (pytester.path / f"{name}.toml").write_text(rules)
    rows = [json.dumps({"country": "France", **row}) for row in labels]
    (pytester.path / "labels.jsonl").write_text("".join(f"{row}\n" for row in rows))


def short(nodeid: str) -> str:
    return nodeid.split("::", 1)[1]


def judged_chats(doc: t.Mapping[str, t.Any]) -> dict[tuple[str, int], dict[str, t.Any]]:
    """Every judged chat of the report, by (item, sample)."""
    return {
        (short(item["nodeid"]), chat["sample"]): chat
        for item in doc["items"]
        for chat in item["chats"]
        if "verdict" in chat
    }


def judge_chats(doc: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    """Every chat of the report that a judge had."""
    return [chat for item in doc["items"] for chat in item["chats"] if "judge" in chat]


# a judged suite


@WORKERS
def test_a_judged_suite(pytester: pytest.Pytester, workers: list[str]) -> None:
    """Every sample's verdict is the scripted judge's on its answer; the items pass, fail
    and stay unscored by them; the table shows each model's judged pass rate, unstable and
    unscored verdicts, and the judge's own row."""
    project(pytester)
    result = pytester.runpytest(*ARGS, "--rig-report", "r.json", *workers)
    assert outcomes(result) == {"passed": 4, "failed": 1, "unscored": 1}
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    doc = report(pytester)
    assert {short(i["nodeid"]): i["outcome"] for i in doc["items"]} == OUTCOMES
    chats = judged_chats(doc)
    assert len(chats) == 18  # 6 items x 3 samples
    for (nodeid, sample), chat in chats.items():
        answer = chat["conversation"][-1]["content"]
        outcome, agreement, unstable = VERDICTS[answer]
        verdict = chat["verdict"]
        assert (verdict["outcome"], verdict["agreement"], verdict["unstable"]) == (
            outcome,
            agreement,
            unstable,
        ), (nodeid, sample, answer)
        assert verdict["fields"] == {"country": nodeid.split("[")[1].split("-")[0]}
    answers = sorted(c["conversation"][-1]["content"] for c in chats.values())
    assert answers == sorted(
        ["Paris"] * 6 + ["Rome"] * 3 + ["Madrid"] * 3 + ["Roma", "Milan", "Hmm"] + ["Lyon"] * 3
    )
    assert len(judge_chats(doc)) == 54  # 18 samples x judge_runs=3
    a = row(result, "a")
    b = row(result, "b")
    header = row(result, "model")
    judged, unstable, unscored, items = (
        header.index(name) for name in ("judged pass [95% CI]", "unstable", "unscored",
                                        "items ok/fail/err")
    )  # fmt: skip
    assert (a[judged], a[unstable], a[unscored], a[items]) == (rate(9, 9), "1 (11%)", "0", "3/0/0")
    assert (b[judged], b[unstable], b[unscored], b[items]) == (rate(4, 8), "1 (11%)", "1", "1/1/0")
    judge_row = row(result, "judge (judge)")
    assert judge_row[1:5] == ["54", "51", "0", "3"]  # chats, 1st try, recovered, exhausted
    [summary] = doc["judges"]
    assert summary["id"].startswith("scripted!judge.toml #")
    assert (summary["verdicts"], summary["unscored"], summary["unstable"]) == (18, 1, 2)
    by_model = {m["label"]: m for m in summary["models"]}
    assert (by_model["a"]["passed"], by_model["a"]["verdicts"]) == (9, 9)
    assert (by_model["b"]["passed"], by_model["b"]["verdicts"], by_model["b"]["unscored"]) == (
        4,
        9,
        1,
    )


@pytest.fixture
def labelled(pytester: pytest.Pytester) -> pytest.Pytester:
    project(pytester, labels=LABELS)
    return pytester


def test_xdist_gives_the_serial_verdicts_judge_summary_and_kappa(labelled: pytest.Pytester) -> None:
    args = (*ARGS, "--rig-judge-labels", "labels.jsonl")
    serial = labelled.runpytest(*args, "--rig-report", "serial.json")
    xdist = labelled.runpytest(*args, "--rig-report", "xdist.json", "-n", "2")
    assert outcomes(serial) == outcomes(xdist) == {"passed": 4, "failed": 1, "unscored": 1}
    one, two = report(labelled, "serial.json"), report(labelled, "xdist.json")

    def verdicts(doc: dict[str, t.Any]) -> dict[tuple[str, int], t.Any]:
        return {key: chat["verdict"] for key, chat in judged_chats(doc).items()}

    assert verdicts(one) == verdicts(two)

    def summary(doc: dict[str, t.Any]) -> dict[str, t.Any]:
        [found] = doc["judges"]
        return {**found, "models": sorted(found["models"], key=lambda m: m["label"])}

    assert summary(one) == summary(two)
    assert summary(one)["kappa"] == pytest.approx((0.9 - 0.52) / 0.48)
    assert len(judge_chats(one)) == len(judge_chats(two)) == 54 + 60  # labels graded once


# calibration


def test_calibration_against_people(labelled: pytest.Pytester) -> None:
    """The judge agrees with people on 18 of 20 labels: people pass 12 (the judge 11 of
    them) and fail 8 (the judge 7 of them)."""
    result = labelled.runpytest(
        *ARGS, "--rig-judge-labels", "labels.jsonl", "--rig-report", "r.json"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # Spain-b; no gate asked for
    doc = report(labelled)
    [summary] = doc["judges"]
    agree = 18 / 20
    judge_passes = people_passes = 12 / 20
    chance = judge_passes * people_passes + (1 - judge_passes) * (1 - people_passes)
    assert summary["kappa"] == pytest.approx((agree - chance) / (1 - chance))
    assert summary["sensitivity"] == pytest.approx(11 / 12)
    assert summary["specificity"] == pytest.approx(7 / 8)
    assert (summary["labels"], summary["labels_unscored"], summary["weighted"]) == (20, 0, False)
    labelled_items = [item for item in doc["items"] if "labels" in item]
    assert len(labelled_items) == 1  # graded once for the judge, on its first item
    [item] = labelled_items
    assert len(item["labels"]) == 20
    assert sorted(r["line"] for r in item["labels"]) == list(range(1, 21))
    graded = [c for c in item["chats"] if "judge" in c and c["sample"] is None]
    assert len(graded) == 60  # 20 examples x judge_runs=3
    assert len(judge_chats(doc)) == 54 + 60
    cells = row(result, summary["id"])
    assert cells[1:3] == ["a", "9"]
    assert cells[-4:] == ["0.79", "0.92", "0.88", "20"]  # kappa, sensitivity, specificity


KAPPA_LINE = "FAIL judge {id}: kappa 0.79 over 20 labels, needs >= 0.90 (rig-min-judge-kappa)"


@WORKERS
def test_a_kappa_below_the_minimum_fails_the_run(
    labelled: pytest.Pytester, workers: list[str]
) -> None:
    args = (*ARGS, "--rig-judge-labels", "labels.jsonl", "--rig-report", "r.json")
    result = labelled.runpytest(
        *args, "--rig-min-judge-kappa", "0.9", "--junitxml", "j.xml", "-k", "not Spain", *workers
    )
    assert outcomes(result) == {"passed": 3, "unscored": 1, "gate": 1}
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    [summary] = report(labelled)["judges"]
    line = KAPPA_LINE.format(id=summary["id"])
    junit = (labelled.path / "j.xml").read_text()
    assert line.removeprefix("FAIL ").replace(">", "&gt;") in junit
    passing = labelled.runpytest(*args, "--rig-min-judge-kappa", "0.75", "-k", "not Spain")
    assert passing.ret == pytest.ExitCode.OK


def test_the_kappa_line_is_shown_at_the_terminal(labelled: pytest.Pytester) -> None:
    result = labelled.runpytest(
        *ARGS, "--rig-judge-labels", "labels.jsonl", "--rig-report", "r.json",
        "--rig-min-judge-kappa", "0.9",
    )  # fmt: skip
    [summary] = report(labelled)["judges"]
    assert KAPPA_LINE.format(id=summary["id"]) in result.outlines


# unscored

ONE_SAMPLE = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, country):
    return rig_generator.chat(f"Capital of {country}?")

@pytest.mark.parametrize("country", ["France", "Italy", "Peru"])
@pytest.mark.rig_judge("Names the capital")
def test_capital(rig_chat, rig_verdict, country):
    assert rig_verdict.passed, rig_verdict.reasoning
"""
"""One sample an item (pytest's own test function, unwrapped); model a answers Peru with
"Hmm", which the judge can't grade."""

THREE_SAMPLES = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator):
    return rig_generator.chat("Capital of Peru?")

@pytest.mark.rig(runs=3, min_pass=2)
@pytest.mark.rig_judge("Names the capital")
def test_peru(rig_chat, rig_verdict):
    assert rig_verdict.passed, rig_verdict.reasoning
"""
"""Three samples (wrapped), model p answers "Lima", "Hmm", "Lima": 2 passes, 1 unscored."""

MODEL_A_PERU = MODEL_A + '[[rules]]\nmatch = "Peru"\nreply = "Hmm"\n'
NO_VERDICT_REASON = f"no verdict in the judge's reply after 3 replies: {NO_VERDICT}"


def one_model(pytester: pytest.Pytester, suite: str, rules: str) -> None:
    project(pytester, suite)
    (pytester.path / "m.toml").write_text(rules)


ONE_MODEL = ("--rig-models", "scripted!m.toml", "--rig-judge", "scripted!judge.toml")


@WORKERS
def test_a_sample_the_judge_cannot_grade_is_unscored(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    one_model(pytester, ONE_SAMPLE, MODEL_A_PERU)
    result = pytester.runpytest(*ONE_MODEL, "-v", "-rs", "--rig-report", "r.json", *workers)
    assert outcomes(result) == {"passed": 2, "unscored": 1}
    assert result.ret == pytest.ExitCode.OK  # never a failure
    assert any("UNSCORED" in line and "test_capital[Peru-m]" in line for line in result.outlines)
    item = next(i for i in report(pytester)["items"] if "Peru" in i["nodeid"])
    assert item["outcome"] == "unscored"
    [chat] = [c for c in item["chats"] if "verdict" in c]
    assert chat["verdict"]["outcome"] == "unscored"
    assert chat["verdict"]["reasoning"] == NO_VERDICT_REASON
    [model] = [m for m in report(pytester)["models"] if m["label"] == "m"]
    assert (model["items_unscored"], model["unscored_rate_counts"]) == (1, [1, 3])
    assert model["unscored_rate"] == pytest.approx(1 / 3)
    assert (model["items_passed"], model["items_failed"], model["items_errored"]) == (2, 0, 0)
    cells = row(result, "m")
    header = row(result, "model")
    assert cells[header.index("unscored")] == "1"
    assert cells[header.index("items ok/fail/err")] == "2/0/0"


def test_an_unscored_item_says_why(pytester: pytest.Pytester) -> None:
    one_model(pytester, ONE_SAMPLE, MODEL_A_PERU)
    result = pytester.runpytest(*ONE_MODEL, "-k", "Peru", "--junitxml", "j.xml")
    assert outcomes(result) == {"unscored": 1}
    why = f"unscored: 1 sample unscored (the judge gave no verdict): {NO_VERDICT_REASON}"
    junit = (pytester.path / "j.xml").read_text()
    assert f'<skipped type="pytest.skip" message="{why}">' in junit
    # and at the terminal, under the judges' table (pytest's short summary lists no
    # outcome of a plugin's own)
    at = result.outlines.index("rigging: 1 unscored (a judge gave no verdict it could read):")
    assert (
        result.outlines[at + 1]
        == f"  test_judged.py::test_capital[Peru-m]: Unscored: {NO_VERDICT_REASON}"
    )


@WORKERS
def test_the_unscored_rate_gate(pytester: pytest.Pytester, workers: list[str]) -> None:
    one_model(pytester, ONE_SAMPLE, MODEL_A_PERU)
    result = pytester.runpytest(*ONE_MODEL, "--rig-max-unscored-rate", "0.1", *workers)
    assert outcomes(result) == {"passed": 2, "unscored": 1, "gate": 1}
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    low, high = wilson(1, 3)
    line = (
        f"FAIL scripted!m.toml: unscored rate 33.3% [{low:.1%}-{high:.1%}], needs <= 10.0% "
        "(rig-max-unscored-rate, point)"
    )
    assert line in result.outlines
    passing = pytester.runpytest(*ONE_MODEL, "--rig-max-unscored-rate", "m=0.5")
    assert passing.ret == pytest.ExitCode.OK


def test_two_passes_and_one_unscored_sample_pass(pytester: pytest.Pytester) -> None:
    one_model(pytester, THREE_SAMPLES, 'default = "x"\n[[rules]]\nmatch = "Peru"\n'
              'replies = ["Lima", "Hmm", "Lima"]\n')  # fmt: skip
    result = pytester.runpytest(*ONE_MODEL, "--rig-report", "r.json")
    assert outcomes(result) == {"passed": 1}
    [item] = report(pytester)["items"]
    said = sorted(c["verdict"]["outcome"] for c in item["chats"] if "verdict" in c)
    assert said == ["passed", "passed", "unscored"]
    assert item["samples"] == [2, 2]  # the unscored sample is not judged


def test_one_pass_and_two_unscored_samples_are_unscored(pytester: pytest.Pytester) -> None:
    one_model(pytester, THREE_SAMPLES, 'default = "x"\n[[rules]]\nmatch = "Peru"\n'
              'replies = ["Lima", "Hmm", "Hmm."]\n')  # fmt: skip
    result = pytester.runpytest(*ONE_MODEL, "--junitxml", "j.xml")
    assert outcomes(result) == {"unscored": 1}
    assert result.ret == pytest.ExitCode.OK
    why = "unscored: 1/3 samples passed, needed 2; 2 unscored (the judge gave no verdict): no "
    assert f'<skipped type="pytest.skip" message="{why}' in (pytester.path / "j.xml").read_text()


# a judge's infrastructure error

HTTP_SUITE = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, country):
    return rig_generator.chat(f"Capital of {country}?")

@pytest.mark.parametrize("country", ["France", "Spain"])
@pytest.mark.rig_judge("Names the capital", judge_runs=JUDGE_RUNS)
def test_capital(rig_chat, rig_verdict, country):
    assert rig_verdict.passed, rig_verdict.reasoning
"""


def http_project(pytester: pytest.Pytester, server: LLMServer, judge_runs: int = 1) -> None:
    """HTTP_SUITE, model m answering France right and Spain wrong, and judge j grading
    them, all on the loopback server."""
    ini(pytester)
    pytester.makepyfile(test_judged=HTTP_SUITE.replace("JUDGE_RUNS", str(judge_runs)))
    server.add_rule(r"\[Response\]\nParis\n", PASS, model="j")
    server.add_rule(r"\[Response\]\nLyon\n", FAIL, model="j")
    server.add_rule("France", "Paris", model="m")
    server.add_rule("Spain", "Lyon", model="m")


HTTP = ("--rig-models", "openai!m,max_retries=0", "--rig-judge", "openai!j,max_retries=0")


def test_a_judge_server_error_is_an_infrastructure_error(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Every judge call fails (retries exhausted): each item is an error (infrastructure),
    never a failure, though Spain's answer is wrong; the model's own chats are fine."""
    http_project(pytester, llm_server)
    llm_server.fail_next(10, status=500, model="j")
    result = pytester.runpytest(*HTTP, "--rig-report", "r.json")
    assert outcomes(result) == {"errors": 2}
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    doc = report(pytester)
    assert [i["outcome"] for i in doc["items"]] == ["error", "error"]
    for item in doc["items"]:
        [own] = [c for c in item["chats"] if "judge" not in c]
        assert own["conversation"][-1]["role"] == "assistant"  # it answered
        assert (own["error_kind"], own["error"], own.get("verdict")) == (None, None, None)
        [failed] = [c for c in item["chats"] if "judge" in c]
        assert failed["judge"].startswith("openai!j #")
        assert (failed["error_kind"], failed["error"]) == (
            "infrastructure",
            "server error from openai!j after 1 attempt: HTTP 500: simulated error 500",
        )
    rows = {r["label"]: r for r in doc["models"]}
    assert (rows["m"]["error"], rows["m"]["items_failed"], rows["m"]["items_errored"]) == (0, 0, 2)
    assert rows["j (judge)"]["error"] == 2
    result.stdout.fnmatch_lines(
        ["E*1/1 samples failed with infrastructure errors, too many to reach 1: judge openai!j #*"]
    )
    statuses = sorted((r.model, r.status) for r in llm_server.requests)
    assert statuses == [("j", 500), ("j", 500), ("m", 200), ("m", 200)]


# pairwise

FIRST = "<reasoning>The first reads better.</reasoning><better>A</better>"
PAIRWISE = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, country):
    return rig_generator.chat(f"Capital of {country}?")

@pytest.mark.parametrize("country,old", [("France", "It is Paris."), ("Italy", "Rome, I think.")])
@pytest.mark.rig_judge("Which answer is more direct?", versus="{old}", model="scripted!first.toml")
def test_against_old(rig_chat, rig_verdict, old):
    assert rig_verdict.passed

@pytest.mark.parametrize("country", ["France", "Spain"])
@pytest.mark.rig_judge("Which answer is more direct?", versus_model="scripted!b.toml",
                       model="scripted!first.toml")
def test_against_b(rig_chat, rig_verdict, country):
    assert rig_verdict.passed
"""
"""Model a against an old answer, and against model b, by a judge that always prefers the
response shown first."""


@WORKERS
def test_a_judge_that_prefers_the_first_shown_flips_every_comparison(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    project(pytester, PAIRWISE)
    (pytester.path / "first.toml").write_text(f"[[rules]]\nmatch = '.'\nreply = '{FIRST}'\n")
    result = pytester.runpytest(
        "--rig-models", "scripted!a.toml", "--rig-report", "r.json", *workers
    )
    assert outcomes(result) == {"passed": 4}  # a tie: a is not worse
    doc = report(pytester)
    pairwise = {key: chat["verdict"]["pairwise"] for key, chat in judged_chats(doc).items()}
    assert len(pairwise) == 4
    for (nodeid, _), found in pairwise.items():
        versus = "scripted!b.toml" if "against_b" in nodeid else "text"
        assert found == {"winner": "tie", "flipped": True, "versus": versus}
    # comparing with a text and with a model: two judges (what they compare with is part
    # of a pairwise judge's identity), each flipping every comparison
    assert len(doc["judges"]) == 2
    for summary in doc["judges"]:
        assert (summary["comparisons"], summary["flipped"], summary["flip_rate"]) == (2, 2, 1.0)
        assert row(result, summary["id"])[-5] == "2/2"  # flips
    labels = {r["label"] for r in doc["models"]}
    assert labels == {"a", "first (judge)", "b (versus)"}
    asked = [c["conversation"][0]["content"] for c in judge_chats(doc)]
    assert sum("[Response A]\nIt is Paris.\n" in text for text in asked) == 1
    assert sum("[Response B]\nIt is Paris.\n" in text for text in asked) == 1
    assert sum("[Response B]\nLyon\n" in text for text in asked) == 1  # b's own answer


# record, then replay


def test_recorded_verdicts_replay_with_no_request(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    http_project(pytester, llm_server, judge_runs=2)
    recorded = pytester.runpytest(*HTTP, "--rig-record", "once", "--rig-report", "a.json")
    assert outcomes(recorded) == {"passed": 1, "failed": 1}
    assert len(llm_server.requests) == 2 + 4  # 2 answers, 2 x 2 judge runs
    replayed = pytester.runpytest(*HTTP, "--rig-record", "none", "--rig-report", "b.json")
    assert outcomes(replayed) == {"passed": 1, "failed": 1}
    assert len(llm_server.requests) == 6  # not one more

    def verdicts(name: str) -> dict[tuple[str, int], t.Any]:
        return {key: chat["verdict"] for key, chat in judged_chats(report(pytester, name)).items()}

    assert verdicts("a.json") == verdicts("b.json")
    assert [v["outcome"] for _, v in sorted(verdicts("a.json").items())] == ["passed", "failed"]
    (pytester.path / "test_judged.py").write_text(
        HTTP_SUITE.replace("JUDGE_RUNS", "2").replace("Names the capital", "Names a capital")
    )
    edited = pytester.runpytest(*HTTP, "--rig-record", "none", "-rE")
    assert outcomes(edited) == {"errors": 2}
    assert len(llm_server.requests) == 6
    miss = (
        "no recording in cassettes/test_judged.json for this call (--rig-record none replays "
        "only); the closest recording differs in messages[0].content: "
        '"...{end}\\n\\n[Rubric]\\nNames a capital\\n\\nDecide whether th..." here, '
        '"...{end}\\n\\n[Rubric]\\nNames the capital\\n\\nDecide whether ..." recorded'
    )
    assert miss.format(end="ris") in edited.outlines  # Paris
    assert miss.format(end="yon") in edited.outlines  # Lyon


# baseline


def test_a_baseline_of_another_judge_is_not_compared(pytester: pytest.Pytester) -> None:
    project(pytester)
    saved = pytester.runpytest(*ARGS, "--rig-save-baseline", "base.json")
    assert outcomes(saved) == {"passed": 4, "failed": 1, "unscored": 1}
    (pytester.path / "test_judged.py").write_text(SUITE.replace("and nothing else", "only"))
    result = pytester.runpytest(*ARGS, "--rig-baseline", "base.json", "-rfx")
    assert outcomes(result) == {"passed": 4, "failed": 1, "unscored": 1}  # no known failure
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    failed = [line for line in result.outlines if line.startswith(("FAILED", "XFAIL"))]
    assert [line.split(" - ")[0] for line in failed] == [
        "FAILED test_judged.py::test_capital[Spain-b]"
    ]
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "rigging: against the baseline" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
    rejudged = "  judged by another judge than the baseline's: test_judged.py::test_capital"
    assert lines[start + 1 : end] == [
        "against base.json: 0 flipped to failing, 0 fixed, 0 known failures, 0 rates moved "
        "beyond noise; 0 new items, 0 of its items not run",
        "  6 items were judged by another judge than the baseline's (its model, rubric or "
        "template changed): their outcomes and their models' pass rates are not compared; save "
        "a new baseline with this judge",
        *(f"{rejudged}[{name}]" for name in ("France-a", "France-b", "Italy-a", "Italy-b",
                                              "Spain-a", "Spain-b")),
    ]  # fmt: skip
    (pytester.path / "test_judged.py").write_text(SUITE)  # the baseline's judge again
    same = pytester.runpytest(*ARGS, "--rig-baseline", "base.json")
    assert outcomes(same) == {"passed": 4, "xfailed": 1, "unscored": 1}  # a known failure


# collection and usage errors


ON_A = ("--rig-models", "echo!a")


def judged_test(marker: str, arguments: str = "rig_chat, rig_verdict") -> str:
    return (
        "import pytest\n\n@pytest.fixture\ndef rig_pipeline(rig_generator):\n"
        "    return rig_generator.chat('x')\n\n"
        f"{marker}\ndef test_it({arguments}):\n    pass\n"
    )


NODE = "test_judged.py::test_it: "


@pytest.mark.parametrize(
    ("marker", "arguments", "message"),
    [
        (
            "",
            "rig_chat, rig_verdict",
            "rig_verdict is a rig_judge test's verdict: add @pytest.mark.rig_judge(RUBRIC, ...) "
            "to the test",
        ),
        (
            "@pytest.mark.rig_judge('r')",
            "rig_chats",
            "@pytest.mark.rig_judge judges each sample of a test that takes rig_chat (and "
            "rig_verdict); this test doesn't take rig_chat",
        ),
        (
            "@pytest.mark.rig_judge('r')",
            "",
            "@pytest.mark.rig_judge judges each sample of a test that takes rig_chat (and "
            "rig_verdict); this test doesn't take rig_chat",
        ),
        (
            "@pytest.mark.rig_judge('Names {missing}')",
            "rig_chat, rig_verdict",
            "@pytest.mark.rig_judge names {missing}, which is not a parameter or case field of "
            "this test (it has: none); write a literal brace as {{ or }}",
        ),
        (
            "@pytest.mark.rig_judge('r', judge_runs=0)",
            "rig_chat, rig_verdict",
            "judge_runs= must be a whole number >= 1, got 0",
        ),
        (
            "@pytest.mark.rig_judge('r', runs=3)",
            "rig_chat, rig_verdict",
            "got an unexpected keyword argument 'runs'",
        ),
        (
            "@pytest.mark.rig_judge('r', versus='old', versus_model='echo!b')",
            "rig_chat, rig_verdict",
            "give versus= (a text) or versus_model= (a model), not both",
        ),
        (
            "@pytest.mark.rig_judge('r', reference='Paris', template='rubric')",
            "rig_chat, rig_verdict",
            "reference= is given, but the 'rubric' template doesn't show the judge a reference: "
            "use template='reference' (the default with a reference) or one that names "
            "{reference}",
        ),
        (
            "@pytest.mark.rig_judge('r', template='rubrik')",
            "rig_chat, rig_verdict",
            "unknown judge template 'rubrik': name one of rubric, reference, answer_first, or "
            "give a template that names {output}",
        ),
        (
            "@pytest.mark.rig_judge('')",
            "rig_chat, rig_verdict",
            "the rubric must be a non-empty string, got ''",
        ),
    ],
)
def test_a_judged_test_that_cannot_run_is_a_collection_error(
    pytester: pytest.Pytester, marker: str, arguments: str, message: str
) -> None:
    ini(pytester)
    pytester.makepyfile(test_judged=judged_test(marker, arguments))
    assert collection_error(pytester, *ON_A, "--rig-judge", "echo!judge") == NODE + message


def test_a_judge_model_that_names_no_provider_is_a_collection_error_without_its_key(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    marker = "@pytest.mark.rig_judge('r', model='nosuch!x,api_key=sk-abcdefghijklmnop')"
    pytester.makepyfile(test_judged=judged_test(marker))
    found = collection_error(pytester, *ON_A, "--rig-judge", "echo!judge")
    assert found.startswith(  # then the providers known (in this process: tests add some)
        f"{NODE}model='nosuch!x,api_key=***': unknown provider 'nosuch' in "
        "'nosuch!x,api_key=***'; known providers: anthropic, "
    )
    assert "sk-abc" not in found


def test_no_judge_model_is_a_collection_error(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(test_judged=judged_test("@pytest.mark.rig_judge('r')"))
    assert collection_error(pytester, *ON_A) == (
        NODE + "this test uses @pytest.mark.rig_judge, but no judge model is set: give "
        "--rig-judge MODEL, the ini key rig_judge, or rig_judge(..., model=MODEL)"
    )
    ini(pytester, "rig_judge = echo!judge")
    result = pytester.runpytest("--collect-only", "-q", "--rig-models", "echo!a")
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--rig-min-judge-kappa", "abc"),
            "ERROR: --rig-min-judge-kappa: expected a kappa from -1 to 1, got 'abc'",
        ),
        (
            ("--rig-min-judge-kappa", "1.5"),
            "ERROR: --rig-min-judge-kappa: expected a kappa from -1 to 1, got '1.5'",
        ),
        (
            ("--rig-judge-labels", "bad.jsonl"),
            "ERROR: --rig-judge-labels: bad.jsonl:2: not JSON: Expecting value (column 1)",
        ),
        (
            ("--rig-judge-labels", "unlabelled.jsonl"),
            "ERROR: --rig-judge-labels: unlabelled.jsonl: no labelled examples (1 row has no "
            "label yet)",
        ),
    ],
)
def test_a_bad_judge_option_is_a_usage_error(
    pytester: pytest.Pytester, args: tuple[str, ...], message: str
) -> None:
    ini(pytester)
    pytester.makepyfile(test_judged=judged_test("@pytest.mark.rig_judge('r')"))
    (pytester.path / "bad.jsonl").write_text('{"output": "Paris", "label": true}\nParis\n')
    (pytester.path / "unlabelled.jsonl").write_text('{"output": "Paris", "label": null}\n')
    result = pytester.runpytest("--rig-models", "echo!a", "--rig-judge", "j", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.errlines, result.errlines


# self-preference


def test_a_judge_that_is_a_model_under_test_gets_a_warning(pytester: pytest.Pytester) -> None:
    project(pytester)
    result = pytester.runpytest(
        "--rig-models", "scripted!a.toml,scripted!b.toml", "--rig-judge", "scripted!a.toml",
        "-k", "France",
    )  # fmt: skip
    warning = (
        "RiggingWarning: @pytest.mark.rig_judge: the judge scripted!a.toml is also a model "
        "under test; judges favour their own outputs, so its verdicts on itself are suspect: "
        "judge with another model"
    )
    assert any(warning in line for line in result.outlines), result.outlines
    quiet = pytester.runpytest(*ARGS, "-k", "France")
    assert not any("RiggingWarning" in line for line in quiet.outlines)


# tokens, cost and budget


def test_a_judge_counts_on_its_own_row_and_toward_the_budget(pytester: pytest.Pytester) -> None:
    project(pytester, ONE_SAMPLE.replace('"Italy", "Peru"', '"Italy", "Spain", "France"'))
    result = pytester.runpytest(
        "--rig-models", "scripted!a.toml", "--rig-judge", "scripted!judge.toml",
        "--rig-report", "r.json",
    )  # fmt: skip
    doc = report(pytester)
    rows = {r["label"]: r for r in doc["models"]}
    assert set(rows) == {"a", "judge (judge)"}
    assert rows["judge (judge)"]["role"] == "judge"
    assert rows["a"]["chats"] == rows["judge (judge)"]["chats"] == 4
    own = sum(c["input_tokens"] + c["output_tokens"] for c in judge_chats(doc))
    assert own == rows["judge (judge)"]["input_tokens"] + rows["judge (judge)"]["output_tokens"]
    assert rows["a"]["input_tokens"] + rows["a"]["output_tokens"] == 4 * (4 + 1)
    assert own > 100  # a grading prompt is long: the model's 20 tokens alone never spend 100
    budget = pytester.runpytest(
        "--rig-models", "scripted!a.toml", "--rig-judge", "scripted!judge.toml",
        "--rig-max-tokens", "100", "--rig-concurrency", "1", "-rs",
    )  # fmt: skip
    counts = outcomes(budget)
    assert counts.get("skipped", 0) >= 1 and counts.get("passed", 0) + counts["skipped"] == 4
    assert budget.ret == pytest.ExitCode.TESTS_FAILED
    budget.stdout.fnmatch_lines(
        [
            "FAIL rigging budget --rig-max-tokens 100 spent: the run used * tokens; "
            "* skipped for budget"
        ]
    )
    assert result.ret == pytest.ExitCode.OK


# inspect logs


def test_an_inspect_log_scores_each_judged_sample(pytester: pytest.Pytester) -> None:
    one_model(pytester, ONE_SAMPLE, MODEL_A_PERU)
    pytester.runpytest(*ONE_MODEL, "--rig-inspect-log", "logs")
    [log] = (pytester.path / "logs").iterdir()
    samples = json.loads(log.read_text())["samples"]
    scores = {s["input"] if isinstance(s["input"], str) else s["input"][0]["content"]: s["scores"]
              for s in samples}  # fmt: skip
    assert set(scores) == {"Capital of France?", "Capital of Italy?", "Capital of Peru?"}
    for question in ("Capital of France?", "Capital of Italy?"):
        judged = scores[question]["judge"]
        assert (judged["value"], judged["answer"]) == ("C", "passed")
        assert judged["explanation"] == "Right. (1/1 of the judge's runs agree)"
    assert "judge" not in scores["Capital of Peru?"]  # unscored: no score
    reader = pytest.importorskip("inspect_ai.log")
    read = reader.read_eval_log(str(log))
    assert sorted(s.scores["judge"].value for s in read.samples if "judge" in (s.scores or {})) == [
        "C",
        "C",
    ]


def test_junit_parse_counts_are_the_models_own(pytester: pytest.Pytester) -> None:
    """Model a parses nothing (0 first try, as its table row says); the judge's three
    runs per sample are its own row's, not the item's."""
    project(pytester)
    pytester.runpytest(*ARGS, "--junitxml", "j.xml", "--rig-report", "r.json")
    rows = {r["label"]: r for r in report(pytester)["models"]}
    assert (rows["a"]["first_try"], rows["b"]["exhausted"]) == (0, 0)
    france = junit_properties(pytester.path / "j.xml", "test_capital[France-a]")
    italy = junit_properties(pytester.path / "j.xml", "test_capital[Italy-b]")
    assert (france["rig_first_try"], italy["rig_exhausted"]) == ("0", "0")


# what a review found


def test_keys_stay_out_of_the_warning_the_report_and_the_page(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """A judge that is a model under test is warned of with its key masked; a versus
    model's key is masked in the report and on the page; the judge's id names no port or
    timeout (how it is reached is no part of which judge it is)."""
    ini(pytester)
    pytester.makepyfile(
        test_judged=HTTP_SUITE.replace(
            "judge_runs=JUDGE_RUNS",
            "judge_runs=1, versus_model='openai!v,api_key=sk-VERSUSSECRET1234567'",
        )
    )
    llm_server.add_rule(r"\[Response A\]", "<reasoning>A.</reasoning><better>A</better>")
    judge = "openai!m,max_retries=0,timeout=30,api_key=sk-JUDGESECRET12345678"
    result = pytester.runpytest(
        "--rig-models", "openai!m,max_retries=0", "--rig-judge", judge,
        "--rig-report", "r.json", "--rig-html", "p.html", "-W", "always",
    )  # fmt: skip
    shown = "\n".join(result.outlines)
    assert "the judge openai!m,max_retries=0,timeout=30,api_key=*** is also a model" in shown
    written = (pytester.path / "r.json").read_text() + (pytester.path / "p.html").read_text()
    assert "SECRET" not in shown + written
    doc = report(pytester)
    [summary] = doc["judges"]
    assert summary["id"].startswith("openai!m #")  # no timeout, no key
    versus = {c["verdict"]["pairwise"]["versus"] for c in judged_chats(doc).values()}
    assert versus == {"openai!v,api_key=***"}


def test_a_rubric_s_brace_reaches_the_judge_as_one(pytester: pytest.Pytester) -> None:
    """`{{` in a rubric is a literal brace, whether or not the rubric names a value."""
    suite = SUITE.replace(
        '"Names the capital of {country} and nothing else"', """'Answers like {{"city": ...}}'"""
    )
    project(pytester, suite)
    pytester.runpytest(*ARGS, "-k", "France", "--rig-report", "r.json")
    [asked, *_] = [c["conversation"][0]["content"] for c in judge_chats(report(pytester))]
    assert '[Rubric]\nAnswers like {"city": ...}\n' in asked


@pytest.mark.parametrize(
    ("marker", "label", "message"),
    [
        (
            "@pytest.mark.rig_judge('r')",
            5,
            "is labelled 5, a score, but this test's judge has no scale=: label it true or false",
        ),
        (
            "@pytest.mark.rig_judge('r', scale=(1, 5))",
            7,
            "is labelled 7, off the judge's scale 1-5: label it with a score on the scale",
        ),
    ],
)
def test_a_label_of_another_kind_than_the_judge_s_is_a_collection_error(
    pytester: pytest.Pytester, marker: str, label: int, message: str
) -> None:
    ini(pytester)
    pytester.makepyfile(test_judged=judged_test(marker))
    (pytester.path / "labels.jsonl").write_text(json.dumps({"output": "x", "label": label}))
    found = collection_error(
        pytester, "--rig-judge", "echo!j", "--rig-judge-labels", "labels.jsonl"
    )
    assert found == f"{NODE}the labelled example on line 1 of labels.jsonl {message}"


def test_a_labelled_example_not_graded_fails_the_kappa_gate_not_an_item(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Recorded with two labelled examples, replayed (`--rig-record none`) with a third:
    the third misses; every item passes as recorded, and the kappa gate fails saying so."""
    http_project(pytester, llm_server)
    rows = [
        {"country": "France", "output": "Paris", "label": True},
        {"country": "France", "output": "Lyon", "label": False},
    ]
    labels = pytester.path / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kappa = ("--rig-judge-labels", "labels.jsonl", "--rig-min-judge-kappa", "0.5")
    recorded = pytester.runpytest(*HTTP, *kappa, "--rig-record", "once")
    assert outcomes(recorded) == {"passed": 1, "failed": 1}
    labels.write_text(labels.read_text() + json.dumps({**rows[0], "output": "Paris."}) + "\n")
    replayed = pytester.runpytest(*HTTP, *kappa, "--rig-record", "none", "--rig-report", "r.json")
    assert outcomes(replayed) == {"passed": 1, "failed": 1, "gate": 1}
    [summary] = report(pytester)["judges"]
    assert (summary["labels"], summary["labels_failed"]) == (2, 1)
    replayed.stdout.fnmatch_lines(
        [
            "FAIL judge openai!j #*: 1 of its labelled examples could not be graded (a call "
            "refused or failed: see its row), so its kappa is not known, needs >= 0.50 "
            "(rig-min-judge-kappa)"
        ]
    )


def test_merge_judges_the_kappa_threshold_the_shards_were_given(
    labelled: pytest.Pytester,
) -> None:
    from pytest_rigging.plugin.cli import main

    shards = []
    for k in (1, 2):
        name = f"s{k}.json"
        labelled.runpytest(
            *ARGS, "--rig-judge-labels", "labels.jsonl", "--rig-min-judge-kappa", "0.9",
            "--rig-shard", f"{k}/2", "--rig-report", name,
        )  # fmt: skip
        shards.append(str(labelled.path / name))
    assert report(labelled, "s1.json")["settings"]["min_judge_kappa"] == 0.9
    assert main(["merge", *shards]) == 1  # kappa 0.79 < 0.9, as recorded
    assert main(["merge", *shards, "--min-judge-kappa", "0.7"]) == 0
