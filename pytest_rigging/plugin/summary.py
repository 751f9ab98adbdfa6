"""`$GITHUB_STEP_SUMMARY`: the run's table, in GitHub's markdown, on the CI job's page."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_rigging.plugin.report import Reporter, table
from pytest_rigging.plugin.state import warned


def append_step_summary(reporter: Reporter) -> None:
    """Append the table (the judges' too), the failed gates and judges to the step summary,
    when GitHub Actions names one and the run has rig items; a summary that can't be
    written is a warning."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path or not reporter.items:
        return
    lines = ["## pytest-rigging: parse success per model", ""]
    lines.append(table(reporter.rows(False), failing=reporter.failing, tablefmt="github"))
    judges = reporter.judges()
    if judges:
        from pytest_rigging.plugin.calibration import judges_table

        lines.extend(["", "### Judges", "", judges_table(judges, tablefmt="github")])
    lines.extend(f"\n**FAIL** {r.describe()}" for r in reporter.results if not r.passed)
    lines.extend(f"\n**{c.line}**" for c in reporter.judge_checks if not c.passed)
    doing = f"append to GITHUB_STEP_SUMMARY {path}"
    with warned(doing), Path(path).open("a", encoding="utf-8") as summary:
        summary.write("\n".join(lines) + "\n\n")
