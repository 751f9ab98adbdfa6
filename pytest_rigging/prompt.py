"""Prompts: a typed function whose docstring is the prompt and whose return type is parsed.

```python
@rg.prompt(generator_id="gpt-4o-mini")
async def capital(country: str) -> Answer:
    "What is the capital of {{ country }}?"

answer = await capital("France")
```

The docstring is a Jinja2 template over the function's arguments; arguments it does not
mention are appended as `<name>value</name>` blocks. The return annotation decides the
output: `str` (the reply's text), `Chat` (the whole chat), or a `Model` subclass (parsed,
with recovery, and its expected shape added to the prompt).
"""

from __future__ import annotations

import inspect
import sys
import types
import typing as t

from pytest_rigging._pipeline import FailMode, as_params_list
from pytest_rigging.chat import Chat, ChatPipeline
from pytest_rigging.generator.base import GenerateParams, Generator, get_generator
from pytest_rigging.model import Model, kebab

P = t.ParamSpec("P")
R = t.TypeVar("R")


class Prompt(t.Generic[P, R]):
    """A prompt function bound to a generator or pipeline; see the module docstring."""

    def __init__(
        self,
        func: t.Callable[P, t.Any],
        *,
        generator: Generator | None = None,
        pipeline: ChatPipeline | None = None,
        generator_id: str | None = None,
        params: GenerateParams | None = None,
    ) -> None:
        self.func = func
        self.signature = inspect.signature(func)
        self.template = inspect.cleandoc(func.__doc__ or "")
        if not self.template:
            raise ValueError(f"prompt {func.__name__!r} needs a docstring: it is the prompt")
        hints = t.get_type_hints(func)
        self.output: type[t.Any] = hints.get("return", str)
        if self.output is type(None):
            self.output = str
        if not (self.output in (str, Chat) or _is_model(self.output)):
            raise TypeError(
                f"prompt {func.__name__!r} returns {self.output!r}: "
                "use str, Chat or a Model subclass"
            )
        if generator_id is not None:
            generator = get_generator(generator_id)
        self.pipeline = pipeline or (generator.chat() if generator is not None else None)
        self.params = params
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__

    def bind(self, target: Generator | ChatPipeline | str) -> Prompt[P, R]:
        """This prompt on another generator, identifier or pipeline."""
        if isinstance(target, str):
            target = get_generator(target)
        if isinstance(target, Generator):
            return Prompt(self.func, generator=target, params=self.params)
        return Prompt(self.func, pipeline=target, params=self.params)

    def render(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The user message these arguments produce."""
        import jinja2
        import jinja2.meta

        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        mentioned = jinja2.meta.find_undeclared_variables(environment.parse(self.template))
        text = environment.from_string(self.template).render(**values)
        extra = [f"<{kebab(k)}>{v}</{kebab(k)}>" for k, v in values.items() if k not in mentioned]
        if extra:
            text += "\n\n" + "\n".join(extra)
        if _is_model(self.output):
            text += f"\n\nProduce the output in this form:\n{self.output.xml_example()}"
        return text

    def _pipeline(self) -> ChatPipeline:
        if self.pipeline is None:
            raise ValueError(
                f"prompt {self.__name__!r} has no generator: pass generator_id= to "
                "@prompt, or bind() it"
            )
        pipeline = self.pipeline.clone()
        if self.params is not None:
            pipeline.with_(self.params)
        if _is_model(self.output):
            pipeline.until_parsed_as(self.output, attempt_recovery=True)
        return pipeline

    def _outputs(self, chats: list[Chat], on_failed: FailMode | None) -> list[R]:
        if on_failed == "include" and self.output is not Chat:
            raise ValueError("on_failed='include' needs a prompt that returns Chat")
        return [self._output(chat) for chat in chats]

    def _output(self, chat: Chat) -> R:
        if self.output is Chat:
            return t.cast(R, chat)
        if self.output is str:
            return t.cast(R, chat.last.content)
        return t.cast(R, chat.last.parse(self.output))

    async def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Render, generate and return the output for one set of arguments."""
        chat = await self._pipeline().add(self.render(*args, **kwargs)).run()
        return self._output(chat)

    __call__ = run

    async def run_many(
        self, count: int, /, *args: t.Any, on_failed: FailMode | None = None, **kwargs: t.Any
    ) -> list[R]:
        """`count` outputs for the same arguments."""
        pipeline = self._pipeline().add(self.render(*args, **kwargs))
        return self._outputs(await pipeline.run_many(count, on_failed=on_failed), on_failed)

    async def run_batch(
        self,
        many: t.Sequence[t.Any],
        params: GenerateParams | t.Sequence[GenerateParams | None] | None = None,
        *,
        on_failed: FailMode | None = None,
    ) -> list[R]:
        """One output per argument set: a dict (keyword arguments), a tuple (positional
        arguments) or a single value (the only argument); a bare string or dict is one
        set. Params broadcast as in `ChatPipeline.run_batch`."""
        if isinstance(many, str | dict):
            many = [many]  # one argument set, not a sequence of them
        rendered = [self._render_item(item) for item in many]
        chats = await self._pipeline().run_batch(
            rendered, as_params_list(params), on_failed=on_failed
        )
        return self._outputs(chats, on_failed)

    async def run_over(
        self,
        generators: t.Sequence[Generator | str],
        /,
        *args: t.Any,
        include_original: bool = True,
        on_failed: FailMode | None = None,
        **kwargs: t.Any,
    ) -> list[R]:
        """One output per generator, the prompt's own last (with `include_original`)."""
        pipeline = self._pipeline().add(self.render(*args, **kwargs))
        chats = await pipeline.run_over(
            *generators, include_original=include_original, on_failed=on_failed
        )
        return self._outputs(chats, on_failed)

    def _render_item(self, item: t.Any) -> str:
        if isinstance(item, dict):
            return self.render(**item)
        if isinstance(item, tuple):
            return self.render(*item)
        return self.render(item)


def _is_model(value: t.Any) -> bool:
    return isinstance(value, type) and issubclass(value, Model)


@t.overload
def prompt(func: t.Callable[P, t.Awaitable[R]], /) -> Prompt[P, R]: ...


@t.overload
def prompt(
    *,
    generator: Generator | None = None,
    pipeline: ChatPipeline | None = None,
    generator_id: str | None = None,
    params: GenerateParams | None = None,
) -> t.Callable[[t.Callable[P, t.Awaitable[R]]], Prompt[P, R]]: ...


def prompt(
    func: t.Callable[..., t.Any] | None = None,
    /,
    *,
    generator: Generator | None = None,
    pipeline: ChatPipeline | None = None,
    generator_id: str | None = None,
    params: GenerateParams | None = None,
) -> t.Any:
    """Decorator: `@prompt` or `@prompt(generator_id=..., params=...)`."""

    def make(f: t.Callable[..., t.Any]) -> Prompt[t.Any, t.Any]:
        return Prompt(
            f, generator=generator, pipeline=pipeline, generator_id=generator_id, params=params
        )

    return make(func) if func is not None else make


class _CallableModule(types.ModuleType):
    """`rg.prompt` is both this module and the decorator, as in rigging. Importing the
    module makes Python set it as the package's `prompt` attribute, in place of the
    decorator the package exports; so the module itself decorates too."""

    def __call__(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        return prompt(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
