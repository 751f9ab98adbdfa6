"""Every python block of README.md and docs/*.md runs against the loopback LLM server, and
what each document's examples print and send is checked, so a docs example that stops
working, or stops doing what its prose says, fails the build.

sybil's markdown parser finds the blocks. They use top-level `await` (as in a notebook or
`python -m asyncio`), which sybil's own Python evaluator cannot run, so a small evaluator
compiles them with `PyCF_ALLOW_TOP_LEVEL_AWAIT` and awaits them on one event loop per
document; a document's blocks run in order, in one namespace. bash, toml and text blocks are
shown to readers, never run. This is an ordinary test module, not a root conftest, so that
`pytest example_suites` in an install without the dev extra never needs sybil.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import contextlib
import importlib
import inspect
import io
import re
import subprocess
import sys
import tempfile
import types
import typing as t
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sybil import Document, Example
from sybil.parsers.markdown import CodeBlockParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

from pytest_rigging.generator.litellm_ import release_loop
from tests.llm_server import Call, LLMServer, RecordedRequest, Reply, peak_overlap

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

RUN = ("python", "py")
"""Fence languages that are executed."""
SHOWN = ("bash", "toml", "text", "yaml")
"""Fence languages that are only displayed. Any other spelling (`python3`, no language) is
refused, so that no python example can escape execution through its fence."""


def name_of(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# Running a document


@dataclass
class Block:
    """One executed python block: where it is, what it printed, what the server received
    while it ran (so checks can pin each example's calls on that example)."""

    line: int
    end: int  # character offset of the block's end in the document
    output: str
    requests: list[RecordedRequest]


@dataclass
class DocRun:
    """A document whose python blocks all ran: what the checks look at."""

    document: Document
    blocks: list[Block]

    @property
    def namespace(self) -> dict[str, t.Any]:
        return self.document.namespace

    def shown_after(self, block: Block) -> str:
        """The first text block after `block`: the output the page shows for it."""
        for region in FencedCodeBlockLexer("text")(self.document):
            if region.start >= block.end:
                return str(region.lexemes["source"])
        raise AssertionError(f"no text block follows the python block at line {block.line}")


def moved(code: types.CodeType, lines: int) -> types.CodeType:
    """`code` (and the functions it defines) `lines` further down its file.

    A block's code then starts at the block's first line: tracebacks name the document's
    line, and pytest shows the failing block rather than the document from its top (which
    padding the source with blank lines, as sybil's PythonEvaluator does, would give).
    """
    consts = tuple(moved(c, lines) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_firstlineno=code.co_firstlineno + lines, co_consts=consts)


class AwaitingEvaluator:
    """A sybil evaluator for blocks that may use top-level `await` (sybil's PythonEvaluator
    only `exec`s): it compiles each block with `PyCF_ALLOW_TOP_LEVEL_AWAIT` and runs the
    coroutine that gives on the document's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server: LLMServer) -> None:
        self.loop = loop
        self.server = server
        self.blocks: list[Block] = []

    def __call__(self, example: Example) -> None:
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        # dont_inherit: this module's `from __future__ import annotations` is not the page's.
        code = compile(example.parsed, example.path, "exec", flags=flags, dont_inherit=True)
        code = moved(code, example.line + example.parsed.line_offset)
        seen = len(self.server.requests)
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output):
                if code.co_flags & inspect.CO_COROUTINE:
                    self.loop.run_until_complete(eval(code, example.namespace))
                else:
                    exec(code, example.namespace)
        finally:
            sys.stdout.write(output.getvalue())  # captured by pytest, shown on failure
        self.blocks.append(
            Block(example.line, example.end, output.getvalue(), self.server.requests[seen:])
        )


def run_document(path: Path, server: LLMServer) -> DocRun:
    """Run every python block of `path` in order on a fresh loop, then release what litellm
    keeps on that loop (its clients and logging worker would outlive the loop otherwise)."""
    loop = asyncio.new_event_loop()
    evaluator = AwaitingEvaluator(loop, server)
    document = Document.parse(
        str(path), *(CodeBlockParser(language, evaluator) for language in RUN)
    )
    document.namespace["__name__"] = f"docs:{name_of(path)}"
    try:
        for example in document.examples():
            example.evaluate()
    finally:
        loop.run_until_complete(release_loop())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return DocRun(document, evaluator.blocks)


# What the server answers, and what each document must show


@dataclass(frozen=True)
class Rule:
    """A scripted answer (see `LLMServer.add_rule`); replies cycle in arrival order."""

    pattern: str
    replies: tuple[str | Reply, ...]
    """Texts, or replies (tool calls) as the server takes them."""
    on: str = "last_user"
    model: str | None = None
    delay: float | None = None


@dataclass(frozen=True)
class Script:
    """A document's rules, and the check of its run."""

    rules: tuple[Rule, ...]
    check: Callable[[DocRun], None]


def models(requests: list[RecordedRequest]) -> Counter[str]:
    """How many of `requests` went to each model."""
    return Counter(r.model for r in requests)


def agent_source(run: DocRun) -> str:
    """The README's agent test module, from its imports down."""
    blocks = re.findall(r"```python\n(.*?)```", run.document.text, flags=re.S)
    return next(block for block in blocks if "def test_refund" in block)


def check_readme(run: DocRun) -> None:
    (
        first_test,
        free_form,
        cases,
        judged,
        agent,
        generators,
        pipelines,
        prompts,
        models_block,
    ) = run.blocks
    namespace = run.namespace

    # The first eval test is a test module: running it defines its fixture and test; so
    # does the free-form test beside its pipeline form.
    assert {"rig_pipeline", "test_capital", "test_capital_free_form"} <= set(namespace)
    assert not first_test.requests
    assert not free_form.requests
    assert not cases.requests and "test_triage" in namespace
    assert not judged.requests and "test_support_reply" in namespace
    assert not agent.requests and "test_refund" in namespace
    # the README's agent is the example suite's, word for word
    shipped = (ROOT / "example_suites" / "test_agent.py").read_text()
    assert agent_source(run) in shipped

    # Identifiers build generators without calling anything, and never show the key.
    assert not generators.requests
    assert namespace["g"].to_identifier() == (
        "litellm!openai/my-model,api_base=http://localhost:8000/v1"
    )
    assert (namespace["fast"].provider, namespace["claude"].provider) == ("openai", "anthropic")

    # Pipelines: run, run_batch, run_many(5), run_over (two more models, then the
    # pipeline's own) and a params batch, all with the system message and parsed.
    assert models(pipelines.requests) == {
        "gpt-4o-mini": 1 + 2 + 5 + 1 + 2,
        "gpt-4o": 1,
        "claude-3-5-haiku-latest": 1,
    }
    assert all("<comma-delimited-answer>" in r.messages[0]["content"] for r in pipelines.requests)
    assert {r.api for r in pipelines.requests if r.model.startswith("claude")} == {"anthropic"}
    assert namespace["chat"].metadata == {"n": 3}
    assert [(c.generator_id, c.metadata) for c in namespace["chats"]] == [
        ("litellm!gpt-4o-mini,temperature=0.0", {"n": 1}),
        ("litellm!gpt-4o-mini,temperature=1.0", {"n": 1}),
    ]

    # Prompts: the docstring is rendered, the return type asked for and parsed.
    assert namespace["answer"].content == "Paris"
    assert [a.content for a in namespace["answers"]] == ["Paris", "Tokyo"]
    assert len(prompts.requests) == 3
    assert all("<answer>" in r.last_user for r in prompts.requests)

    # A model declared with attr/element reads an attribute, a child and a list of children.
    assert not models_block.requests
    assert namespace["finding"].title == "XSS"


def chat_paragraphs(output: str) -> list[str]:
    """The run_many example's output, one string per chat, in a stable order: the
    concurrent calls get the scripted replies in whatever order they arrive."""
    return sorted(re.split(r"^(?===)", output, flags=re.M)[1:])


def check_iterating_and_batching(run: DocRun) -> None:
    run_many, skip, include, params, run_over, limited = run.blocks

    # run_many + map: exactly the chat naming a citrus fruit is questioned again.
    assert chat_paragraphs(run_many.output) == chat_paragraphs(run.shown_after(run_many))
    assert models(run_many.requests) == {"gpt-4o-mini": 3 + 1}
    [follow_up] = [r for r in run_many.requests if "dessert" in r.last_user]
    assert [m["content"] for m in follow_up.messages[:2]] == [
        "Name one fruit that tastes sour.",
        "A lemon, without a doubt.",
    ]

    # run_batch + recovery + skip: the inputs that never comply are dropped, the
    # recovered one kept; each input gets at most max_rounds=3 replies.
    assert skip.output == run.shown_after(skip)
    for block in (skip, include):
        per_dish = Counter(
            dish
            for r in block.requests
            for dish in ("guacamole", "pesto", "shakshuka", "miso soup")
            if dish in r.messages[1]["content"]
        )
        assert per_dish == {"guacamole": 1, "pesto": 2, "shakshuka": 3, "miso soup": 3}
        assert all("<comma-delimited-answer>" in r.messages[0]["content"] for r in block.requests)
    recoveries = [r for r in skip.requests if "<system-error>" in r.last_user]
    assert len(recoveries) == 1 + 2 + 2
    assert all("Rewrite your whole message" in r.last_user for r in recoveries)

    # on_failed="include": one chat per input, the failures marked as parse failures.
    assert include.output == run.shown_after(include)

    # One input broadcast over three params sets; each chat's id says what it ran with.
    temperatures = (0.0, 0.7, 1.4)
    lines = params.output.splitlines()
    assert lines[0::2] == [f"litellm!gpt-4o-mini,temperature={t}" for t in temperatures]
    assert set(lines[1::2]) == {"    Lisbon is Portugal's hilly capital on the Tagus estuary."}
    assert sorted(r.body["temperature"] for r in params.requests) == list(temperatures)

    # run_over: claude models reach Anthropic, each with its own params; the pipeline's
    # own generator comes last.
    assert run_over.output == run.shown_after(run_over)
    assert len(run_over.requests) == 4
    sent = {r.model: r for r in run_over.requests}
    assert {model: r.api for model, r in sent.items()} == {
        "gpt-4o": "openai-chat",
        "claude-3-5-haiku-latest": "anthropic",
        "claude-3-7-sonnet-latest": "anthropic",
        "gpt-4o-mini": "openai-chat",
    }
    assert sent["claude-3-5-haiku-latest"].body["temperature"] == 0.5
    assert "temperature" not in sent["claude-3-7-sonnet-latest"].body

    # max_connections=4: twelve calls, never more than four at the server at once.
    assert limited.output == run.shown_after(limited)
    assert len(limited.requests) == 12
    assert peak_overlap(limited.requests) <= 4


def check_reliability(run: DocRun) -> None:
    """The reliability table runs nothing itself: each row names the test that drills it,
    and every test it names exists."""
    assert run.blocks == []
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)", run.document.text)
    assert len(named) >= 20, named
    for module, test in named:
        source = (ROOT / "tests" / module).read_text()
        assert f"def {test}(" in source, f"{module}::{test} is named but doesn't exist"


def check_datasets(run: DocRun) -> None:
    """The page's test module, beside the data file it shows, collects the ids the page
    shows and passes on the model it names; the ragged CSV it shows stops collection with
    the message it shows."""
    text = run.document.text
    (module,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert not run.blocks[0].requests  # defining a test runs nothing
    data_file, rows = re.findall(
        r"In `([\w/.]+)`, one case per line:\n\n```text\n(.*?)```", text, flags=re.S
    )[0]
    command, ids = re.findall(r"```bash\n(pytest .*?)\n```\n\n```text\n(.*?)```", text, flags=re.S)[
        0
    ]
    sheet = re.findall(r"With the CSV\n\n```text\n(.*?)```", text, flags=re.S)[0]
    error = re.findall(r"collection stops with:\n\n```text\n(.*?)\n```", text, flags=re.S)[0]
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        (project / data_file).parent.mkdir(parents=True, exist_ok=True)
        (project / data_file).write_text(rows)
        (project / "test_tickets.py").write_text(module)
        (project / "cases.csv").write_text(sheet)
        (project / "test_sheet.py").write_text(
            "import pytest\n\n@pytest.mark.rig_cases('cases.csv')\n"
            "def test_answer(question, answer):\n    pass\n"
        )

        def pytest_(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=120,
            )
            return done.stdout

        arguments = command.split()[1:]
        shown = pytest_(*arguments)
        assert [line for line in shown.splitlines() if "::" in line] == ids.splitlines()
        ran = pytest_(*[a for a in arguments if a not in ("--collect-only", "-q")])
        assert "3 passed" in ran, ran
        assert error in pytest_("test_sheet.py", "--collect-only", "-q")


JUDGE_PASS = "<reasoning>It names the capital, and nothing else.</reasoning><verdict>pass</verdict>"
JUDGE_FAIL = "<reasoning>It doesn't name the capital alone.</reasoning><verdict>fail</verdict>"
JUDGE_RULES = f"""
[[rules]]
match = '\\[Response\\]\\n(Paris|Tokyo)\\.\\n'
on = "conversation"
reply = "{JUDGE_PASS}"

[[rules]]
match = 'Response'
reply = "{JUDGE_FAIL}"
"""
"""A judge that passes the capital alone, for the judged test module of docs/judges.md."""


def check_judges(run: DocRun) -> None:
    """The page's judged test module passes on the models and judge it names (here
    simulated), calibrated on the labels the page shows, with the kappa line the page
    shows; its library examples print what the page shows, from the calls they say; every
    option and command it names exists."""
    from pytest_rigging.plugin.options import SETTINGS

    module, grading, comparing = run.blocks
    assert not module.requests  # defining a test runs nothing
    assert models(grading.requests) == {"gpt-4o-mini": 3}  # runs=3
    assert grading.output == run.shown_after(grading)
    assert models(comparing.requests) == {"gpt-4o-mini": 6}  # 3 runs, each order
    assert comparing.output == run.shown_after(comparing)
    text = run.document.text
    options = {f"--rig-{s.name.replace('_', '-')}" for s in SETTINGS}
    named = set(re.findall(r"--rig-[a-z-]+", text))
    assert {"--rig-judge", "--rig-judge-labels", "--rig-min-judge-kappa"} <= named <= options
    cli = (ROOT / "pytest_rigging" / "plugin" / "cli.py").read_text()
    for command in re.findall(r"^python -m pytest_rigging (.*)$", text, flags=re.M):
        for flag in re.findall(r"(?<= )--?[a-z][a-z-]*", command):
            assert f'"{flag}"' in cli, f"{flag} is named but `python -m pytest_rigging` has none"
    source = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    labels = next(
        block for block in re.findall(r"```text\n(.*?)```", text, flags=re.S) if '"label"' in block
    )
    kappa_line = re.findall(r"^pass judge .*$", text, flags=re.M)[0]
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        (project / "test_capital.py").write_text(source)
        (project / "labels.jsonl").write_text(labels)
        (project / "model.toml").write_text(
            '[[rules]]\nmatch = "France"\nreply = "Paris."\n'
            '[[rules]]\nmatch = "Japan"\nreply = "Tokyo."\n'
        )
        (project / "judge.toml").write_text(JUDGE_RULES)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "--rig-models",
                "scripted!model.toml",
                "--rig-judge",
                "scripted!judge.toml",
                "--rig-judge-labels",
                "labels.jsonl",
                "--rig-min-judge-kappa",
                "0.6",
            ],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout
        assert "2 passed" in done.stdout
        ran = re.findall(r"^pass judge .*$", done.stdout, flags=re.M)
        assert re.fullmatch(
            r"pass judge scripted!judge\.toml #\w{8}: kappa 1\.00 over 4 labels, needs >= 0\.60 "
            r"\(rig-min-judge-kappa\)",
            ran[0],
        ), ran
        assert re.fullmatch(
            r"pass judge \S+ #\w{8}: kappa \d\.\d\d over \d+ labels, needs >= 0\.60 "
            r"\(rig-min-judge-kappa\)",
            kappa_line,
        ), kappa_line


def check_architecture(run: DocRun) -> None:
    """The architecture page runs nothing; it names every module of the plugin, and every
    name of the compat module, and nothing that doesn't exist."""
    assert run.blocks == []
    text = run.document.text
    plugin = ROOT / "pytest_rigging" / "plugin"
    modules = {path.name for path in plugin.glob("*.py")}
    named = set(re.findall(r"^\| `(\w+\.py)` \|", text, flags=re.M))
    assert named == modules, f"named but missing: {named - modules}, unnamed: {modules - named}"
    compat = importlib.import_module("pytest_rigging.plugin._compat")
    own = {
        name
        for name, value in vars(compat).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "") == compat.__name__
        and (inspect.isfunction(value) or inspect.isclass(value))
    }
    section = text.split("## pytest's and xdist's internals", 1)[1]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, flags=re.M)
    listed = {n for cell in first_cells for n in re.findall(r"`(\w+)`", cell.split("(")[0])}
    assert listed == own, f"listed but missing: {listed - own}, unlisted: {own - listed}"


def check_report(run: DocRun) -> None:
    """The report page runs nothing; every option and command it names exists, its cut
    is the page's, and the screenshot it shows is there."""
    from pytest_rigging.plugin import page
    from pytest_rigging.plugin.options import SETTINGS

    assert run.blocks == []
    text = run.document.text
    options = {f"--rig-{s.name.replace('_', '-')}" for s in SETTINGS}
    named = set(re.findall(r"--rig-[a-z-]+", text))
    assert {"--rig-html", "--rig-baseline", "--rig-shard"} <= named <= options, named - options
    assert re.findall(r"^rig_html = ", text, flags=re.M)
    cli = (ROOT / "pytest_rigging" / "plugin" / "cli.py").read_text()
    for command in re.findall(r"^python -m pytest_rigging (.*)$", text, flags=re.M):
        for flag in re.findall(r"(?<= )--?[a-z][a-z-]*", command):
            assert f'"{flag}"' in cli, f"{flag} is named but `python -m pytest_rigging` has none"
    assert f"{page.CUT:,} characters" in text
    (picture,) = re.findall(r"!\[[^]]*\]\(([\w.]+)\)", text)
    assert (ROOT / "docs" / picture).is_file()


INGREDIENTS = "<comma-delimited-answer>{}</comma-delimited-answer>"


def check_compatibility(run: DocRun) -> None:
    """The compatibility page runs nothing; every name it calls `supported` or `differs`
    exists here, under the module its table is for (`Class.name`, and the bare or dotted
    names after it in the same row, are the class's)."""
    assert run.blocks == []
    checked = 0
    for module_name, rows in re.findall(
        r"^## `(rigging[\w.]*)`.*?\n(.*?)(?=^## |\Z)", run.document.text, flags=re.M | re.S
    ):
        for names, status in re.findall(r"^\| (`.+?) \| (\w[\w ]*?) \|", rows, flags=re.M):
            if status not in ("supported", "differs"):
                continue
            ours = importlib.import_module(module_name.replace("rigging", "pytest_rigging", 1))
            owner: t.Any = None
            for name in re.findall(r"`([^`]+)`", names):
                name = name.split("(")[0]
                if not re.fullmatch(r"[\w.]+", name) or name.startswith("__"):
                    continue  # not a name to look up: `a | b`, a dunder
                if hasattr(builtins, name):
                    continue  # `len(chat)`, `str(chat)`
                head, _, attribute = name.lstrip(".").rpartition(".")
                if head:
                    owner = getattr(ours, head)
                elif not name.startswith(".") and hasattr(ours, attribute):
                    owner = None  # a name of the module (a class's members may follow it)
                target = owner if owner is not None else ours
                assert _has(target, attribute), (
                    f"{module_name}: {name} is marked {status} but doesn't exist"
                )
                if target is ours and isinstance(getattr(ours, attribute), type):
                    owner = getattr(ours, attribute)
                checked += 1
    assert checked >= 300, checked


def check_tools(run: DocRun) -> None:
    """The agent runs its three-call dialog and prints what the page shows, with the tools
    offered on every request; the assertions pass and fail as shown; the test module and
    the MCP helper define without calling; the rules block loads as a rules file; the
    helper answers from the test's own MCP server; every option it names exists."""
    from pytest_rigging.generator.offline import Script
    from pytest_rigging.plugin.options import SETTINGS

    agent, server_tools, checking, test_module = run.blocks
    assert models(agent.requests) == {"gpt-4o-mini": 3}
    assert all(
        r.tool_names == ["lookup_order", "refund_amount", "cancel_order"] for r in agent.requests
    )
    assert agent.output == run.shown_after(agent)
    assert not server_tools.requests and not checking.requests and not test_module.requests
    assert checking.output == run.shown_after(checking)
    assert "test_refund" in run.namespace
    text = run.document.text
    options = {f"--rig-{s.name.replace('_', '-')}" for s in SETTINGS}
    assert (
        {"--rig-min-tool-parse-rate", "--rig-params"}
        <= set(re.findall(r"--rig-[a-z-]+", text))
        <= options
    )
    if sys.version_info >= (3, 11):
        import tomllib

        rules = re.findall(r"```toml\n(.*?)```", text, flags=re.S)[0]
        assert len(Script.model_validate(tomllib.loads(rules)).rules) == 3
    if importlib.util.find_spec("mcp") is None:
        return
    loop = asyncio.new_event_loop()
    try:
        chat = loop.run_until_complete(
            run.namespace["ask_with_server_tools"](
                "What is the capital of France?", str(ROOT / "tests" / "mcp_server.py")
            )
        )
    finally:
        loop.run_until_complete(release_loop())
        loop.close()
    assert chat.last.content == "Paris."
    assert [m.content for m in chat.all if m.role == "tool"] == ["Paris"]


def _has(target: t.Any, name: str) -> bool:
    """A module or class attribute, a pydantic field, or an attribute the class's own code
    sets on its instances."""
    if hasattr(target, name) or name in getattr(target, "model_fields", {}):
        return True
    if not isinstance(target, type):
        return False
    return any(
        re.search(rf"\bself\.{name}\s*(?::[^=\n]*)?=(?!=)", inspect.getsource(cls))
        for cls in target.__mro__
        if cls.__module__.startswith("pytest_rigging")
    )


SCRIPTS: dict[str, Script] = {
    "README.md": Script(
        rules=(
            Rule("capital of France", ("<answer>Paris</answer>",)),
            Rule("capital of Japan", ("<answer>Tokyo</answer>",)),
            Rule("painters", (INGREDIENTS.format("Frida Kahlo, Claude Monet, Hokusai"),)),
            Rule("authors", (INGREDIENTS.format("Chinua Achebe, Jane Austen, Italo Calvino"),)),
            Rule("cities", (INGREDIENTS.format("Lisbon, Osaka, Montreal"),)),
            Rule("One city", (INGREDIENTS.format("Lisbon"),)),
        ),
        check=check_readme,
    ),
    "docs/iterating-and-batching.md": Script(
        rules=(
            Rule(
                "one fruit that tastes sour",
                ("Tamarind.", "A lemon, without a doubt.", "Sour cherries."),
            ),
            Rule("Which dessert", ("A lemon tart: the zest and juice go into the curd.",)),
            Rule("in guacamole", (INGREDIENTS.format("avocado, lime, coriander"),)),
            Rule(
                "(?s)pesto.*system-error",
                (INGREDIENTS.format("basil, pine nuts, parmesan"),),
                on="conversation",
            ),
            Rule(
                "pesto|shakshuka|miso soup",
                ("Good question! It depends on who you ask, but let me explain.",),
                on="conversation",
            ),
            Rule("Describe Lisbon", ("Lisbon is Portugal's hilly capital on the Tagus estuary.",)),
            Rule("How many legs", ("<answer>eight</answer>",), model="claude-3-5-haiku-latest"),
            Rule("How many legs", ("<answer>8</answer>",)),
            # A little latency, so that calls overlap and the limit has something to hold.
            Rule("Ticket #", ("Export button broken on page.",), delay=0.02),
        ),
        check=check_iterating_and_batching,
    ),
    "docs/reliability.md": Script(rules=(), check=check_reliability),
    "docs/architecture.md": Script(rules=(), check=check_architecture),
    "docs/datasets.md": Script(rules=(), check=check_datasets),
    "docs/judges.md": Script(
        rules=(
            Rule(r"\[Response\]\nParis\n", (JUDGE_PASS,), on="conversation"),
            Rule(
                r"\[Response A\]",
                ("<reasoning>The first one.</reasoning><better>A</better>",),
                on="conversation",
            ),
        ),
        check=check_judges,
    ),
    "docs/rigging-compatibility.md": Script(rules=(), check=check_compatibility),
    "docs/tools.md": Script(
        rules=(
            Rule(
                r'"price":40.0\}$',
                (Reply(tool_calls=[Call("refund_amount", {"price": 40.0, "percent": 50})]),),
                on="conversation",
            ),
            Rule(r"\n20.0$", ("I've refunded 20.00 to your card.",), on="conversation"),
            Rule(
                "Order A1 arrived broken",
                (Reply(tool_calls=[Call("lookup_order", {"order_id": "A1"})]),),
            ),
            Rule(r"\nParis$", ("Paris.",), on="conversation"),
            Rule(
                "capital of France",
                (Reply(tool_calls=[Call("lookup", {"country": "France"})]),),
            ),
        ),
        check=check_tools,
    ),
    "docs/report.md": Script(rules=(), check=check_report),
}


# The tests


@pytest.mark.parametrize("path", DOCUMENTS, ids=name_of)
def test_examples_run_and_show_what_they_say(path: Path, llm_server: LLMServer) -> None:
    """Readers copy these examples: each must run, and do what the page says it does."""
    script = SCRIPTS.get(name_of(path))
    if script is None:
        pytest.fail(f"{name_of(path)} has no entry in SCRIPTS: script its replies and checks")
    for rule in script.rules:
        replies = [
            reply if isinstance(reply, Reply) else Reply(content=reply, delay=rule.delay)
            for reply in rule.replies
        ]
        llm_server.add_rule(rule.pattern, *replies, on=rule.on, model=rule.model)
    script.check(run_document(path, llm_server))


@pytest.mark.parametrize("path", DOCUMENTS, ids=name_of)
def test_every_fenced_block_is_run_or_shown(path: Path) -> None:
    """A python example fenced as anything but `python`/`py` would silently go untested."""
    document = Document(path.read_text(encoding="utf-8"), str(path))
    languages = [str(r.lexemes["language"]) for r in FencedCodeBlockLexer(r"\S*")(document)]
    assert set(languages) <= {*RUN, *SHOWN}, f"fences neither run nor shown in {name_of(path)}"


def test_scripts_are_for_documents_that_exist() -> None:
    """A renamed or deleted page must take its script along, not leave it unused."""
    assert set(SCRIPTS) <= {name_of(path) for path in DOCUMENTS}
