"""Gates: thresholds on each model's figures that fail the run when a model falls short.

A threshold given without a model applies to every model; `model=value` sets (or
overrides) it for one model, named by its identifier or its short id label. Modes:
`point` judges the measured rate; `interval` is noise-aware and fails only when the 95%
interval lies wholly on the wrong side of the threshold; `strict` needs the whole
interval on the right side.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, replace

from pytest_rigging.plugin.records import RateName, Row, rate_of


@dataclass(frozen=True)
class Figure:
    """What a gate option judges: the row's figure, its name in messages, and which side
    of the threshold passes."""

    column: RateName
    name: str
    direction: t.Literal["min", "max"]
    help: str


FIGURES: dict[str, Figure] = {
    "min_parse_rate": Figure(
        "parse_rate", "parse rate", "min", "fail the run when a model's parse rate is below RATE"
    ),
    "min_pass_rate": Figure(
        "pass_rate",
        "sample pass rate",
        "min",
        "fail the run when a model's sample pass rate is below RATE",
    ),
    "max_error_rate": Figure(
        "error_rate",
        "error rate",
        "max",
        "fail the run when a model's infrastructure error rate is above RATE",
    ),
    "min_tool_parse_rate": Figure(
        "tool_parse_rate",
        "tool-call parse rate",
        "min",
        "fail the run when the share of a model's tool calls that could run as asked "
        "(arguments JSON that fit the tool's schema, a known tool) is below RATE",
    ),
    "max_unscored_rate": Figure(
        "unscored_rate",
        "unscored rate",
        "max",
        "fail the run when the share of a model's judged samples whose judge gave no "
        "verdict is above RATE",
    ),
}
"""Every gate option, by its name without prefix: `--rig-<name>`, ini `rig_<name>`, and
`merge --<name>` all come from here."""
MODES = ("point", "interval", "strict")
MODES_HELP = (
    "judge gates on the measured rate (point, default), leniently on its 95% interval "
    "(interval: fail only when clearly below), or strictly (strict)"
)


CHECKS = "rigging.gates"
"""The JUnit class name of the run's checks: `rigging.gates::rig-min-pass-rate[model]`."""


class GateError(ValueError):
    """A gate option could not be read."""


@dataclass(frozen=True)
class Check:
    """A run-level check (a gate on a model's figure, the budget, a model's rates against
    the baseline) as CI's test view shows it: one testcase, named after the option that
    asked for it, failing with its FAIL line."""

    name: str
    passed: bool
    line: str
    """Its line at the terminal: the FAIL line, or the pass line."""


def status(report: object) -> tuple[str, str, str] | None:
    """A check's report in pytest's terminal: counted under its own category ("gate
    failed", not "failed", so that the short summary and `--lf` don't take it for a test),
    shown on no test's line; a passing check is not counted (as a passing setup is not)."""
    category: str | None = getattr(report, "rig_check", None)
    return None if category is None else (category, "", "")


def apart(checks: t.Iterable[Check]) -> list[Check]:
    """The checks, a name given twice told apart (`[model#2]`): the table may have two rows
    of one model (a cell's, and a judge's at other params), and JUnit keeps one testcase
    per name."""
    seen: dict[str, int] = {}
    told = []
    for check in checks:
        count = seen[check.name] = seen.get(check.name, 0) + 1
        if count > 1:
            name = check.name.removesuffix("]")
            check = replace(check, name=f"{name}#{count}" + ("]" if name != check.name else ""))
        told.append(check)
    return told


def failed_category(checks: t.Sequence[Check]) -> str:
    """The closing summary line's word for the failed checks: "1 gate failed", "2 gates
    failed"."""
    return "gate failed" if sum(not c.passed for c in checks) == 1 else "gates failed"


@dataclass(frozen=True)
class Gate:
    option: str
    threshold: float
    model: str | None = None


@dataclass(frozen=True)
class GateResult:
    """A gate judged on one model. `value` is None when there was nothing to judge (`why`
    says what), which fails the gate: a release must not pass on no evidence."""

    gate: Gate
    model: str
    value: float | None
    interval: tuple[float, float] | None
    passed: bool
    mode: str
    why: str = ""

    def describe(self) -> str:
        figure = FIGURES[self.gate.option]
        name, direction = figure.name, figure.direction
        relation = ">=" if direction == "min" else "<="
        needs = (
            f"needs {relation} {self.gate.threshold:.1%} "
            f"(rig-{self.gate.option.replace('_', '-')}, {self.mode})"
        )
        if self.value is None:
            return f"{self.model}: no {name} to judge ({self.why}), {needs}"
        interval = f" [{self.interval[0]:.1%}-{self.interval[1]:.1%}]" if self.interval else ""
        return f"{self.model}: {name} {self.value:.1%}{interval}, {needs}"

    def line(self) -> str:
        return f"{'pass' if self.passed else 'FAIL'} {self.describe()}"

    def check(self) -> Check:
        option = f"rig-{self.gate.option.replace('_', '-')}"
        return Check(f"{option}[{self.model}]", self.passed, self.line())


def parse_gates(option: str, values: t.Iterable[str], where: str | None = None) -> list[Gate]:
    """`0.9`, `90%` or `model=0.95` values of one gate option."""
    gates = []
    for raw in values:
        text = raw.strip()
        if not text:
            continue
        model, _, number = text.rpartition("=")
        where = where or f"--{option.replace('_', '-')}"
        gates.append(Gate(option, _fraction(number, where, text), model.strip() or None))
    return gates


def _fraction(text: str, where: str, raw: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise GateError(f"{where}: expected a rate from 0 to 1 (or 0-100%), got {raw!r}")
    return value


def check_mode(mode: str, where: str) -> str:
    if mode not in MODES:
        raise GateError(f"{where}: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode


def evaluate(gates: t.Sequence[Gate], rows: t.Sequence[Row], mode: str) -> list[GateResult]:
    """Each model row against its gates (a per-model gate beats a global one); a per-model
    gate naming a model that never ran fails."""
    verdicts = []
    known = {row["model"] for row in rows} | {row["label"] for row in rows}
    never: dict[tuple[str, str], Gate] = {}
    for gate in gates:
        if gate.model is not None and gate.model not in known:
            never[(gate.option, gate.model)] = gate  # the last one given, as for a model that ran
    for (_, model), gate in never.items():
        verdicts.append(GateResult(gate, model, None, None, False, mode, "it never ran"))
    for row in rows:
        if "role" in row:
            continue  # a judge's own calls: its verdicts count on the models it judged
        names = {row["model"], row["label"]}
        for option in FIGURES:
            chosen = [g for g in gates if g.option == option and g.model in names]
            chosen = chosen or [g for g in gates if g.option == option and g.model is None]
            if chosen:
                verdict = _judge(chosen[-1], row, mode)
                if verdict is not None:
                    verdicts.append(verdict)
    return verdicts


def _judge(gate: Gate, row: Row, mode: str) -> GateResult | None:
    figure = FIGURES[gate.option]
    figures = rate_of(row, figure.column)
    value, direction = figures["value"], figure.direction
    if value is None:
        if row["chats"] and row["error"] == row["chats"]:
            why = f"all {row['chats']} of its chats errored"
            return GateResult(gate, row["model"], None, None, False, mode, why)
        return None  # nothing asked for it: no parse requirement, or no sample judged
    bounds = figures["interval"]
    interval = (bounds[0], bounds[1]) if bounds else None
    low, high = interval or (value, value)
    if direction == "min":
        judged = {"point": value, "interval": high, "strict": low}[mode]
        passed = judged >= gate.threshold
    else:
        judged = {"point": value, "interval": low, "strict": high}[mode]
        passed = judged <= gate.threshold
    return GateResult(gate, row["model"], value, interval, passed, mode)


def read_gates(
    get: t.Callable[[str], t.Any], ini: t.Callable[[str], t.Any]
) -> tuple[list[Gate], str]:
    """Gates from the command line (`get`) over the ini file (`ini`), per option."""
    gates: list[Gate] = []
    for option in FIGURES:
        given = get(f"rig_{option}")
        where = f"--rig-{option.replace('_', '-')}" if given else f"ini rig_{option}"
        gates.extend(parse_gates(option, given or ini(f"rig_{option}") or [], where))
    mode = get("rig_gate_mode")
    if mode:
        return gates, check_mode(mode, "--rig-gate-mode")
    return gates, check_mode(ini("rig_gate_mode").strip() or "point", "ini rig_gate_mode")
