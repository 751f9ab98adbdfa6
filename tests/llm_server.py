"""A scriptable local server speaking the OpenAI and Anthropic HTTP APIs.

Tests point litellm (or the vendor SDKs) at this server over loopback so that
they exercise the real client stack (HTTP, JSON parsing, retries, timeouts)
without any network. Replies are scripted with rules, faults are injected with
``fail_next``, and every request is recorded with its timing so tests can
assert on concurrency, retries and what was actually sent.

Stdlib only, so it can never be the thing that breaks when a dependency moves.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

__all__ = ["Call", "LLMServer", "RecordedRequest", "Reply", "ToolResult", "peak_overlap"]

_ROUTES = {
    "/v1/chat/completions": "openai-chat",
    "/chat/completions": "openai-chat",
    "/v1/completions": "openai-text",
    "/completions": "openai-text",
    "/v1/messages": "anthropic",
    "/messages": "anthropic",
}

# Error "type" per status, so clients map faults to the same exceptions as for the real APIs.
_OPENAI_ERRORS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_denied",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


@dataclass
class Call:
    """A tool call a scripted reply makes, in either API's shape; `id` defaults to the
    call's position in the reply (`call_0`, ...: OpenAI's style, on both APIs)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    def call_id(self, index: int) -> str:
        return self.id or f"call_{index}"


@dataclass
class ToolResult:
    """A tool's reply the client sent back, read from either API's shape."""

    call_id: str
    content: str


@dataclass
class Reply:
    """One scripted answer: assistant text and tool calls, or a fault (status, raw body,
    delay). Tool calls are answered unstreamed only."""

    content: str = ""
    tool_calls: list[Call] = field(default_factory=list)
    status: int = 200
    delay: float | None = None  # seconds before answering; None -> server.latency
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # sent verbatim, for malformed-body faults
    prompt_tokens: int | None = None  # None -> word count of the conversation
    completion_tokens: int | None = None  # None -> word count of the content
    until: threading.Event | None = None  # answer once set; a client hanging up first gets none


@dataclass
class RecordedRequest:
    """What the server received, normalised across APIs so tests need not care which."""

    api: str  # "openai-chat" | "openai-text" | "anthropic"
    path: str
    model: str
    body: dict[str, Any]
    headers: dict[str, str]  # keys lower-cased
    messages: list[dict[str, str]]  # [{"role", "content"}], system first
    last_user: str
    start: float  # time.monotonic() when the request was read
    end: float = 0.0  # time.monotonic() when the answer was sent (0.0 while in flight)
    status: int = 0  # 0 while in flight, or if stop() hung up on it
    hung_up: bool = False  # the client hung up while the reply was held (`Reply.until`)

    @property
    def conversation(self) -> str:
        """All message texts joined by newlines, for ``on="conversation"`` rules."""
        return "\n".join(m["content"] for m in self.messages)

    @property
    def tool_names(self) -> list[str]:
        """The names of the tools the request offered, in either API's shape."""
        names = []
        for tool in self.body.get("tools") or []:
            function = tool.get("function") if isinstance(tool, dict) else None
            named = function if isinstance(function, dict) else tool
            if isinstance(named, dict) and isinstance(named.get("name"), str):
                names.append(named["name"])
        return names

    @property
    def tool_results(self) -> list[ToolResult]:
        """The tools' replies the request sends back: OpenAI's `role="tool"` messages,
        Anthropic's `tool_result` blocks."""
        found = []
        for message in self.body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            if message.get("role") == "tool":
                found.append(
                    ToolResult(str(message.get("tool_call_id")), _text(message.get("content")))
                )
            elif isinstance(message.get("content"), list):
                found.extend(
                    ToolResult(str(block.get("tool_use_id")), _text(block.get("content")))
                    for block in message["content"]
                    if isinstance(block, dict) and block.get("type") == "tool_result"
                )
        return found


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    replies: Iterator[Reply]
    model: str | None
    on: str


@dataclass
class _Fault:
    remaining: int
    reply: Reply
    model: str | None


def _strip_provider(model: str) -> str:
    return model.split("/", 1)[1] if "/" in model else model


def _model_matches(wanted: str | None, sent: str) -> bool:
    """Match with or without a provider prefix: litellm strips it before sending."""
    if wanted is None:
        return True
    return {wanted, _strip_provider(wanted)} & {sent, _strip_provider(sent)} != set()


def _text(content: Any) -> str:
    """Flatten str / list-of-blocks content (both APIs allow either) to plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif "content" in block:  # e.g. anthropic tool_result
                    parts.append(_text(block["content"]))
        return "\n".join(p for p in parts if p)
    return str(content)


def _normalise(api: str, body: dict[str, Any]) -> list[dict[str, str]]:
    if api == "openai-text":
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            prompt = "\n".join(p for p in prompt if isinstance(p, str))
        return [{"role": "user", "content": str(prompt)}]
    messages: list[dict[str, str]] = []
    if api == "anthropic" and body.get("system"):
        messages.append({"role": "system", "content": _text(body["system"])})
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if api == "anthropic" and isinstance(content, list):
            # tool results ride in user messages: read as tool messages, as OpenAI has them
            results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
            messages.extend({"role": "tool", "content": _text(b.get("content"))} for b in results)
            content = [b for b in content if not any(b is r for r in results)]
            if results and not content:
                continue
        messages.append({"role": str(m.get("role", "")), "content": _text(content)})
    # "system first": OpenAI allows system/developer messages anywhere; keep relative order.
    system = [m for m in messages if m["role"] in ("system", "developer")]
    return system + [m for m in messages if m["role"] not in ("system", "developer")]


def _words(text: str) -> int:
    return len(text.split())


class _HTTPServer(ThreadingHTTPServer):
    """Tracks every connection so ``stop()`` can cut keep-alive sockets and join threads."""

    daemon_threads = True
    block_on_close = False  # we join ourselves, with a deadline, so stop() never hangs
    request_queue_size = 1024

    def __init__(self, owner: LLMServer) -> None:
        self.owner = owner
        self.conns: dict[socket.socket, threading.Thread] = {}
        self.conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self.conns_lock:
            self.conns[request] = t
        t.start()

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-answer (timeouts, stop()) are expected: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect
    disable_nagle_algorithm = True  # else headers+body writes meet delayed ACK: +40 ms a reply
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr logging."""

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # peer reset / socket shut down by stop()
            self.close_connection = True

    def do_POST(self) -> None:
        self.server.owner._serve(self)

    def do_GET(self) -> None:
        self.server.owner._serve(self)

    def send(self, status: int, body: bytes, headers: dict[str, str], content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class LLMServer:
    """Local OpenAI (chat + text completions) and Anthropic (messages) endpoint.

    Resolution order per request: pending ``fail_next`` faults, then ``responder``,
    then rules (first match, in order added), then an echo of the last user message.
    """

    def __init__(self, latency: float = 0.0, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self._base_latency = latency
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self.responder: Callable[[RecordedRequest], Reply] | None = None
        self._in_flight = 0
        self._rules: list[_Rule] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> LLMServer:
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = _HTTPServer(self)
            if self._tls is not None:  # https: the handshake happens in each connection's thread
                self._httpd.socket = self._tls.wrap_socket(
                    self._httpd.socket, server_side=True, do_handshake_on_connect=False
                )
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},  # so stop() is prompt
                name=f"LLMServer:{self._httpd.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Wake delayed replies, cut open connections, join threads (bounded), close."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with httpd.conns_lock:
            conns = list(httpd.conns.items())
        for sock, _ in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5
        for _, thread in conns:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        httpd.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("LLMServer is not started")
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def openai_base(self) -> str:
        """For OPENAI_BASE_URL / ``api_base=``: the SDK appends ``/chat/completions``."""
        return self.url + "/v1"

    @property
    def anthropic_base(self) -> str:
        """For ANTHROPIC_BASE_URL / ``api_base=``: litellm appends ``/v1/messages`` itself."""
        return self.url

    # -- scripting -------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._rules.clear()
            self._faults.clear()
            self.requests.clear()
            self.max_in_flight = self._in_flight
            self.responder = None
            self.latency = self._base_latency

    def add_rule(
        self,
        pattern: str,
        *replies: Reply | str,
        model: str | None = None,
        on: str = "last_user",
    ) -> None:
        """Answer requests whose text matches ``pattern``; replies cycle in call order."""
        if on not in ("last_user", "conversation"):
            raise ValueError(f"on must be 'last_user' or 'conversation', not {on!r}")
        if not replies:
            raise ValueError("add_rule needs at least one reply")
        scripted = [Reply(content=r) if isinstance(r, str) else r for r in replies]
        rule = _Rule(re.compile(pattern, re.DOTALL), itertools.cycle(scripted), model, on)
        with self._lock:
            self._rules.append(rule)

    def fail_next(
        self,
        n: int,
        status: int = 500,
        headers: dict[str, str] | None = None,
        model: str | None = None,
        body: bytes | None = None,
        delay: float | None = None,
    ) -> None:
        """Give the next ``n`` requests (for ``model``, if given) this fault instead."""
        reply = Reply(status=status, headers=dict(headers or {}), body=body, delay=delay)
        with self._lock:
            self._faults.append(_Fault(n, reply, model))

    # -- serving ---------------------------------------------------------------------

    def _choose(self, req: RecordedRequest) -> Reply:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and _model_matches(fault.model, req.model):
                    fault.remaining -= 1
                    return fault.reply
            responder = self.responder
            if responder is None:
                for rule in self._rules:
                    text = req.last_user if rule.on == "last_user" else req.conversation
                    if _model_matches(rule.model, req.model) and rule.pattern.search(text):
                        return next(rule.replies)
        if responder is not None:
            try:
                return responder(req)
            except Exception as exc:  # surface the bug to the client instead of hanging up
                return Reply(status=500, content=f"responder raised {exc!r}")
        return Reply(content=req.last_user)

    def _serve(self, h: _Handler) -> None:
        path = h.path.split("?", 1)[0]
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        api = _ROUTES.get(path)
        try:
            parsed = json.loads(raw or b"{}")
            body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
            bad_json = not isinstance(parsed, dict)
        except ValueError:
            body, bad_json = {}, True
        messages = _normalise(api, body) if api else []
        users = [m["content"] for m in messages if m["role"] == "user"]
        req = RecordedRequest(
            api=api or "unknown",
            path=path,
            model=str(body.get("model", "")),
            body=body,
            headers={k.lower(): v for k, v in h.headers.items()},
            messages=messages,
            last_user=users[-1] if users else "",
            start=time.monotonic(),
        )
        with self._lock:
            self.requests.append(req)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        done = False

        def finish(status: int) -> None:
            # Before writing: a client that got its answer must see end/status set, and a
            # sequential client's next request must not count as concurrent with this one.
            nonlocal done
            with self._lock:
                if not done:
                    done = True
                    req.end, req.status = time.monotonic(), status
                    self._in_flight -= 1

        try:
            if api is None or h.command != "POST":
                reply = Reply(status=404, content=f"no route for {h.command} {path}", delay=0)
            elif bad_json:
                reply = Reply(status=400, content="request body is not a JSON object", delay=0)
            else:
                reply = self._choose(req)
            delay = self.latency if reply.delay is None else reply.delay
            if delay > 0 and self._stopping.wait(delay):
                h.close_connection = True  # server stopping: hang up unanswered
                return
            if reply.until is not None and not self._held(h, reply.until):
                req.hung_up = not self._stopping.is_set()
                h.close_connection = True
                return
            payload, content_type = self._render(api or "openai-chat", req, reply)
            finish(reply.status)
            h.send(reply.status, payload, reply.headers, content_type)
        finally:
            finish(req.status)

    def _held(self, h: _Handler, until: threading.Event) -> bool:
        """Hold the reply until `until` is set: False if the client hangs up first (or the
        server stops). A client waiting for its reply sends nothing, so the connection
        turning readable means it was closed: end of stream, or a reset."""
        while not until.wait(0.05):
            if self._stopping.is_set():
                return False
            try:
                if select.select([h.connection], [], [], 0)[0]:
                    return False
            except (OSError, ValueError):  # the socket is gone already
                return False
        return True

    def _render(self, api: str, req: RecordedRequest, reply: Reply) -> tuple[bytes, str]:
        if reply.body is not None:
            return reply.body, "application/json"
        if reply.status >= 400:
            return json.dumps(_error(api, reply)).encode(), "application/json"
        usage = (
            reply.prompt_tokens
            if reply.prompt_tokens is not None
            else sum(_words(m["content"]) for m in req.messages),
            reply.completion_tokens
            if reply.completion_tokens is not None
            else _words(reply.content),
        )
        if req.body.get("stream"):
            options = req.body.get("stream_options")
            with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            sse = _stream(api, req.model, reply.content, usage, with_usage)
            return sse.encode(), "text/event-stream"
        shaped = _completion(api, req.model, reply.content, usage)
        if reply.tool_calls and api != "openai-text":
            _add_tool_calls(api, shaped, reply.tool_calls)
        return json.dumps(shaped).encode(), "application/json"


def _add_tool_calls(api: str, shaped: dict[str, Any], calls: list[Call]) -> None:
    """Put `calls` in a rendered reply: `tool_use` blocks after the text (Anthropic), or
    the message's `tool_calls` with null content when there is no text (OpenAI)."""
    if api == "anthropic":
        text = [b for b in shaped["content"] if b.get("text")]
        shaped["content"] = text + [
            {"type": "tool_use", "id": call.call_id(i), "name": call.name, "input": call.arguments}
            for i, call in enumerate(calls)
        ]
        shaped["stop_reason"] = "tool_use"
        return
    choice = shaped["choices"][0]
    message = choice["message"]
    message["content"] = message["content"] or None
    message["tool_calls"] = [
        {
            "id": call.call_id(i),
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for i, call in enumerate(calls)
    ]
    choice["finish_reason"] = "tool_calls"


def _error(api: str, reply: Reply) -> dict[str, Any]:
    message = reply.content or f"simulated error {reply.status}"
    if api != "anthropic" and reply.status == 401 and not reply.content:
        # litellm sniffs this text to map OpenAI 401s to AuthenticationError, as for the real API.
        message = "Incorrect API key provided: sk-***. You can find your API key at the dashboard."
    if api == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(reply.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = _OPENAI_ERRORS.get(reply.status, "server_error")
    code = "invalid_api_key" if reply.status == 401 else kind
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _completion(api: str, model: str, text: str, usage: tuple[int, int]) -> dict[str, Any]:
    prompt, completion = usage
    if api == "anthropic":
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": completion},
        }
    openai_usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if api == "openai-text":
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": openai_usage,
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": openai_usage,
    }


def _stream(api: str, model: str, text: str, usage: tuple[int, int], with_usage: bool) -> str:
    """The whole answer as a one-delta SSE stream, for ``stream=True`` clients.

    OpenAI sends a final usage chunk only when asked (``stream_options.include_usage``);
    Anthropic always reports usage in ``message_start`` / ``message_delta``.
    """
    full = _completion(api, model, text, usage)
    if api == "anthropic":
        start = {**full, "content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": usage[0], "output_tokens": 0}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": usage[1]},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events)
    base = {k: full[k] for k in ("id", "created", "model")}
    if api == "openai-text":
        chunks = [{**base, "object": "text_completion", "choices": full["choices"]}]
    else:
        obj = {**base, "object": "chat.completion.chunk"}
        delta = {"role": "assistant", "content": text}
        chunks = [
            {**obj, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**obj, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
    if with_usage:
        chunks.append({**chunks[-1], "choices": [], "usage": full["usage"]})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


class Span(Protocol):
    """A request's time at the server: when it came in, when its reply went out."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...


def peak_overlap(requests: Sequence[Span]) -> int:
    """The most of `requests` the server was handling at one moment (a reply out before a
    request in, at a tie)."""
    edges = sorted([(r.start, 1) for r in requests] + [(r.end, -1) for r in requests])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak
