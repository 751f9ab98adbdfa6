"""The HTML report at scale: does a 10,000-item, 5-sample page open and filter in time?

A report of 2,000 cases x 5 models x 5 samples (10,000 items, 50,000 chats) is built as
the plugin records it (`records.item_of`, `report.document`): each sample a chat of a
system prompt, a user ticket and the assistant's reply of realistic length, with passed,
failed, parse-exhausted, errored and skipped items, and a baseline in which 3% of the
items had the other outcome, so that flips are marked. Its page is written with
`page.write` and opened in headless Chromium (Debian's, through Playwright, launched as
the tests' `browser` fixture launches it), where the page's own figures are read:

- first contentful paint (the browser's `first-contentful-paint`), the script done
  (`performance.mark("rig-drawn")`: data parsed, first rows drawn) and the grid painted
  (the first frame after that mark: `requestAnimationFrame`, then a task);
- a model, an outcome, a text and a flips filter, and clearing them: from the control's
  event until the frame that shows the filtered rows (the text box waits 120 ms after
  the last keystroke before it filters: that wait is counted; the first search reads every
  text of the page, a second one reuses what it read); each shown count is checked
  against what the report holds;
- the grid scrolled to its end until the next page of rows is painted;
- opening a cell's dialog (five samples) until it is painted.

Each round opens the page in a fresh browser context, after an untimed warm-up; sizes
alternate, and a 100-item page (20 cases) is measured beside it in the same rounds, so
the ratio shows how the page scales. Budgets: grid painted < 2 s, each filter < 500 ms,
the dialog and the next rows (the grid scrolled to its end) < 200 ms. The file size is
reported; it has no budget.

Run: .venv/bin/python bench/bench_page.py [--cases N] [--models N] [--samples N] [--rounds N]
[--keep DIR] [--profile] (~1 minute; --keep leaves the pages in DIR; --profile prints
where the large page's time goes: Chromium's trace of opening it, and its CPU profile)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import tempfile
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    Row,
    add_repo_to_path,
    fmt,
    median,
    print_table,
    progress,
    spread,
    time_call,
)

from pytest_rigging.plugin import baseline as baselines
from pytest_rigging.plugin import page, report
from pytest_rigging.plugin.records import (
    CaseRecord,
    CellRecord,
    ChatRecord,
    ItemRecord,
    ReportDocument,
    item_of,
)

if t.TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

MODELS = (
    ("openai/gpt-4o-mini", "gpt-4o-mini"),
    ("anthropic/claude-3-5-haiku-20241022", "claude-3-5-haiku"),
    ("gemini/gemini-2.0-flash", "gemini-2.0-flash"),
    ("openai/gpt-4.1", "gpt-4.1"),
    ("ollama/llama3.1:8b", "llama3.1-8b"),
)
ROUNDS = 5
FIRST_PAINT = 2.0  # s
FILTER = 0.5  # s
DIALOG = 0.2  # s
NEEDLE = "chargeback"  # in about 1% of the replies, and in no case's name
CASE_NEEDLE = "ticket-0001"  # in the names of cases 10-19: a second search, index built

PROSE = (
    "the order was shipped on time but the customer reports that the parcel arrived "
    "damaged and asks whether a replacement or a refund is possible under the current "
    "policy which allows returns within thirty days of delivery provided that the item "
    "is unused and in its original packaging our records show two previous contacts "
    "about the same account and a pending invoice that was paid late last quarter please "
    "confirm the shipping address and the preferred payment method before we proceed"
)
WORDS = tuple(PROSE.split())
SYSTEM = (
    "You are a support agent for an online shop. Read the customer's ticket and answer "
    "in at most five sentences. Be polite and precise, never promise what the policy "
    "does not allow, and end with the category of the ticket in an <answer> element: "
    "one of refund, replacement, delivery, billing, account or other. Do not invent "
    "order numbers, dates or amounts that the ticket does not give."
)
CATEGORIES = ("refund", "replacement", "delivery", "billing", "account", "other")


def sentences(rng: random.Random, count: int) -> str:
    """`count` sentences of 10-18 words from a support ticket's vocabulary."""
    out = []
    for _ in range(count):
        words = rng.choices(WORDS, k=rng.randint(10, 18))
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def sample_chat(
    rng: random.Random, model: str, label: str, number: int, ticket: str, check: str
) -> ChatRecord:
    """One sample: the system prompt, the ticket and a reply (none when its call failed)."""
    user = f"Ticket {number}: {ticket}"
    conversation = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    bucket, rounds, error_kind, error, message = "first_try", 0, None, None, None
    if check == "error":
        bucket, error_kind = "error", "RateLimitError"
        error = f"litellm.RateLimitError: {label} is rate limited (429); retried 6 times"
    else:
        reply = sentences(rng, rng.randint(4, 8))
        if rng.random() < 0.01:
            reply += f" This looks like a {NEEDLE} rather than a refund request."
        category = rng.choice(CATEGORIES)
        if check == "exhausted":
            bucket, rounds = "exhausted", 2
            reply += f" <answer>{category}"
            message = "ParseExhausted: no <answer> element after 2 recovery rounds"
        else:
            reply += f" <answer>{category}</answer>"
            if rng.random() < 0.05:
                bucket, rounds = "recovered", 1
        conversation.append({"role": "assistant", "content": reply})
        if check == "failed":
            message = (
                f"AssertionError: expected category 'refund', got {category!r}\n"
                f"assert {category!r} == 'refund'"
            )
    chars = sum(len(m["content"]) for m in conversation)
    return t.cast(
        ChatRecord,
        {
            "model": model,
            "label": label,
            "params": "{}",
            "sample": number,
            "outcome": bucket,
            "recovery_rounds": rounds,
            "error_kind": error_kind,
            "error": error,
            "input_tokens": (len(SYSTEM) + len(user)) // 4,
            "output_tokens": 0 if check == "error" else (chars - len(SYSTEM) - len(user)) // 4,
            "latency": round(rng.uniform(0.4, 3.0), 3),
            "generator_id": model,
            "conversation": conversation,
            "cost": round(chars * 2e-7, 7),
            "check": "failed" if check == "exhausted" else check,
            "check_message": message,
        },
    )


def build(cases: int, models: int, samples: int, seed: int = 22) -> ReportDocument:
    """A report of `cases` x `models` items of `samples` samples each."""
    rng = random.Random(seed)
    items: list[ItemRecord] = []
    chosen = MODELS[:models]
    for case in range(cases):
        ticket = sentences(rng, rng.randint(2, 4))
        digest = hashlib.sha256(ticket.encode()).hexdigest()
        record: CaseRecord = {
            "id": f"ticket-{case:05d}",
            "hash": digest,
            "source": "tickets.jsonl",
            "dataset": "sha256:" + "0" * 16,
        }
        for model, label in chosen:
            cell: CellRecord = {"model": model, "label": label, "params": "{}", "cell": label}
            nodeid = f"tests/test_support.py::test_triage[ticket-{case:05d}-{label}]"
            draw = rng.random()
            if draw < 0.02:
                items.append(item_of(nodeid, cell, "skipped", None, 0.0, [], record))
                continue
            if draw < 0.06:
                checks = ["error"] * samples
                outcome = "error"
            elif draw < 0.12:
                checks = ["passed"] * (samples - 2) + ["exhausted", "failed"]
                outcome = "failed"
            elif draw < 0.32:
                failing = rng.randint(2, samples)
                checks = ["passed"] * (samples - failing) + ["failed"] * failing
                outcome = "failed"
            else:
                checks = ["passed"] * samples
                if rng.random() < 0.3:
                    checks[-1] = "failed"  # 4 of 5 still pass the test's threshold
                outcome = "passed"
            rng.shuffle(checks)
            chats = [
                sample_chat(rng, model, label, n + 1, ticket, check)
                for n, check in enumerate(checks[:samples])
            ]
            judged = [c for c in chats if c["check"] in ("passed", "failed")]
            counts = [sum(c["check"] == "passed" for c in judged), len(judged)] if judged else None
            duration = sum(c["latency"] for c in chats)
            items.append(item_of(nodeid, cell, outcome, counts, duration, chats, record))
    settings = {
        "started": "2026-12-07T09:00:00+00:00",
        "models": [model for model, _ in chosen],
        "params": [],
        "runs": samples,
        "concurrency": 32,
    }
    return report.document(settings, items, [], "point")  # type: ignore[arg-type]


def baseline_of(doc: ReportDocument, seed: int = 7) -> baselines.BaselineDocument:
    """The report as a baseline, 3% of its passed or failed items the other way there."""
    rng = random.Random(seed)
    before = baselines.from_report(doc)
    for kept in before["items"].values():
        if kept["outcome"] in ("passed", "failed") and rng.random() < 0.03:
            kept["outcome"] = "failed" if kept["outcome"] == "passed" else "passed"
    return before


@dataclass
class Size:
    """One page: its report, where it is written, and the shown counts its filters must
    give (rows of the grid, from the page's own data)."""

    name: str
    doc: ReportDocument
    before: baselines.BaselineDocument
    path: Path
    expected: dict[str, int] = field(default_factory=dict)
    figures: dict[str, list[float]] = field(default_factory=dict)

    @property
    def items(self) -> int:
        return len(self.doc["items"])

    def write(self) -> None:
        page.write(self.path, self.doc, self.before, "last-week.json")

    def count(self) -> None:
        """Rows each filter shows, as the page selects them: a row shows when one of its
        cells matches."""
        data = page.page_data(self.doc, self.before, "last-week.json")
        rows: dict[str, set[int]] = {"all": set(), "model": set(), "status": set()}
        rows |= {"text": set(), "case": set(), "flips": set()}
        for shown in data["items"]:
            row = shown["row"]
            rows["all"].add(row)
            if shown["column"] == 1:
                rows["model"].add(row)
            if shown["status"] == "failed":
                rows["status"].add(row)
            if "flip" in shown:
                rows["flips"].add(row)
            texts = [shown["nodeid"]]
            for chat in shown["chats"]:
                texts += [m["content"] for m in chat["conversation"]]
                texts += [chat["error"] or "", chat.get("check_message") or ""]
            haystack = "\n".join(texts).lower()
            for name, needle in (("text", NEEDLE), ("case", CASE_NEEDLE)):
                if needle in haystack:
                    rows[name].add(row)
        self.expected = {name: len(found) for name, found in rows.items()}

    def add(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)


# The frame after the page's "rig-drawn" mark, as a mark of its own: the init script runs
# before the page's (through the DevTools protocol, so the page's CSP doesn't apply).
PAINTED_MARK = """
const mark = performance.mark.bind(performance);
performance.mark = (name, ...rest) => {
  const done = mark(name, ...rest);
  if (name === "rig-drawn") requestAnimationFrame(() => setTimeout(() => mark("rig-painted"), 0));
  return done;
};
"""

LOADED_JS = """() => {
  const at = (name) => (performance.getEntriesByName(name)[0] || {startTime: null}).startTime;
  return {
    fcp: at("first-contentful-paint"),
    drawn: at("rig-drawn"),
    painted: at("rig-painted"),
    heap: performance.memory ? performance.memory.usedJSHeapSize : null,
  };
}"""

# A control set as a person would (its value, then the event the page listens to), timed
# until the shown count is rewritten (the grid is redrawn in the same task) and then until
# the next frame is painted.
FILTER_JS = """async ([selector, value, kind]) => {
  const control = document.querySelector(selector);
  const count = document.getElementById("shown-count");
  const rewritten = new Promise((resolve) => {
    const observer = new MutationObserver(() => { observer.disconnect(); resolve(); });
    observer.observe(count, {childList: true, characterData: true, subtree: true});
  });
  const start = performance.now();
  if (kind === "check") control.checked = value === "on";
  else control.value = value;
  control.dispatchEvent(new Event(kind === "check" ? "change" : kind, {bubbles: true}));
  await rewritten;
  const drawn = performance.now() - start;
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  return {drawn: drawn, painted: performance.now() - start, shown: count.textContent};
}"""

# The grid scrolled to its end: the next page of rows is drawn as it comes into view.
SCROLL_JS = """async () => {
  const body = document.getElementById("grid-body");
  const before = body.rows.length;
  const appended = new Promise((resolve) => {
    const observer = new MutationObserver(() => { observer.disconnect(); resolve(); });
    observer.observe(body, {childList: true});
  });
  const start = performance.now();
  document.getElementById("more").scrollIntoView();
  await appended;
  const drawn = performance.now() - start;
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const painted = performance.now() - start;
  window.scrollTo(0, 0);
  return {drawn: drawn, painted: painted, before: before, after: body.rows.length};
}"""

DIALOG_JS = """async () => {
  const button = document.querySelector('#grid-body button.cell[data-status="failed"]');
  const start = performance.now();
  button.click();
  const drawn = performance.now() - start;
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const painted = performance.now() - start;
  const dialog = document.getElementById("detail");
  const samples = dialog.querySelectorAll("section.sample").length;
  dialog.close();
  return {drawn: drawn, painted: painted, open: samples};
}"""

FILTERS = (  # figure, control, value, event, expected rows; each cleared after
    ("model filter", "#filter-model", "1", "change", "model"),
    ("outcome filter", "#filter-status", "failed", "change", "status"),
    ("text filter", "#filter-text", NEEDLE, "input", "text"),
    ("text filter, a second search", "#filter-text", CASE_NEEDLE, "input", "case"),
    ("flips filter", "#filter-flips", "on", "check", "flips"),
)
CLEARED = {"change": "", "input": "", "check": "off"}


def visit(browser: Browser, size: Size, timed: bool) -> None:
    """Open `size`'s page in a fresh context, filter, open a dialog; record the figures."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(script=PAINTED_MARK)
    tab = context.new_page()
    try:
        start = time.perf_counter()
        tab.goto(size.path.as_uri())
        tab.wait_for_function("() => performance.getEntriesByName('rig-painted').length > 0")
        waited = time.perf_counter() - start
        tab.wait_for_function(  # the paint timing entries arrive a little later
            "() => performance.getEntriesByName('first-contentful-paint').length > 0"
        )
        loaded = tab.evaluate(LOADED_JS)
        figures: list[tuple[str, float]] = [
            ("opened (goto to the grid painted, from Python)", waited),
            ("first contentful paint", loaded["fcp"] / 1000),
            ("script done (rig-drawn)", loaded["drawn"] / 1000),
            ("grid painted", loaded["painted"] / 1000),
        ]
        if loaded["heap"] is not None:
            figures.append(("JS heap (MB)", loaded["heap"] / 1e6))
        for name, selector, value, kind, rows in FILTERS:
            done = tab.evaluate(FILTER_JS, [selector, value, kind])
            check_shown(size, name, done["shown"], size.expected[rows])
            figures.append((name, done["painted"] / 1000))
            cleared = tab.evaluate(FILTER_JS, [selector, CLEARED[kind], kind])
            check_shown(size, f"{name} cleared", cleared["shown"], size.expected["all"])
            if name == "outcome filter":
                figures.append(("filter cleared (all rows again)", cleared["painted"] / 1000))
        if (
            tab.evaluate("() => document.getElementById('grid-body').rows.length")
            < size.expected["all"]
        ):
            scrolled = tab.evaluate(SCROLL_JS)
            if scrolled["after"] <= scrolled["before"]:
                raise SystemExit(f"{size.name}: scrolling to the end drew no more rows")
            figures.append(("next rows, scrolled to the end", scrolled["painted"] / 1000))
        opened = tab.evaluate(DIALOG_JS)
        if opened["open"] < 1:
            raise SystemExit(f"{size.name}: the dialog showed no sample")
        figures.append(("cell dialog", opened["painted"] / 1000))
    finally:
        context.close()
    if timed:
        for figure, seconds in figures:
            size.add(figure, seconds)


def check_shown(size: Size, what: str, shown: str, rows: int) -> None:
    if not shown.startswith(f"{rows} of "):
        raise SystemExit(f"{size.name}, {what}: the page says {shown!r}; want {rows} rows")


def profile(browser: Browser, size: Size) -> str:
    """Where the time goes: Chromium's trace of opening the page (the renderer's main
    thread, by event: an event's time holds the events inside it), then its CPU profile of
    opening and filtering it (the page's script, self time by function and line of the
    HTML file)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab: Page = context.new_page()
    browser.start_tracing(page=tab, categories=["devtools.timeline", "v8", "blink"])
    tab.goto(size.path.as_uri())
    tab.wait_for_selector("body[data-ready]")
    events = json.loads(browser.stop_tracing())["traceEvents"]
    context.close()
    main = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("name") == "thread_name" and e["args"]["name"] == "CrRendererMain"
    }
    traced: dict[str, float] = {}
    for event in events:
        if event.get("ph") == "X" and (event["pid"], event["tid"]) in main:
            traced[event["name"]] = traced.get(event["name"], 0.0) + event.get("dur", 0) / 1e3

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    session = context.new_cdp_session(tab)
    session.send("Profiler.enable")
    session.send("Profiler.setSamplingInterval", {"interval": 200})
    session.send("Profiler.start")
    tab.goto(size.path.as_uri())
    tab.wait_for_selector("body[data-ready]")
    for _, selector, value, kind, _ in FILTERS:
        tab.evaluate(FILTER_JS, [selector, value, kind])
        tab.evaluate(FILTER_JS, [selector, CLEARED[kind], kind])
    tab.evaluate(DIALOG_JS)
    nodes = session.send("Profiler.stop")["profile"]
    context.close()
    by_id = {node["id"]: node for node in nodes["nodes"]}
    deltas = dict.fromkeys(by_id, 0.0)
    for sample, delta in zip(nodes["samples"], nodes["timeDeltas"], strict=True):
        deltas[sample] += delta / 1000
    own: dict[str, float] = {}
    for node_id, spent in deltas.items():
        frame = by_id[node_id]["callFrame"]
        name = f"{frame['functionName'] or '(anonymous)'} line {frame['lineNumber'] + 1}"
        own[name] = own.get(name, 0.0) + spent
    return "\n".join(
        [
            "opening the page, the renderer's main thread (trace events):",
            *(
                f"{ms:10.1f} ms  {name}"
                for name, ms in sorted(traced.items(), key=lambda p: -p[1])[:15]
            ),
            "opening and filtering it, the page's script (CPU profile, self time):",
            *(
                f"{ms:10.1f} ms  {name}"
                for name, ms in sorted(own.items(), key=lambda p: -p[1])[:15]
            ),
        ]
    )


def rows_of(large: Size, small: Size) -> list[Row]:
    rows = []
    mb, kb = large.path.stat().st_size / 1e6, small.path.stat().st_size / 1e3
    rows.append(
        Row(
            f"file size, {large.items:,} items",
            f"{fmt(mb)} MB ({fmt(large.path.stat().st_size / large.items / 1e3)} KB an item)",
            f"{small.items} items: {fmt(kb)} KB",
            f"{fmt(mb * 1e3 / kb)}x",
            "reported",
            None,
        )
    )
    budgets = {
        "grid painted": FIRST_PAINT,
        "cell dialog": DIALOG,
        "next rows, scrolled to the end": DIALOG,
        **{name: FILTER for name, *_ in FILTERS},
        "filter cleared (all rows again)": FILTER,
    }
    for name, values in large.figures.items():
        small_values = small.figures.get(name)
        heap = name.endswith("(MB)")
        scale, unit = (
            (1.0, " MB") if heap else ((1.0, " s") if median(values) >= 1 else (1e3, " ms"))
        )
        budget = budgets.get(name)
        target = ""
        if budget is not None:
            target = f"< {fmt(budget)} s" if budget >= 1 else f"< {fmt(budget * 1e3)} ms"
        rows.append(
            Row(
                name,
                spread(values, scale, unit),
                f"{small.items} items: {spread(small_values, scale, unit)}"
                if small_values
                else f"{small.items} items: all drawn at once",
                f"{median(values) / median(small_values):.1f}x" if small_values else "-",
                target,
                None if budget is None else median(values) < budget,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="The HTML report's page at scale.")
    parser.add_argument("--cases", type=int, default=2000, help="cases (rows of the grid)")
    parser.add_argument("--models", type=int, default=5, choices=range(2, len(MODELS) + 1))
    parser.add_argument("--samples", type=int, default=5, help="samples of each item")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timed rounds")
    parser.add_argument("--keep", type=Path, help="leave the pages in this directory")
    parser.add_argument("--profile", action="store_true", help="the page's CPU profile")
    args = parser.parse_args()
    samples = max(3, args.samples)
    if shutil.which("chromium") is None:
        raise SystemExit("bench_page.py needs Debian's chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    add_repo_to_path()
    from tests.chromium import launch

    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        where = args.keep or Path(tmp)
        sizes = []
        for name, cases in (("large", args.cases), ("small", 20)):
            progress(f"building the {name} report: {cases} cases x {args.models} models")
            doc = build(cases, args.models, samples)
            sizes.append(Size(name, doc, baseline_of(doc), where / f"page-{name}.html"))
        large, small = sizes
        for size in sizes:
            size.count()
            write = time_call(size.write, max(1, args.rounds))
            size.figures["page.write"] = write
        report.write(where / "report-large.json", large.doc)
        json_mb = (where / "report-large.json").stat().st_size / 1e6
        with sync_playwright() as playwright:
            browser = launch(playwright)
            for size in sizes:  # warm-up: the page cache, the browser's first context
                visit(browser, size, timed=False)
            for index in range(max(1, args.rounds)):
                progress(f"round {index + 1}/{max(1, args.rounds)}")
                for size in sizes if index % 2 == 0 else reversed(sizes):
                    visit(browser, size, timed=True)
            profiled = profile(browser, large) if args.profile else ""
            version = browser.version
            browser.close()
        samples_total = sum(len(i["chats"]) for i in large.doc["items"])
        notes = [
            f"{large.items:,} items ({args.cases:,} cases x {args.models} models), "
            f"{samples_total:,} samples of {samples} (system, user, assistant); "
            f"the JSON report of the same run: {fmt(json_mb)} MB",
            f"Chromium {version}, headless, viewport 1400x900; median (min-max) of "
            f"{max(1, args.rounds)} rounds after a warm-up, sizes alternating",
            "filters: from the control's event to the next painted frame; the text box "
            "waits 120 ms after typing; shown rows checked against the report",
            f"rows shown ({large.name}): {large.expected}",
        ]
        print_table("the HTML report's page at scale", rows_of(large, small), notes)
        if profiled:
            print(f"\n-- where the time goes, {large.items:,} items --")
            print(profiled)


if __name__ == "__main__":
    main()
