"""Bounded, order-keeping, cleanly cancellable fan-out."""

from __future__ import annotations

import asyncio
import collections
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


class FairLimit:
    """`size` slots shared by several callers, each under a key (a generator).

    A key may be given a share (`set_share`): it holds at most that many slots, so a hanging
    or failing model can't keep the others waiting, however late their calls come; a key
    without one may hold them all. Beyond its share a key may borrow only slots that others
    gave back while they wait out a backoff (`release(stepping_away=True)`): those would
    sit idle, so they are lent (work-conserving), and each returns to its owner, which is
    under its share, at the next slot freed. Among the keys waiting that may take a slot,
    the one holding the fewest goes first. A slot free for the asking is taken at once, as
    an `asyncio.Semaphore`'s is: a call suspends only when it must wait."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._used = 0
        self._held: dict[int, int] = {}
        self._shares: dict[int, int] = {}
        self._away = 0
        """Slots given back by calls waiting out a backoff, not yet taken back."""
        self._waiting: dict[int, collections.deque[tuple[asyncio.Future[None], bool]]] = {}

    def set_share(self, key: int, share: int) -> None:
        """Hold `key` to `share` slots, but for what it borrows."""
        self._shares[key] = share

    def locked(self) -> bool:
        """Whether every slot is taken."""
        return self._used >= self.size

    async def acquire(self, key: int = 0, *, returning: bool = False) -> None:
        """Take a slot for `key`; `returning`: one it gave back for a backoff."""
        if not self._waiting and self._used < self.size and self._within(key):
            self._take(key, returning)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, collections.deque()).append((waiter, returning))
        self._grant()
        try:
            await waiter
        except BaseException:  # cancelled while waiting, or as the slot was handed over
            if waiter.done() and not waiter.cancelled():
                self.release(key)
            else:
                self._forget(key, waiter)
                if returning:
                    self.stay_away()
            raise

    def release(self, key: int = 0, *, stepping_away: bool = False) -> None:
        """Give `key`'s slot back; `stepping_away`: to take it again after a backoff."""
        held = self._held.get(key, 0)
        if not held:
            raise RuntimeError(f"FairLimit.release: key {key} holds no slot")
        if held > 1:
            self._held[key] = held - 1
        else:
            del self._held[key]
        self._used -= 1
        if stepping_away:
            self._away += 1
        self._grant()

    def stay_away(self) -> None:
        """A call that gave its slot back for a backoff won't take it again (cancelled)."""
        self._away -= 1

    def _within(self, key: int) -> bool:
        return self._held.get(key, 0) < self._shares.get(key, self.size)

    def _take(self, key: int, returning: bool) -> None:
        self._used += 1
        self._held[key] = self._held.get(key, 0) + 1
        if returning:
            self._away -= 1

    def _forget(self, key: int, waiter: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is None:
            return
        for entry in queue:
            if entry[0] is waiter:
                queue.remove(entry)
                break
        if not queue:
            del self._waiting[key]

    def _borrowed(self) -> int:
        return sum(
            max(0, held - self._shares.get(key, self.size)) for key, held in self._held.items()
        )

    def _grant(self) -> None:
        while self._used < self.size and self._waiting:
            within = [k for k in self._waiting if self._within(k)]
            if not within and self._away <= self._borrowed():
                return  # the rest wait for a slot within their share, or one to borrow
            # the fewest held first; ties: first come
            key = min(within or self._waiting, key=lambda k: self._held.get(k, 0))
            queue = self._waiting[key]
            waiter, returning = queue.popleft()
            if not queue:
                del self._waiting[key]
            if waiter.done():  # cancelled meanwhile
                continue
            waiter.set_result(None)
            self._take(key, returning)


_shared_limit: contextvars.ContextVar[FairLimit | None] = contextvars.ContextVar(
    "pytest_rigging_shared_limit", default=None
)


def shared_limit(limit: int | FairLimit) -> contextlib.AbstractContextManager[FairLimit | None]:
    """Within this block (and the tasks it starts), every generator call also takes a slot
    of one `FairLimit` (`limit` slots, or the one given): a bound across all generators,
    shared fairly between them, on top of each generator's own `max_connections`."""
    return in_force(_shared_limit, limit if isinstance(limit, FairLimit) else FairLimit(limit))


class Slot:
    """A generator's own slot, plus a slot of the shared limit when one is in force (under
    the generator's key: `key`). Taking it is when a call is heard (`calls_heard`), unless
    the provider `announces` its requests itself as they go out (`call_sent`).

    While held, it is the current slot of the task (and what it awaits), so that a
    provider waiting to retry can give it back for the wait (`slot_released`)."""

    __slots__ = ("announces", "held", "key", "own", "shared", "token")

    def __init__(self, own: asyncio.Semaphore, key: int, announces: bool = False) -> None:
        self.own = own
        self.key = key
        self.announces = announces
        self.shared = _shared_limit.get()
        self.held = False
        self.token: contextvars.Token[Slot | None] | None = None

    async def acquire(self, *, returning: bool = False) -> None:
        await self.own.acquire()
        if self.shared is not None:
            try:
                await self.shared.acquire(self.key, returning=returning)
            except BaseException:
                self.own.release()
                raise
        self.held = True

    def release(self, *, stepping_away: bool = False) -> None:
        self.held = False
        if self.shared is not None:
            self.shared.release(self.key, stepping_away=stepping_away)
        self.own.release()

    async def __aenter__(self) -> None:
        await self.acquire()
        self.token = _current_slot.set(self)
        listener = None if self.announces else _call_listener.get()
        for hook in (_call_gate.get(), listener):
            if hook is not None:
                try:
                    hook()
                except BaseException:
                    await self.__aexit__()
                    raise

    async def __aexit__(self, *exc: object) -> None:
        if self.token is not None:
            _current_slot.reset(self.token)
        if self.held:  # not when cancelled while taking it back after a backoff
            self.release()


_current_slot: contextvars.ContextVar[Slot | None] = contextvars.ContextVar(
    "pytest_rigging_current_slot", default=None
)


@contextlib.asynccontextmanager
async def slot_released() -> t.AsyncIterator[None]:
    """Give the current call's slot back for the length of this block: a provider waiting
    to retry (backoff, `Retry-After`) must not hold a place that another call could use
    (a `FairLimit` lends it meanwhile). The slot is taken again before the block's caller
    goes on, unless the wait is cancelled."""
    slot = _current_slot.get()
    if slot is None:
        yield
        return
    slot.release(stepping_away=True)
    try:
        yield
    except BaseException:  # cancelled during the wait: the call won't take it again
        if slot.shared is not None:
            slot.shared.stay_away()
        raise
    await slot.acquire(returning=True)


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
    call goes out (as its request is written, for providers that say so with `call_sent`;
    else as it takes its slot, just before): how a caller learns that a call was sent, and
    so may be paid for, even if its answer never arrives."""
    return in_force(_call_listener, listener)


def call_sent() -> None:
    """A provider's word that the current call's request has gone out (its headers
    written): what `calls_heard` listeners hear, for providers whose slots `announce`."""
    listener = _call_listener.get()
    if listener is not None:
        listener()
