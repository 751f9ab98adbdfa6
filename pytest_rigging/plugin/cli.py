"""`python -m pytest_rigging merge a.json b.json -o all.json [--html page.html] [--inspect-log
DIR] [gates]`: one report (its HTML page, inspect logs) from CI shards, the per-model table
printed, and a non-zero exit when a gate fails; `python -m pytest_rigging html report.json
-o page.html [--baseline FILE]`: the HTML page of a saved report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_rigging.plugin.gates import FIGURES, MODES, MODES_HELP, GateError, parse_gates
from pytest_rigging.plugin.inspect_log import write_logs
from pytest_rigging.plugin.records import ReportDocument
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
    paging = commands.add_parser("html", help="write the HTML page of a --rig-report file")
    paging.add_argument("report", type=Path, help="a JSON report (--rig-report, merge -o)")
    paging.add_argument("-o", "--output", type=Path, required=True, help="where to write the page")
    paging.add_argument(
        "--baseline", type=Path, help="a --rig-save-baseline file: mark the items that flipped"
    )
    args = parser.parse_args(argv)
    if args.command == "html":
        return _html(args.report, args.output, args.baseline)
    try:
        docs = [load(path) for path in args.reports]
        given = [
            gate for option in FIGURES for gate in parse_gates(option, getattr(args, option) or [])
        ]
    except (ValueError, GateError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    doc = merge(docs, given or None, args.gate_mode)
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
    for gate in doc["gates"]:
        print(f"{'pass' if gate['passed'] else 'FAIL'} {gate['message']}")
    return 1 if failing else 0


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


if __name__ == "__main__":
    sys.exit(main())
