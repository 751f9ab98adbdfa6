"""The network providers over real HTTP, each test on both routes: litellm (`gpt-4o`,
`claude-...`) and the native providers (`openai!gpt-4o`, `anthropic!claude-...`). Both API
paths, bounded retries, Retry-After, timeouts, refused connections, malformed bodies,
classification, and secrets: switching routes must change nothing but speed."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_rigging as rg
from pytest_rigging._concurrency import calls_heard
from pytest_rigging.generator.litellm_ import litellm_model
from tests.conftest import (
    ONE_ITEM,
    OPENAI_TEST_KEY,
    closing_with_closest,
    ini,
    named,
    on,
)
from tests.llm_server import LLMServer, Reply, peak_overlap

pytestmark = pytest.mark.usefixtures("release_litellm")

FAST = "max_retries=2,backoff=0.01"


async def test_openai_path(llm_server: LLMServer, route: str) -> None:
    llm_server.add_rule("hello", Reply(content="hi there", prompt_tokens=7, completion_tokens=2))
    identifier = on(route, "gpt-4o-mini,temperature=0.2,max_tokens=20")
    chat = await rg.get_generator(identifier).chat("hello").run()
    assert chat.last.content == "hi there"
    assert chat.usage == rg.Usage(input_tokens=7, output_tokens=2)
    assert chat.stop_reason == "stop"
    [request] = llm_server.requests
    assert (request.api, request.model) == ("openai-chat", "gpt-4o-mini")
    assert (request.body["temperature"], request.body["max_tokens"]) == (0.2, 20)
    assert request.headers["authorization"] == f"Bearer {OPENAI_TEST_KEY}"


async def test_anthropic_path_for_any_claude_id(llm_server: LLMServer, route: str) -> None:
    models = [
        on(route, m)
        for m in ["claude-3-haiku-20240307", "claude-3-sonnet-20240229", "anthropic/claude-x-1"]
    ]
    chats = (
        await rg.get_generator("echo!unused")
        .chat([{"role": "system", "content": "Be terse."}, "hi"])
        .run_over(*models, include_original=False)
    )
    assert [c.last.content for c in chats] == ["hi"] * 3
    assert [(r.api, r.model) for r in sorted(llm_server.requests, key=lambda r: r.model)] == [
        ("anthropic", "claude-3-haiku-20240307"),
        ("anthropic", "claude-3-sonnet-20240229"),
        ("anthropic", "claude-x-1"),
    ]
    assert llm_server.requests[0].body["system"] in (
        "Be terse.",
        [{"type": "text", "text": "Be terse."}],
    )
    assert [c.generator.model for c in chats if c.generator] == [
        rg.get_generator(m).model for m in models
    ]


ALL_PARAMS = (
    "temperature=0.5,max_tokens=20,top_k=3,top_p=0.9,stop=a;b,presence_penalty=0.1,"
    'frequency_penalty=0.2,seed=7,extra.foo=1,extra.logit_bias={},extra.extra_headers={"x-team":"evals"}'
)
CONVERSATION = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "yo"},
    {"role": "user", "content": "again"},
    {"role": "user", "content": "and again"},
]


@pytest.mark.parametrize(
    ("identifier", "kind"),
    [
        (f"openai/m,{ALL_PARAMS}", "chat"),
        (f"openai/m,{ALL_PARAMS}", "text"),
        (f"anthropic/claude-x,{ALL_PARAMS}", "chat"),
        ("anthropic/claude-x", "chat"),  # max_tokens: litellm's default for an unknown model
        ("anthropic/claude-sonnet-4-5", "chat"),  # the model's own maximum, from its data
        ("anthropic/claude-sonnet-4-5", "text"),
        ("anthropic/claude-sonnet-latest", "chat"),  # an alias: sent as its model, its maximum
        ("gpt-mini-latest", "chat"),  # an alias: sent as the model it names
    ],
)
async def test_both_routes_send_the_same_request_and_read_the_same_reply(
    llm_server: LLMServer, identifier: str, kind: str
) -> None:
    """Switching a model between routes changes nothing but speed: the same body, and the
    same chat read back (text, usage, stop reason)."""
    seen = []
    for route in ("litellm", "native"):
        llm_server.reset()
        llm_server.add_rule(".", Reply(content="fine", prompt_tokens=5, completion_tokens=1))
        generator = rg.get_generator(on(route, identifier))
        if kind == "chat":
            result = await generator.chat(CONVERSATION).run()
            text = result.last.content
        else:
            result = await generator.complete("Once").run()
            text = result.generated
        [request] = llm_server.requests
        team = request.headers.get("x-team")  # extra_headers go out as headers
        seen.append((request.path, request.body, team, text, result.usage, result.stop_reason))
    assert seen[0] == seen[1]


def test_bare_claude_ids_route_to_anthropic() -> None:
    assert litellm_model("claude-3-haiku-20240307") == "anthropic/claude-3-haiku-20240307"
    assert litellm_model("bedrock/claude-v2") == "bedrock/claude-v2"
    assert litellm_model("gpt-4o") == "gpt-4o"


async def test_text_completion_path(llm_server: LLMServer, route: str) -> None:
    llm_server.add_rule("Once", " there was a test.")
    generator = rg.get_generator(on(route, "gpt-3.5-turbo-instruct"))
    completion = await generator.complete("Once upon a time").run()
    assert completion.generated == " there was a test."
    assert llm_server.requests[0].api == "openai-text"


async def test_rate_limit_honours_retry_after(llm_server: LLMServer, route: str) -> None:
    llm_server.fail_next(2, status=429, headers={"Retry-After": "0.3"})
    chat = await rg.get_generator(on(route, f"gpt-4o,{FAST}")).chat("x").run()
    assert chat.last.content == "x"
    starts = [r.start for r in llm_server.requests]
    assert [r.status for r in llm_server.requests] == [429, 429, 200]
    assert all(later - earlier >= 0.29 for earlier, later in itertools.pairwise(starts))


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-haiku-20240307"])
async def test_server_errors_are_retried_within_a_bound(
    llm_server: LLMServer, model: str, route: str
) -> None:
    llm_server.fail_next(10, status=500)
    identifier = on(route, f"{model},{FAST}")
    chat = await rg.get_generator(identifier).chat("x").run(on_failed="include")
    assert chat.failed and chat.error_kind == "infrastructure"
    assert isinstance(chat.error, rg.GenerationError)
    assert (chat.error.reason, chat.error.attempts) == ("server", 3)
    assert str(chat.error).startswith(f"server error from {named(identifier)} after 3 attempts: ")
    assert len(llm_server.requests) == 3


async def test_recovers_after_transient_server_errors(llm_server: LLMServer, route: str) -> None:
    llm_server.fail_next(2, status=503)
    chat = await rg.get_generator(on(route, f"claude-3-haiku-20240307,{FAST}")).chat("ok?").run()
    assert chat.last.content == "ok?"
    assert [r.status for r in llm_server.requests] == [503, 503, 200]


async def test_timeouts_are_bounded_and_classified(llm_server: LLMServer, route: str) -> None:
    llm_server.fail_next(2, delay=2)
    chat = (
        await rg.get_generator(on(route, "gpt-4o,max_retries=1,backoff=0,timeout=0.3"))
        .chat("x")
        .run(on_failed="include")
    )
    assert isinstance(chat.error, rg.GenerationError)
    assert (chat.error.reason, chat.error.attempts) == ("timeout", 2)
    assert len(llm_server.requests) == 2  # both attempts were given up, none answered


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_connection(llm_server: LLMServer, route: str) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    chat = (
        await rg.get_generator(on(route, f"openai/gpt-4o,{FAST},api_base={base}"))
        .chat("x")
        .run(on_failed="include")
    )
    assert isinstance(chat.error, rg.GenerationError)
    assert (chat.error.reason, chat.error.attempts) == ("connection", 3)


@pytest.mark.parametrize("model", ["openai!gpt-4o", "anthropic!claude-3-haiku-20240307"])
async def test_native_calls_are_heard_as_their_requests_go_out(
    llm_server: LLMServer, model: str
) -> None:
    """A journal hears of a call when its request leaves (its headers written), not when it
    takes its slot: a call that never reached the server (a refused connection, or a worker
    killed before it went out) is not a call in flight, and is made again elsewhere."""
    heard: list[str] = []
    refused = f"http://127.0.0.1:{free_port()}"
    with calls_heard(lambda: heard.append("sent")):
        chat = (
            await rg.get_generator(f"{model},{FAST},api_base={refused}")
            .chat("x")
            .run(on_failed="include")
        )
        assert isinstance(chat.error, rg.GenerationError) and chat.error.reason == "connection"
        assert heard == []
        await rg.get_generator(f"{model},{FAST}").chat("x").run()
    assert heard == ["sent"] and len(llm_server.requests) == 1


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-haiku-20240307"])
async def test_malformed_body_is_an_infrastructure_error(
    llm_server: LLMServer, model: str, route: str
) -> None:
    llm_server.fail_next(10, status=200, body=b'{"choices": [ truncated')
    chat = await rg.get_generator(on(route, f"{model},{FAST}")).chat("x").run(on_failed="include")
    assert chat.error_kind == "infrastructure"
    assert isinstance(chat.error, rg.GenerationError) and chat.error.attempts == 3
    assert chat.error.reason == "bad_response"
    assert len(llm_server.requests) == 3


def _completion(**fields: object) -> bytes:
    return json.dumps(
        {"id": "x", "object": "chat.completion", "created": 1, "model": "m", **fields}
    ).encode()


UNUSABLE = {
    "empty choices": (_completion(choices=[]), "the reply has no choices"),
    "no message": (
        _completion(choices=[{"index": 0, "finish_reason": "stop"}]),
        "the reply's choice has no message",  # litellm's route: "Invalid response object"
    ),
    "null content": (
        _completion(choices=[{"index": 0, "message": {"role": "assistant", "content": None}}]),
        "the reply's message has no text (content is null)",
    ),
    "not json": (b"<html>gateway hiccup</html>", ""),
    "not utf-8": (b'{"choices": [{"message": {"content": "\xff\xfe"}}]}', ""),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
async def test_unusable_replies_are_retried_then_classified(
    llm_server: LLMServer, case: str, route: str
) -> None:
    body, detail = UNUSABLE[case]
    llm_server.add_rule("x", "fine")
    llm_server.fail_next(1, status=200, body=body)
    chat = await rg.get_generator(on(route, f"gpt-4o,{FAST}")).chat("x").run()
    assert chat.last.content == "fine" and len(llm_server.requests) == 2  # retried, then used
    llm_server.reset()
    llm_server.fail_next(10, status=200, body=body)
    chat = await rg.get_generator(on(route, f"gpt-4o,{FAST}")).chat("x").run(on_failed="include")
    assert isinstance(chat.error, rg.GenerationError), chat.error
    assert (chat.error.reason, chat.error.attempts, chat.error_kind) == (
        "bad_response",
        3,
        "infrastructure",
    )
    if route == "litellm" and case == "no message":
        detail = "Invalid response object"
    assert detail in str(chat.error)


async def test_unusable_text_replies_are_classified(llm_server: LLMServer, route: str) -> None:
    llm_server.fail_next(10, status=200, body=_completion(object="text_completion", choices=[]))
    generator = rg.get_generator(on(route, f"gpt-4o,{FAST}"))
    completion = await generator.complete("x").run(on_failed="include")
    assert isinstance(completion.error, rg.GenerationError)
    assert completion.error.reason == "bad_response"


async def test_client_errors_are_not_retried_and_never_show_the_key(
    llm_server: LLMServer, route: str
) -> None:
    key = "sk-test-identifier-key-9876543210"
    echoed = json.dumps(
        {"error": {"message": f"key {key} is not valid", "type": "invalid_request_error"}}
    )
    llm_server.fail_next(1, status=401, body=echoed.encode())
    generator = rg.get_generator(on(route, f"gpt-4o,api_key={key},{FAST}"))
    chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, rg.GenerationError)
    assert (chat.error.reason, chat.error.attempts) == ("client", 1)
    assert llm_server.requests[0].headers["authorization"] == f"Bearer {key}"
    for shown in (str(chat.error), chat.conversation, chat.generator_id or "", repr(chat)):
        assert key not in shown
    assert OPENAI_TEST_KEY not in str(chat.error)


async def test_infrastructure_errors_raise_by_default(llm_server: LLMServer, route: str) -> None:
    llm_server.fail_next(10, status=500)
    identifier = on(route, "gpt-4o,max_retries=0")
    with pytest.raises(
        rg.GenerationError, match=f"server error from {named(identifier)} after 1 attempt: "
    ):
        await rg.get_generator(identifier).chat("x").run()


async def test_concurrency_limit_holds_over_http(llm_server: LLMServer, route: str) -> None:
    llm_server.latency = 0.2
    chats = (
        await rg.get_generator(on(route, "gpt-4o,max_connections=5"))
        .chat()
        .run_batch([str(i) for i in range(20)])
    )
    assert [c.last.content for c in chats] == [str(i) for i in range(20)]
    assert peak_overlap(llm_server.requests) == 5


def test_successive_event_loops_each_work(llm_server: LLMServer, route: str) -> None:
    # pytest-asyncio gives every test a new loop; pooled clients must not break.
    generator = rg.get_generator(on(route, "gpt-4o"))
    for turn in ("one", "two", "three"):
        chat = asyncio.run(generator.chat(turn).run())
        assert chat.last.content == turn


async def test_debug_logs_never_show_the_key(
    llm_server: LLMServer, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    key = "sk-test-logged-key-5555555555"
    generator = rg.get_generator(on(route, f"gpt-4o,api_key={key},{FAST}"))
    llm_server.fail_next(1, status=500)
    with caplog.at_level(logging.DEBUG):
        chat = await generator.chat("x").run()
    assert chat.last.content == "x"
    assert llm_server.requests[-1].headers["authorization"] == f"Bearer {key}"
    if route == "litellm":  # aiohttp's client logs nothing of a request at any level
        assert caplog.records, "litellm and httpx log at DEBUG: there must be something"
    assert key not in caplog.text
    assert OPENAI_TEST_KEY not in caplog.text


async def test_latency_is_the_attempts_own(llm_server: LLMServer, route: str) -> None:
    """A chat's latency is the time its attempts took: the backoff between them is not the
    model's, and a failed chat keeps the time its attempts took. Checked by accounting, not
    against a bound a busy machine could break: each attempt spans the server's 0.1 s on
    it, and the attempts and the backoff's wait (at least 0.8 x `backoff`: its jitter is
    +-20%) all lie within the run, so without the wait the latency is at most the run's
    time less that wait, and with it, more."""
    backoff = 0.5
    llm_server.latency = 0.1
    llm_server.add_rule("x", "fine")
    llm_server.fail_next(1, status=503)
    generator = rg.get_generator(on(route, f"gpt-4o,max_retries=1,backoff={backoff}"))
    started = time.perf_counter()
    chat = await generator.chat("x").run()
    run = time.perf_counter() - started
    assert chat.last.content == "fine"
    assert [r.status for r in llm_server.requests] == [503, 200]
    # 0.75, not 0.8: slack for clocks that tick coarser than perf_counter
    assert 2 * llm_server.latency <= chat.latency <= run - 0.75 * backoff, (chat.latency, run)
    llm_server.fail_next(2, status=503)
    failed = (
        await rg.get_generator(on(route, "gpt-4o,max_retries=1,backoff=0"))
        .chat("x")
        .run(on_failed="include")
    )
    assert failed.error_kind == "infrastructure"
    assert failed.latency >= 2 * llm_server.latency


def test_native_generators_share_one_session_per_loop() -> None:
    """Every native generator on a loop shares its connections (one session), which closes
    with the loop or on `aclose`; a loop that ended leaves nothing behind."""
    from pytest_rigging.generator import _http

    async def shared_then_closed() -> None:
        first, second = rg.get_generator("openai!a"), rg.get_generator("anthropic!b")
        shared = await _http.session()
        assert await _http.session() is shared
        await first.aclose()
        assert shared.closed and await _http.session() is not shared
        await second.aclose()

    async def touch() -> object:
        return await _http.session()

    asyncio.run(shared_then_closed())
    ended = asyncio.run(touch())
    assert ended.closed  # type: ignore[attr-defined]
    assert id(ended) not in _http._KEEPERS


@pytest.mark.parametrize(
    ("reason", "read"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("eos", "stop"),
        ("max_tokens", "length"),
        ("abort", "stop"),
        ("something-new", "stop"),
        (None, "stop"),
    ],
)
async def test_compatible_servers_finish_reasons_read_as_litellm_reads_them(
    llm_server: LLMServer, reason: str | None, read: str
) -> None:
    body = _completion(
        choices=[
            {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": reason}
        ]
    )
    llm_server.fail_next(1, status=200, body=body)
    chat = await rg.get_generator("openai!m").chat("x").run()
    assert chat.stop_reason == read


async def test_an_empty_anthropic_reply_is_unusable_on_both_routes(
    llm_server: LLMServer, route: str
) -> None:
    empty = json.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [{"type": "text", "text": ""}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 0},
        }
    ).encode()
    llm_server.fail_next(10, status=200, body=empty)
    generator = rg.get_generator(on(route, f"anthropic/claude-x,{FAST}"))
    chat = await generator.chat("x").run(on_failed="include")
    assert isinstance(chat.error, rg.GenerationError)
    assert (chat.error.reason, chat.error.attempts) == ("bad_response", 3)


@pytest.mark.parametrize(
    ("model", "first", "second"),
    [
        ("gpt-4o", "OPENAI_BASE_URL", "OPENAI_API_BASE"),
        ("claude-x-1", "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"),
    ],
)
async def test_base_url_variables_are_read_in_litellms_order(
    llm_server: LLMServer,
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    model: str,
    first: str,
    second: str,
) -> None:
    """Both variables set, to different servers: each route asks the same one."""
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(second, dead + ("/v1" if "OPENAI" in second else ""))
    chat = await rg.get_generator(on(route, f"{model},max_retries=0")).chat("x").run()
    assert chat.last.content == "x" and len(llm_server.requests) == 1


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[LLMServer, Path]]:
    """The loopback server over https, with a certificate no default store trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("making a test certificate needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    command += " -addext subjectAltName=IP:127.0.0.1"
    paths = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([*command.split(), *paths], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with LLMServer(tls=context) as server:
        yield server, cert


async def test_https_trusts_the_certificates_in_ssl_cert_file(
    tls_server: tuple[LLMServer, Path], route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway behind a company's own certificate authority: `SSL_CERT_FILE` names it,
    on both routes; without it the certificate is refused, as a connection error."""
    server, cert = tls_server
    identifier = on(
        route, f"openai/m,api_base={server.openai_base},api_key={OPENAI_TEST_KEY},max_retries=0"
    )
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    refused = await rg.get_generator(identifier).chat("x").run(on_failed="include")
    assert isinstance(refused.error, rg.error.GenerationError)
    assert refused.error.reason == "connection"  # the native route also says "certificate"
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    # another timeout: litellm keeps its clients, keyed by their settings
    chat = await rg.get_generator(f"{identifier},timeout=31").chat("over https").run()
    assert chat.last.content == "over https"
    assert [r.last_user for r in server.requests] == ["over https"]


async def test_plain_http_builds_no_tls_context(
    llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading certificates costs ~15 ms: only https (or a proxy) pays it."""
    from pytest_rigging.generator import _http

    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    _http._tls.cache_clear()
    generator = rg.get_generator("openai!m")
    await generator.chat("x").run()
    await generator.aclose()
    assert _http._tls.cache_info().currsize == 0


def test_litellms_data_read_from_its_files_is_what_litellm_loads() -> None:
    """Checking a run's models reads litellm's provider names and model data from the
    files it ships (no import): they must be what litellm itself loads."""
    import litellm

    from pytest_rigging.generator._litellm_data import _bundled_model_data, _enum_values

    assert _enum_values() == {getattr(p, "value", p) for p in litellm.provider_list}
    ours, theirs = _bundled_model_data(), litellm.model_cost
    assert ours.keys() == theirs.keys() and len(ours) > 1000
    used = ("litellm_provider", "max_output_tokens", "max_tokens")  # what we read of it
    assert [n for n in ours if any(ours[n].get(f) != theirs[n].get(f) for f in used)] == []


def test_a_bare_name_is_checked_against_what_litellm_routes() -> None:
    """A name without a provider is refused when litellm can't route it, with the closest
    names it knows; one it routes by a rule of its own rather than its data (a fine-tuned
    OpenAI id) is only a note; behind an `api_base` nothing is looked up."""
    with pytest.raises(rg.InvalidGeneratorError) as caught:
        rg.get_generator("gtp-4o-mini").check()
    assert closing_with_closest(
        "litellm cannot route the model 'gtp-4o-mini': it names no provider ('provider/model')"
        " and litellm knows no model of that name; closest known: gpt-4o-mini",
        str(caught.value),
    ), caught.value
    with pytest.raises(
        rg.InvalidGeneratorError, match=r"^litellm cannot route .*'qwertyuiop'.*name$"
    ):
        rg.get_generator("qwertyuiop").check()
    assert rg.get_generator("gpt-4o-mini").check() is None
    assert rg.get_generator("gtp-4o-mini,api_base=http://127.0.0.1:9").check() is None
    fine_tuned = rg.get_generator("ft:gpt-4o-mini:acme::a1b2c3").check()
    assert fine_tuned is not None and fine_tuned.startswith("litellm does not know the model")


def test_an_xdist_controller_never_imports_litellm(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Under `-n 2` the controller checks the models (a typo is still a warning) and makes
    no call: litellm's import is paid by the workers alone."""
    ini(pytester)
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            if not hasattr(session.config, "workerinput"):
                print("controller imported litellm:", "litellm" in sys.modules)
        """
    )
    pytester.makepyfile(ONE_ITEM)
    models = "gpt-4o,openai/gtp-4o-mini"
    result = pytester.runpytest_subprocess("--rig-models", models, "-n", "2", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*controller imported litellm: False*",
            "*RiggingWarning: --rig-models: litellm does not know the model 'openai/gtp-4o-mini'*",
        ]
    )
