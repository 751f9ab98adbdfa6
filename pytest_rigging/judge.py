"""Judges: a model that grades another model's output, as a pipeline of this library.

A `Judge` asks its generator to grade an output against a rubric (optionally with the
question that was asked and a reference answer) and reads a structured verdict out of the
reply with the library's own models and recovery: `<verdict>pass</verdict>`, an optional
`<score>` on a declared scale, and `<reasoning>`. Repeated judging (`runs=N`) takes the
majority and says how far the runs agreed; a reply with no verdict in it after recovery is
*unscored*, which is neither a pass nor a fail; a call that fails for infrastructure
reasons raises `JudgeError`, which is neither either. `compare` judges two outputs in both
orders, so a judge that prefers whichever comes first gives a tie, not a winner.

    judge = rg.Judge("gpt-4o", "Names the capital and nothing else", runs=3)
    verdict = await judge.grade("Paris", input="Capital of France?")
    verdict.passed, verdict.agreement, verdict.unstable
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import string
import typing as t
from dataclasses import dataclass, field

from pydantic import field_validator

from pytest_rigging._secrets import mask_identifier
from pytest_rigging.chat import Chat, ChatPipeline
from pytest_rigging.error import JudgeError, Unscored
from pytest_rigging.generator.base import GenerateParams, Generator, get_generator
from pytest_rigging.message import Message
from pytest_rigging.model import Model

__all__ = [
    "TEMPLATES",
    "Judge",
    "JudgeError",
    "JudgeVerdict",
    "PairwiseVerdict",
    "Unscored",
]

Winner = t.Literal["a", "b", "tie"]

_GRADE_FORMAT = """\
Answer in exactly this format:
<reasoning>why, in a few sentences</reasoning>
<verdict>pass or fail</verdict>"""
_SCORE_FORMAT = "\n<score>a number from {low} to {high}</score>"

TEMPLATES: dict[str, str] = {
    "rubric": """\
You are grading a response to a question against a rubric.

[Question]
{input}

[Response]
{output}

[Rubric]
{rubric}

Decide whether the response meets the rubric. {format}""",
    "reference": """\
You are grading a response to a question against a rubric, with a reference answer that \
is known to be right.

[Question]
{input}

[Reference answer]
{reference}

[Response]
{output}

[Rubric]
{rubric}

Compare the response with the reference answer and decide whether it meets the rubric. \
Wording may differ from the reference; what it says must not. {format}""",
    "answer_first": """\
You are grading a response to a question against a rubric.

[Question]
{input}

[Rubric]
{rubric}

Before you read the response, answer the question yourself inside <answer></answer>.

[Response]
{output}

Then compare the response with your own answer and decide whether it meets the rubric. \
{format}""",
}
"""The built-in grading templates, by name: `rubric` grades against the rubric alone,
`reference` compares with a reference answer, `answer_first` has the judge answer the
question itself before it reads the response. A template of your own is a string naming
any of `{rubric}`, `{input}`, `{output}`, `{reference}` and `{format}` (the answer format
the verdict is read in); it must name `{output}`."""

PAIRWISE_TEMPLATE = """\
Two responses answer the same question. Decide which one better meets the rubric.

[Question]
{input}

[Response A]
{a}

[Response B]
{b}

[Rubric]
{rubric}

Answer in exactly this format:
<reasoning>why, in a few sentences</reasoning>
<better>A, B or tie</better>"""

_FIELDS = frozenset({"rubric", "input", "output", "reference", "format"})
_NOT_GIVEN = "(not given)"


_PASS = frozenset({"pass", "passed", "yes", "true", "correct"})
_FAIL = frozenset({"fail", "failed", "no", "false", "incorrect"})


class Decision(Model, tag="verdict"):
    """The judge's decision: one word, pass or fail (yes/no, true/false, passed/failed and
    correct/incorrect read too). Anything else ("pass or fail" echoed from the format, "not
    sure") is no decision: the judge is asked again, then the verdict is unscored, never
    guessed."""

    passed: bool

    @field_validator("passed", mode="before")
    @classmethod
    def _read(cls, value: t.Any) -> bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().strip("\"'*.!` ").lower()
        if word in _PASS:
            return True
        if word in _FAIL:
            return False
        raise ValueError(f"expected one word, pass or fail, got {str(value)[:40]!r}")


class Score(Model, tag="score"):
    """The judge's score on its scale."""

    value: float


class Reasoning(Model, tag="reasoning"):
    text: str


class Better(Model, tag="better"):
    """Which of two responses is better: A, B or tie."""

    choice: Winner

    @field_validator("choice", mode="before")
    @classmethod
    def _read(cls, value: t.Any) -> str:
        text = str(value).strip().lower().strip("\"'*. ")
        if text in ("a", "response a"):
            return "a"
        if text in ("b", "response b"):
            return "b"
        if text in ("tie", "equal", "same", "neither", "both"):
            return "tie"
        raise ValueError(f"expected A, B or tie, got {str(value)[:40]!r}")


@dataclass(frozen=True)
class Vote:
    """One judge run's reading: `passed` None when the reply held no verdict."""

    passed: bool | None
    score: float | None
    reasoning: str
    why: str | None = None
    """Why the run gave no verdict."""


@dataclass(frozen=True)
class JudgeVerdict:
    """A judge's verdict on one output: the majority of its runs.

    `agreement` is (runs that agree with the verdict, runs); `unstable` says the runs
    split. An unscored verdict (no run gave one the judge could read, or the runs split
    evenly) raises `Unscored` on `passed` and `score`; check `unscored` first to tell."""

    unscored: bool
    reasoning: str
    agreement: tuple[int, int]
    unstable: bool
    votes: tuple[Vote, ...]
    chats: list[Chat] = field(repr=False, compare=False)
    _passed: bool | None = field(default=None, repr=False)
    _score: float | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        if self.unscored:
            raise Unscored(self.reasoning)
        return bool(self._passed)

    @property
    def score(self) -> float | None:
        """The median of the majority's scores; None when the judge has no scale."""
        if self.unscored:
            raise Unscored(self.reasoning)
        return self._score

    def __repr__(self) -> str:
        said = "unscored" if self.unscored else f"passed={self._passed}, score={self._score}"
        k, n = self.agreement
        return (
            f"JudgeVerdict({said}, agreement={k}/{n}, unstable={self.unstable}, "
            f"reasoning={self.reasoning[:80]!r})"
        )


@dataclass(frozen=True)
class PairwiseVerdict:
    """Which of two outputs a judge preferred, judged with each shown first.

    `winner` is "a", "b" or "tie"; when the preference changed with the order, it is a tie
    and `flipped` is set. `passed` reads as "a is at least as good as b". Unscored (either
    order gave no readable answer) raises `Unscored` on `winner` and `passed`."""

    unscored: bool
    flipped: bool
    reasoning: str
    agreement: tuple[int, int]
    unstable: bool
    orders: tuple[Winner | None, Winner | None]
    """The preference with a shown first, and with b shown first (mapped back to a/b)."""
    chats: list[Chat] = field(repr=False, compare=False)
    _winner: Winner | None = field(default=None, repr=False)

    @property
    def winner(self) -> Winner:
        if self.unscored or self._winner is None:
            raise Unscored(self.reasoning)
        return self._winner

    def __repr__(self) -> str:
        said = "unscored" if self.unscored else f"winner={self._winner!r}"
        k, n = self.agreement
        return (
            f"PairwiseVerdict({said}, flipped={self.flipped}, agreement={k}/{n}, "
            f"reasoning={self.reasoning[:80]!r})"
        )

    @property
    def passed(self) -> bool:
        return self.winner != "b"

    @property
    def score(self) -> None:
        return None


class Judge:
    """A grader: a generator (or identifier), a rubric, and how to ask.

    `template` is a name from `TEMPLATES` or a template of your own; `scale=(low, high)`
    also asks for a score; `runs` judges each output that many times (at the generator's
    temperature) and takes the majority; `max_rounds` bounds the replies one run may take
    to give a readable verdict. `params` are the judge's own generation params.
    """

    def __init__(
        self,
        generator: Generator | str,
        rubric: str,
        *,
        template: str = "rubric",
        scale: tuple[float, float] | None = None,
        runs: int = 1,
        max_rounds: int = 3,
        params: GenerateParams | None = None,
    ) -> None:
        if not isinstance(rubric, str) or not rubric.strip():
            raise ValueError("a judge needs a rubric: the text it grades against")
        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
            raise ValueError(f"runs must be a whole number of at least 1, got {runs!r}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds!r}")
        if scale is not None:
            low, high = scale
            if not low < high:
                raise ValueError(f"scale must be (low, high) with low < high, got {scale!r}")
        self.generator = get_generator(generator) if isinstance(generator, str) else generator
        self.rubric = rubric
        self.template_name, self.template = template_of(template)
        self.scale = scale
        self.runs = runs
        self.max_rounds = max_rounds
        self.params = params
        self.model = mask_identifier(self.generator.to_identifier(params, with_config=False))
        asked = "\x1f".join([self.template, rubric, repr(scale)])
        self.hash = hashlib.sha256(asked.encode("utf-8", "surrogatepass")).hexdigest()

    @property
    def id(self) -> str:
        """The judge as reports name it: its model and a hash of what it is asked (template,
        rubric and scale), so that an edited rubric is another judge."""
        return f"{self.model} #{self.hash[:8]}"

    def __repr__(self) -> str:
        return f"Judge({self.id!r}, template={self.template_name!r}, runs={self.runs})"

    def prompt(
        self,
        output: str,
        *,
        input: str | None = None,
        reference: str | None = None,
        values: t.Mapping[str, object] | None = None,
    ) -> str:
        """The grading prompt for `output`, as the judge gets it; `values` fill the `{name}`
        placeholders of the rubric (one judge, a rubric per case)."""
        if reference is None and "{reference}" in self.template:
            raise ValueError(
                f"the {self.template_name!r} template compares with a reference: give one"
            )
        answer = _GRADE_FORMAT
        if self.scale is not None:
            low, high = self.scale
            answer += _SCORE_FORMAT.format(low=_num(low), high=_num(high))
        return self.template.format(
            rubric=self._rubric(values),
            input=_NOT_GIVEN if input is None else input,
            output=output,
            reference=_NOT_GIVEN if reference is None else reference,
            format=answer,
        )

    async def grade(
        self,
        output: str,
        *,
        input: str | None = None,
        reference: str | None = None,
        values: t.Mapping[str, object] | None = None,
    ) -> JudgeVerdict:
        """Judge `output` (`runs` times, together): the majority verdict. `values` fill
        the rubric's `{name}` placeholders. Raises `JudgeError` when a judge call failed
        for infrastructure reasons."""
        asked = self.prompt(output, input=input, reference=reference, values=values)
        chats = await self._ask(asked)
        votes = tuple(self._vote(chat) for chat in chats)
        scored = [v for v in votes if v.passed is not None]
        passes = sum(bool(v.passed) for v in scored)
        fails = len(scored) - passes
        if not scored or passes == fails:
            why = (
                next((v.why for v in votes if v.why), "no verdict")
                if not scored
                else f"the judge's runs split evenly ({passes} pass, {fails} fail)"
            )
            agreement = (max(passes, fails), len(votes))
            return JudgeVerdict(True, why, agreement, bool(scored), votes, chats)
        passed = passes > fails
        majority = [v for v in scored if v.passed is passed]
        scores = [v.score for v in majority if v.score is not None]
        return JudgeVerdict(
            unscored=False,
            reasoning=majority[0].reasoning,
            agreement=(len(majority), len(votes)),
            unstable=min(passes, fails) > 0,
            votes=votes,
            chats=chats,
            _passed=passed,
            _score=statistics.median(scores) if scores else None,
        )

    async def compare(
        self,
        a: str,
        b: str,
        *,
        input: str | None = None,
        reference: str | None = None,
        values: t.Mapping[str, object] | None = None,
    ) -> PairwiseVerdict:
        """Which of `a` and `b` better meets the rubric, judged with each shown first (each
        order `runs` times, all together). A preference that changes with the order is a
        tie, `flipped`. Raises `JudgeError` when a judge call failed for infrastructure
        reasons."""
        rubric = self._rubric(values)
        if reference is not None:
            rubric += f"\n\nReference answer: {reference}"
        asked = [
            PAIRWISE_TEMPLATE.format(
                input=_NOT_GIVEN if input is None else input, a=first, b=second, rubric=rubric
            )
            for first, second in ((a, b), (b, a))
        ]
        straight, swapped = await asyncio.gather(*(self._ask(p, Better) for p in asked))
        first = _preference([_better(c) for c in straight])
        second = _preference([_flip(_better(c)) for c in swapped])
        chats = [*straight, *swapped]
        agreeing = [_better(c) == first.choice for c in straight]
        agreeing += [_flip(_better(c)) == second.choice for c in swapped]
        agreement = (sum(agreeing), len(chats))
        orders = (first.choice, second.choice)
        unstable = first.split or second.split
        if first.choice is None or second.choice is None:
            why = first.why or second.why or "no preference"
            return PairwiseVerdict(True, False, why, agreement, unstable, orders, chats)
        flipped = first.choice != second.choice
        winner: Winner = "tie" if flipped else first.choice
        reasoning = _reasoning(straight[0])
        return PairwiseVerdict(
            False, flipped, reasoning, agreement, unstable, orders, chats, winner
        )

    def _rubric(self, values: t.Mapping[str, object] | None) -> str:
        """The rubric, its placeholders filled when `values` are given."""
        if values is None:
            return self.rubric
        try:
            return self.rubric.format_map(values)
        except KeyError as error:
            raise ValueError(
                f"the rubric names {{{error.args[0]}}}, which the values don't give"
            ) from None
        except (IndexError, ValueError) as error:  # `{0}`, a lone brace
            raise ValueError(
                f"the rubric can't be filled ({error}): name values as {{name}}, and write a "
                "brace as {{ or }}"
            ) from None

    async def _ask(self, prompt: str, *models: type[Model]) -> list[Chat]:
        pipeline = ChatPipeline(
            self.generator, [Message.of("user", prompt)], params=self.params
        ).meta(judge=self.id)
        wanted = models or ((Decision, Score) if self.scale else (Decision,))
        pipeline.until_parsed_as(*wanted, max_rounds=self.max_rounds)
        chats = await pipeline.run_many(self.runs, on_failed="include")
        for chat in chats:
            if chat.failed and chat.error_kind == "infrastructure":
                raise JudgeError(
                    f"judge {self.id}: {chat.error}",
                    reason=getattr(chat.error, "reason", "server"),
                    latency=chat.latency,
                )
        return chats

    def _vote(self, chat: Chat) -> Vote:
        reasoning = _reasoning(chat)
        if chat.failed:
            return Vote(None, None, reasoning or _cut(chat.last.content), _why(chat))
        decision = chat.last.parse(Decision)
        score = chat.last.try_parse(Score)
        value = score.value if score is not None else None
        if self.scale is not None and value is not None:
            low, high = self.scale
            if not low <= value <= high:
                why = f"score {_num(value)} is outside the scale {_num(low)}-{_num(high)}"
                return Vote(None, None, reasoning, why)
        return Vote(decision.passed, value, reasoning)


class _Preference(t.NamedTuple):
    choice: Winner | None
    split: bool
    why: str | None


def _better(chat: Chat) -> Winner | None:
    if chat.failed:
        return None
    return chat.last.parse(Better).choice


def _preference(choices: list[Winner | None]) -> _Preference:
    """The majority preference of one order's runs; None when none was readable or the
    runs split evenly between two choices."""
    read = [c for c in choices if c is not None]
    if not read:
        return _Preference(None, False, "the judge's reply named no better response")
    counts = {c: read.count(c) for c in dict.fromkeys(read)}
    top = max(counts.values())
    leaders = [c for c, n in counts.items() if n == top]
    if len(leaders) > 1:
        return _Preference(None, True, f"the judge's runs split evenly ({', '.join(leaders)})")
    return _Preference(leaders[0], len(counts) > 1, None)


def _flip(choice: Winner | None) -> Winner | None:
    """A preference read with b shown first, mapped back to a and b."""
    if choice == "a":
        return "b"
    if choice == "b":
        return "a"
    return choice


def template_of(template: str) -> tuple[str, str]:
    """A template's name (`custom` for one's own) and text, from a name in `TEMPLATES` or a
    template; a ValueError saying what is wrong with anything else."""
    if template in TEMPLATES:
        return template, TEMPLATES[template]
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ValueError(f"the judge's template can't be read: {error}") from None
    if not names and "{" not in template:
        known = ", ".join(TEMPLATES)
        raise ValueError(
            f"unknown judge template {template!r}: name one of {known}, or give a template "
            "that names {output}"
        )
    unknown = sorted(names - _FIELDS)
    if unknown:
        raise ValueError(
            f"the judge's template names {', '.join('{' + n + '}' for n in unknown)}: it may "
            f"name {', '.join('{' + n + '}' for n in sorted(_FIELDS))}"
        )
    if "output" not in names:
        raise ValueError("the judge's template must name {output}: the response it grades")
    return "custom", template


def _reasoning(chat: Chat) -> str:
    found = chat.last.try_parse(Reasoning) if chat.all else None
    return _cut(found.text) if found is not None else ""


def _why(chat: Chat) -> str:
    """Why a judge run gave no verdict, from its parse failure."""
    return f"no verdict in the judge's reply after {chat.recovery_rounds + 1} replies: " + _cut(
        chat.last.content, 200
    )


def _cut(text: str, keep: int = 1000) -> str:
    text = text.strip()
    return text if len(text) <= keep else text[: keep - 3] + "..."


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
