"""`python -m pytest_rigging merge a.json b.json -o all.json [--inspect-log DIR] [gates]`: one
report (and inspect logs) from CI shards, the per-model table printed, and a non-zero exit
when a gate fails."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from pytest_rigging.plugin.gates import FIGURES, MODES, MODES_HELP, GateError, parse_gates
from pytest_rigging.plugin.inspect_log import write_logs
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
    for option, figure in FIGURES.items():
        merging.add_argument(
            f"--{option.replace('_', '-')}",
            action="append",
            metavar="[MODEL=]RATE",
            help=f"{figure.help} (replaces the gates recorded in the reports)".replace("%", "%%"),
        )
    merging.add_argument("--gate-mode", choices=MODES, help=MODES_HELP.replace("%", "%%"))
    args = parser.parse_args(argv)
    try:
        docs = [load(path) for path in args.reports]
        given = [
            gate for option in FIGURES for gate in parse_gates(option, getattr(args, option) or [])
        ]
    except (ValueError, GateError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    doc = merge(docs, given or None, args.gate_mode)
    if args.output:
        try:
            write(args.output, doc)
        except OSError as error:
            print(f"error: cannot write {args.output}: {error.strerror}", file=sys.stderr)
            return 2
    if args.inspect_log:
        interrupted = bool(doc["settings"].get("interrupted"))
        try:
            write_logs(args.inspect_log, doc["items"], datetime.now(timezone.utc), interrupted)
        except OSError as error:
            print(f"error: cannot write {args.inspect_log}: {error.strerror}", file=sys.stderr)
            return 2
    failing = failing_models(doc)
    print(table(doc["models"], failing=failing))
    for gate in doc["gates"]:
        print(f"{'pass' if gate['passed'] else 'FAIL'} {gate['message']}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
