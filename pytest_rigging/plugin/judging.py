"""`@pytest.mark.rig_judge`: every sample of a test judged by a model as soon as it
finishes, and the verdict handed to the test as `rig_verdict`.

The judge is the library's `Judge`, one per test function and judge model, fixed across
the matrix (the models under test are compared by the same judge; it is not an axis). Its
calls run inside the sample's own task on the engine's loop, so they share the run's
concurrency limit, cassettes, budget and records with generation: a sample's verdict is
ready when its chat is. A rubric, reference, input or `versus` text may name the test's
parameters and its `rig_cases` fields in `{}`, filled per item.
"""

from __future__ import annotations

import asyncio
import hashlib
import string
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_rigging._secrets import mask_identifier
from pytest_rigging.chat import Chat, ChatPipeline
from pytest_rigging.judge import Judge, JudgeError, JudgeVerdict, PairwiseVerdict, template_of
from pytest_rigging.plugin._compat import call_params
from pytest_rigging.plugin.options import JUDGES_RIG_CHAT, given
from pytest_rigging.plugin.records import (
    JudgeRecord,
    LabelRecord,
    PairwiseRecord,
    VerdictOutcome,
    VerdictRecord,
)
from pytest_rigging.plugin.samples import excerpt

if t.TYPE_CHECKING:
    from pytest_rigging.generator.base import Generator
    from pytest_rigging.plugin.calibration import LabelExample, Labels
    from pytest_rigging.plugin.execution import Engine
    from pytest_rigging.plugin.state import Run

Verdict = JudgeVerdict | PairwiseVerdict
REASONING = 1000
"""Characters of a judge's reasoning a record keeps."""
_WINNERS: dict[str, t.Literal["this", "other", "tie"]] = {"a": "this", "b": "other", "tie": "tie"}
"""A pairwise verdict as the record says it: a is this sample's output."""


class JudgeSpecError(ValueError):
    """A `rig_judge` marker that can't be used, said in one line."""


@dataclass(frozen=True)
class JudgeSpec:
    """What a `rig_judge` marker asks for, checked."""

    rubric: str
    reference: str | None
    input: str | None
    judge_runs: int
    model: str | None
    template: str
    scale: tuple[float, float] | None
    versus: str | None
    versus_model: str | None

    def names(self) -> list[str]:
        """The `{name}` placeholders its texts use, each once, in order."""
        found: dict[str, None] = {}
        for text in (self.rubric, self.reference, self.input, self.versus):
            if text is not None:
                found.update(dict.fromkeys(_placeholders(text)))
        return list(found)


def _signature(
    rubric: str,
    *,
    reference: str | None = None,
    input: str | None = None,
    judge_runs: int = 1,
    model: str | None = None,
    template: str | None = None,
    scale: tuple[float, float] | None = None,
    versus: str | None = None,
    versus_model: str | None = None,
) -> JudgeSpec:
    if not isinstance(rubric, str) or not rubric.strip():
        raise JudgeSpecError(f"the rubric must be a non-empty string, got {rubric!r}")
    for name, text in (
        ("reference", reference),
        ("input", input),
        ("model", model),
        ("versus", versus),
        ("versus_model", versus_model),
    ):
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise JudgeSpecError(f"{name}= must be a non-empty string, got {text!r}")
    if isinstance(judge_runs, bool) or not isinstance(judge_runs, int) or judge_runs < 1:
        raise JudgeSpecError(f"judge_runs= must be a whole number >= 1, got {judge_runs!r}")
    if versus is not None and versus_model is not None:
        raise JudgeSpecError("give versus= (a text) or versus_model= (a model), not both")
    if scale is not None and (
        not isinstance(scale, tuple | list)
        or len(scale) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scale)
        or not scale[0] < scale[1]
    ):
        raise JudgeSpecError(f"scale= must be (low, high) numbers with low < high, got {scale!r}")
    chosen = template if template is not None else "reference" if reference else "rubric"
    if not isinstance(chosen, str):
        raise JudgeSpecError(f"template= must be a string, got {chosen!r}")
    for text in (rubric, reference, input, versus):
        if text is not None:
            _placeholders(text)
    spec = JudgeSpec(
        rubric,
        reference,
        input,
        judge_runs,
        model,
        chosen,
        (float(scale[0]), float(scale[1])) if scale is not None else None,
        versus,
        versus_model,
    )
    _check_template(spec)
    return spec


def _check_template(spec: JudgeSpec) -> None:
    """The grading template the spec names (or gives) is one, and fits its reference (or
    its lack of one)."""
    try:
        _, text = template_of(spec.template)
    except ValueError as error:
        raise JudgeSpecError(str(error)) from None
    shows = "{reference}" in text
    if spec.reference is not None and not shows and spec.versus is None and not spec.versus_model:
        raise JudgeSpecError(
            f"reference= is given, but the {spec.template!r} template doesn't show the judge a "
            "reference: use template='reference' (the default with a reference) or one that "
            "names {reference}"
        )
    if shows and spec.reference is None:
        raise JudgeSpecError(
            f"the {spec.template!r} template compares with a reference: give reference="
        )


def _placeholders(text: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name]
    except ValueError as error:
        raise JudgeSpecError(
            f"{text[:60]!r} can't be read as a template ({error}); write a brace as {{{{ or }}}}"
        ) from None


_READ: dict[int, tuple[pytest.Mark, JudgeSpec]] = {}


def spec_of(item: pytest.Item) -> JudgeSpec | None:
    """The item's `rig_judge` marker, read (once per marker object)."""
    marker = item.get_closest_marker("rig_judge")
    if marker is None:
        return None
    known = _READ.get(id(marker))
    if known is None or known[0] is not marker:
        known = (marker, read_marker(marker))
        _READ[id(marker)] = known
    return known[1]


def read_marker(marker: pytest.Mark) -> JudgeSpec:
    try:
        return _signature(*marker.args, **marker.kwargs)
    except TypeError as error:
        raise JudgeSpecError(str(error).replace("_signature() ", "")) from None


class Judges:
    """The run's judge settings: `--rig-judge` / ini `rig_judge`, the labelled examples of
    `--rig-judge-labels`, and `--rig-min-judge-kappa`."""

    def __init__(self, config: pytest.Config) -> None:
        from pytest_rigging.plugin.options import file_setting

        self.model: str | None = None
        found = given(config, "judge")
        if found is not None and found.value.strip():
            self.model = _judge_model(config, found.value.strip(), found.where)
        self.labels: Labels | None = None
        labels = file_setting(config, "judge_labels")
        self.labels_shown = str(labels.path) if labels is not None else ""
        if labels is not None:
            from pytest_rigging.plugin.calibration import read_labels

            try:
                self.labels = read_labels(labels.path)
            except ValueError as error:
                raise pytest.UsageError(f"{labels.where}: {error}") from None
        self.min_kappa: float | None = None
        kappa = given(config, "min_judge_kappa")
        if kappa is not None:
            try:
                self.min_kappa = float(kappa.value)
            except ValueError:
                self.min_kappa = None
            if self.min_kappa is None or not -1 <= self.min_kappa <= 1:
                raise pytest.UsageError(
                    f"{kappa.where}: expected a kappa from -1 to 1, got {kappa.value!r}"
                )

    def model_for(self, spec: JudgeSpec) -> str | None:
        """The judge model: the marker's `model=`, else the run's."""
        return spec.model or self.model

    def examples(self, test: str, spec: JudgeSpec) -> list[LabelExample]:
        """The labelled examples that calibrate the judge of test function `test`: none
        for a pairwise judge (labels grade one output; it compares two)."""
        if self.labels is None or spec.versus is not None or spec.versus_model is not None:
            return []
        from pytest_rigging.plugin.calibration import applies

        return [e for e in self.labels.examples if applies(e, test)]


def _judge_model(config: pytest.Config, model: str, where: str) -> str:
    """The judge model a setting names, checked now (a bad one is a usage error naming
    where it came from); an ini file's `scripted!` path is relative to it."""
    from pytest_rigging.error import InvalidGeneratorError
    from pytest_rigging.generator.base import get_generator
    from pytest_rigging.plugin.matrix import resolve_relative_scripts
    from pytest_rigging.plugin.options import ini_folder

    if where.startswith("ini "):
        model = resolve_relative_scripts([model], ini_folder(config))[0]
    try:
        get_generator(model)
    except InvalidGeneratorError as error:
        raise pytest.UsageError(f"{where}: {error}") from None
    return model


NO_JUDGE_MODEL = (
    "uses @pytest.mark.rig_judge, but no judge model is set: give --rig-judge MODEL, "
    "the ini key rig_judge, or rig_judge(..., model=MODEL)"
)


def judged(metafunc: pytest.Metafunc, run: Run, models: t.Sequence[str]) -> list[str]:
    """A judged test checked at collection (`check`): a problem is a collection error
    naming the test; the notes it deserves."""
    from pytest_rigging.plugin.cases import field_names, parametrized

    definition = metafunc.definition
    values = {*parametrized(definition), *field_names(metafunc)}
    try:
        return check(definition, metafunc.fixturenames, values, run.judges(), models)
    except JudgeSpecError as error:
        raise pytest.Collector.CollectError(f"{definition.nodeid}: {error}") from None


def check(
    definition: pytest.Item,
    fixtures: t.Collection[str],
    values: t.Collection[str],
    judges: Judges,
    models: t.Sequence[str],
) -> list[str]:
    """A judged test's problems at collection, as a `JudgeSpecError` naming the first; the
    warnings it deserves. `values` are the names its texts may use (parameters, case
    fields); `models` those under test."""
    spec = spec_of(definition)
    if spec is None:
        if "rig_verdict" in fixtures:
            raise JudgeSpecError(
                "rig_verdict is a rig_judge test's verdict: add "
                "@pytest.mark.rig_judge(RUBRIC, ...) to the test"
            )
        return []
    if "rig_chat" not in fixtures:
        raise JudgeSpecError(JUDGES_RIG_CHAT)
    model = judges.model_for(spec)
    if model is None:
        raise JudgeSpecError(f"this test {NO_JUDGE_MODEL}")
    for name, identifier in (("model", spec.model), ("versus_model", spec.versus_model)):
        if identifier is not None:
            _usable(name, identifier)
    missing = [n for n in spec.names() if n not in values]
    if missing:
        shown = ", ".join(sorted(values)) or "none"
        raise JudgeSpecError(
            f"@pytest.mark.rig_judge names {{{missing[0]}}}, which is not a parameter or case "
            f"field of this test (it has: {shown}); write a literal brace as {{{{ or }}}}"
        )
    from pytest_rigging.plugin.records import group_key

    for example in judges.examples(group_key(definition.nodeid), spec):
        _label_fits(example, spec, judges.labels_shown)
        lacking = [n for n in spec.names() if n not in example.fields]
        if lacking and not _names_only_reference(spec, lacking, example):
            raise JudgeSpecError(
                f"the labelled example on line {example.line} of {judges.labels_shown} has no "
                f"value for {{{lacking[0]}}}, which the rubric names: add it to the row"
            )
    notes = []
    judge_model = _bare(model)
    if any(_bare(m) == judge_model for m in models):
        notes.append(
            f"@pytest.mark.rig_judge: the judge {mask_identifier(model)} is also a model under "
            "test; judges "
            "favour their own outputs, so its verdicts on itself are suspect: judge with "
            "another model"
        )
    return notes


def _label_fits(example: LabelExample, spec: JudgeSpec, shown: str) -> None:
    """A label of the judge's kind: pass or fail (1 or 0) for a judge without a scale, a
    score on its scale for one with; another would give a kappa that means nothing."""
    where = f"the labelled example on line {example.line} of {shown}"
    if spec.scale is None and example.label not in (0.0, 1.0):
        raise JudgeSpecError(
            f"{where} is labelled {example.label:g}, a score, but this test's judge has no "
            "scale=: label it true or false"
        )
    if spec.scale is not None and not spec.scale[0] <= example.label <= spec.scale[1]:
        low, high = spec.scale
        raise JudgeSpecError(
            f"{where} is labelled {example.label:g}, off the judge's scale {low:g}-{high:g}: "
            "label it with a score on the scale"
        )


def _names_only_reference(spec: JudgeSpec, lacking: list[str], example: LabelExample) -> bool:
    """Whether every lacking value is named only by the reference, which the example
    gives itself."""
    if example.reference is None or spec.reference is None:
        return False
    elsewhere = {
        n
        for text in (spec.rubric, spec.input, spec.versus)
        if text is not None
        for n in _placeholders(text)
    }
    return not any(n in elsewhere for n in lacking)


def _usable(name: str, identifier: str) -> None:
    """A model the marker names, checked as an identifier at collection."""
    from pytest_rigging.error import InvalidGeneratorError
    from pytest_rigging.generator.base import get_generator

    try:
        get_generator(identifier)
    except InvalidGeneratorError as error:
        raise JudgeSpecError(f"{name}={mask_identifier(identifier)!r}: {error}") from None


def _bare(identifier: str) -> str:
    """A model identifier without its params, to tell whether two name one model."""
    from pytest_rigging.generator.base import GenerateParams, get_generator

    try:
        return get_generator(identifier).to_identifier(GenerateParams(), with_config=False)
    except Exception:  # a bad identifier is the matrix's to report
        return identifier


@dataclass
class Judging:
    """An item's judge, ready: built on pytest's thread, awaited on the engine's loop."""

    judge: Judge
    spec: JudgeSpec
    values: dict[str, object]
    versus_generator: Generator | None

    @property
    def record(self) -> JudgeRecord:
        record: JudgeRecord = {
            "id": self.judge.id,
            "model": self.judge.model,
            "hash": self.judge.hash,
            "rubric": self.spec.rubric,
            "template": self.judge.template_name,
        }
        if self.spec.scale is not None:
            record["scale"] = list(self.spec.scale)
        return record

    def _text(self, text: str | None) -> str | None:
        return None if text is None else text.format_map(self.values)

    async def verdict(self, chat: Chat, pipeline: ChatPipeline) -> Verdict:
        """The judge's verdict on `chat` (its last reply; the input is what its user said,
        unless the marker gives one); a pairwise judge compares it with `versus` or with
        the versus model's reply to the same pipeline (generated now)."""
        output = chat.last.content
        asked = self._text(self.spec.input) or _asked(chat)
        reference = self._text(self.spec.reference)
        values = self.values  # always filled: a rubric's `{{` is a brace, whatever it names
        versus = self._text(self.spec.versus)
        if self.versus_generator is not None:
            other = pipeline.clone().meta(versus=self.judge.id)  # counted with the judging
            other.generator = self.versus_generator
            versus = (await other.run(on_failed="include")).last.content
        if versus is not None:
            return await self.judge.compare(
                output, versus, input=asked, reference=reference, values=values
            )
        return await self.judge.grade(output, input=asked, reference=reference, values=values)

    def verdict_record(self, verdict: Verdict) -> VerdictRecord:
        """The verdict as the judged chat's record keeps it."""
        outcome: VerdictOutcome = (
            "unscored" if verdict.unscored else "passed" if verdict.passed else "failed"
        )
        record: VerdictRecord = {
            "judge": self.judge.id,
            "outcome": outcome,
            "score": None if verdict.unscored else verdict.score,
            "reasoning": excerpt(verdict.reasoning, REASONING // 2)[:REASONING],
            "agreement": list(verdict.agreement),
            "unstable": verdict.unstable,
        }
        if isinstance(verdict, PairwiseVerdict):
            pairwise: PairwiseRecord = {
                "winner": "tie",
                "flipped": verdict.flipped,
                "versus": mask_identifier(self.spec.versus_model or "text"),
            }
            if not verdict.unscored:
                pairwise["winner"] = _WINNERS[verdict.winner]
            record["pairwise"] = pairwise
        reference = self._text(self.spec.reference)
        if reference is not None:
            record["reference"] = reference
        if self.values:
            record["fields"] = {name: str(value) for name, value in self.values.items()}
        return record

    async def calibrate(self, examples: t.Sequence[LabelExample]) -> list[LabelRecord]:
        """The judge's verdicts on labelled examples (all at once), as records. An example
        whose judge call failed or was refused (a cassette miss, a spent budget) is
        recorded with why, and fails the kappa gate: never this item's outcome, and never a
        kappa over fewer labels than were given."""
        from pytest_rigging.plugin.samples import CallRefused

        async def one(example: LabelExample) -> LabelRecord:
            record: LabelRecord = {
                "judge": self.judge.id,
                "example": example.hash,
                "line": example.line,
                "label": example.label,
                "verdict": None,
            }
            reference = example.reference
            if reference is None and self.spec.reference is not None:
                reference = self.spec.reference.format_map(example.fields)
            try:
                verdict = await self.judge.grade(
                    example.output,
                    input=example.input,
                    reference=reference,
                    values=dict(example.fields),
                )
            except (JudgeError, CallRefused) as error:
                record["error"] = excerpt(str(error), REASONING // 2)[:REASONING]
                return record
            if not verdict.unscored:
                passed = float(verdict.passed)
                record["verdict"] = verdict.score if self.spec.scale is not None else passed
            return record

        return list(await asyncio.gather(*(one(e) for e in examples)))


def judging_for(
    item: pytest.Item, judges: Judges, generator: t.Callable[[str], Generator]
) -> Judging | None:
    """The item's judge, or None for an item of a test without `rig_judge`; `generator`
    gives the generator of a model for this item's unit of work."""
    spec = spec_of(item)
    if spec is None:
        return None
    model = judges.model_for(spec)
    assert model is not None  # checked at collection
    judge = Judge(
        generator(model),
        spec.rubric,
        template=spec.template,
        scale=spec.scale,
        runs=spec.judge_runs,
    )
    _identify(judge, spec, item.config.rootpath)
    versus = generator(spec.versus_model) if spec.versus_model else None
    return Judging(judge, spec, values_of(item, spec), versus)


def _identify(judge: Judge, spec: JudgeSpec, rootdir: Path) -> None:
    """The judge's identity as the run's records keep it (`Judge.id`): its model without
    what only says how to reach it (a timeout, a port: `cassettes.UNKEYED`), a rules file
    named from the rootdir (the same wherever pytest starts), and, for a pairwise judge,
    what it compares with (it is another judge than one that grades alone)."""
    from pytest_rigging.generator.base import GenerateParams
    from pytest_rigging.plugin.cassettes import UNKEYED, rooted

    shaping = {k: v for k, v in judge.generator.params.to_dict().items() if k not in UNKEYED}
    shown = judge.generator.to_identifier(GenerateParams(**shaping), with_config=False)
    judge.model = rooted(mask_identifier(shown), rootdir)
    if spec.versus is not None or spec.versus_model is not None:
        versus = mask_identifier(spec.versus_model or "text")
        asked = f"{judge.hash}\x1fpairwise\x1f{versus}".encode("utf-8", "surrogatepass")
        judge.hash = hashlib.sha256(asked).hexdigest()


def verdict_for(item: pytest.Item, engine: Engine) -> Verdict:
    """The verdict on the item's first judgeable sample (`rig_chat`'s); with `runs=N` each
    sample's body gets its own (`samples.wrap`)."""
    from pytest_rigging.plugin.records import sample_index
    from pytest_rigging.plugin.samples import SAMPLES_KEY, VERDICTS_KEY

    by_index = engine.verdicts(item.nodeid)
    numbers = item.stash.get(SAMPLES_KEY, {})
    verdicts = {n: by_index[sample_index(n)] for n in numbers if sample_index(n) in by_index}
    item.stash[VERDICTS_KEY] = verdicts
    if not verdicts:
        raise RuntimeError(f"{item.nodeid}: no sample of this item was judged")
    return next(iter(verdicts.values()))


def values_of(item: pytest.Item, spec: JudgeSpec) -> dict[str, object]:
    """The values the spec's texts name: the item's parameters, and its case's fields."""
    names = spec.names()
    if not names:
        return {}
    params = dict(call_params(item))
    case = params.pop("rig_case", None)
    found: dict[str, object] = dict(getattr(case, "fields", {}))
    found.update((k, v) for k, v in params.items() if k != "rig_cell")
    return {name: found[name] for name in names if name in found}


def _asked(chat: Chat) -> str:
    """What the judged chat's user said before its first reply: the question."""
    said = []
    for message in chat.messages:
        if message.role == "assistant":
            break
        if message.role == "user":
            said.append(message.content)
    return "\n\n".join(said)
