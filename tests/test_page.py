"""The HTML report (`plugin/page.py`): its data block and cut texts, the command line's
errors, where the plugin writes it, and the page itself in a headless Chromium (the
`browser` fixture): the grid's cells, a cell's dialog, the baseline's flips, hostile
replies, and the example suites' page against the terminal's table, sharded or not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from pytest_rigging.plugin import baseline as baselines
from pytest_rigging.plugin import page, report
from pytest_rigging.plugin.cli import main as rigging_main
from pytest_rigging.plugin.records import ChatRecord, ItemRecord, ReportDocument, item_of
from tests.conftest import ONE_ITEM, BrowserThread, chat_record, ini, read_data

SUITES = Path(__file__).resolve().parents[1] / "example_suites"


def chat(sample: int, reply: str, check: str = "passed", bucket: str = "first_try") -> ChatRecord:
    """A one-exchange chat record of model `a`'s cell, sample `sample`."""
    return chat_record(
        sample,
        [("user", f"question {sample}"), ("assistant", reply)],
        "m!a",
        "a",
        outcome=bucket,
        check=check,
        check_message=None if check == "passed" else f"AssertionError: sample {sample} wrong",
    )


def item(
    case: str, model: str, outcome: str, chats: list[ChatRecord], **extra: t.Any
) -> ItemRecord:
    """Test `test_x[case]`'s item on model `model` (`m!model`, labelled `model`)."""
    judged = [c for c in chats if c["check"] in ("passed", "failed")]
    samples = [sum(c["check"] == "passed" for c in judged), len(judged)] if judged else None
    cell = {"model": f"m!{model}", "label": model, "params": "{}", "cell": model}
    own = [{**c, "model": f"m!{model}", "label": model} for c in chats]
    record = item_of(
        f"test_x.py::test_x[{case}-{model}]",
        cell,  # type: ignore[arg-type]
        outcome,
        samples,
        0.1,
        own,  # type: ignore[arg-type]
    )
    record.update(extra)  # type: ignore[typeddict-item]
    return record


def document(items: list[ItemRecord]) -> ReportDocument:
    settings = {"started": "2025-01-02T03:04:05+00:00", "models": ["m!a", "m!b"], "runs": 3}
    return report.document(settings, items, [], "point")  # type: ignore[arg-type]


GRID = [
    item("one", "a", "passed", [chat(1, "yes"), chat(2, "yes"), chat(3, "no", "failed")]),
    item("one", "b", "failed", [chat(1, "no", "failed"), chat(2, "no", "failed"), chat(3, "yes")]),
    item("two", "a", "failed", [chat(1, "<x", "failed", "exhausted")]),
    item("two", "b", "error", []),
    item("three", "a", "skipped", []),
    item("three", "b", "interrupted", [chat(1, "half")]),
    item("four", "a", "failed", [chat(1, "no", "failed")], known=True),
]
"""Each status once; case "four" has no cell on model b."""


def look(browser: BrowserThread, path: Path, work: t.Callable[[t.Any], t.Any]) -> t.Any:
    """`work(page)` on the page at `path`, once drawn; that nothing but the file itself
    was requested while it ran."""

    def visit(chromium: t.Any) -> t.Any:
        tab = chromium.new_page(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        tab.on("request", lambda request: requests.append(request.url))
        try:
            tab.goto(path.as_uri())
            tab.wait_for_selector("body[data-ready]")
            done = work(tab)
        finally:
            tab.close()
        assert requests == [path.as_uri()], requests
        return done

    return browser.run(visit)


GRID_JS = """() => [...document.querySelectorAll('#grid-body tr')].map(tr => [
  tr.querySelector('td.case').textContent,
  [...tr.querySelectorAll('td.cell')].map(td => {
    const b = td.querySelector('button');
    return b ? b.querySelector('.count').textContent + ' ' + b.dataset.status : null;
  })])"""


# The data block and the cut texts, without a browser


def test_the_data_block_escapes_what_could_end_it_and_stays_ascii() -> None:
    hostile = "</script><!-- & <b> \udc80 é"
    doc = document([item("one", "a", "passed", [chat(1, hostile)])])
    block = page.data_block(page.page_data(doc))
    assert block.isascii()
    assert not {"<", ">", "&"} & set(block)
    assert "\\u003c/script\\u003e\\u003c!-- \\u0026 \\u003cb\\u003e \\udc80 \\u00e9" in block
    [shown] = json.loads(block)["items"]
    assert shown["chats"][0]["conversation"][1]["content"] == hostile


def test_long_texts_are_cut_with_their_size() -> None:
    long = "x" * (page.CUT + 1)
    assert page.cut({"a": [long, "short"], "n": 3}) == {
        "a": [
            "x" * page.CUT + f"\n[cut: {page.CUT + 1:,} characters in all, the first 20,000 shown]",
            "short",
        ],
        "n": 3,
    }
    assert page.cut("y" * page.CUT) == "y" * page.CUT


def test_rows_are_cases_and_cells_have_statuses() -> None:
    data = page.page_data(document(GRID))
    assert data["rows"] == [
        "test_x.py::test_x[four]",
        *(f"test_x.py::test_x[{c}]" for c in ("one", "three", "two")),
    ]
    assert [c["cell"] for c in data["columns"]] == ["a", "b"]
    assert [(i["row"], i["column"], i["status"], i["marks"]) for i in data["items"]] == [
        (0, 0, "known", ["failed"]),
        (1, 0, "passed", ["passed", "passed", "failed"]),
        (1, 1, "failed", ["failed", "failed", "passed"]),
        (2, 0, "skipped", []),
        (2, 1, "interrupted", ["passed"]),
        (3, 0, "exhausted", ["exhausted"]),
        (3, 1, "error", []),
    ]
    assert data["run"]["totals"]["statuses"] == dict.fromkeys(
        ["known", "passed", "failed", "skipped", "interrupted", "exhausted", "error"], 1
    )


def test_against_a_baseline_known_failures_and_flips_are_the_comparisons() -> None:
    """A saved report put against a baseline afterwards (`html --baseline`): what failed
    in both is a known failure, as the run's comparison would have marked it; what
    passed there and fails here, or the reverse, flipped; an edited case did neither."""
    items = [
        item("one", "a", "failed", [chat(1, "no", "failed")]),
        item("two", "a", "failed", [chat(1, "no", "failed")]),
        item("three", "a", "passed", [chat(1, "yes")]),
        item("four", "a", "failed", [chat(1, "no", "failed")]),
    ]
    items[3]["case"] = {"id": "four", "hash": "new", "source": "c.jsonl", "dataset": "d"}
    before = baselines.from_report(document(items))
    before["items"]["test_x.py::test_x[two-a]"]["outcome"] = "passed"
    before["items"]["test_x.py::test_x[three-a]"]["outcome"] = "failed"
    before["items"]["test_x.py::test_x[four-a]"]["case"] = {"id": "four", "hash": "old"}
    before["items"]["test_x.py::test_x[four-a]"]["outcome"] = "passed"
    data = page.page_data(document(items), before, "base.json")
    shown = {i["nodeid"]: (i["status"], i.get("flip"), i.get("baseline")) for i in data["items"]}
    assert shown == {
        "test_x.py::test_x[one-a]": ("known", None, "failed"),
        "test_x.py::test_x[two-a]": ("failed", "regressed", "passed"),
        "test_x.py::test_x[three-a]": ("passed", "fixed", "failed"),
        "test_x.py::test_x[four-a]": ("failed", None, "passed"),
    }
    assert data["run"]["baseline"] == {"name": "base.json", "regressed": 1, "fixed": 1, "known": 1}
    assert data["run"]["totals"]["statuses"] == {"known": 1, "failed": 2, "passed": 1}


# The command line


def test_html_command_tells_what_it_cannot_read_or_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "r.json"
    report.write(saved, document(GRID))
    (tmp_path / "notes.json").write_text('{"version": 9}')
    (tmp_path / "file").write_text("")
    for args, message in [
        (
            [str(tmp_path / "gone.json")],
            f"error: cannot read {tmp_path}/gone.json: No such file or directory",
        ),
        (
            [str(tmp_path / "notes.json")],
            f"error: {tmp_path}/notes.json is not a pytest-rigging report (version 1 or 2)",
        ),
        (
            [str(saved), "--baseline", str(saved)],
            f"error: {saved} is not a pytest-rigging baseline (one written by --rig-save-baseline)",
        ),
    ]:
        assert rigging_main(["html", *args, "-o", str(tmp_path / "p.html")]) == 2
        assert capsys.readouterr().err == message + "\n"
    assert rigging_main(["html", str(saved), "-o", f"{tmp_path}/file/p.html"]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write {tmp_path}/file/p.html: ")
    assert not (tmp_path / "p.html").exists()
    assert rigging_main(["html", str(saved), "-o", str(tmp_path / "p.html")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path}/p.html\n"
    assert len(read_data(tmp_path / "p.html")["items"]) == len(GRID)


def test_merge_writes_the_page_or_says_why_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = tmp_path / "1.json", tmp_path / "2.json"
    report.write(one, document(GRID[:3]))
    report.write(two, document(GRID[3:]))
    assert rigging_main(["merge", str(one), str(two), "--html", str(tmp_path / "p.html")]) == 0
    data = read_data(tmp_path / "p.html")
    assert data["items"] == page.page_data(document(GRID))["items"]
    assert data["run"]["settings"]["merged_from"] == 2
    (tmp_path / "file").write_text("")
    assert rigging_main(["merge", str(one), "--html", f"{tmp_path}/file/p.html"]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write {tmp_path}/file/p.html: ")


# Where the plugin writes it


def test_rig_html_from_the_ini_file_and_a_page_it_cannot_write(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ini `rig_html` names the page from the ini file's folder (not the working
    directory); one that can't be written is a warning naming where it was set, and the
    run's outcome stands."""
    ini(pytester, "rig_html = pages/run.html\n")
    pytester.makepyfile(test_one=ONE_ITEM)
    monkeypatch.chdir(pytester.mkdir("sub"))
    pytester.runpytest("../test_one.py").assert_outcomes(passed=1)
    [shown] = read_data(pytester.path / "pages" / "run.html")["items"]
    assert (shown["nodeid"], shown["status"]) == ("test_one.py::test_a[echo]", "passed")
    monkeypatch.chdir(pytester.path)
    (pytester.path / "file").write_text("")
    result = pytester.runpytest("--rig-html", "file/run.html")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*RiggingWarning: cannot write --rig-html file/run.html: *"])


# In the browser


def test_the_grid_has_a_cell_per_item_with_its_k_of_n(
    browser: BrowserThread, tmp_path: Path
) -> None:
    path = tmp_path / "p.html"
    page.write(path, document(GRID))

    def read(tab: t.Any) -> t.Any:
        heads = tab.eval_on_selector_all("#grid-head th", "ths => ths.map(th => th.textContent)")
        return heads, tab.evaluate(GRID_JS), tab.inner_text("#shown-count")

    heads, grid, count = look(browser, path, read)
    assert heads == ["case", "a", "b"]
    assert grid == [
        ["test_x.py::test_x[four]", ["0/1 known", None]],
        ["test_x.py::test_x[one]", ["2/3 passed", "1/3 failed"]],
        ["test_x.py::test_x[three]", ["skipped skipped", "1/1 interrupted"]],
        ["test_x.py::test_x[two]", ["0/1 exhausted", "error error"]],
    ]
    assert count == "4 of 4 cases shown"


def test_a_click_opens_the_cells_samples(browser: BrowserThread, tmp_path: Path) -> None:
    """Every sample of the cell clicked, each with its messages, check and tokens; a field
    this version doesn't know (a later version's grader, say) is shown as it is."""
    path = tmp_path / "p.html"
    judged = chat(2, "no", "failed")
    judged["grader"] = {"score": 0.2, "reasoning": "it said no"}  # type: ignore[typeddict-unknown-key]
    page.write(path, document([*GRID[:1], item("one", "b", "failed", [chat(1, "yes"), judged])]))

    def open_cell(tab: t.Any) -> t.Any:
        tab.click('tr[data-row="0"] td.cell >> nth=1 >> button')
        tab.wait_for_selector("#detail[open]")
        samples = tab.eval_on_selector_all(
            "#detail-body section.sample",
            """ss => ss.map(s => [s.dataset.sample, s.querySelector('h4').textContent,
                [...s.querySelectorAll('.message pre')].map(p => p.textContent),
                [...s.querySelectorAll('dt')].map(
                  dt => dt.textContent + '=' + dt.nextSibling.textContent)])""",
        )
        return tab.inner_text("#detail-body h3"), samples

    title, samples = look(browser, path, open_cell)
    assert title == "test_x.py::test_x[one]"
    check_message = "AssertionError: sample 2 wrong"
    assert samples == [
        [
            "1",
            "sample 1 \u00b7 passed",
            ["question 1", "yes"],
            [
                "parse=first try",
                "recovery rounds=0",
                "check=passed",
                "latency=0.50s",
                "tokens in/out=3/2",
                "generator=m!a",
            ],
        ],
        [
            "2",
            "sample 2 \u00b7 failed",
            ["question 2", "no"],
            [
                "parse=first try",
                "recovery rounds=0",
                "check=failed",
                "latency=0.50s",
                "tokens in/out=3/2",
                "generator=m!a",
                'grader={\n  "score": 0.2,\n  "reasoning": "it said no"\n}',
            ],
        ],
    ]
    assert check_message in read_data(path)["items"][1]["chats"][1]["check_message"]


def test_flips_only_shows_exactly_the_flipped_cells(
    browser: BrowserThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`html --baseline`: the cells whose outcome flipped either way are marked, with the
    baseline's outcome; 'flips only' shows those and no other."""
    before = [
        item("one", "a", "failed", [chat(1, "no", "failed")]),  # fixed
        item("one", "b", "passed", [chat(1, "yes")]),  # flipped to failing
        item("two", "a", "passed", [chat(1, "yes")]),  # the same
        item("two", "b", "failed", [chat(1, "no", "failed")]),  # known
    ]
    now = [
        item("one", "a", "passed", [chat(1, "yes")]),
        item("one", "b", "failed", [chat(1, "no", "failed")]),
        item("two", "a", "passed", [chat(1, "yes")]),
        item("two", "b", "failed", [chat(1, "no", "failed")], known=True),
        item("three", "a", "failed", [chat(1, "no", "failed")]),  # new
    ]
    baselines.save(tmp_path / "base.json", baselines.from_report(document(before)))
    report.write(tmp_path / "r.json", document(now))
    path = tmp_path / "p.html"
    args = [
        "html",
        str(tmp_path / "r.json"),
        "-o",
        str(path),
        "--baseline",
        str(tmp_path / "base.json"),
    ]
    assert rigging_main(args) == 0

    def flips(tab: t.Any) -> t.Any:
        marked = tab.eval_on_selector_all("button.cell.flipped", "bs => bs.map(b => b.textContent)")
        tab.check("#filter-flips")
        return marked, tab.evaluate(GRID_JS), tab.inner_text("#baseline")

    marked, grid, summary = look(browser, path, flips)
    assert marked == ["1/1\u25b2was failed", "0/1\u25bcwas passed"]
    assert grid == [["test_x.py::test_x[one]", ["1/1 passed", "0/1 failed"]]]
    assert (
        summary == f"against {tmp_path}/base.json: 1 flipped to failing, 1 fixed, 1 known failure"
    )


def test_a_hostile_reply_is_inert_text(browser: BrowserThread, tmp_path: Path) -> None:
    """Markup, a script's end, a comment's start, entities and a lone surrogate in a reply
    (and in a model's label) are shown as the text they are, and none runs; a reply of
    10 MB is cut, with its size; the page is drawn whole."""
    replies = [
        "<script>window.pwned=1</script>",
        "</script><script>window.pwned=2</script>",
        "<!-- <img src=x onerror='window.pwned=3'>",
        "&amp; &lt;b&gt; &#x3C;/script&#x3E;",
        "lone \udc80 surrogate",
        "x" * 10_000_000,
    ]
    hostile = '<img src=x onerror="window.pwned=4">'
    items = [item(f"c{n}", "a", "passed", [chat(1, reply)]) for n, reply in enumerate(replies)]
    items.append(item("label", hostile, "passed", [chat(1, "fine")]))
    path = tmp_path / "p.html"
    page.write(path, document(items))
    assert path.stat().st_size < 1_000_000

    def read(tab: t.Any) -> t.Any:
        shown = []
        for n in range(len(replies)):
            tab.click(f'tr[data-row="{n}"] button.cell')
            shown.append(tab.inner_text("#detail-body .message.assistant pre"))
            tab.click("#detail-close")
        heads = tab.eval_on_selector_all("#grid-head th", "ths => ths.map(th => th.textContent)")
        rows = tab.eval_on_selector_all("#grid-body tr", "trs => trs.length")
        return shown, heads, rows, tab.evaluate("typeof window.pwned")

    shown, heads, rows, pwned = look(browser, path, read)
    assert pwned == "undefined"
    assert rows == len(replies) + 1
    assert heads == ["case", "a", hostile]
    assert shown[:4] == replies[:4]
    assert shown[4].startswith("lone ") and shown[4].endswith(" surrogate")
    assert (
        shown[5] == "x" * page.CUT + "\n[cut: 10,000,000 characters in all, the first 20,000 shown]"
    )


def pytest_run(*args: str, cwd: Path = SUITES) -> subprocess.Popen[str]:
    """pytest on the example suites with `args`, started."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen[str]) -> str:
    out, _ = process.communicate(timeout=300)
    return out


def test_the_example_suites_page_holds_the_terminal_tables_items_and_counts(
    browser: BrowserThread, tmp_path: Path
) -> None:
    """On three models, one of which ignores the format: every item the terminal lists is
    a cell, each model's items, parse and pass rates are the table's, and the grid's cells
    per model add up to its items ok/fail/err. With RIG_SCREENSHOT=PATH, the page is
    photographed there (the README's picture)."""
    path = tmp_path / "page.html"
    models = [f"scripted!models/{name}.toml" for name in ("careful", "sloppy", "stubborn")]
    shown = finished(
        pytest_run(
            *(a for m in models for a in ("--rig-models", m)), "-rA", "--rig-html", str(path)
        )
    )
    assert "14 failed, 31 passed" in shown, shown
    listed = set(re.findall(r"^(?:PASSED|FAILED) (\S+)", shown, re.M))
    table = shown.split("rigging: parse success per model", 1)[1].splitlines()[1:]
    heads = re.split(r"\s{2,}", table[0].strip())
    rows = {}
    for line in table[2:5]:
        cells = dict(zip(heads, re.split(r"\s{2,}", line.strip()), strict=True))
        rows[cells["model"]] = cells
    screenshot = os.environ.get("RIG_SCREENSHOT")

    def read(tab: t.Any) -> t.Any:
        nodeids = tab.eval_on_selector_all("button.cell", "bs => bs.map(b => b.title)")
        models = tab.eval_on_selector_all(
            "#model-table tbody tr",
            "trs => trs.map(tr => [...tr.children].map(td => td.innerText))",
        )
        columns = tab.eval_on_selector_all("#grid-head th", "ths => ths.map(th => th.textContent)")
        statuses = tab.evaluate(
            """() => [...document.querySelectorAll('#grid-body tr')].map(tr =>
                 [...tr.querySelectorAll('td.cell')].map(
                   td => td.querySelector('button').dataset.status))"""
        )
        cells = tab.eval_on_selector_all("button.cell", "bs => bs.map(b => b.dataset.item)")
        judges = tab.eval_on_selector_all(
            "#judge-table tbody tr",
            "trs => trs.map(tr => [...tr.children].map(td => td.innerText))",
        )
        if screenshot:
            tab.set_viewport_size({"width": 1280, "height": 780})
            tab.screenshot(path=screenshot)
        return nodeids, models, columns, statuses, cells, judges

    titles, models_shown, columns, statuses, cells, judges = look(browser, path, read)
    data = read_data(path)
    assert {data["items"][int(n)]["nodeid"] for n in cells} == listed
    assert len(cells) == len(listed) == 45
    assert columns == ["case", "careful", "sloppy", "stubborn"]
    assert [row[0] for row in models_shown] == ["careful", "sloppy", "stubborn", "judge (judge)"]
    for row in models_shown[:3]:
        name, items, parse, passed = row[:4]
        assert (items, parse, passed) == (
            rows[name]["items ok/fail/err"],
            rows[name]["parse rate [95% CI]"],
            rows[name]["pass rate [95% CI]"],
        )
    for n, name in enumerate(["careful", "sloppy", "stubborn"]):
        column = [row[n] for row in statuses]
        ok = column.count("passed")
        failed = column.count("failed") + column.count("exhausted")
        assert f"{ok}/{failed}/{column.count('error')}" == rows[name]["items ok/fail/err"]
    assert titles[0].startswith("test_agent.py::test_refund[A1-20.0] on careful: passed")
    # the refund agent's tool calls: each model's parse rate of them, as the terminal's
    tooled = {row[0]: row[7] for row in models_shown[:3]}
    assert tooled == {name: rows[name]["tool calls parsed [95% CI]"] for name in tooled}
    # the judged suite's judge, as the terminal's judges table has it
    judge = data["judges"][0]["id"]
    assert [row[:3] for row in judges] == [
        [judge, "careful", "12"],
        ["", "sloppy", "12"],
        ["", "stubborn", "12"],
    ]
    assert judges[0][-4:] == ["0.67", "1.00", "0.67", "12"]  # kappa, sens, spec, labels
    assert judges[1][5:7] == ["3", "0"]  # unstable, unscored


def grid_text(browser: BrowserThread, path: Path) -> t.Any:
    def read(tab: t.Any) -> t.Any:
        return [tab.inner_text(s) for s in ("#grid", "#model-table", "#totals", "#shown-count")]

    return look(browser, path, read)


def test_merged_shards_give_the_unsharded_page(browser: BrowserThread, tmp_path: Path) -> None:
    """The example suites under xdist (the controller writes the page), and as shards 1/2
    and 2/2 merged with `--html`: the same grid, figures and totals."""
    whole = tmp_path / "whole.html"
    shards = [tmp_path / f"{k}.json" for k in (1, 2)]
    started = [
        pytest_run("-n", "2", "--rig-html", str(whole)),
        *(pytest_run("--rig-shard", f"{k}/2", "--rig-report", str(shards[k - 1])) for k in (1, 2)),
    ]
    for process in started:
        out = finished(process)
        assert process.returncode == 0, out
    merged = tmp_path / "merged.html"
    assert rigging_main(["merge", *map(str, shards), "--html", str(merged)]) == 0
    assert all(json.loads(s.read_text())["items"] for s in shards)
    expected = grid_text(browser, whole)
    assert "test_capitals.py::test_capital[France]" in expected[0]
    assert expected[3] == "15 of 15 cases shown"
    assert grid_text(browser, merged) == expected


@pytest.mark.parametrize("required", ["", "1"])
def test_without_chromium_the_browser_tests_say_what_to_install(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, required: str
) -> None:
    """Skipped, naming the package to install; failed instead with RIG_BROWSER_REQUIRED=1."""
    monkeypatch.setenv("PATH", str(pytester.mkdir("empty")))
    monkeypatch.setenv("RIG_BROWSER_REQUIRED", required)
    ini(pytester)
    pytester.makeconftest("from tests.conftest import browser  # noqa: F401\n")
    pytester.makepyfile("def test_page(browser):\n    pass\n")
    result = pytester.runpytest("-rs")
    needed = "the browser tests need chromium (Debian: apt-get install -y chromium)"
    if required:
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(
            ["*ERROR at setup of test_page*", f"{needed} (RIG_BROWSER_REQUIRED=1)"]
        )
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines([f"SKIPPED * {needed}"])
