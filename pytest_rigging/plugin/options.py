"""The plugin's command-line options, ini keys and markers, declared once."""

from __future__ import annotations

import os
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
    appends: bool = False
    """Repeatable: the option appends, the ini key is a list of lines."""


SETTINGS = (
    Setting(
        "models",
        "IDS",
        "models to run rig tests on: comma-separated identifiers "
        "(`gpt-4o,temperature=0.2,claude-haiku-4-5` is two); repeatable",
        appends=True,
    ),
    Setting(
        "params",
        "K=V,...",
        "a generation params set (`temperature=0.7,max_tokens=200`); repeat for more sets",
        appends=True,
    ),
    Setting("runs", "N", "samples per cell (default 1)"),
    Setting(
        "concurrency",
        "N",
        "model calls in flight at once, for the whole run (default 64; split across xdist workers)",
    ),
    *(
        Setting(name, "[MODEL=]RATE", f"{f.help} (0-1 or N%; MODEL= for one model)", True)
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
    "rig_cell(model, params): set by pytest-rigging on every matrix item: its model "
    "(full identifier, or the short label ids show) and params "
    "(select with -m \"rig_cell(model='...')\")",
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("rigging", "pytest-rigging: LLM eval matrix")
    for setting in SETTINGS:
        group.addoption(
            f"--rig-{setting.name.replace('_', '-')}",
            action="append" if setting.appends else "store",
            metavar=setting.metavar,
            help=setting.help.replace("%", "%%") + ("; repeatable" if setting.appends else ""),
        )
        if setting.appends:
            parser.addini(f"rig_{setting.name}", setting.help, type="linelist")
        else:
            parser.addini(f"rig_{setting.name}", setting.help, type="string")
    group.addoption(
        "--rig-report", metavar="PATH", help="write the run's figures and records as JSON"
    )
    group.addoption(
        "--rig-save-baseline",
        metavar="PATH",
        help="write this run's item outcomes and model rates as a baseline to commit",
    )
    group.addoption(
        "--rig-baseline",
        metavar="PATH",
        help="compare this run with a saved baseline: list flipped items and rates that moved "
        "beyond noise; items failing in both are known failures (xfail) and don't fail the run",
    )
    group.addoption(
        "--rig-fail-on-regression",
        action="store_true",
        help="with --rig-baseline: also fail the run when a model's parse or pass rate dropped "
        "beyond noise (95%% intervals apart), even if every item passed",
    )
    group.addoption(
        "--rig-shard",
        metavar="K/N",
        help="run the K-th of N slices of the suite, balanced by item count (whole test "
        "functions; one bigger than a slice's share is cut by cases, each case with all its "
        "cells and samples in one slice), for a CI matrix of N jobs whose reports "
        "`python -m pytest_rigging merge` joins",
    )


def asked(config: pytest.Config) -> bool:
    """Whether any rig option or ini key is set (an empty or zero value counts)."""
    names = [f"rig_{setting.name}" for setting in SETTINGS]
    return any(config.getoption(n) is not None for n in [*names, "rig_report"]) or any(
        config.getini(n) for n in names
    )


def read_file_option(config: pytest.Config, option: str) -> Path | None:
    """A file path option's value; a blank or a folder is a usage error naming it."""
    path = config.getoption(option)
    if path is None:
        return None
    if not path.strip() or os.path.isdir(path):
        raise pytest.UsageError(f"--{option.replace('_', '-')}: {path!r} is not a file path")
    return Path(path)
