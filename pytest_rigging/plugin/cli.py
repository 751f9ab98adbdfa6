"""`python -m pytest_rigging merge a.json b.json -o all.json [--html page.html] [--inspect-log
DIR] [gates]`: one report (its HTML page, inspect logs) from CI shards, the per-model table
printed, and a non-zero exit when a gate fails; `python -m pytest_rigging html report.json
-o page.html [--baseline FILE]`: the HTML page of a saved report; `python -m pytest_rigging
labels report.json -o labels.jsonl [--count N] [--seed S]`: a stratified draw of a run's
judged samples, as a labels file for people to fill in (`--rig-judge-labels`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pytest_rigging.plugin.calibration import judges_table, kappa_checks
from pytest_rigging.plugin.gates import FIGURES, MODES, MODES_HELP, GateError, parse_gates
from pytest_rigging.plugin.inspect_log import write_logs
from pytest_rigging.plugin.records import ReportDocument, write_whole
from pytest_rigging.plugin.report import failing_models, load, merge, table, write


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every gate passes, 1 when one fails, 2 on input or output it can't use."""
    parser = argparse.ArgumentParser(prog="python -m pytest_rigging")
    commands = parser.add_subparsers(dest="command", required=True)
    merging = commands.add_parser("merge", help="merge --rig-report files of CI shards")
    merging.add_argument("reports", nargs="+", type=Path, help="JSON reports to merge")
    merging.add_argument("-o", "--output", type=Path, help="where to write the merged report")
    merging.add_argument(
        "--inspect-log",
        type=Path,
        metavar="DIR",
        help="also write the merged run as inspect_ai eval logs into DIR",
    )
    merging.add_argument("--html", type=Path, help="where to write the merged run's HTML page")
    for option, figure in FIGURES.items():
        merging.add_argument(
            f"--{option.replace('_', '-')}",
            action="append",
            metavar="[MODEL=]RATE",
            help=f"{figure.help} (replaces the gates recorded in the reports)".replace("%", "%%"),
        )
    merging.add_argument("--gate-mode", choices=MODES, help=MODES_HELP.replace("%", "%%"))
    merging.add_argument(
        "--min-judge-kappa",
        type=float,
        metavar="K",
        help="fail when a judge agrees with the labelled examples less than K (Cohen's kappa; "
        "replaces the threshold recorded in the reports)",
    )
    paging = commands.add_parser("html", help="write the HTML page of a --rig-report file")
    paging.add_argument("report", type=Path, help="a JSON report (--rig-report, merge -o)")
    paging.add_argument("-o", "--output", type=Path, required=True, help="where to write the page")
    paging.add_argument(
        "--baseline", type=Path, help="a --rig-save-baseline file: mark the items that flipped"
    )
    labelling = commands.add_parser(
        "labels", help="write a file to label from the judged samples of a --rig-report file"
    )
    labelling.add_argument("report", type=Path, help="a JSON report (--rig-report, merge -o)")
    labelling.add_argument(
        "-o", "--output", type=Path, required=True, help="where to write the labels file (JSONL)"
    )
    labelling.add_argument(
        "--count", type=_count, default=50, help="how many samples to draw (default 50)"
    )
    labelling.add_argument(
        "--seed", type=int, default=0, help="another seed draws other samples (default 0)"
    )
    args = parser.parse_args(argv)
    if args.command == "html":
        return _html(args.report, args.output, args.baseline)
    if args.command == "labels":
        return _labels(args.report, args.output, args.count, args.seed)
    try:
        docs = [load(path) for path in args.reports]
        given = [
            gate for option in FIGURES for gate in parse_gates(option, getattr(args, option) or [])
        ]
    except (ValueError, GateError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    doc = merge(docs, given or None, args.gate_mode)
    if args.min_judge_kappa is not None:
        doc["settings"]["min_judge_kappa"] = args.min_judge_kappa
    kappa = doc["settings"].get("min_judge_kappa")
    for path, writer in ((args.output, write), (args.html, _write_page)):
        if path is None:
            continue
        try:
            writer(path, doc)
        except OSError as error:
            print(f"error: cannot write {path}: {error.strerror}", file=sys.stderr)
            return 2
    if args.inspect_log:
        try:
            write_logs(args.inspect_log, doc)
        except OSError as error:
            print(f"error: cannot write {args.inspect_log}: {error.strerror}", file=sys.stderr)
            return 2
    failing = failing_models(doc)
    print(table(doc["models"], failing=failing))
    judges = doc.get("judges", [])
    if judges:
        print(f"\n{judges_table(judges)}")
    for gate in doc["gates"]:
        print(f"{'pass' if gate['passed'] else 'FAIL'} {gate['message']}")
    kappas = kappa_checks(judges, kappa) if kappa is not None else []
    for check in kappas:
        print(check.line)
    return 1 if failing or not all(check.passed for check in kappas) else 0


def _write_page(path: Path, doc: ReportDocument) -> None:
    from pytest_rigging.plugin.page import write as write_page

    write_page(path, doc)


def _html(report: Path, output: Path, baseline_path: Path | None) -> int:
    """`html`: 0 when the page is written, 2 on a report or baseline it can't read or a
    page it can't write."""
    from pytest_rigging.plugin.baseline import load as load_baseline
    from pytest_rigging.plugin.page import write as write_page

    try:
        doc = load(report)
        baseline = load_baseline(baseline_path) if baseline_path is not None else None
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        write_page(output, doc, baseline, str(baseline_path or ""))
    except OSError as error:
        print(f"error: cannot write {output}: {error.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {output}")
    return 0


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return count


def _labels(report: Path, output: Path, count: int, seed: int) -> int:
    """`labels`: 0 when the file is written, 2 on a report it can't read or that judged
    nothing, or a file it can't write."""
    from pytest_rigging.plugin.calibration import judged_samples, labelling_rows

    try:
        doc = load(report)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    samples = judged_samples(doc, seed)
    if not samples:
        print(
            f"error: {report} has no judged samples (run a rig_judge test with --rig-report)",
            file=sys.stderr,
        )
        return 2
    rows = labelling_rows(samples, count)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    try:
        write_whole(output, text)
    except OSError as error:
        print(f"error: cannot write {output}: {error.strerror}", file=sys.stderr)
        return 2
    strata = len({sample.stratum for sample in samples})
    print(
        f"wrote {_counted(len(rows), 'example')} to {output} "
        f"(of {_counted(len(samples), 'judged sample')}; "
        f'{strata} strat{"um" if strata == 1 else "a"}); fill in "label" (true/false or a score)'
    )
    return 0


def _counted(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


if __name__ == "__main__":
    sys.exit(main())
