"""Judges against people: labelled examples, and how far a judge's verdicts can be trusted.

A labels file (`--rig-judge-labels`) holds outputs people graded; the plugin has each judge
grade them too, and the records carry both (`LabelRecord`). From those this module gives
each judge's agreement with people (Cohen's kappa, quadratic-weighted for scores), its
sensitivity and specificity, and each model's judged pass rate corrected for the judge's
measured errors (Rogan-Gladen), with an interval that carries the calibration's own
uncertainty: a judge checked on 20 labels can't make a rate known to a point. The `labels`
command (`cli`) writes a file to label from a run's judged samples (`labelling_rows`).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import typing as t
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from pytest_rigging.plugin.gates import Check
from pytest_rigging.plugin.records import (
    ChatRecord,
    ItemRecord,
    JudgedRate,
    JudgeRecord,
    JudgeSummary,
    LabelRecord,
    ReportDocument,
    VerdictRecord,
    group_key,
    role,
)
from pytest_rigging.plugin.stats import Rate

Z = 1.96
"""The normal quantile of the 95% intervals."""
_KNOWN = frozenset({"output", "input", "reference", "label", "test", "model"})
"""A labels row's own keys; any other is a value for the rubric's `{name}` placeholders."""
_PASS = frozenset({"pass", "passed", "true", "yes"})
_FAIL = frozenset({"fail", "failed", "false", "no"})
LABEL_VALUES = 'true/false, "pass"/"fail", "yes"/"no", 1/0, or a number (a score)'


@dataclass(frozen=True)
class LabelExample:
    """One labelled example: what the judge grades, and the person's label (1.0 pass, 0.0
    fail, or a score). `hash` names it across runs and shards (`LabelRecord.example`)."""

    line: int
    input: str | None
    output: str
    reference: str | None
    label: float
    test: str | None
    """The test function it is for (its name, or its node id without params); None: any."""
    fields: dict[str, str]
    """Values for the rubric's and the reference's `{name}` placeholders."""
    hash: str


@dataclass(frozen=True)
class Labels:
    """A labels file as read: its labelled examples, and how many rows have no label yet."""

    examples: list[LabelExample]
    unlabelled: int


def read_labels(path: Path) -> Labels:
    """The labelled examples of a JSONL labels file; a row whose label is null or absent is
    counted, not read (the `labels` command writes them so). Anything else wrong is a
    ValueError naming the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read it: {error.strerror or error}") from None
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = raw.count(b"\n", 0, offset) + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[offset]:02x}): save it as UTF-8"
        ) from None
    examples, unlabelled = [], 0
    for number, line_text in enumerate(text.split("\n"), 1):
        if not line_text.strip():
            continue
        example = _example(line_text, f"{path}:{number}", number)
        if example is None:
            unlabelled += 1
        else:
            examples.append(example)
    if not examples:
        rows = (
            "the file has no rows"
            if not unlabelled
            else f"{unlabelled} row{' has' if unlabelled == 1 else 's have'} no label yet"
        )
        raise ValueError(f"{path}: no labelled examples ({rows})")
    return Labels(examples, unlabelled)


def _example(text: str, where: str, line: int) -> LabelExample | None:
    """A row as an example; None when it has no label yet (its shape checked all the same)."""
    try:
        row = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{where}: not JSON: {_json_problem(error)}") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object, got {_kind(row)}")
    if "output" not in row:
        raise ValueError(f'{where}: no "output" (the text the judge grades)')
    texts = {key: _text(row, key, where) for key in ("output", "input", "reference", "test")}
    _text(row, "model", where)
    fields = {}
    for name, value in row.items():
        if name in _KNOWN or value is None:
            continue
        if isinstance(value, dict | list):
            raise ValueError(
                f'{where}: "{name}" is {_kind(value)}: a value for the rubric is text or a number'
            )
        fields[name] = str(value)
    label = _label(row.get("label"), where)
    if label is None:
        return None
    output = texts["output"]
    assert output is not None  # present, and _text refuses null
    content = {
        "input": texts["input"],
        "output": output,
        "reference": texts["reference"],
        "fields": fields,
    }
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return LabelExample(
        line, texts["input"], output, texts["reference"], label, texts["test"], fields, digest
    )


def _text(row: dict[str, t.Any], key: str, where: str) -> str | None:
    value = row.get(key)
    if value is None and key != "output":
        return None
    if not isinstance(value, str):
        raise ValueError(f'{where}: "{key}" must be a string, got {_kind(value)}')
    return value


def _label(value: object, where: str) -> float | None:
    """A label as a number: 1.0 pass, 0.0 fail, or the score given; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _PASS:
            return 1.0
        if word in _FAIL:
            return 0.0
    raise ValueError(f'{where}: "label" must be {LABEL_VALUES}, got {value!r}')


def _kind(value: object) -> str:
    """A JSON value's kind as the file's writer knows it."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")


def _json_problem(error: ValueError) -> str:
    message = getattr(error, "msg", None)
    column = getattr(error, "colno", None)
    return f"{message} (column {column})" if message and column else str(error)


def applies(example: LabelExample, test: str) -> bool:
    """Whether the example is for `test` (a test function's node id without params): it
    names no test, or names this one by its node id or its function's name."""
    return example.test is None or example.test in (test, test.rpartition("::")[2])


Pair = tuple[float, float]
"""(the person's label, the judge's verdict) on one example."""


def kappa(pairs: t.Sequence[Pair], scale: tuple[float, float] | None) -> float | None:
    """Cohen's kappa of people's labels and a judge's verdicts: agreement beyond chance,
    (po - pe) / (1 - pe), where po is the share of examples they agree on and pe the share
    they would agree on by chance (the product of their own rates of each class, summed).
    Raw agreement flatters a judge on a skewed set (one that says pass to everything agrees
    on 90% of a set that is 90% pass); kappa gives it 0. Without a scale, a value of 0.5 or
    more is a pass.

    With a `scale` (low, high), values are scores, rounded to whole categories low..high,
    and the kappa is quadratic-weighted: 1 - sum(w O) / sum(w E), with O the observed and E
    the chance shares of each (label, verdict) pair of categories and w = (i - j)^2, so a
    near miss costs less than a far one. None when it is undefined: no pairs, or chance
    alone would agree on every one (both raters always said the same one thing)."""
    if not pairs:
        return None
    if scale is None:  # two categories: the weighted formula is (po - pe) / (1 - pe) there
        categories = [(int(a >= 0.5), int(b >= 0.5)) for a, b in pairs]
        size = 2
    else:
        low, high = round(scale[0]), round(scale[1])
        size = high - low + 1
        if size < 2:
            return None
        categories = [(_category(a, low, high), _category(b, low, high)) for a, b in pairs]
    total = len(categories)
    rows = [sum(1 for a, _ in categories if a == i) / total for i in range(size)]
    columns = [sum(1 for _, b in categories if b == j) / total for j in range(size)]
    observed = sum((a - b) ** 2 for a, b in categories) / total
    expected = sum((i - j) ** 2 * rows[i] * columns[j] for i in range(size) for j in range(size))
    if expected <= 0:
        return None
    return 1 - observed / expected


def _category(value: float, low: int, high: int) -> int:
    """A score's category on a whole-number scale: its index from `low`, kept on the scale."""
    return min(max(round(value), low), high) - low


@dataclass(frozen=True)
class Confusion:
    """A pass/fail judge's verdicts against people's labels, people's label being the truth:
    positive = pass."""

    tp: int
    fn: int
    tn: int
    fp: int

    @classmethod
    def of(cls, pairs: t.Iterable[Pair]) -> Confusion:
        tp = fn = tn = fp = 0
        for label, verdict in pairs:
            if label >= 0.5:
                tp, fn = (tp + 1, fn) if verdict >= 0.5 else (tp, fn + 1)
            else:
                tn, fp = (tn + 1, fp) if verdict < 0.5 else (tn, fp + 1)
        return cls(tp, fn, tn, fp)

    @property
    def sensitivity(self) -> float | None:
        """The share of people's passes the judge passes; None without any."""
        return _share(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float | None:
        """The share of people's fails the judge fails; None without any."""
        return _share(self.tn, self.tn + self.fp)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def corrected_rate(
    passed: int, total: int, confusion: Confusion
) -> tuple[float, tuple[float, float]] | None:
    """The true pass rate behind a judged one, and its 95% interval, given the judge's
    measured errors.

    A judge that passes some fails and fails some passes moves the rate it measures towards
    its own bias; Rogan-Gladen undoes that: (p + sp - 1) / (se + sp - 1), with p the judged
    rate, se and sp the judge's sensitivity and specificity on the labels, clipped to
    [0, 1]. None when it can't: no verdicts, no labels of one kind, or a judge no better
    than a coin (se + sp <= 1).

    The interval is the delta method's, p, se and sp being independent estimates:
    var = (var(p) + r^2 var(se) + (1 - r)^2 var(sp)) / (se + sp - 1)^2, r the corrected
    rate. Each variance is that of an adjusted proportion (x + 2) / (n + 4), so that a
    judge right on every label (se = 1) still carries the doubt of having seen few."""
    se, sp = confusion.sensitivity, confusion.specificity
    if se is None or sp is None or total == 0:
        return None
    youden = se + sp - 1
    if youden <= 0:
        return None
    rate = min(max((passed / total + sp - 1) / youden, 0.0), 1.0)
    variance = (
        _adjusted_variance(passed, total)
        + rate**2 * _adjusted_variance(confusion.tp, confusion.tp + confusion.fn)
        + (1 - rate) ** 2 * _adjusted_variance(confusion.tn, confusion.tn + confusion.fp)
    ) / youden**2
    margin = Z * math.sqrt(variance)
    return rate, (max(rate - margin, 0.0), min(rate + margin, 1.0))


def _adjusted_variance(successes: int, total: int) -> float:
    """The variance of a proportion estimated as (x + 2) / (n + 4) (Agresti-Coull's)."""
    adjusted = (successes + 2) / (total + 4)
    return adjusted * (1 - adjusted) / (total + 4)


def judged(item: ItemRecord) -> t.Iterator[tuple[ChatRecord, VerdictRecord]]:
    """A judged test's samples and their verdicts: the chats of the model under test that
    carry one (never the judge's own chats, which name their judge)."""
    if "judge" not in item:
        return
    for chat in item["chats"]:
        verdict = chat.get("verdict")
        if verdict is not None and role(chat) is None and chat["model"] == item["model"]:
            yield chat, verdict


@dataclass
class _Counts:
    """Verdicts on one model's samples (or on all of a judge's) being counted."""

    verdicts: int = 0
    passed: int = 0
    unscored: int = 0
    unstable: int = 0
    comparisons: int = 0
    flipped: int = 0

    def add(self, verdict: VerdictRecord) -> None:
        self.verdicts += 1
        self.passed += verdict["outcome"] == "passed"
        self.unscored += verdict["outcome"] == "unscored"
        self.unstable += verdict["unstable"]
        pairwise = verdict.get("pairwise")
        if pairwise is not None and verdict["outcome"] != "unscored":
            self.comparisons += 1
            self.flipped += pairwise["flipped"]


def summaries(items: t.Sequence[ItemRecord]) -> list[JudgeSummary]:
    """Each judge of the run (in first-seen order) with its verdicts per model under test,
    its flips, and its agreement with people's labels; a labelled example graded by several
    processes counts once. [] when no item was judged."""
    judges: dict[str, JudgeRecord] = {}
    models: dict[str, dict[str, tuple[str, _Counts]]] = {}
    totals: dict[str, _Counts] = {}
    labels: dict[str, dict[tuple[str, int], LabelRecord]] = {}
    for item in items:
        record = item.get("judge")
        if record is None:
            continue
        judges.setdefault(record["id"], record)
        for _, verdict in judged(item):
            rows = models.setdefault(verdict["judge"], {})
            rows.setdefault(item["model"], (item["label"], _Counts()))[1].add(verdict)
            totals.setdefault(verdict["judge"], _Counts()).add(verdict)
        for label in item.get("labels", []):  # one line graded by two processes: once
            key = (label["example"], label["line"])
            labels.setdefault(label["judge"], {}).setdefault(key, label)
    return [
        _summary(
            judge,
            models.get(judge["id"], {}),
            totals.get(judge["id"], _Counts()),
            list(labels.get(judge["id"], {}).values()),
        )
        for judge in judges.values()
    ]


def _summary(
    judge: JudgeRecord,
    models: dict[str, tuple[str, _Counts]],
    total: _Counts,
    labels: list[LabelRecord],
) -> JudgeSummary:
    failed = [r for r in labels if "error" in r]
    labels = [r for r in labels if "error" not in r]
    pairs = [(r["label"], r["verdict"]) for r in labels if r["verdict"] is not None]
    scale = _scale(judge, labels)
    confusion = Confusion.of(pairs) if scale is None else None
    rates = [_rate(model, label, counts, confusion) for model, (label, counts) in models.items()]
    summary: JudgeSummary = {
        "id": judge["id"],
        "model": judge["model"],
        "hash": judge["hash"],
        "rubric": judge["rubric"],
        "template": judge["template"],
        "verdicts": total.verdicts,
        "unscored": total.unscored,
        "unstable": total.unstable,
        "comparisons": total.comparisons,
        "flipped": total.flipped,
        "flip_rate": _share(total.flipped, total.comparisons),
        "labels": len(labels),
        "labels_unscored": len(labels) - len(pairs),
        "kappa": kappa(pairs, scale),
        "weighted": scale is not None,
        "sensitivity": confusion.sensitivity if confusion else None,
        "specificity": confusion.specificity if confusion else None,
        "models": rates,
    }
    if failed:
        summary["labels_failed"] = len(failed)
    return summary


def _scale(judge: JudgeRecord, labels: t.Sequence[LabelRecord]) -> tuple[float, float] | None:
    """A scored judge's scale: its record's, or (from a record that doesn't say) the span of
    the labels' and verdicts' values when any is not 0 or 1; None for a pass/fail judge."""
    if "scale" in judge:
        low, high = judge["scale"]
        return low, high
    values = [r["label"] for r in labels] + [
        r["verdict"] for r in labels if r["verdict"] is not None
    ]
    if all(v in (0.0, 1.0) for v in values):
        return None
    return math.floor(min(values)), math.ceil(max(values))


def _rate(model: str, label: str, counts: _Counts, confusion: Confusion | None) -> JudgedRate:
    scored = Rate(counts.passed, counts.verdicts - counts.unscored)
    corrected = corrected_rate(scored.successes, scored.total, confusion) if confusion else None
    return {
        "model": model,
        "label": label,
        "verdicts": counts.verdicts,
        "passed": counts.passed,
        "unscored": counts.unscored,
        "unstable": counts.unstable,
        "pass_rate": scored.value,
        "pass_rate_interval": scored.interval,
        "corrected": corrected[0] if corrected else None,
        "corrected_interval": list(corrected[1]) if corrected else None,
    }


HEADERS = (
    "judge",
    "model",
    "verdicts",
    "judged pass\n[95% CI]",
    "corrected\n[95% CI]",
    "unstable",
    "unscored",
    "flips",
    "kappa",
    "sens",
    "spec",
    "labels",
)


def judges_table(summaries: t.Sequence[JudgeSummary], tablefmt: str = "simple") -> str:
    """The judges at the terminal (or in `tablefmt`, on one header line: a step summary's
    markdown): a row per judge and model under test, the judge's own figures (flips,
    agreement with people) on its first row."""
    lines = []
    for summary in summaries:
        rates: list[JudgedRate | None] = [*summary["models"]] or [None]
        for index, rate in enumerate(rates):
            own = [
                f"{summary['flipped']}/{summary['comparisons']}" if summary["comparisons"] else "-",
                _number(summary["kappa"]),
                _number(summary["sensitivity"]),
                _number(summary["specificity"]),
                _labels_cell(summary),
            ]
            lines.append(
                [
                    summary["id"] if index == 0 else "",
                    *_model_cells(rate),
                    *(own if index == 0 else [""] * len(own)),
                ]
            )
    headers = HEADERS if tablefmt == "simple" else [h.replace("\n", " ") for h in HEADERS]
    return tabulate(lines, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _labels_cell(summary: JudgeSummary) -> str:
    """The labels a judge graded, and those it gave no verdict on or could not grade."""
    apart = [
        f"{count} {what}"
        for count, what in (
            (summary.get("labels_unscored", 0), "unscored"),
            (summary.get("labels_failed", 0), "not graded"),
        )
        if count
    ]
    return str(summary["labels"]) + (f" ({', '.join(apart)})" if apart else "")


def _model_cells(rate: JudgedRate | None) -> list[str]:
    if rate is None:
        return ["-", "0", "-", "-", "-", "-"]
    unstable = f"{rate['unstable']}" + (
        f" ({rate['unstable'] / rate['verdicts']:.1%})" if rate["verdicts"] else ""
    )
    return [
        rate["label"] or rate["model"],
        str(rate["verdicts"]),
        _with_interval(rate["pass_rate"], rate["pass_rate_interval"]),
        _with_interval(rate["corrected"], rate["corrected_interval"]),
        unstable,
        str(rate["unscored"]),
    ]


def _with_interval(value: float | None, interval: t.Sequence[float] | None) -> str:
    """`80.0% [60.1-92.0]`, as the per-model table shows a rate; `-` for none."""
    if value is None:
        return "-"
    text = f"{value:.1%}"
    if interval:
        text += f" [{interval[0] * 100:.1f}-{interval[1] * 100:.1f}]"
    return text


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


KAPPA_OPTION = "rig-min-judge-kappa"


def kappa_checks(summaries: t.Sequence[JudgeSummary], threshold: float) -> list[Check]:
    """`--rig-min-judge-kappa`: each judge's agreement with people against `threshold`. A
    judge with no kappa fails: its verdicts would gate the run on no evidence of their
    worth."""
    checks = []
    needs = f"needs >= {threshold:.2f} ({KAPPA_OPTION})"
    for summary in summaries:
        value = summary["kappa"]
        compared = summary["labels"] - summary.get("labels_unscored", 0)
        failed = summary.get("labels_failed", 0)
        if failed:
            passed = False
            said = (
                f"{failed} of its labelled examples could not be graded (a call refused or "
                "failed: see its row), so its kappa is not known"
            )
        elif value is None:
            passed = False
            said = f"no kappa to judge ({_why_no_kappa(summary, compared)})"
        else:
            passed = value >= threshold
            said = f"kappa {value:.2f} over {compared} label{'' if compared == 1 else 's'}"
        line = f"{'pass' if passed else 'FAIL'} judge {summary['id']}: {said}, {needs}"
        checks.append(Check(f"{KAPPA_OPTION}[{summary['id']}]", passed, line))
    return checks


def _why_no_kappa(summary: JudgeSummary, compared: int) -> str:
    if not summary["labels"]:
        return "no labelled examples graded; give --rig-judge-labels"
    if not compared:
        return f"it gave no verdict on any of its {summary['labels']} labelled examples"
    return (
        f"undefined: people's labels and its verdicts on {compared} examples all fall in "
        "one class; label examples of each kind"
    )


class Stratum(t.NamedTuple):
    """Judged samples alike for labelling: one test function's, on one model, one verdict."""

    test: str
    model: str
    outcome: str


class Sample(t.NamedTuple):
    stratum: Stratum
    item: ItemRecord
    chat: ChatRecord
    verdict: VerdictRecord
    rank: int


def judged_samples(doc: ReportDocument, seed: int) -> list[Sample]:
    """The report's judged samples, each ranked by `seed` (a hash of its identity, so that
    a sample keeps its rank whatever else the report holds)."""
    found = []
    for item in doc["items"]:
        for index, (chat, verdict) in enumerate(judged(item)):
            if "pairwise" in verdict:
                continue  # labels grade one output; a pairwise verdict compared two
            stratum = Stratum(group_key(item["nodeid"]), item["model"], verdict["outcome"])
            identity = (
                f"{seed}\x1f{item['nodeid']}\x1f{item['cell']}\x1f{chat['sample']}\x1f{index}"
            )
            rank = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big")
            found.append(Sample(stratum, item, chat, verdict, rank))
    return found


def allocate(sizes: t.Sequence[int], count: int) -> list[int]:
    """How many to draw from strata of these sizes: in proportion to their size, at least
    one each while `count` allows (the largest strata first when it doesn't), never more
    than a stratum holds. Each unit after the first of each goes where the draw falls
    furthest short of its proportional share."""
    total = sum(sizes)
    if count >= total:
        return list(sizes)
    taken = [0] * len(sizes)
    for index in sorted(range(len(sizes)), key=lambda i: -sizes[i])[:count]:
        taken[index] = 1
    for _ in range(count - sum(taken)):
        open_ = [i for i in range(len(sizes)) if taken[i] < sizes[i]]
        short = max(open_, key=lambda i: sizes[i] * count / total - taken[i])
        taken[short] += 1
    return taken


def labelling_rows(samples: t.Sequence[Sample], count: int) -> list[dict[str, str | None]]:
    """A stratified draw of `count` samples, as rows of a labels file with empty labels.
    Within a stratum, the lowest ranks are drawn; the rows come in rank order, so that
    their order doesn't tell the labeller what the judge said. An output given alike for
    one input (by two models, or twice) is drawn once: it is one example to label."""
    unique: dict[str, Sample] = {}
    for sample in sorted(samples, key=lambda s: s.rank):
        content = {k: v for k, v in _row(sample).items() if k != "model"}
        unique.setdefault(json.dumps(content, sort_keys=True), sample)
    strata: dict[Stratum, list[Sample]] = {}
    for sample in unique.values():
        strata.setdefault(sample.stratum, []).append(sample)
    groups = list(strata.values())
    drawn = [
        sample
        for group, taken in zip(groups, allocate([len(g) for g in groups], count), strict=True)
        for sample in sorted(group, key=lambda s: s.rank)[:taken]
    ]
    return [_row(sample) for sample in sorted(drawn, key=lambda s: s.rank)]


def _row(sample: Sample) -> dict[str, str | None]:
    conversation = sample.chat["conversation"]
    asked = []
    for message in conversation:
        if message["role"] == "assistant":
            break
        if message["role"] == "user":
            asked.append(message["content"])
    answers = [m["content"] for m in conversation if m["role"] == "assistant"]
    row: dict[str, str | None] = {
        "test": sample.stratum.test,
        "model": sample.stratum.model,
        "input": "\n\n".join(asked),
        "output": answers[-1] if answers else "",
    }
    if "reference" in sample.verdict:
        row["reference"] = sample.verdict["reference"]
    for name, value in sample.verdict.get("fields", {}).items():
        row.setdefault(name, value)
    row["label"] = None
    return row
