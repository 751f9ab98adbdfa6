"""Gates: thresholds on each model's figures that fail the run when a model falls short.

A threshold given without a model applies to every model; `model=value` sets (or
overrides) it for one model, named by its identifier or its short id label. Modes:
`point` judges the measured rate; `interval` is noise-aware and fails only when the 95%
interval lies wholly on the wrong side of the threshold; `strict` needs the whole
interval on the right side.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

FIGURES = {
    "min_parse_rate": ("parse_rate", "parse rate", "min"),
    "min_pass_rate": ("pass_rate", "sample pass rate", "min"),
    "max_error_rate": ("error_rate", "error rate", "max"),
}
MODES = ("point", "interval", "strict")


class GateError(ValueError):
    """A gate option could not be read."""


@dataclass(frozen=True)
class Gate:
    option: str
    threshold: float
    model: str | None = None


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    model: str
    value: float
    interval: tuple[float, float] | None
    passed: bool
    mode: str

    def describe(self) -> str:
        _, name, direction = FIGURES[self.gate.option]
        interval = f" [{self.interval[0]:.1%}-{self.interval[1]:.1%}]" if self.interval else ""
        relation = ">=" if direction == "min" else "<="
        return (
            f"{self.model}: {name} {self.value:.1%}{interval}, needs {relation} "
            f"{self.gate.threshold:.1%} (rig-{self.gate.option.replace('_', '-')}, {self.mode})"
        )


def parse_gates(option: str, values: t.Iterable[str]) -> list[Gate]:
    """`0.9`, `90%` or `model=0.95` values of one gate option."""
    gates = []
    for raw in values:
        text = raw.strip()
        if not text:
            continue
        model, _, number = text.rpartition("=")
        gates.append(Gate(option, _fraction(number, option, text), model.strip() or None))
    return gates


def _fraction(text: str, option: str, raw: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        name = f"--rig-{option.replace('_', '-')}"
        raise GateError(f"{name}: expected a rate from 0 to 1 (or 0-100%), got {raw!r}")
    return value


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise GateError(f"--rig-gate-mode: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode


def evaluate(
    gates: t.Sequence[Gate], rows: t.Sequence[dict[str, t.Any]], mode: str
) -> list[GateResult]:
    """Each model row against its gates (a per-model gate beats a global one)."""
    verdicts = []
    for row in rows:
        names = {row["model"], row.get("label")}
        for option in FIGURES:
            chosen = [g for g in gates if g.option == option and g.model in names]
            chosen = chosen or [g for g in gates if g.option == option and g.model is None]
            if chosen:
                verdict = _judge(chosen[-1], row, mode)
                if verdict is not None:
                    verdicts.append(verdict)
    return verdicts


def _judge(gate: Gate, row: dict[str, t.Any], mode: str) -> GateResult | None:
    figure, _, direction = FIGURES[gate.option]
    value = row[figure]
    if value is None:  # nothing to judge: no parse requirement, no judged sample
        return None
    interval = tuple(row[f"{figure}_interval"]) if row[f"{figure}_interval"] else None
    low, high = interval or (value, value)
    if direction == "min":
        judged = {"point": value, "interval": high, "strict": low}[mode]
        passed = judged >= gate.threshold
    else:
        judged = {"point": value, "interval": low, "strict": high}[mode]
        passed = judged <= gate.threshold
    return GateResult(gate, row["model"], value, interval, passed, mode)  # type: ignore[arg-type]


def read_gates(
    get: t.Callable[[str], t.Any], ini: t.Callable[[str], t.Any]
) -> tuple[list[Gate], str]:
    """Gates from the command line (`get`) over the ini file (`ini`), per option."""
    gates: list[Gate] = []
    for option in FIGURES:
        values = get(f"rig_{option}") or ini(f"rig_{option}") or []
        gates.extend(parse_gates(option, values))
    return gates, check_mode(get("rig_gate_mode") or ini("rig_gate_mode") or "point")
