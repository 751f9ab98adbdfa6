"""The per-model table fits the terminal's width as pytest reads it (`COLUMNS` here):
headers on two lines, then the columns that matter least left out, said in a line; the
model, the params and the rates with their intervals always shown. A log (no terminal,
no `COLUMNS`) gets the whole table."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ini
from tests.test_reports import MODELS, PIPELINE, RESULT_STYLE

SUITE = PIPELINE + RESULT_STYLE.replace("min_pass=2", "min_pass=0")
RATE = r"\d+\.\d% \[\d+\.\d-\d+\.\d\]"
"""A rate with its 95% interval, as the table shows it."""
EVERY_HEADER = (
    "chats  1st try  recovered  exhausted  errors  parse rate [95% CI]  pass rate [95% CI]  "
    "items ok/fail/err  tokens in/out  cost  latency p50"
)


def run_at(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    width: int,
    *args: str,
    models: dict[str, str] = MODELS,
) -> list[str]:
    """The suite on scripted `models` at a terminal `width` wide (0: into a log, as in CI,
    where nothing says how wide); the table's lines (from
    its header to the line before pytest's next one)."""
    ini(pytester)
    pytester.makepyfile(test_suite=SUITE)
    for name, rules in models.items():
        (pytester.path / f"{name}.toml").write_text(rules)
    given = ",".join(f"scripted!{name}.toml" for name in models)
    if width:
        monkeypatch.setenv("COLUMNS", str(width))
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
    result = pytester.runpytest("--rig-models", given, "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=2 * len(models))
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "rigging: parse success per model" in line)
    after = range(start + 1, len(lines))
    end = next(i for i in after if lines[i].startswith("=") or " passed in " in lines[i])
    return lines[start + 1 : end]


def rows_of(table: list[str]) -> dict[str, str]:
    return {line.split()[0]: line for line in table if line.split()[0] in MODELS}


@pytest.mark.parametrize("verbosity", ["", "-v", "-q"], ids=["default", "v", "q"])
@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_terminal(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, width: int, verbosity: str
) -> None:
    args = [verbosity, "--rig-params", "temperature=0.1"] if verbosity == "-v" else [verbosity]
    table = run_at(pytester, monkeypatch, width, *filter(None, args))
    assert all(len(line) <= width for line in table), "\n".join(table)
    rows = rows_of(table)
    assert list(rows) == list(MODELS)
    for row in rows.values():
        assert len(re.findall(RATE, row)) == 2, row  # parse and pass rates with intervals
    if verbosity == "-v":
        assert all(" temperature=0.1 " in row for row in rows.values())
    text = " ".join(table)
    if width == 80:  # the least important first: the latency, the cost, the tokens
        said = r"\(left out to fit 80 columns: ([^;]+); widen the terminal or see --rig-report\)$"
        left_out = re.search(said, text)
        assert left_out is not None, text
        assert {"tokens in/out", "cost"} <= set(left_out[1].split(", "))
    else:
        assert "items" in table[0] and "ok/fail/err" in "".join(table[:2])


def test_a_wide_terminal_shows_every_column_and_q_keeps_the_intervals_and_spending(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is left out at 250 columns; -q leaves out only the parse buckets, the chats
    and the latency, never the intervals, tokens or cost."""
    quiet = (
        "errors  parse rate [95% CI]  pass rate [95% CI]  items ok/fail/err  tokens in/out  cost"
    )
    for verbosity, header in [
        ("", f"model  {EVERY_HEADER}"),
        ("-v", f"model  params  {EVERY_HEADER}"),
        ("-q", f"model  {quiet}"),
    ]:
        table = run_at(pytester, monkeypatch, 250, *filter(None, [verbosity]))
        assert re.sub(r"\s{2,}", "  ", table[0]).strip() == header, verbosity
        assert not any("left out" in line for line in table)
        assert all(len(re.findall(RATE, row)) == 2 for row in rows_of(table).values())


def test_a_long_model_name_wraps_rather_than_losing_the_rates(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When nothing else is left to give, the model column wraps."""
    long_name = "a_model_whose_rules_file_has_a_rather_long_name"
    table = run_at(pytester, monkeypatch, 60, models={**MODELS, long_name: MODELS["good"]})
    assert all(len(line) <= 60 for line in table), "\n".join(table)
    assert long_name in "".join(line.split()[0] for line in table if line[0] != " ")
    assert sum(len(re.findall(RATE, line)) for line in table) == 2 * 4


def test_a_log_with_no_width_gets_the_whole_table(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output that is no terminal, with no `COLUMNS` (a CI log): pytest draws its lines 80
    wide there, but nothing wraps a log, so every column stays."""
    table = run_at(pytester, monkeypatch, 0)
    assert re.sub(r"\s{2,}", "  ", table[0]).strip() == f"model  {EVERY_HEADER}"
    assert not any("left out" in line for line in table)
