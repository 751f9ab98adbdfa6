"""The plugin's command-line options, ini keys and markers, declared once."""

from __future__ import annotations

import inspect
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_rigging.plugin.gates import FIGURES, MODES_HELP


@dataclass(frozen=True)
class Setting:
    """A rig setting with both a command-line option (`--rig-<name>`) and an ini key
    (`rig_<name>`)."""

    name: str
    metavar: str
    help: str
    kind: t.Literal["text", "lines", "path", "folder", "flag"] = "text"
    """`lines`: the option appends, the ini key is a list of lines; `path`: a file, which the
    ini file names from its own folder; `folder`: a folder, named as a file is; `flag`: the
    option takes no value, the ini key is a boolean."""


SETTINGS = (
    Setting(
        "models",
        "IDS",
        "models to run rig tests on: comma-separated identifiers "
        "(`gpt-4o,temperature=0.2,claude-haiku-4-5` is two); repeatable",
        "lines",
    ),
    Setting(
        "params",
        "K=V,...",
        "a generation params set (`temperature=0.7,max_tokens=200`); repeat for more sets",
        "lines",
    ),
    Setting("runs", "N", "samples per cell (default 1)"),
    Setting(
        "concurrency",
        "N",
        "model calls in flight at once, for the whole run (default 64; split across xdist workers)",
    ),
    *(
        Setting(name, "[MODEL=]RATE", f"{f.help} (0-1 or N%; MODEL= for one model)", "lines")
        for name, f in FIGURES.items()
    ),
    Setting("gate_mode", "MODE", MODES_HELP),
    Setting(
        "record",
        "MODE",
        "record model calls in cassettes beside each test module and replay them: none "
        "(replay only; a miss fails), once (record a missing cassette, else replay only), "
        "new_episodes (replay, record misses), all (record again)",
    ),
    Setting(
        "max_tokens",
        "N",
        "start no model call once the run has used N tokens (in and out; split across xdist "
        "workers): items not yet run are skipped and the run fails",
    ),
    Setting(
        "max_cost",
        "USD",
        "start no model call once the run has spent USD at litellm's prices (split across "
        "xdist workers): items not yet run are skipped and the run fails",
    ),
    Setting("report", "PATH", "write the run's figures and records as JSON", "path"),
    Setting(
        "html",
        "PATH",
        "write the run as one self-contained HTML page: the case x model grid, every "
        "sample's dialog, and flips against --rig-baseline",
        "path",
    ),
    Setting(
        "save_baseline",
        "PATH",
        "write this run's item outcomes and model rates as a baseline to commit",
        "path",
    ),
    Setting(
        "baseline",
        "PATH",
        "compare this run with a saved baseline: list flipped items and rates that moved "
        "beyond noise; items failing in both are known failures (xfail) and don't fail the run",
        "path",
    ),
    Setting(
        "fail_on_regression",
        "",
        "with a baseline: also fail the run when a model's parse or pass rate dropped beyond "
        "noise (95% intervals apart), even if every item passed",
        "flag",
    ),
    Setting(
        "shard",
        "K/N",
        "run the K-th of N slices of the suite, balanced by item count (whole test "
        "functions; one bigger than a slice's share is cut by cases, each case with all its "
        "cells and samples in one slice), for a CI matrix of N jobs whose reports "
        "`python -m pytest_rigging merge` joins",
    ),
    Setting(
        "judge",
        "MODEL",
        "the model that judges @pytest.mark.rig_judge tests (fixed across the matrix; a "
        "marker's model= overrides it)",
    ),
    Setting(
        "judge_labels",
        "FILE",
        "a JSONL file of people's labels (output, label, optional input and reference): each "
        "judge grades them too, and the report gives its agreement with people (Cohen's kappa, "
        "sensitivity, specificity) and the judged pass rate corrected for its error",
        "path",
    ),
    Setting(
        "min_judge_kappa",
        "K",
        "fail the run when a judge agrees with --rig-judge-labels less than K (Cohen's kappa)",
    ),
    Setting(
        "inspect_log",
        "DIR",
        "write the run as inspect_ai eval logs into DIR, one per test function and cell, "
        "for `inspect view DIR`",
        "folder",
    ),
)

RIG_FIXTURES = frozenset(
    {
        "rig_cell",
        "rig_model",
        "rig_params",
        "rig_generator",
        "rig_pipeline",
        "rig_chat",
        "rig_chats",
        "rig_run",
    }
)
"""A test that asks for any of these is a matrix test: one item per cell."""


JUDGES_RIG_CHAT = (
    "@pytest.mark.rig_judge judges each sample of a test that takes rig_chat (and "
    "rig_verdict); this test doesn't take rig_chat"
)


def has_cases(collector: pytest.Collector, function: object) -> bool:
    """Whether a function about to be collected has `rig_cases` on it or around it, asked
    of every function pytest collects: without importing the cases module."""
    own = any(m.name == "rig_cases" for m in getattr(function, "pytestmark", ()))
    return own or collector.get_closest_marker("rig_cases") is not None


def judged_outside_matrix(metafunc: pytest.Metafunc) -> None:
    """A `rig_judge` test with no rig fixture is a collection error (it would otherwise run
    unjudged, silently), asked of every test that isn't a matrix test."""
    if metafunc.definition.get_closest_marker("rig_judge") is not None:
        raise pytest.Collector.CollectError(f"{metafunc.definition.nodeid}: {JUDGES_RIG_CHAT}")


def mark_async(made: object) -> None:
    """Mark the async rig tests among items just made for pytest-asyncio (its strict mode
    needs the mark before it converts the items)."""
    for item in made if isinstance(made, list) else [made]:
        if (
            isinstance(item, pytest.Function)
            and inspect.iscoroutinefunction(item.obj)
            and not RIG_FIXTURES.isdisjoint(item.fixturenames)
            and item.get_closest_marker("asyncio") is None
        ):
            item.add_marker(pytest.mark.asyncio)


def in_matrix(item: pytest.Item) -> bool:
    """Whether `item` may be a matrix item (it has a `rig_cell`), asked without importing
    the matrix: a suite with no rig test never imports it."""
    return "rig_cell" in getattr(item, "fixturenames", ())


MARKERS = (
    "rig_models(*identifiers): run this test on these models instead of --rig-models/ini",
    "rig_params(*params): run this test with these params sets ('k=v,...', dicts or "
    "GenerateParams) instead of --rig-params/ini",
    "rig(runs=1, min_pass=runs): draw `runs` samples per cell; the item passes when "
    "at least `min_pass` samples pass the test's checks",
    "rig_cases(source, id=None, fields=None, model=None, limit=None, sample=None, seed=0, "
    "format=None, split=None, revision=None, config=None): parametrize this test with the "
    "cases of a JSONL, JSON or CSV file or a Hugging Face dataset; each field by name, the "
    "whole case as the rig_case fixture",
    "rig_judge(rubric, reference=None, input=None, judge_runs=1, model=None, template=None, "
    "scale=None, versus=None, versus_model=None): judge each sample of this rig_chat test "
    "with a model (--rig-judge) against the rubric; the verdict is the rig_verdict fixture",
    "rig_cell(model, params): set by pytest-rigging on every matrix item: its model "
    "(full identifier, or the short label ids show) and params "
    "(select with -m \"rig_cell(model='...')\")",
)


INI_TYPES: dict[str, t.Literal["string", "linelist", "bool"]] = {
    "text": "string",
    "lines": "linelist",
    "path": "string",
    "folder": "string",
    "flag": "bool",
}
"""pytest's ini type for each kind of setting (a path is read from the ini file's folder
here: pytest's own path types are lists)."""


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("rigging", "pytest-rigging: LLM eval matrix")
    for setting in SETTINGS:
        option = f"--rig-{setting.name.replace('_', '-')}"
        shown = setting.help.replace("%", "%%")
        if setting.kind == "flag":  # None when not given: the ini key decides
            group.addoption(option, action="store_true", default=None, help=shown)
        else:
            lines = setting.kind == "lines"
            group.addoption(
                option,
                action="append" if lines else "store",
                metavar=setting.metavar,
                help=shown + ("; repeatable" if lines else ""),
            )
        named = setting.kind in ("path", "folder")
        relative = " (relative to the ini file's folder)" if named else ""
        parser.addini(f"rig_{setting.name}", setting.help + relative, type=INI_TYPES[setting.kind])


def asked(config: pytest.Config) -> bool:
    """Whether any rig option or ini key is set (an empty or zero value counts), but for
    the shard, which selects among a suite's items and sets nothing of a rig run."""
    names = [f"rig_{setting.name}" for setting in SETTINGS if setting.name != "shard"]
    return any(config.getoption(n) is not None for n in names) or any(
        config.getini(n) for n in names
    )


class Given(t.NamedTuple):
    """A setting's raw value and where it came from, as messages name it."""

    value: str
    where: str


def given(config: pytest.Config, name: str) -> Given | None:
    """Text rig setting `name`'s raw value and where it came from (`--rig-max-tokens`, `ini
    rig_max_tokens`): the command line over the ini file; None when neither sets it."""
    cli: str | None = config.getoption(f"rig_{name}")
    if cli is not None:
        return Given(cli, f"--rig-{name.replace('_', '-')}")
    ini: str = config.getini(f"rig_{name}")
    if ini.strip():
        return Given(ini, f"ini rig_{name}")
    return None


def ini_folder(config: pytest.Config) -> Path:
    """The folder relative paths in the ini file start from: the ini file's own."""
    return config.inipath.parent if config.inipath else config.rootpath


class FileSetting(t.NamedTuple):
    """A file a setting names, resolved, and where it was named, as messages say it."""

    path: Path
    where: str


def file_setting(config: pytest.Config, name: str) -> FileSetting | None:
    """A file path setting: the command line's from the working directory, the ini file's
    from the ini file's folder (as `scripted!` paths in `rig_models`); a blank or a folder
    is a usage error naming where it came from."""
    return _path_setting(config, name, "file")


def folder_setting(config: pytest.Config, name: str) -> FileSetting | None:
    """A folder path setting, resolved as `file_setting` resolves a file's; a blank is a
    usage error. What is in its place is found when the run writes into it: a file there is
    a warning then, as a report that can't be written is."""
    return _path_setting(config, name, "folder")


def _path_setting(
    config: pytest.Config, name: str, kind: t.Literal["file", "folder"]
) -> FileSetting | None:
    value = given(config, name)
    if value is None:
        return None
    text, where = value
    path = Path(text.strip())
    if where.startswith("ini "):
        path = ini_folder(config) / path
    if not text.strip() or (kind == "file" and path.is_dir()):
        raise pytest.UsageError(f"{where}: {text!r} is not a {kind} path")
    return FileSetting(path, where)


def flag(config: pytest.Config, name: str) -> str | None:
    """Where a flag setting was turned on: the command line, else the ini file (which
    `-o rig_NAME=false` overrides); None when it is off."""
    if config.getoption(f"rig_{name}"):
        return f"--rig-{name.replace('_', '-')}"
    if config.getini(f"rig_{name}"):
        return f"ini rig_{name}"
    return None
