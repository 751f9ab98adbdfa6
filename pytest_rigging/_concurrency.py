"""Bounded, order-keeping, cleanly cancellable fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import typing as t
import weakref

T = t.TypeVar("T")
R = t.TypeVar("R")


async def bounded_map(
    fn: t.Callable[[T], t.Awaitable[R]], items: t.Sequence[T], limit: int
) -> list[R]:
    """`[await fn(x) for x in items]`, at most `limit` at a time, results in input order.

    A fixed pool of `min(limit, len(items))` workers pulls the next index, so a batch of
    10,000 costs `limit` tasks, not 10,000. If any call raises, or the caller is
    cancelled, every worker is cancelled and awaited before this returns: nothing is
    left running.
    """
    results: list[t.Any] = [None] * len(items)
    indexes = iter(range(len(items)))

    async def worker() -> None:
        for index in indexes:
            results[index] = await fn(items[index])

    size = min(limit, len(items))
    if size <= 1:
        await worker()
        return results
    tasks = [asyncio.ensure_future(worker()) for _ in range(size)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        raise
    return results


class LoopLocal(t.Generic[T]):
    """One value per running event loop.

    asyncio primitives bind to the loop that first uses them; pytest-asyncio gives each
    test its own loop, so a semaphore shared across tests must be one per loop.
    """

    def __init__(self, factory: t.Callable[[], T]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        value = self._values.get(loop)
        if value is None:
            value = self._values[loop] = self._factory()
        return value

    def peek(self) -> T | None:
        """The running loop's value, if it has one (none is made)."""
        return self._values.get(asyncio.get_running_loop())

    def pop(self) -> T | None:
        """The running loop's value, forgotten (None if it had none)."""
        return self._values.pop(asyncio.get_running_loop(), None)


V = t.TypeVar("V")


@contextlib.contextmanager
def in_force(var: contextvars.ContextVar[V], value: V) -> t.Iterator[V]:
    """`var` set to `value` within this block (and the tasks it starts), then as it was."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


_shared_limit: contextvars.ContextVar[asyncio.Semaphore | None] = contextvars.ContextVar(
    "pytest_rigging_shared_limit", default=None
)


def shared_limit(
    limit: int | asyncio.Semaphore,
) -> contextlib.AbstractContextManager[asyncio.Semaphore | None]:
    """Within this block (and the tasks it starts), every generator call also takes a slot
    of one semaphore (`limit` slots, or the one given): a bound across all generators,
    on top of each generator's own `max_connections`. Use it on the loop that will run
    the calls."""
    semaphore = limit if isinstance(limit, asyncio.Semaphore) else asyncio.Semaphore(limit)
    return in_force(_shared_limit, semaphore)


class Slot:
    """A generator's own slot, plus a slot of the shared limit when one is in force.

    While held, it is the current slot of the task (and what it awaits), so that a
    provider waiting to retry can give it back for the wait (`slot_released`)."""

    __slots__ = ("own", "shared", "token")

    def __init__(self, own: asyncio.Semaphore) -> None:
        self.own = own
        self.shared = _shared_limit.get()
        self.token: contextvars.Token[Slot | None] | None = None

    async def acquire(self) -> None:
        await self.own.acquire()
        if self.shared is not None:
            try:
                await self.shared.acquire()
            except BaseException:
                self.own.release()
                raise

    def release(self) -> None:
        if self.shared is not None:
            self.shared.release()
        self.own.release()

    async def __aenter__(self) -> None:
        await self.acquire()
        self.token = _current_slot.set(self)
        for hook in (_call_gate.get(), _call_listener.get()):
            if hook is not None:
                try:
                    hook()
                except BaseException:
                    await self.__aexit__()
                    raise

    async def __aexit__(self, *exc: object) -> None:
        if self.token is not None:
            _current_slot.reset(self.token)
        self.release()


_current_slot: contextvars.ContextVar[Slot | None] = contextvars.ContextVar(
    "pytest_rigging_current_slot", default=None
)


@contextlib.asynccontextmanager
async def slot_released() -> t.AsyncIterator[None]:
    """Give the current call's slot back for the length of this block: a provider waiting
    to retry (backoff, `Retry-After`) must not hold a place that another call could use.
    The slot is taken again before the block's caller goes on."""
    slot = _current_slot.get()
    if slot is None:
        yield
        return
    slot.release()
    try:
        yield
    finally:
        await slot.acquire()


_call_listener: contextvars.ContextVar[t.Callable[[], None] | None] = contextvars.ContextVar(
    "pytest_rigging_call_listener", default=None
)
_call_gate: contextvars.ContextVar[t.Callable[[], None] | None] = contextvars.ContextVar(
    "pytest_rigging_call_gate", default=None
)


def calls_gated(
    gate: t.Callable[[], None],
) -> contextlib.AbstractContextManager[t.Callable[[], None] | None]:
    """Within this block (and the tasks it starts), `gate()` runs as each generator call
    takes its slot, before the request goes out; what it raises, the call raises instead
    of starting (a budget that is spent)."""
    return in_force(_call_gate, gate)


def calls_heard(
    listener: t.Callable[[], None],
) -> contextlib.AbstractContextManager[t.Callable[[], None] | None]:
    """Within this block (and the tasks it starts), `listener()` runs as each generator
    call takes its slot, just before the request goes out: how a caller learns that a
    call was sent, and so was paid for, even if its answer never arrives."""
    return in_force(_call_listener, listener)
