"""The fake LLM server is test infrastructure: check it over real HTTP before trusting it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import wait_for
from tests.llm_server import Call, LLMServer, Reply, ToolResult


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as s:
        yield s


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def chat(c: httpx.Client, server: LLMServer, text: str, model: str = "gpt-x") -> httpx.Response:
    return c.post(
        server.openai_base + "/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}]},
    )


def answer(r: httpx.Response) -> str:
    content: str = r.json()["choices"][0]["message"]["content"]
    return content


def test_openai_chat_shape_and_echo(server: LLMServer, client: httpx.Client) -> None:
    r = client.post(
        server.openai_base + "/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
            ],
        },
    )
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int)
    assert data["model"] == "gpt-4o-mini"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "hello there"}
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    (req,) = server.requests
    assert req.api == "openai-chat"
    assert req.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]
    assert req.last_user == "hello there"
    assert req.status == 200
    assert req.start <= req.end
    assert req.headers["content-type"] == "application/json"


def test_openai_text_completion_shape(server: LLMServer, client: httpx.Client) -> None:
    r = client.post(server.url + "/completions", json={"model": "davinci", "prompt": "say hi"})
    data = r.json()
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == "say hi"
    assert data["choices"][0]["finish_reason"] == "stop"
    assert server.requests[0].messages == [{"role": "user", "content": "say hi"}]


def test_anthropic_shape_and_system(server: LLMServer, client: httpx.Client) -> None:
    server.add_rule("capital", Reply("Paris", prompt_tokens=7, completion_tokens=1))
    r = client.post(
        server.anthropic_base + "/v1/messages",
        json={
            "model": "claude-3-haiku-20240307",
            "max_tokens": 10,
            "system": [{"type": "text", "text": "you are a geographer"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "capital?"}]}],
        },
    )
    data = r.json()
    assert data["type"] == "message"
    assert data["role"] == "assistant"
    assert data["id"].startswith("msg_")
    assert data["content"] == [{"type": "text", "text": "Paris"}]
    assert data["stop_reason"] == "end_turn"
    assert data["usage"] == {"input_tokens": 7, "output_tokens": 1}
    (req,) = server.requests
    assert req.api == "anthropic"
    assert req.messages[0] == {"role": "system", "content": "you are a geographer"}
    assert req.last_user == "capital?"


def test_error_shapes(server: LLMServer, client: httpx.Client) -> None:
    server.fail_next(1, status=401)
    server.fail_next(1, status=529)
    r = chat(client, server, "x")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    r = client.post(server.url + "/v1/messages", json={"model": "claude", "messages": []})
    assert r.status_code == 529
    assert r.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "simulated error 529"},
    }
    assert client.post(server.url + "/v1/nope", json={}).status_code == 404


def test_rules_cycle_first_match_wins_and_conversation(
    server: LLMServer, client: httpx.Client
) -> None:
    server.add_rule(r"weather", "sunny", Reply("rainy"))
    server.add_rule(r"weather|anything", "never")
    server.add_rule(r"secret", "found", on="conversation")
    texts = ["weather?", "the weather", "WEATHER", "weather"]
    got = [answer(chat(client, server, t)) for t in texts]
    assert got == ["sunny", "rainy", "WEATHER", "sunny"]
    r = client.post(
        server.openai_base + "/chat/completions",
        json={
            "model": "m",
            "messages": [
                {"role": "system", "content": "the secret\nis here"},
                {"role": "user", "content": "what?"},
            ],
        },
    )
    assert answer(r) == "found"


def test_model_filter_matches_with_and_without_prefix(
    server: LLMServer, client: httpx.Client
) -> None:
    server.add_rule(".", "from haiku", model="anthropic/claude-3-haiku")
    server.add_rule(".", "from gpt", model="gpt-4o")
    assert answer(chat(client, server, "q", model="claude-3-haiku")) == "from haiku"
    assert answer(chat(client, server, "q", model="openai/gpt-4o")) == "from gpt"
    assert answer(chat(client, server, "q", model="other")) == "q"


def test_fail_next_with_retry_after_then_recovers(server: LLMServer, client: httpx.Client) -> None:
    server.fail_next(2, status=429, headers={"Retry-After": "0.1"}, model="gpt-x")
    assert chat(client, server, "a", model="other").status_code == 200  # other model unaffected
    for _ in range(2):
        r = chat(client, server, "a")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "0.1"
        assert r.json()["error"]["type"] == "rate_limit_exceeded"
    assert chat(client, server, "a").status_code == 200
    assert [q.status for q in server.requests] == [200, 429, 429, 200]


def test_malformed_body(server: LLMServer, client: httpx.Client) -> None:
    server.fail_next(1, status=200, body=b'{"choices": [')
    r = chat(client, server, "a")
    assert r.status_code == 200
    assert r.content == b'{"choices": ['
    r = client.post(server.openai_base + "/chat/completions", content=b"not json")
    assert r.status_code == 400


def test_responder_override_and_reset(server: LLMServer, client: httpx.Client) -> None:
    server.add_rule(".", "rule")
    server.responder = lambda req: Reply(req.last_user.upper())
    assert answer(chat(client, server, "abc")) == "ABC"
    server.latency = 1.0
    server.reset()
    assert server.requests == [] and server.responder is None and server.latency == 0.0
    assert answer(chat(client, server, "abc")) == "abc"


def test_latency_honoured(client: httpx.Client) -> None:
    """The server's latency delays a reply (checked from below: a wait can't be shorter),
    and a reply's own delay wins over it: with a latency longer than the client's timeout
    (5 s), a reply of delay 0 still arrives."""
    with LLMServer(latency=0.15) as server:
        t0 = time.monotonic()
        chat(client, server, "slow")
        assert time.monotonic() - t0 >= 0.15
        [slow] = server.requests
        assert slow.end - slow.start >= 0.15
        server.latency = 60
        server.add_rule("fast", Reply("quick", delay=0))
        assert answer(chat(client, server, "fast")) == "quick"  # its own delay (0) wins


def test_sequential_requests_are_not_concurrent(server: LLMServer, client: httpx.Client) -> None:
    for i in range(5):
        chat(client, server, str(i))
    assert server.max_in_flight == 1
    reqs = server.requests
    assert all(reqs[i].end <= reqs[i + 1].start for i in range(len(reqs) - 1))


def test_stream_requests_get_sse(server: LLMServer, client: httpx.Client) -> None:
    r = client.post(
        server.openai_base + "/chat/completions",
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.headers["content-type"] == "text/event-stream"
    assert r.text.endswith("data: [DONE]\n\n")
    r = client.post(
        server.url + "/v1/messages",
        json={"model": "c", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert "event: message_stop" in r.text and '"text": "hi"' in r.text


def test_max_in_flight_counts_concurrent_requests() -> None:
    with (
        LLMServer(latency=0.2) as server,
        httpx.Client(timeout=5, limits=httpx.Limits(max_connections=20)) as client,
        ThreadPoolExecutor(20) as pool,
    ):
        codes = list(pool.map(lambda i: chat(client, server, str(i)).status_code, range(20)))
        assert codes == [200] * 20
        assert server.max_in_flight == 20
        assert len(server.requests) == 20
        server.reset()
        assert server.max_in_flight == 0


def test_stop_while_request_waits_does_not_hang() -> None:
    server = LLMServer().start()
    server.add_rule(".", Reply("late", delay=30))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with httpx.Client(timeout=10) as c:
                chat(c, server, "hi")
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    wait_for(lambda: bool(server.requests), "the request")
    server.stop()  # returns, though a handler still hangs
    t.join(timeout=30)
    assert not t.is_alive()
    assert errors  # the client saw the hang-up instead of a reply
    server.stop()  # idempotent


def test_a_held_reply_waits_for_its_event_and_notices_a_client_hanging_up(
    server: LLMServer, client: httpx.Client
) -> None:
    """`Reply(until=event)`: answered once the event is set; a client that hangs up first
    is recorded (`hung_up`) as soon as the server sees the connection closed."""
    release, never = threading.Event(), threading.Event()
    server.add_rule("wait", Reply("released", until=release))
    server.add_rule("never", Reply("unsent", until=never))
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(chat, client, server, "wait")
        wait_for(lambda: bool(server.requests), "the request")
        assert server.requests[0].status == 0  # held
        release.set()
        assert answer(waiting.result(timeout=30)) == "released"
    assert (server.requests[0].status, server.requests[0].hung_up) == (200, False)
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=0.2) as impatient:
        chat(impatient, server, "never")  # the client gives up, closing its connection
    held = server.requests[1]
    wait_for(lambda: held.hung_up, "the hang-up")
    assert (held.hung_up, held.status) == (True, 0)
    assert server.max_in_flight == 1 and held.end >= held.start


def test_scripted_tool_calls_in_openais_shape(server: LLMServer, client: httpx.Client) -> None:
    server.add_rule(
        "weather",
        Reply(tool_calls=[Call("forecast", {"city": "Paris"}), Call("now", id="given")]),
        Reply(content="Checking.", tool_calls=[Call("now")]),
    )
    first = chat(client, server, "the weather?").json()["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    assert first["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "forecast", "arguments": '{"city": "Paris"}'},
            },
            {"id": "given", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
    }
    second = chat(client, server, "the weather?").json()["choices"][0]["message"]
    assert (second["content"], second["tool_calls"][0]["id"]) == ("Checking.", "call_0")


def test_scripted_tool_calls_in_anthropics_shape(server: LLMServer, client: httpx.Client) -> None:
    server.add_rule(".", Reply(content="Checking.", tool_calls=[Call("forecast", {"day": 1})]))
    data = client.post(
        server.url + "/v1/messages",
        json={"model": "claude-x", "max_tokens": 9, "messages": [{"role": "user", "content": "?"}]},
    ).json()
    assert data["stop_reason"] == "tool_use"
    assert data["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_0", "name": "forecast", "input": {"day": 1}},
    ]
    server.reset()
    server.add_rule(".", Reply(tool_calls=[Call("forecast")]))
    bare = client.post(
        server.url + "/v1/messages",
        json={"model": "claude-x", "max_tokens": 9, "messages": [{"role": "user", "content": "?"}]},
    ).json()
    assert [block["type"] for block in bare["content"]] == ["tool_use"]


def test_the_log_reads_tools_and_their_results_in_either_shape(
    server: LLMServer, client: httpx.Client
) -> None:
    client.post(
        server.openai_base + "/chat/completions",
        json={
            "model": "gpt-x",
            "tools": [{"type": "function", "function": {"name": "forecast"}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
        },
    )
    client.post(
        server.url + "/v1/messages",
        json={
            "model": "claude-x",
            "tools": [{"name": "forecast", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "c1"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "c1", "content": "sunny"},
                        {"type": "text", "text": "and tomorrow?"},
                    ],
                },
            ],
        },
    )
    openai, anthropic = server.requests
    assert openai.tool_names == anthropic.tool_names == ["forecast"]
    assert openai.tool_results == anthropic.tool_results == [ToolResult("c1", "sunny")]
    assert openai.last_user == "weather?"
    assert anthropic.last_user == "and tomorrow?"
    assert [m["role"] for m in anthropic.messages] == ["user", "assistant", "tool", "user"]
    assert anthropic.body["messages"][2]["content"][0]["tool_use_id"] == "c1"  # kept whole
