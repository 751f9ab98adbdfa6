"""What the native providers share: one pooled async HTTP client per event loop, the
request, and reading faults from statuses and transport errors.

The native providers speak an API themselves, over aiohttp (keep-alive, pooled), so a call
costs a JSON body and a request, not litellm's import and its per-call CPU. aiohttp rather
than httpx: measured on this project's machine, 64 requests in flight cost httpx's pool
about 7 ms of CPU each (it scans every pooled connection per request), aiohttp's 0.15 ms.
aiohttp speaks HTTP/1.1 only. Retries, timeouts and errors are the same as litellm's route
(`_retry`), so that switching a model between routes changes speed and nothing else.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import io
import json
import os
import typing as t

from pytest_rigging._concurrency import LoopLocal, call_sent
from pytest_rigging._secrets import guard_loggers
from pytest_rigging.generator._litellm_data import sent_name, token_prices
from pytest_rigging.generator._retry import (
    DEFAULT_TIMEOUT,
    Fault,
    ResultT,
    RetryingGenerator,
    UnusableReply,
    retry_after,
)
from pytest_rigging.generator.base import GenerateParams

if t.TYPE_CHECKING:
    import ssl

    import aiohttp


class StatusError(Exception):
    """The server answered with an error status."""

    def __init__(self, status: int, headers: t.Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        super().__init__(f"HTTP {status}: {_error_text(body)}")


def _error_text(body: bytes) -> str:
    """The error message both APIs put in `{"error": {"message": ...}}`, else the body."""
    text = body.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else text[:300]


def classify(error: BaseException) -> Fault:
    """As the litellm route classifies the same faults."""
    import aiohttp

    if isinstance(error, StatusError):
        if error.status == 429:
            return Fault("rate_limit", retryable=True)
        if error.status == 408:
            return Fault("timeout", retryable=True)
        if error.status >= 500:
            return Fault("server", retryable=True)
        return Fault("client", retryable=False)
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return Fault("timeout", retryable=True)
    if isinstance(error, aiohttp.ClientPayloadError):
        return Fault("bad_response", retryable=True)
    if isinstance(error, aiohttp.ClientError | ConnectionError):
        return Fault("connection", retryable=True)
    # unreadable or unusable replies, and the unexpected
    return Fault("bad_response", retryable=True)


def _wait_hint(error: BaseException) -> float | None:
    return retry_after(error.headers) if isinstance(error, StatusError) else None


def read_json(body: bytes) -> dict[str, t.Any]:
    """The body as a JSON object; anything else is an unusable reply."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UnusableReply(f"the reply is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise UnusableReply(f"the reply is not a JSON object: {body[:200]!r}")
    return data


_LARGE = 1 << 20
"""Bodies above this go as a stream (aiohttp warns about large raw bytes)."""


class _Headers(dict[str, str]):
    """Request headers whose repr hides their values (one holds the API key), for
    tracebacks shown with `--showlocals --full-trace`."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: '***'" for k in self) + "}"


def _session() -> aiohttp.ClientSession:
    """A session for the running loop, with proxies from the environment (`HTTPS_PROXY`,
    `NO_PROXY`, ...) as litellm's clients take them."""
    import aiohttp

    # aiohttp reads the environment's proxies on every request when trusting it: only
    # when one is set
    proxied = any(name.lower().endswith("_proxy") for name in os.environ)
    sent = aiohttp.TraceConfig()
    sent.on_request_headers_sent.append(_announce)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), trust_env=proxied, trace_configs=[sent]
    )


async def _announce(*_: object) -> None:
    """A request's headers were written: the call went out (`call_sent`), for providers
    that say they announce their calls (`announces_sends`)."""
    call_sent()


@functools.lru_cache(maxsize=4)
def _tls(cafile: str | None) -> ssl.SSLContext:
    """Certificates from `cafile` (`SSL_CERT_FILE`) or certifi, as litellm's clients take
    them; made on the first https request (loading them costs ~15 ms a plain-http run
    never pays)."""
    import ssl

    if not cafile:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)


async def _closing_at_shutdown(session: aiohttp.ClientSession) -> t.AsyncGenerator[None, None]:
    """Alive while its loop runs; the loop closes every live async generator as it shuts
    down (`asyncio.run`, pytest-asyncio, the plugin's own loop), which closes the session
    and forgets it, so no loop is kept alive by its session."""
    try:
        yield
    finally:
        _KEEPERS.pop(id(session), None)
        if _SESSIONS.peek() is session:
            _SESSIONS.pop()
        await session.close()


_SESSIONS: LoopLocal[aiohttp.ClientSession] = LoopLocal(_session)
"""One session (one connection pool) per event loop, shared by every native generator:
connections are reused across test functions and models that talk to one server."""
_KEEPERS: dict[int, t.AsyncGenerator[None, None]] = {}
"""Each session's keeper, held here: the loop holds async generators only weakly, and a
keeper collected early would close its session under the calls using it."""


async def session() -> aiohttp.ClientSession:
    """The running loop's session, made (and tied to the loop's shutdown) on first use."""
    current = _SESSIONS.peek()
    if current is None or current.closed:
        if current is not None:
            _SESSIONS.pop()
        current = _SESSIONS.get()
        keeper = _closing_at_shutdown(current)
        _KEEPERS[id(current)] = keeper  # the loop holds it weakly
        await keeper.__anext__()
    return current


async def close_session() -> None:
    """Close the running loop's session, if any (the next call opens a new one)."""
    current = _SESSIONS.pop()
    if current is not None:
        keeper = _KEEPERS.pop(id(current), None)
        if keeper is not None:
            await keeper.aclose()
        await current.close()


class HTTPGenerator(RetryingGenerator):
    """A provider speaking one HTTP API, with the retries of `RetryingGenerator` as
    litellm's route has them; the key comes from `api_key=` or the provider's usual
    environment variable, the base URL from `api_base=` or its usual variables."""

    api: t.ClassVar[str]
    """The API's provider name in litellm's data (`openai`, `anthropic`)."""
    key_variable: t.ClassVar[str]
    base_variables: t.ClassVar[tuple[str, ...]]
    default_base: t.ClassVar[str]

    def model_post_init(self, context: t.Any) -> None:
        super().model_post_init(context)
        guard_loggers("aiohttp.client", "aiohttp.internal")

    @property
    def sent_model(self) -> str:
        """The model name requests carry: as litellm's route sends it (an alias in its data
        as the model it names)."""
        return sent_name(self.model, self.api)

    def prices(self) -> tuple[float, float] | None:
        """As litellm's route prices the same model: from its bundled data."""
        return token_prices(self.sent_model, self.api)

    def key(self, params: GenerateParams) -> str | None:
        """The key requests authenticate with: `api_key=`, else `extra.api_key`, else the
        provider's variable; as litellm's route takes them (it never goes in the body)."""
        given = params.extra.get("api_key")
        return (
            self.secret()
            or (str(given) if given else None)
            or os.environ.get(self.key_variable)
            or None
        )

    def base_url(self, params: GenerateParams) -> str:
        found = params.api_base or next(
            (os.environ[name] for name in self.base_variables if os.environ.get(name)), None
        )
        return (found or self.default_base).rstrip("/")

    @abc.abstractmethod
    def headers(self, key: str | None) -> dict[str, str]:
        """The API's request headers, authenticated with `key` when there is one."""

    async def post(
        self,
        url: str,
        body: dict[str, t.Any],
        params: GenerateParams,
        read: t.Callable[[dict[str, t.Any]], ResultT],
    ) -> ResultT:
        """POST `body` as JSON to `url`, the reply read by `read`, retried as a whole."""
        __tracebackhide__ = True  # its locals hold the API key: keep them out of tracebacks
        timeout = float(params.timeout or DEFAULT_TIMEOUT)
        headers = _Headers(self.headers(self.key(params)))
        sent = dict(body)
        headers.update(sent.pop("extra_headers", None) or {})  # as litellm sends them
        content = json.dumps(sent).encode()

        async def attempt() -> ResultT:
            __tracebackhide__ = True
            client = await session()
            data = io.BytesIO(content) if len(content) > _LARGE else content
            # certificates for an https server, or a proxy that may speak https
            secure = url[:6].lower() == "https:" or client.trust_env
            tls = _tls(os.environ.get("SSL_CERT_FILE")) if secure else True
            async with client.post(
                url, data=data, headers=headers, timeout=_timeout(timeout), ssl=tls
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise StatusError(response.status, response.headers, raw)
            return read(read_json(raw))

        return await self.retrying(
            attempt, classify=classify, wait_hint=_wait_hint, timeout=timeout
        )

    async def aclose(self) -> None:
        """Close the running loop's pooled connections (shared by the native generators;
        the next call opens new ones)."""
        await close_session()


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)


def request_params(params: GenerateParams, dropped: t.Collection[str] = ()) -> dict[str, t.Any]:
    """The params a request body carries (`extra` flattened), as litellm sends them: the
    client's own settings (`timeout`, `api_base`, `extra.api_key`, which authenticates) and
    the API's unsupported ones left out."""
    return {
        k: v
        for k, v in params.to_dict().items()
        if k not in ("timeout", "api_base", "api_key") and k not in dropped
    }
