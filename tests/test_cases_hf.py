"""`@pytest.mark.rig_cases` over Hugging Face datasets: a folder `save_to_disk` wrote (built
here, offline), and a hub name, whose loader the pytester project replaces with one that
records what it was asked for; the errors of each, and the same items under `-n 2`."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import datasets
import pytest

from tests.conftest import ini

pytestmark = pytest.mark.plugin

ROWS: list[dict[str, t.Any]] = [
    {
        "name": "q1",
        "question": "2+2?",
        "score": 1,
        "tags": ["math"],
        "meta": {"level": 1, "by": "ann"},
    },
    {
        "name": "q2",
        "question": "Capital of France?",
        "score": 2.5,
        "tags": [],
        "meta": {"level": 2},
    },
    {"name": "q/3 é", "question": "Hi", "score": None},
]
"""Rows a dataset's columns change: a score column of floats (1 becomes 1.0), and a null
for every field a row lacks (q2's meta.by, q3's tags and meta)."""

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach the hub, in this process or a pytester child."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def saved(folder: Path, rows: list[dict[str, t.Any]], *splits: str, filtered: bool = False) -> None:
    """`rows` saved where `folder` is: a Dataset, or a DatasetDict with `splits`; `filtered`,
    with none of them (datasets 5.2 cannot load an empty dataset saved with no shards,
    which Dataset.from_list([]) gives)."""
    dataset = datasets.Dataset.from_list(rows)
    if filtered:
        dataset = dataset.filter(lambda row: False)
    if splits:
        datasets.DatasetDict(dict.fromkeys(splits, dataset)).save_to_disk(folder)
    else:
        dataset.save_to_disk(folder)


def jsonl(path: Path, rows: list[dict[str, t.Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


RECORDING = """
import json
import pytest

def record(name, rig_case, *values):
    with open(name + ".out", "a") as file:
        case = [rig_case.id, rig_case.hash, rig_case.dataset.hash, rig_case.dataset.rows]
        file.write(json.dumps([*case, *values]) + "\\n")
"""


def records(pytester: pytest.Pytester, name: str) -> list[list[t.Any]]:
    lines = (pytester.path / f"{name}.out").read_text().splitlines()
    return [json.loads(line) for line in lines]


def ran(result: pytest.RunResult) -> list[str]:
    """The items an in-process run ran, by name, in order."""
    reports = result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
    return [r.nodeid.partition("::")[2] for r in reports if r.when == "call"]


def test_a_saved_dataset_parametrizes_the_same_items_as_its_jsonl(
    pytester: pytest.Pytester,
) -> None:
    """Ids and content hashes (and the dataset's) are the JSONL's, by a named id field and
    by content; the test receives the dataset's own Python values."""
    ini(pytester)
    jsonl(pytester.path / "cases.jsonl", ROWS)
    saved(pytester.path / "data", ROWS)
    pytester.makepyfile(
        RECORDING
        + """
@pytest.mark.rig_cases("cases.jsonl", id="name")
def test_jsonl_named(rig_case):
    record("jsonl_named", rig_case)

@pytest.mark.rig_cases("data", id="name")
def test_hf_named(rig_case, question, score, tags, meta):
    record("hf_named", rig_case, question, type(score).__name__, tags, meta)

@pytest.mark.rig_cases("cases.jsonl")
def test_jsonl_hashed(rig_case):
    record("jsonl_hashed", rig_case)

@pytest.mark.rig_cases("data")
def test_hf_hashed(rig_case):
    record("hf_hashed", rig_case)
"""
    )
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=12)
    for by in ("named", "hashed"):
        from_jsonl, from_hf = records(pytester, f"jsonl_{by}"), records(pytester, f"hf_{by}")
        assert [r[:4] for r in from_hf] == from_jsonl
    items = ran(result)
    assert items[:3] == [
        "test_jsonl_named[q1]",
        "test_jsonl_named[q2]",
        "test_jsonl_named[q_3_\\xe9]",
    ]
    assert items[3:6] == ["test_hf_named[q1]", "test_hf_named[q2]", "test_hf_named[q_3_\\xe9]"]
    assert [i.replace("jsonl", "hf") for i in items[6:9]] == items[9:]
    values = [r[4:] for r in records(pytester, "hf_named")]
    assert values == [
        ["2+2?", "float", ["math"], {"level": 1, "by": "ann"}],
        ["Capital of France?", "float", [], {"level": 2, "by": None}],
        ["Hi", "NoneType", None, None],
    ]
    shown = result.stdout.str() + result.stderr.str()
    assert "examples/s" not in shown and "Loading dataset" not in shown  # nothing of datasets'


def test_a_dataset_dict_reads_the_split_named(pytester: pytest.Pytester) -> None:
    ini(pytester)
    saved(pytester.path / "data", ROWS[:2], "train", "test")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig_cases("data", id="name", split="test")
        def test_x(rig_case, question):
            assert rig_case.dataset.source == "data['test']"
            assert question == {"q1": "2+2?", "q2": "Capital of France?"}[rig_case.id]
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    assert ran(result) == ["test_x[q1]", "test_x[q2]"]


def with_id(row: dict[str, t.Any], name: str) -> dict[str, t.Any]:
    return {**row, "name": name}


@pytest.mark.parametrize(
    ("folder", "arguments", "message"),
    [
        ("dict", "", "data: the dataset has splits (train, test): pick one with split="),
        ("dict", ", split='dev'", "data: no split 'dev' (it has: train, test)"),
        (
            "one",
            ", split='train'",
            "data: split='train', but the folder holds one Dataset (not a DatasetDict of "
            "splits): leave out split=",
        ),
        (
            "one",
            ", revision='v1'",
            "data: revision= is for a hub dataset (hf://owner/name); a folder that "
            "save_to_disk wrote holds one version of one config",
        ),
        ("empty", "", "data: no cases (the dataset is empty)"),
        ("one", ", id='ticket'", "data[0]: no id field 'ticket' (the row has: name, question"),
        (
            "twice",
            ", id='name'",
            "data[2]: case id 'q1' is also the id of the case at data[0]: ids must be unique",
        ),
        (
            "not saved",
            "",
            "data: not a dataset that save_to_disk wrote: Directory {path} is neither a "
            "`Dataset` directory nor a `DatasetDict` directory.",
        ),
    ],
    ids=[
        "no split",
        "no such split",
        "split of a Dataset",
        "revision of a folder",
        "empty",
        "no id field",
        "id twice",
        "not saved",
    ],
)
def test_a_saved_dataset_that_cannot_give_cases_is_one_collection_error(
    pytester: pytest.Pytester, folder: str, arguments: str, message: str
) -> None:
    ini(pytester)
    path = pytester.path / "data"
    if folder == "dict":
        saved(path, ROWS, "train", "test")
    elif folder == "one":
        saved(path, ROWS)
    elif folder == "empty":
        saved(path, [ROWS[0]], filtered=True)
    elif folder == "twice":
        saved(path, [ROWS[0], ROWS[1], with_id(ROWS[1], "q1")])
    else:
        path.mkdir()
        (path / "cases.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.rig_cases("data"{arguments})
        def test_x(rig_case):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    where = "test_a_saved_dataset_that_cannot_give_cases_is_one_collection_error.py::test_x"
    expected = f"{where}: @pytest.mark.rig_cases: {message.format(path=path)}"
    assert expected in result.stdout.str()


@pytest.mark.parametrize("keyword", ["split", "revision", "config"])
def test_hugging_face_keywords_on_a_file_are_collection_errors(
    pytester: pytest.Pytester, keyword: str
) -> None:
    ini(pytester)
    jsonl(pytester.path / "cases.jsonl", ROWS)
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.rig_cases("cases.jsonl", {keyword}="train")
        def test_x(rig_case):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    message = f"cases.jsonl: {keyword}= is for a Hugging Face dataset, not a jsonl file"
    assert message in result.stdout.str()


def test_without_the_datasets_package_a_dataset_is_one_collection_error(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    saved(pytester.path / "data", ROWS)
    pytester.makeconftest(
        """
        import sys
        import pytest

        hidden = pytest.MonkeyPatch()

        def pytest_configure(config):
            hidden.setitem(sys.modules, "datasets", None)  # as if it weren't installed

        def pytest_unconfigure(config):
            hidden.undo()
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig_cases("data", id="name")
        def test_x(rig_case):
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert (
        "test_without_the_datasets_package_a_dataset_is_one_collection_error.py::test_x: "
        "@pytest.mark.rig_cases: data: reading a Hugging Face dataset needs the datasets "
        "package: pip install 'pytest-rigging[datasets]'"
    ) in result.stdout.str()


HUB_CONFTEST = """
import inspect
import json
from pathlib import Path

import datasets
import pytest

ROWS = {rows!r}
CALLS = Path(__file__).parent / "calls.jsonl"
real = datasets.load_dataset
patch = pytest.MonkeyPatch()


def load_dataset(*args, **kwargs):
    '''What the hub would give, and what it was asked for.'''
    asked = inspect.signature(real).bind(*args, **kwargs).arguments
    with CALLS.open("a") as file:
        file.write(json.dumps(asked) + "\\n")
    if asked["path"] == "owner/missing":
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'owner/missing' doesn't exist")
    dataset = datasets.Dataset.from_list(ROWS)
    split = asked.get("split")
    return datasets.DatasetDict(train=dataset, validation=dataset) if split is None else dataset


def pytest_configure(config):
    patch.setattr(datasets, "load_dataset", load_dataset)


def pytest_unconfigure(config):
    patch.undo()
"""


def test_a_hub_dataset_is_loaded_as_the_marker_pins_it(pytester: pytest.Pytester) -> None:
    """The name, config, split and revision reach `load_dataset`; only the unpinned test
    is warned about."""
    ini(pytester)
    pytester.makeconftest(HUB_CONFTEST.format(rows=ROWS))
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.rig_cases(
            "hf://owner/tickets", id="name", config="support", split="train", revision={SHA!r}
        )
        def test_pinned(rig_case, question):
            assert rig_case.dataset.source == "hf://owner/tickets['train']"

        @pytest.mark.rig_cases("hf://owner/tickets", split="validation")
        def test_unpinned(rig_case):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=6)
    calls = [json.loads(c) for c in (pytester.path / "calls.jsonl").read_text().splitlines()]
    assert calls == [
        {"path": "owner/tickets", "name": "support", "split": "train", "revision": SHA},
        {"path": "owner/tickets", "name": None, "split": "validation", "revision": None},
    ]
    warned = result.reprec.getcalls("pytest_warning_recorded")  # type: ignore[attr-defined]
    assert [
        (w.warning_message.category.__name__, str(w.warning_message.message)) for w in warned
    ] == [
        (
            "RiggingWarning",
            "test_a_hub_dataset_is_loaded_as_the_marker_pins_it.py::test_unpinned: "
            "@pytest.mark.rig_cases: hf://owner/tickets is not pinned: the hub dataset can "
            "change under the suite; pin it with revision=<commit sha>",
        )
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            f"revision={SHA!r}",
            "hf://owner/tickets: the dataset has splits (train, validation): pick one with split=",
        ),
        (
            f"split='train', revision={SHA!r}",
            "hf://owner/missing: cannot load the dataset: DatasetNotFoundError: "
            "Dataset 'owner/missing' doesn't exist",
        ),
    ],
    ids=["no split", "not found"],
)
def test_a_hub_dataset_that_cannot_give_cases_is_one_collection_error(
    pytester: pytest.Pytester, arguments: str, message: str
) -> None:
    ini(pytester)
    pytester.makeconftest(HUB_CONFTEST.format(rows=ROWS))
    name = "owner/missing" if "missing" in message else "owner/tickets"
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.rig_cases("hf://{name}", id="name", {arguments})
        def test_x(rig_case):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert f"::test_x: @pytest.mark.rig_cases: {message}" in result.stdout.str()


def test_under_xdist_each_case_of_a_saved_dataset_runs_once(pytester: pytest.Pytester) -> None:
    ini(pytester)
    rows = [{"name": f"case{n}", "question": f"q{n}", "score": n / 2} for n in range(8)]
    saved(pytester.path / "data", rows)
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.rig_cases("data")
        def test_x(rig_case, question):
            with open("ran.txt", "a") as file:
                file.write(f"{rig_case.id} {question} {os.environ['PYTEST_XDIST_WORKER']}\\n")
        """
    )
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=8)
    ran = [line.split() for line in (pytester.path / "ran.txt").read_text().splitlines()]
    assert sorted(q for _, q, _ in ran) == [f"q{n}" for n in range(8)]
    assert len({i for i, _, _ in ran}) == 8
    assert {w for _, _, w in ran} == {"gw0", "gw1"}
