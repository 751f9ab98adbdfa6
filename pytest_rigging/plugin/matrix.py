"""The model x params matrix: where settings come from, and the cells and ids they make.

Precedence, per setting: marker > command line > ini > an offline default. Ids are short
and `-k` friendly (`gpt-4o-mini-t0.7`), unique, and derived only from the settings, so
every xdist worker computes the same ones; the full identifier travels on the item.
"""

from __future__ import annotations

import functools
import os
import re
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_rigging._secrets import is_secret_name, mask_identifier, redact
from pytest_rigging.error import InvalidGeneratorError
from pytest_rigging.generator.base import (
    GenerateParams,
    Generator,
    get_generator,
    parse_params,
)
from pytest_rigging.plugin._compat import call_params
from pytest_rigging.plugin.options import given, ini_folder
from pytest_rigging.plugin.records import CellRecord

if t.TYPE_CHECKING:
    from pytest_rigging.plugin.state import Run

DEFAULT_MODELS = ("echo!echo",)
DEFAULT_RUNS = 1
DEFAULT_CONCURRENCY = 64

_ABBREVIATIONS = {
    "temperature": "t",
    "top_p": "p",
    "top_k": "k",
    "max_tokens": "mt",
    "seed": "s",
    "presence_penalty": "pp",
    "frequency_penalty": "fp",
    "timeout": "to",
    "stop": "stop",
    "tool_mode": "",
    "tool_choice": "tc",
}
_UNSAFE = re.compile(r"[^\w:+\-.\\/]")

ParamsLike = str | dict[str, t.Any] | GenerateParams


@dataclass(frozen=True)
class Cell:
    """One (model, params) cell of the matrix. `model` is the full identifier, which may
    hold a key: what is shown anywhere is `shown_model`."""

    model: str = field(repr=False)
    params: GenerateParams = field(repr=False)
    id: str
    label: str

    def __repr__(self) -> str:
        return f"Cell({self.shown_model!r}, params={self.params_text!r}, id={self.id!r})"

    @functools.cached_property
    def params_text(self) -> str:
        return params_text(self.params)

    @functools.cached_property
    def shown_model(self) -> str:
        """The model identifier as it may be printed or stored (no secret in it)."""
        return mask_identifier(self.model)

    @functools.cached_property
    def marks(self) -> tuple[pytest.MarkDecorator, ...]:
        """The `rig_cell` marks its items carry (`-m "rig_cell(model='...')"`): by the shown
        identifier, and by the short label when that differs. Made once per cell and shared
        by its items (10,000 items would otherwise hold 20,000 marks)."""
        names = dict.fromkeys([self.shown_model, self.label])
        return tuple(pytest.mark.rig_cell(model=n, params=self.params_text) for n in names)

    @property
    def record(self) -> CellRecord:
        """The cell as records name it."""
        return {
            "model": self.shown_model,
            "label": self.label,
            "params": self.params_text,
            "cell": self.id,
        }


def params_text(params: GenerateParams) -> str:
    """Params as an identifier spells them (`temperature=0.2,stop=a;b`); `{}` when empty."""
    values = {**params.set_values(), **{f"extra.{k}": v for k, v in params.extra.items()}}
    parts = [
        f"{k}={';'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in values.items()
    ]
    return mask_identifier(",".join(parts)) or "{}"


@dataclass(frozen=True)
class Verdict:
    """How many samples a test draws per cell, and how many must pass."""

    runs: int
    min_pass: int


@dataclass(frozen=True)
class Range:
    """A param's values that some provider accepts: every provider refuses the others."""

    low: float
    high: float | None = None
    above: bool = False
    """`low` itself is refused too (a timeout of 0)."""
    note: str = ""

    def holds(self, value: float) -> bool:
        over_low = value > self.low if self.above else value >= self.low
        return over_low and (self.high is None or value <= self.high)

    def refused(self) -> str:
        """The values outside it, as a message names them (`outside 0 to 2`)."""
        low = format(self.low, "g")
        if self.high is not None:
            return f"outside {low} to {format(self.high, 'g')}{self.note}"
        return f"of {low} or below" if self.above else f"below {low}"


RANGES = {
    "temperature": Range(0, 2, note=" (Anthropic's range is 0 to 1)"),
    "top_p": Range(0, 1),
    "max_tokens": Range(1),
    "n": Range(1),
    "presence_penalty": Range(-2, 2),
    "frequency_penalty": Range(-2, 2),
    "timeout": Range(0, above=True),
}
"""Where params must lie for any provider to take them; a value outside is refused at
start-up. Only what is wrong everywhere: ranges that differ per provider are theirs to
judge (a temperature of 1.5 is refused by Anthropic alone), and `top_k` (-1 is vLLM's
"all") and `seed` have none."""


def out_of_range(params: GenerateParams) -> str | None:
    """The first param (an `extra.` one too: `extra.n=0`) outside its range, described."""
    values = {**params.set_values(), **{f"extra.{k}": v for k, v in params.extra.items()}}
    for name, value in values.items():
        key = name.removeprefix("extra.")
        known = RANGES.get(key)
        if (
            known is not None
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and not known.holds(value)
        ):
            shown = format(value, "g") if isinstance(value, float) else str(value)
            return f"{name}={shown} is out of range: no provider accepts {key} {known.refused()}"
    return None


def split_identifiers(text: str) -> list[str]:
    """`gpt-4o,temperature=0.2,claude-3-5-haiku` -> `["gpt-4o,temperature=0.2",
    "claude-3-5-haiku"]`: identifiers carry their own commas, so a part that holds `=`
    belongs to the identifier before it."""
    identifiers: list[str] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise InvalidGeneratorError(
                f"empty model identifier in {mask_identifier(text)!r} "
                "(two commas in a row, or a comma at either end)"
            )
        if "=" in part:
            if not identifiers:
                raise InvalidGeneratorError(
                    f"{mask_identifier(text)!r} starts with a param "
                    f"({mask_identifier(part)!r}), not a model"
                )
            identifiers[-1] += f",{part}"
        else:
            identifiers.append(part)
    return identifiers


Checker = t.Callable[[str, Generator], "str | None"]
"""`Generator.check` of an identifier's generator (the front caches it for the run)."""


def validate_models(
    identifiers: t.Sequence[str], where: str, check: Checker | None = None
) -> tuple[list[str], list[str]]:
    """Build each identifier once, so that a bad one fails now with a message naming it, and
    drop those that are the same model once parsed. Returns the models and warnings.

    `check`, when given, asks whether each model can work at all (`Generator.check`: the
    litellm provider looks up its route and model in litellm's bundled data).
    """
    if not identifiers:
        raise InvalidGeneratorError(f"{where}: no model given")
    kept: dict[tuple[str, str | None], str] = {}
    notes: list[str] = []
    for identifier in identifiers:
        try:
            generator = get_generator(identifier)
            problem = out_of_range(generator.params)
            if problem:
                raise InvalidGeneratorError(f"{problem}, in {mask_identifier(identifier)!r}")
            note = check(identifier, generator) if check is not None else None
        except InvalidGeneratorError as error:
            raise InvalidGeneratorError(f"{where}: {error}") from None
        if note:
            notes.append(f"{where}: {note}")
        key = (generator.to_identifier(), generator.secret())
        if key in kept:
            notes.append(
                f"{where}: {mask_identifier(identifier)!r} is the same model as "
                f"{mask_identifier(kept[key])!r}; running it once"
            )
        else:
            kept[key] = identifier
    return list(kept.values()), notes


def unique_params(
    sets: t.Sequence[GenerateParams], texts: t.Sequence[object], where: str
) -> tuple[list[GenerateParams], list[str]]:
    """`sets` without repeats (`temperature=0.2` and `temperature=0.20` are one set)."""
    kept: list[GenerateParams] = []
    kept_texts: list[str] = []
    notes = []
    for params, text in zip(sets, texts, strict=True):
        if params in kept:
            first = kept_texts[kept.index(params)]
            shown = text if isinstance(text, str) else params_text(params)
            notes.append(
                f"{where}: params {mask_identifier(shown)!r} are the same as "
                f"{mask_identifier(first)!r}; running them once"
            )
        else:
            kept.append(params)
            kept_texts.append(text if isinstance(text, str) else params_text(params))
    return kept, notes


def to_params(value: ParamsLike, where: str) -> GenerateParams:
    """A params set as given; a value no provider takes (`RANGES`) is an error naming it."""
    params = _read_params(value, where)
    problem = out_of_range(params)
    if problem:
        raise InvalidGeneratorError(f"{where}: {problem}")
    return params


def _read_params(value: ParamsLike, where: str) -> GenerateParams:
    if isinstance(value, GenerateParams):
        return value
    if isinstance(value, dict):
        try:
            return GenerateParams(**value)
        except (TypeError, ValueError) as error:
            keys = ", ".join(sorted(map(str, value)))
            raise InvalidGeneratorError(
                f"{where}: invalid params dict (keys {keys}): {redact(str(error))}"
            ) from None
    if isinstance(value, str):
        try:
            return parse_params(value)
        except InvalidGeneratorError as error:
            raise InvalidGeneratorError(f"{where}: {error}") from None
    raise InvalidGeneratorError(
        f"{where}: params must be 'key=value,...', a dict or GenerateParams, "
        f"got {type(value).__name__}"
    )


def resolve_relative_scripts(identifiers: list[str], base: Path) -> list[str]:
    """`scripted!` rules paths in an ini file are relative to that file, not to the cwd."""
    resolved = []
    for identifier in identifiers:
        provider, _, rest = identifier.partition("!")
        path, comma, tail = rest.partition(",")
        if provider == "scripted" and path and not Path(path).is_absolute():
            candidate = base / path
            if candidate.exists() or candidate.with_suffix(".toml").exists():
                identifier = f"scripted!{os.path.relpath(candidate)}{comma}{tail}"
        resolved.append(identifier)
    return resolved


def label_of(generator: Generator) -> str:
    """A model's short label, as ids show it (`gpt-4o-mini`, `sloppy` for a rules file)."""
    name = Path(generator.model).stem if generator.provider == "scripted" else generator.model
    return name.rsplit("/", 1)[-1]


def _label(generator: Generator) -> str:
    return "-".join([label_of(generator), *_params_labels(generator.params)])


def _long_label(generator: Generator) -> str:
    return "-".join(
        [generator.provider, generator.model.replace("/", "-"), *_params_labels(generator.params)]
    )


def _params_labels(params: GenerateParams) -> list[str]:
    labels = []
    for key, value in params.set_values().items():
        if key == "api_base":
            continue
        if isinstance(value, list):
            text = ";".join(map(str, value))
        else:
            text = format(value, "g") if isinstance(value, float) else str(value)
        labels.append(f"{_ABBREVIATIONS.get(key, key)}{text}")
    labels.extend(f"{k}{v}" for k, v in params.extra.items() if not is_secret_name(k))
    return labels


def _unique(labels: list[str], fallbacks: list[str]) -> list[str]:
    """Labels made unique: first by a longer form, then by position."""
    chosen = [
        label if labels.count(label) == 1 else fallback
        for label, fallback in zip(labels, fallbacks, strict=True)
    ]
    return [
        label if chosen.count(label) == 1 else f"{label}-{index}"
        for index, label in enumerate(chosen)
    ]


def build_cells(models: t.Sequence[str], params_sets: t.Sequence[GenerateParams]) -> list[Cell]:
    """Every (model, params) pair, with short unique ids (`gpt-4o-mini-t0.7`)."""
    generators = [get_generator(m) for m in models]
    model_labels = _unique([_label(g) for g in generators], [_long_label(g) for g in generators])
    params_labels = _unique(
        ["-".join(_params_labels(p)) for p in params_sets],
        ["-".join(_params_labels(p)) for p in params_sets],
    )
    cells = []
    for model, model_label in zip(models, model_labels, strict=True):
        for params, params_label in zip(params_sets, params_labels, strict=True):
            label = f"{model_label}-{params_label}" if params_label else model_label
            cells.append(
                Cell(model=model, params=params, id=_UNSAFE.sub("_", label), label=model_label)
            )
    return cells


def _rig_marker_signature(
    runs: int | None = None, min_pass: int | None = None
) -> dict[str, int | None]:
    return {"runs": runs, "min_pass": min_pass}


def read_verdict(marker: pytest.Mark | None, default_runs: int, where: str) -> Verdict:
    """`@pytest.mark.rig(runs=N, min_pass=K)`, checked like a call, so typos are errors."""
    values: dict[str, int | None] = {"runs": None, "min_pass": None}
    if marker is not None:
        try:
            values = _rig_marker_signature(*marker.args, **marker.kwargs)
        except TypeError as error:
            message = str(error).replace("_rig_marker_signature()", "@pytest.mark.rig()")
            raise InvalidGeneratorError(f"{where}: {message}") from None
    runs = values["runs"] if values["runs"] is not None else default_runs
    if not isinstance(runs, int) or runs < 1:
        raise InvalidGeneratorError(
            f"{where}: @pytest.mark.rig(runs=...) must be an int >= 1, got {runs!r}"
        )
    min_pass = values["min_pass"] if values["min_pass"] is not None else runs
    if not isinstance(min_pass, int) or not 0 <= min_pass <= runs:
        raise InvalidGeneratorError(
            f"{where}: @pytest.mark.rig(min_pass=...) must be an int from 0 to runs ({runs}), "
            f"got {min_pass!r}"
        )
    return Verdict(runs=runs, min_pass=min_pass)


@dataclass(frozen=True)
class Settings:
    """The run's matrix settings (before any marker), where each came from, and what was
    noticed while reading them (repeats merged, models litellm doesn't know)."""

    models: tuple[str, ...]
    models_from: str
    params: tuple[GenerateParams, ...]
    params_from: str
    runs: int
    concurrency: int
    notes: tuple[str, ...] = ()

    def header(self) -> str:
        params = " | ".join(params_text(p) for p in self.params)
        return (
            f"rigging: models {', '.join(map(mask_identifier, self.models))} ({self.models_from}); "
            f"params {params} ({self.params_from}); runs {self.runs}; "
            f"concurrency {self.concurrency}"
        )

    def on_default_model(self, item: pytest.Item) -> bool:
        """Whether `item` runs on the default model: no models given, and no marker."""
        return self.models_from == "default" and item.get_closest_marker("rig_models") is None


PICK_MODELS = "pick models with --rig-models, the ini key rig_models or @pytest.mark.rig_models"
DEFAULT_MODEL_HEADER = (
    f"rigging: no models given: rig tests run on the default {DEFAULT_MODELS[0]}, which "
    f"answers with the last user message; {PICK_MODELS}"
)
"""Under the header when a rig test runs on the default model."""


def collected(run: Run, items: t.Sequence[pytest.Item], verbosity: int) -> list[str]:
    """What a process that collected these matrix items says of them: the header, if no
    rig setting put it at the top already, then `after_collection`."""
    from pytest_rigging.plugin.samples import runs_line

    settings = run.settings
    default = any(settings.on_default_model(i) for i in items)
    lines = [] if run.asked else [settings.header()]
    return lines + after_collection(default, runs_line(items, settings.runs), verbosity)


def after_collection(default: bool, runs: str | None, verbosity: int) -> list[str]:
    """What is said once rig tests are collected (by a single process, or an xdist
    controller from its workers' facts): that some run on the `default` model, and the
    `runs` rig marks set (not at -q, which hides the header too)."""
    return [DEFAULT_MODEL_HEADER] * default + ([runs] if runs and verbosity >= 0 else [])


DEFAULT_MODEL_SECTION = (
    "rigging: the default model",
    f"this test ran on {DEFAULT_MODELS[0]}, the default model, which answers with the last "
    f"user message: no models were given ({PICK_MODELS})",
)
"""Under the failure of an item that ran on the default model."""


DEFAULT_SETTINGS = Settings(
    DEFAULT_MODELS, "default", (GenerateParams(),), "default", DEFAULT_RUNS, DEFAULT_CONCURRENCY
)


def read_settings(config: pytest.Config, check: Checker | None) -> Settings:
    """Command line over ini over defaults; any bad value is a usage error naming it.
    `check` asks each model's provider whether it can work (see `validate_models`)."""
    base = ini_folder(config)
    notes: list[str] = []
    try:
        cli_models = config.getoption("rig_models")
        ini_models = config.getini("rig_models")
        if cli_models:
            ids = split_identifiers(",".join(cli_models))
            where, models_from = "--rig-models", "command line"
        elif ini_models:
            # one or more ids per line; a comma closing a line is only a separator
            lines = [line.strip().rstrip(",") for line in ini_models if line.strip()]
            ids = resolve_relative_scripts(split_identifiers(",".join(lines)), base)
            where, models_from = "ini rig_models", "ini"
        else:
            ids, where, models_from = list(DEFAULT_MODELS), "default", "default"
        models, noticed = validate_models(ids, where, check)
        notes.extend(noticed)
        cli_params = config.getoption("rig_params")
        ini_params = config.getini("rig_params")
        if cli_params:
            texts, where, params_from = cli_params, "--rig-params", "command line"
        elif ini_params:
            texts, where, params_from = ini_params, "ini rig_params", "ini"
        else:
            texts, where, params_from = [""], "default", "default"
        params, noticed = unique_params([to_params(p, where) for p in texts], texts, where)
        notes.extend(noticed)
        runs = _positive(config, "runs")
        concurrency = _positive(config, "concurrency")
    except InvalidGeneratorError as error:
        raise pytest.UsageError(str(error)) from None
    return Settings(
        tuple(models),
        models_from,
        tuple(params),
        params_from,
        runs if runs is not None else DEFAULT_RUNS,
        concurrency if concurrency is not None else DEFAULT_CONCURRENCY,
        tuple(notes),
    )


def _positive(config: pytest.Config, name: str) -> int | None:
    """A whole number >= 1 from the command line or the ini file; None when neither sets it."""
    setting = given(config, name)
    if setting is None:
        return None
    value, where = setting
    try:
        number = int(value.strip())
    except ValueError:
        number = 0
    if number < 1:
        raise InvalidGeneratorError(f"{where} must be a whole number >= 1, got {value!r}")
    return number


def models_for(
    marker: pytest.Mark | None, settings: Settings, where: str, check: Checker | None
) -> tuple[list[str], list[str]]:
    """The models a test runs on, and notes (repeats merged, unknown models)."""
    if marker is None:
        return list(settings.models), []
    texts = list(marker.args)
    if not texts or not all(isinstance(a, str) for a in texts) or marker.kwargs:
        raise InvalidGeneratorError(
            f"{where}: @pytest.mark.rig_models() takes one or more identifier strings"
        )
    return validate_models(
        split_identifiers(",".join(texts)), f"{where}: @pytest.mark.rig_models", check
    )


def params_for(
    marker: pytest.Mark | None, settings: Settings, where: str
) -> tuple[list[GenerateParams], list[str]]:
    """The params sets a test runs with, and notes (repeats merged)."""
    if marker is None:
        return list(settings.params), []
    if marker.kwargs:
        raise InvalidGeneratorError(
            f"{where}: @pytest.mark.rig_params() takes params sets as positional arguments "
            f"(strings, dicts or GenerateParams), got keywords {sorted(marker.kwargs)}"
        )
    if not marker.args:
        raise InvalidGeneratorError(
            f"{where}: @pytest.mark.rig_params() needs at least one params set"
        )
    label = f"{where}: @pytest.mark.rig_params"
    return unique_params([to_params(p, label) for p in marker.args], marker.args, label)


def cell_of(item: pytest.Item) -> Cell | None:
    """A matrix item's cell; None for any other item."""
    cell = call_params(item).get("rig_cell")
    return cell if isinstance(cell, Cell) else None


def generate(metafunc: pytest.Metafunc, run: Run, fields: t.Sequence[str] = ()) -> None:
    """Parametrize a matrix test over its cells; what its marks or pipeline get wrong is a
    collection error naming the test. `fields` are what its `rig_cases` pass by name,
    `rig_case` among them."""
    from pytest_rigging.plugin.state import RiggingWarning

    settings = run.settings
    definition = metafunc.definition
    where = definition.nodeid
    try:
        models, notes = models_for(
            definition.get_closest_marker("rig_models"),
            settings,
            where,
            run.checker(on_workers=True),
        )
        params, more = params_for(definition.get_closest_marker("rig_params"), settings, where)
        read_verdict(definition.get_closest_marker("rig"), settings.runs, where)
    except InvalidGeneratorError as error:
        raise pytest.Collector.CollectError(str(error)) from None
    if "rig_chat" in metafunc.fixturenames or "rig_chats" in metafunc.fixturenames:
        from pytest_rigging.plugin.cases import parametrized
        from pytest_rigging.plugin.execution import check_pipeline

        passed = dict.fromkeys(fields, False)
        problem = check_pipeline(definition, parametrized(definition) | passed)
        if problem:
            raise pytest.Collector.CollectError(f"{where}: {problem}")
    if "rig_verdict" in metafunc.fixturenames or definition.get_closest_marker("rig_judge"):
        from pytest_rigging.plugin.judging import judged

        notes = [*notes, *judged(metafunc, run, models)]
    for note in [*notes, *more]:
        definition.warn(RiggingWarning(note))
    cells = build_cells(models, params)
    metafunc.parametrize("rig_cell", cells, ids=[c.id for c in cells], indirect=True)
