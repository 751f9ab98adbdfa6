"""The engine shared by chat and completion pipelines.

A pipeline is a generation followed by steps: `then` (per result), `until_parsed_as`
(per result, may regenerate) and `map` (over all results at once, a barrier). A run
turns its inputs into jobs (generator, input, params), and runs each stretch of per-result
steps for all jobs concurrently under each generator's `max_connections`, keeping input
order. Failures are caught per job according to `on_failed`.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import inspect
import typing as t
from dataclasses import dataclass, field

from pydantic import ValidationError

from pytest_rigging._concurrency import bounded_map, in_force
from pytest_rigging.error import (
    ExhaustedMaxRoundsError,
    GenerationError,
    MaxDepthError,
    MissingModelError,
    ProcessingError,
)
from pytest_rigging.generator.base import GenerateParams, Generator, Usage, get_generator

if t.TYPE_CHECKING:
    from typing_extensions import Self

    from pytest_rigging._result import Result
    from pytest_rigging.model import Model

FailMode = t.Literal["raise", "skip", "include"]
FAIL_MODES: tuple[FailMode, ...] = ("raise", "skip", "include")
DEFAULT_MAX_ROUNDS = 5
DEFAULT_MAX_DEPTH = 20
"""How deep `then`/`map` callbacks may nest pipeline runs (rigging's default)."""

DEFAULT_CAUGHT: tuple[type[BaseException], ...] = (
    ExhaustedMaxRoundsError,
    MissingModelError,
    ValidationError,
    GenerationError,
)
"""Errors `on_failed="skip"`/`"include"` absorb without being told: a model that never
produced a parsable answer, and a call that failed for infrastructure reasons."""

ResultT = t.TypeVar("ResultT", bound="Result")  # a Chat or a Completion

Observer = t.Callable[[t.Sequence[t.Any], bool], None]
_observer: contextvars.ContextVar[Observer | None] = contextvars.ContextVar(
    "pytest_rigging_observer", default=None
)
_nested: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pytest_rigging_nested", default=False
)
_depth: contextvars.ContextVar[tuple[int, int | None]] = contextvars.ContextVar(
    "pytest_rigging_depth", default=(0, None)
)
"""How deep the running callback is nested in pipeline runs, and how deep it may go (the
tightest `max_depth` of the callbacks it runs inside)."""

WatchCallback = t.Callable[[list[t.Any]], t.Any]
"""`watch` callbacks: called with every run's results (sync or async)."""


def current_observer() -> Observer | None:
    """The observer in force here, to carry it into work run on another thread's loop."""
    return _observer.get()


def observe(callback: Observer | None) -> contextlib.AbstractContextManager[Observer | None]:
    """Within this block, each outermost pipeline run reports what it finished to
    `callback(results, parse_required)`: every final result, failed ones included, also
    the one whose failure a `raise` run raises. Runs nested inside a run's callbacks
    (a `continue_` in a map step) are part of that run and are not reported. None
    stops observing."""
    return in_force(_observer, callback)


InputT = t.TypeVar("InputT")


@dataclass
class Job(t.Generic[InputT]):
    """One unit of a run: what to send, to which generator, with which merged params."""

    generator: Generator
    input: InputT
    params: GenerateParams


@dataclass(frozen=True)
class ThenStep:
    """`then(callback)`: per result."""

    callback: t.Callable[[t.Any], t.Any]
    max_depth: int = DEFAULT_MAX_DEPTH


@dataclass(frozen=True)
class MapStep:
    """`map(callback)`: once over all results of a run (a barrier between segments)."""

    callback: t.Callable[[list[t.Any]], t.Any]
    max_depth: int = DEFAULT_MAX_DEPTH


@dataclass(frozen=True)
class ParseStep:
    """`until_parsed_as(...)`: per result, regenerating until the models parse."""

    models: tuple[type[Model], ...]
    max_rounds: int
    attempt_recovery: bool
    catch: bool = True


Step = ThenStep | MapStep | ParseStep
ResultStep = ThenStep | ParseStep
"""The steps that run per result, between map barriers."""


@dataclass
class _Segment:
    """A map barrier (None for the first segment) and the per-result steps after it."""

    barrier: MapStep | None
    steps: list[ResultStep] = field(default_factory=list)


@dataclass
class Tracker(t.Generic[ResultT]):
    """The latest result of one job, so a failure can report what the model last said."""

    current: ResultT | None = None


async def maybe_await(value: t.Any) -> t.Any:
    return await value if inspect.isawaitable(value) else value


def callable_name(callback: t.Any) -> str:
    return str(
        getattr(callback, "__qualname__", None) or getattr(callback, "__name__", repr(callback))
    )


class PipelineStepContextManager:
    """What `pipeline.step()` gives. A `then` callback may return it, as rigging 3 code
    does to run the pipeline for another round: its pipeline is run, as a returned
    pipeline would be. Stepping through a run with `async with pipeline.step()` is not
    supported: the engine runs per-chat steps concurrently, with no point to pause at."""

    def __init__(self, pipeline: Pipeline[t.Any, t.Any]) -> None:
        self.pipeline = pipeline

    async def __aenter__(self) -> t.NoReturn:
        raise NotImplementedError(
            "stepping through a pipeline run is not supported: return pipeline.step() (or "
            "the pipeline) from a then callback to run it, and watch chats with then/watch"
        )

    async def __aexit__(self, *exc_info: object) -> None:
        return None


async def _nested_call(callback: t.Callable[[t.Any], t.Any], value: t.Any, max_depth: int) -> t.Any:
    """`callback(value)` one level deeper: pipeline runs it starts (or returns, which are
    run here) may nest at most `max_depth` levels."""
    depth, outer = _depth.get()
    token = _depth.set((depth + 1, max_depth if outer is None else min(max_depth, outer)))
    try:
        returned = await maybe_await(callback(value))
        if isinstance(returned, PipelineStepContextManager):
            returned = returned.pipeline
        if isinstance(returned, Pipeline):
            returned = await returned.run()
        return returned
    finally:
        _depth.reset(token)


def check_callbacks(
    registered: t.Sequence[t.Any],
    callbacks: t.Sequence[t.Any],
    *,
    allow_duplicates: bool,
    kind: str,
    need_async: bool = False,
) -> None:
    """Refuse what `then`/`map`/`watch` can't take: a non-callable, a sync function where
    only async ones are run, and (unless allowed) a callback already `registered`."""
    seen = list(registered)
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(f"{kind} takes callables, got {type(callback).__name__}")
        if need_async and not inspect.iscoroutinefunction(callback):
            raise TypeError(f"{kind} callback {callable_name(callback)!r} must be async")
        if not allow_duplicates and callback in seen:
            raise ValueError(
                f"{kind} callback {callable_name(callback)!r} is already registered: "
                "pass allow_duplicates=True to run it again"
            )
        seen.append(callback)


def add_callbacks(
    registered: list[t.Any],
    callbacks: t.Sequence[t.Any],
    *,
    allow_duplicates: bool,
    kind: str,
    need_async: bool = False,
) -> None:
    """`check_callbacks`, then add them to `registered`."""
    check_callbacks(
        registered, callbacks, allow_duplicates=allow_duplicates, kind=kind, need_async=need_async
    )
    registered.extend(callbacks)


def fit_batch(
    inputs: t.Sequence[InputT], params: t.Sequence[GenerateParams | None]
) -> list[tuple[InputT, GenerateParams | None]]:
    """Pair inputs with params, broadcasting whichever side has length 1."""
    if not inputs and len(params) <= 1:
        return []
    if len(inputs) == 1 and len(params) > 1:
        inputs = list(inputs) * len(params)
    elif len(params) == 1 and len(inputs) > 1:
        params = list(params) * len(inputs)
    if len(inputs) != len(params):
        raise ValueError(
            f"run_batch got {len(inputs)} inputs and {len(params)} params: "
            "the lengths must match, or one side must have length 1"
        )
    return list(zip(inputs, params, strict=True))


def as_params_list(
    params: GenerateParams | t.Sequence[GenerateParams | None] | None,
) -> list[GenerateParams | None]:
    if params is None or isinstance(params, GenerateParams):
        return [params]
    return list(params)


def check_fail_mode(on_failed: str) -> FailMode:
    if on_failed not in FAIL_MODES:
        raise ValueError(f"on_failed must be one of {', '.join(FAIL_MODES)}, got {on_failed!r}")
    return on_failed


def recovery_message(models: t.Sequence[type[Model]], error: BaseException) -> str:
    """The user message that tells the model what failed and asks for a full rewrite."""
    tag = "validation-error" if isinstance(error, ValidationError) else "system-error"
    examples = "\n".join(m.xml_example() for m in models)
    return (
        f"<{tag}>\n{error}\n</{tag}>\n\n"
        "Your previous message could not be read. Rewrite your whole message, "
        f"including all of the required xml elements, like this:\n{examples}"
    )


class Pipeline(abc.ABC, t.Generic[ResultT, InputT]):
    """What chat and completion pipelines share: steps, params, metadata, failure modes."""

    def __init__(
        self,
        generator: Generator,
        *,
        params: GenerateParams | None = None,
        metadata: dict[str, t.Any] | None = None,
    ) -> None:
        self.generator = generator
        self.params = params
        self.metadata: dict[str, t.Any] = dict(metadata or {})
        self.steps: list[Step] = []
        self.caught: tuple[type[BaseException], ...] = DEFAULT_CAUGHT
        self.excluded: tuple[type[BaseException], ...] = ()
        self.on_failed: FailMode = "raise"
        self.watchers: list[WatchCallback] = list(generator.watchers)
        self.wrapper: t.Callable[[t.Any], t.Any] | None = None

    # Subclasses: how to generate, regenerate and fail one result.

    @abc.abstractmethod
    async def _generate(self, job: Job[InputT]) -> ResultT:
        """The first result of `job`."""

    @abc.abstractmethod
    async def _regenerate(self, result: ResultT, dialog: list[t.Any]) -> ResultT:
        """Another try at what `result` was asked, `dialog` (the failed replies and the
        requests to rewrite them) following what was sent."""

    @abc.abstractmethod
    def _parse_text(self, result: ResultT) -> str:
        """The text `until_parsed_as` parses."""

    @abc.abstractmethod
    def _recovery_dialog(self, result: ResultT, message: str) -> list[t.Any]:
        """What a regeneration adds to its dialog after `result` failed to parse."""

    @abc.abstractmethod
    def _failed(self, job: Job[InputT], result: ResultT | None, error: BaseException) -> ResultT:
        """`result` (or, when the job failed before it had one, a new result) marked
        failed with `error`."""

    @abc.abstractmethod
    def _fit_inputs(self, many: t.Any) -> list[InputT]:
        """`run_batch`'s inputs, one per result."""

    async def _follow_up(self, tracker: Tracker[ResultT]) -> ResultT:
        """What a fresh result leads to before the steps see it (a chat's tool calls
        answered, round after round), `tracker.current` kept at the latest."""
        assert tracker.current is not None
        return tracker.current

    _blank: InputT
    """The input of a run that adds nothing to the pipeline's own."""

    @abc.abstractmethod
    def clone(self) -> Self:
        """A copy to configure apart: steps and callbacks copied, the generator shared."""

    def _copy_into(self, other: Pipeline[ResultT, InputT]) -> None:
        other.steps = list(self.steps)
        other.caught = self.caught
        other.excluded = self.excluded
        other.on_failed = self.on_failed
        other.watchers = list(self.watchers)
        other.wrapper = self.wrapper

    # Building

    def then(
        self,
        *callbacks: t.Callable[[ResultT], t.Any],
        max_depth: int = DEFAULT_MAX_DEPTH,
        allow_duplicates: bool = False,
    ) -> Self:
        """Run each `callback(result)` on each result, in order (sync or async).

        A callback may return a new result (replacing it), None (keeping it), or a
        pipeline, which is run and whose result replaces it. Pipeline runs a callback
        starts may nest `max_depth` levels deep; deeper raises `MaxDepthError`.
        """
        registered = [s.callback for s in self.steps if isinstance(s, ThenStep)]
        check_callbacks(registered, callbacks, allow_duplicates=allow_duplicates, kind="then")
        self.steps.extend(ThenStep(callback, max_depth) for callback in callbacks)
        return self

    def map(
        self,
        *callbacks: t.Callable[[list[ResultT]], t.Any],
        max_depth: int = DEFAULT_MAX_DEPTH,
        allow_duplicates: bool = False,
    ) -> Self:
        """Run each `callback(results)` once over all (unfailed) results of a run.

        It must return as many results as it was given; this step waits for every result
        of the run to reach it. `max_depth` as for `then`.
        """
        registered = [s.callback for s in self.steps if isinstance(s, MapStep)]
        check_callbacks(registered, callbacks, allow_duplicates=allow_duplicates, kind="map")
        self.steps.extend(MapStep(callback, max_depth) for callback in callbacks)
        return self

    def watch(self, *callbacks: WatchCallback, allow_duplicates: bool = False) -> Self:
        """Call each `callback(results)` with the results of every run of this pipeline
        (sync or async), failed ones included, after the run's steps: to log or store
        them (`pytest_rigging.watchers`)."""
        add_callbacks(self.watchers, callbacks, allow_duplicates=allow_duplicates, kind="watch")
        return self

    def wrap(self, func: t.Callable[[t.Any], t.Any]) -> Self:
        """Wrap this pipeline's generator calls in `func` (a retry or backoff decorator of
        your own), around each attempt as `Generator.wrap` does. Unlike rigging's, the
        generator is left as it is: other pipelines on it (the plugin shares one per
        model) stay unwrapped, and chats still name it as their generator."""
        if not callable(func):
            raise TypeError(f"wrap takes a decorator (a callable), got {type(func).__name__}")
        self.wrapper = func
        return self

    def until_parsed_as(
        self,
        *models: type[Model],
        max_rounds: int | None = None,
        attempt_recovery: bool = True,
        max_depth: int | None = None,
        catch: bool = True,
    ) -> Self:
        """Require every model in `models` to parse from the reply.

        The model gets at most `max_rounds` replies in all (default 5): the seed's
        words; rigging 3 counts recoveries instead, `max_depth` (replies = max_depth + 1).
        With `attempt_recovery`, each retry first tells the model what failed and asks
        for its whole message again, and the result keeps that whole dialog (`chat.all`);
        without it, the retry just asks again. Exhaustion raises `MaxDepthError` (an
        `ExhaustedMaxRoundsError`; absorbed by `skip` and `include`). `catch=False`
        raises the first parse error instead of retrying.
        """
        from pytest_rigging.model import is_model

        if not models:
            raise ValueError("until_parsed_as needs at least one model")
        for model in models:
            if not is_model(model):
                raise TypeError(f"until_parsed_as takes Model subclasses, got {model!r}")
        if max_rounds is not None and max_depth is not None:
            raise ValueError("give max_rounds (replies) or max_depth (recoveries), not both")
        if max_depth is not None and max_depth < 0:
            raise ValueError(f"max_depth must be at least 0, got {max_depth}")
        rounds = max_depth + 1 if max_depth is not None else max_rounds or DEFAULT_MAX_ROUNDS
        if max_rounds is not None and max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        self.steps.append(ParseStep(models, rounds, attempt_recovery, catch))
        return self

    def catch(
        self,
        *errors: type[BaseException],
        on_failed: FailMode | None = None,
        exclude: t.Sequence[type[BaseException]] | None = None,
    ) -> Self:
        """Also absorb `errors` (per result), never absorb `exclude` (even the default
        ones), and set the default `on_failed` mode."""
        self.caught = tuple(dict.fromkeys((*self.caught, *errors)))
        self.excluded = tuple(dict.fromkeys((*self.excluded, *(exclude or ()))))
        if on_failed is not None:
            self.on_failed = check_fail_mode(on_failed)
        return self

    def with_(self, params: GenerateParams | None = None, **kwargs: t.Any) -> Self:
        """Generation params for every run of this pipeline (over the generator's).

        As in rigging: the first call sets them on this pipeline; once params are set,
        a call returns a new pipeline with them merged, so variants built from one base
        never share params."""
        update = params if params is not None else GenerateParams(**kwargs)
        if self.params is None:
            self.params = update
            return self
        other = self.clone()
        other.params = self.params.merge_with(update)
        return other

    def step(self) -> PipelineStepContextManager:
        """For rigging 3 code whose `then` callbacks return `pipeline.step()` to run
        another round; see `PipelineStepContextManager`."""
        return PipelineStepContextManager(self)

    def meta(self, **kwargs: t.Any) -> Self:
        """Metadata given to every result of this pipeline."""
        self.metadata.update(kwargs)
        return self

    # Running

    def _jobs(
        self,
        pairs: t.Iterable[tuple[InputT, GenerateParams | None]],
        generator: Generator | None = None,
    ) -> list[Job[InputT]]:
        """Jobs with params merged generator < pipeline < call, once per params set."""
        generator = generator or self.generator
        merged: dict[int, GenerateParams] = {}
        jobs = []
        for input, params in pairs:
            key = id(params)
            if key not in merged:
                merged[key] = generator.params.merge_with(self.params, params)
            jobs.append(Job(generator, input, merged[key]))
        return jobs

    async def run(
        self,
        *,
        name: str | None = None,
        on_failed: FailMode | None = None,
        allow_failed: bool = False,
    ) -> ResultT:
        """One result. `on_failed="include"` (or rigging's `allow_failed=True`) returns a
        failed result instead of raising. `name` is accepted as rigging's (which names
        its tracing span with it; there is no tracing here)."""
        if allow_failed:
            on_failed = "include"
        if (on_failed or self.on_failed) == "skip":
            raise ValueError(
                "on_failed='skip' has nothing to skip to in a single run: "
                "use 'include' or 'raise', or run_many/run_batch"
            )
        return (await self._execute(self._jobs([(self._blank, None)]), on_failed))[0]

    async def run_many(
        self,
        count: int,
        *,
        params: GenerateParams | t.Sequence[GenerateParams | None] | None = None,
        name: str | None = None,
        on_failed: FailMode | None = None,
    ) -> list[ResultT]:
        """`count` results from the same input (params: one set, or one per result)."""
        if count < 0:
            raise ValueError(f"run_many needs a count of 0 or more, got {count}")
        pairs = fit_batch([self._blank] * count, as_params_list(params)) if count else []
        return await self._execute(self._jobs(pairs), on_failed)

    async def run_batch(
        self,
        many: t.Any,
        params: GenerateParams | t.Sequence[GenerateParams | None] | None = None,
        *,
        name: str | None = None,
        on_failed: FailMode | None = None,
    ) -> list[ResultT]:
        """One result per input/params pair, each input added after the pipeline's own.

        A bare string is one input. Whichever side has length 1 is repeated to fit the
        other; other lengths that differ raise `ValueError`.
        """
        pairs = fit_batch(self._fit_inputs(many), as_params_list(params))
        return await self._execute(self._jobs(pairs), on_failed)

    async def run_over(
        self,
        *generators: Generator | str,
        include_original: bool = True,
        name: str | None = None,
        on_failed: FailMode | None = None,
    ) -> list[ResultT]:
        """One result per generator (identifiers or instances), the pipeline's own last."""
        resolved = [g if isinstance(g, Generator) else get_generator(g) for g in generators]
        if include_original:
            resolved.append(self.generator)
        if not resolved:
            raise ValueError("run_over needs at least one generator")
        jobs = [job for g in resolved for job in self._jobs([(self._blank, None)], g)]
        return await self._execute(jobs, on_failed)

    async def _execute(self, jobs: list[Job[InputT]], on_failed: FailMode | None) -> list[ResultT]:
        mode = check_fail_mode(on_failed or self.on_failed)
        depth, max_depth = _depth.get()
        if max_depth is not None and depth > max_depth:
            raise MaxDepthError.of_depth(
                max_depth, f"a callback started a pipeline run {depth} levels deep"
            )
        observer = _observer.get()
        if observer is None or _nested.get():
            results = await self._run_jobs(jobs, mode, [])
        else:
            token = _nested.set(True)
            raised: list[ResultT] = []
            try:
                results = await self._run_jobs(jobs, mode, raised)
            except BaseException:
                observer(raised, self._parses)
                raise
            finally:
                _nested.reset(token)
            observer(results, self._parses)
        for watcher in self.watchers:
            await maybe_await(watcher(list(results)))
        if mode == "skip":
            results = [r for r in results if not r.failed]
        return self._listed(results)

    def _listed(self, results: list[ResultT]) -> list[ResultT]:
        """The list type runs return (`ChatList` for chats)."""
        return results

    @property
    def _parses(self) -> bool:
        return any(isinstance(step, ParseStep) for step in self.steps)

    async def _run_jobs(
        self, jobs: list[Job[InputT]], mode: FailMode, raised: list[ResultT]
    ) -> list[ResultT]:
        """Every job's final result in order, failed ones included; in `raise` mode the
        first caught failure is appended to `raised`, then raised."""
        segments = self._segments()

        def fail(index: int, current: ResultT | None, error: Exception) -> ResultT:
            if not isinstance(error, self.caught) or isinstance(error, self.excluded):
                raise error
            failed = self._failed(jobs[index], current, error)
            failed.latency += getattr(error, "latency", 0.0)  # the failed attempts' time
            if mode == "raise":
                raised.append(failed)
                raise error
            return failed

        async def first(index: int) -> ResultT:
            tracker: Tracker[ResultT] = Tracker()
            try:
                tracker.current = await self._generate(jobs[index])
                tracker.current = await self._follow_up(tracker)
                return await self._run_steps(tracker, segments[0].steps)
            except Exception as error:
                return fail(index, tracker.current, error)

        indexes = list(range(len(jobs)))
        results = await _fan_out(first, indexes, lambda i: jobs[i].generator)
        for segment in segments[1:]:
            assert segment.barrier is not None  # only the first segment has none
            callback = segment.barrier.callback
            live = [i for i, r in enumerate(results) if not r.failed]
            try:
                mapped = await _nested_call(
                    callback, [results[i] for i in live], segment.barrier.max_depth
                )
            except Exception as error:
                # A map sees the results together, so its failure is each one's.
                for i in live:
                    results[i] = fail(i, results[i], error)
                continue
            if not isinstance(mapped, list) or len(mapped) != len(live):
                got = len(mapped) if isinstance(mapped, list) else type(mapped).__name__
                raise ProcessingError(
                    f"map callback {getattr(callback, '__name__', callback)!r} "
                    f"returned {got} results for {len(live)}: it must return one per result"
                )
            for i, result in zip(live, mapped, strict=True):
                results[i] = result
            if segment.steps:

                async def rest(index: int, steps: list[ResultStep] = segment.steps) -> ResultT:
                    tracker: Tracker[ResultT] = Tracker(results[index])
                    try:
                        return await self._run_steps(tracker, steps)
                    except Exception as error:
                        return fail(index, tracker.current, error)

                done = await _fan_out(rest, live, lambda i: jobs[i].generator)
                for i, result in zip(live, done, strict=True):
                    results[i] = result
        return results

    def _segments(self) -> list[_Segment]:
        segments = [_Segment(None)]
        for step in self.steps:
            if isinstance(step, MapStep):
                segments.append(_Segment(step))
            else:
                segments[-1].steps.append(step)
        return segments

    async def _run_steps(self, tracker: Tracker[ResultT], steps: list[ResultStep]) -> ResultT:
        assert tracker.current is not None
        for step in steps:
            if isinstance(step, ParseStep):
                tracker.current = await self._until_parsed(tracker, step)
                continue
            returned = await _nested_call(step.callback, tracker.current, step.max_depth)
            if returned is not None:
                if not hasattr(returned, "failed"):
                    name = getattr(step.callback, "__name__", step.callback)
                    raise ProcessingError(
                        f"then callback {name!r} returned {type(returned).__name__}: "
                        "return a result, a pipeline or None"
                    )
                tracker.current = returned
        return tracker.current

    async def _until_parsed(self, tracker: Tracker[ResultT], step: ParseStep) -> ResultT:
        assert tracker.current is not None
        original = tracker.current
        dialog: list[t.Any] = []
        rounds = 0
        latency, usage = 0.0, None
        while True:
            current = tracker.current
            latency += current.latency
            usage = add_usage(usage, current.usage)
            if rounds:  # the result carries what all of its rounds cost
                current.latency, current.usage = latency, usage
            error = _parse_error(self._parse_text(current), step.models)
            if error is None:
                current.recovery_rounds = original.recovery_rounds + rounds
                return current
            if not step.catch:
                raise error
            rounds += 1
            if rounds >= step.max_rounds:
                current.recovery_rounds = original.recovery_rounds + rounds - 1
                raise MaxDepthError(step.max_rounds, str(error)) from error
            if step.attempt_recovery:
                dialog.extend(self._recovery_dialog(current, recovery_message(step.models, error)))
            tracker.current = await self._regenerate(original, dialog)
            tracker.current = await self._follow_up(tracker)


def add_usage(total: Usage | None, more: Usage | None) -> Usage | None:
    if more is None:
        return total
    return more if total is None else total + more


def _parse_error(text: str, models: t.Sequence[type[Model]]) -> Exception | None:
    for model in models:
        try:
            model.one_from_text(text)
        except (MissingModelError, ValidationError) as error:
            return error
    return None


async def _fan_out(
    fn: t.Callable[[t.Any], t.Awaitable[ResultT]],
    items: t.Sequence[t.Any],
    generator_of: t.Callable[[t.Any], Generator],
) -> list[ResultT]:
    """bounded_map with one pool per generator, each sized by its `max_connections`."""
    if not items:
        return []
    groups: dict[int, list[int]] = {}
    generators: dict[int, Generator] = {}
    for index, item in enumerate(items):
        generator = generator_of(item)
        groups.setdefault(id(generator), []).append(index)
        generators[id(generator)] = generator
    if len(groups) == 1:
        return await bounded_map(fn, items, next(iter(generators.values())).max_connections)
    results: list[t.Any] = [None] * len(items)

    async def run_group(key: int) -> None:
        indexes = groups[key]
        done = await bounded_map(fn, [items[i] for i in indexes], generators[key].max_connections)
        for index, result in zip(indexes, done, strict=True):
            results[index] = result

    await bounded_map(run_group, list(groups), len(groups))
    return results
