"""Completions (a text and its continuation) and completion pipelines."""

from __future__ import annotations

import string
import time
import typing as t

from pytest_rigging._pipeline import Job, Pipeline
from pytest_rigging._result import Result, build
from pytest_rigging.generator.base import GenerateParams, Generator, generate_text
from pytest_rigging.message import ModelT

ThenCompletionCallback = t.Callable[["Completion"], t.Any]
"""What `then` takes: a completion in; a completion, None or a pipeline out."""
MapCompletionCallback = t.Callable[[list["Completion"]], t.Any]
"""What `map` takes: completions in, as many completions out."""


class Completion(Result):
    """`text` was sent, `generated` came back; `all` is both together."""

    text: str
    generated: str = ""

    def __init__(
        self, text: str, generated: str = "", generator: Generator | None = None, **kwargs: t.Any
    ) -> None:
        # a type checker knows only `Result`'s fields: pydantic validates this class's too
        own: dict[str, t.Any] = {"text": text, "generated": generated}
        super().__init__(generator=generator, **own, **kwargs)

    @property
    def all(self) -> str:
        return self.text + self.generated

    def __len__(self) -> int:
        return len(self.all)

    def __str__(self) -> str:
        return self.all

    def parse(self, model: type[ModelT]) -> ModelT:
        """The first valid element of `model` in the generated text."""
        return model.one_from_text(self.generated)[0]

    def clone(self, *, only_messages: bool = False) -> Completion:
        """A copy, and (unless `only_messages`) of everything else; the generator is shared."""
        new = Completion(self.text, self.generated, self.generator)
        return new if only_messages else self._copy_into(new)

    def _pipeline(self, text: str, generator: Generator | None) -> CompletionPipeline:
        return CompletionPipeline(
            self.generator_for_more(generator), text, params=self.params, metadata=self.metadata
        )

    def continue_(self, text: str = "") -> CompletionPipeline:
        """A pipeline that continues from the whole text so far, plus `text`."""
        return self._pipeline(self.all + text, None)

    def fork(self, text: str = "") -> CompletionPipeline:
        """A pipeline from the original text plus `text`."""
        return self._pipeline(self.text + text, None)

    def restart(
        self, *, generator: Generator | None = None, include_all: bool = False
    ) -> CompletionPipeline:
        return self._pipeline(self.all if include_all else self.text, generator)


def new_completion(
    text: str,
    generator: Generator,
    params: GenerateParams,
    metadata: dict[str, t.Any],
    generated: str = "",
    **cost: t.Any,
) -> Completion:
    """A completion the pipeline built itself (no validation: every part is typed)."""
    return build(
        Completion, generator, params, metadata, {"text": text, "generated": generated}, **cost
    )


class CompletionPipeline(Pipeline[Completion, str]):
    """A text, a generator and steps; the same run family as `ChatPipeline`.

    A batch input is a string, appended to the pipeline's text. `until_parsed_as` regenerates on a
    parse failure (text completion has no dialog to recover in).
    """

    def __init__(
        self,
        generator: Generator,
        text: str = "",
        *,
        params: GenerateParams | None = None,
        metadata: dict[str, t.Any] | None = None,
    ) -> None:
        super().__init__(generator, params=params, metadata=metadata)
        self.text = text
        self._blank = ""

    def __len__(self) -> int:
        return len(self.text)

    def __repr__(self) -> str:
        return (
            f"CompletionPipeline(generator={self.generator.to_identifier()!r}, "
            f"text={self.text[:40]!r}, steps={len(self.steps)})"
        )

    def clone(self) -> CompletionPipeline:
        other = CompletionPipeline(
            self.generator, self.text, params=self.params, metadata=self.metadata
        )
        self._copy_into(other)
        return other

    def add(self, text: str) -> CompletionPipeline:
        """Append `text` to this pipeline's text."""
        self.text += text
        return self

    def fork(self, text: str) -> CompletionPipeline:
        """A copy of this pipeline with `text` appended."""
        return self.clone().add(text)

    def apply(self, **kwargs: t.Any) -> CompletionPipeline:
        """A copy whose text has its `$name` placeholders filled (unknown ones stay)."""
        other = self.clone()
        other.text = string.Template(other.text).safe_substitute(**kwargs)
        return other

    apply_to_all = apply  # a completion has one text: rigging names both

    async def _generate(self, job: Job[str]) -> Completion:
        return await self._complete(
            job.generator, self.text + job.input, job.params, dict(self.metadata)
        )

    async def _regenerate(self, result: Completion, dialog: list[t.Any]) -> Completion:
        assert result.generator is not None and result.params is not None
        return await self._complete(result.generator, result.text, result.params, result.metadata)

    async def _complete(
        self, generator: Generator, text: str, params: GenerateParams, metadata: dict[str, t.Any]
    ) -> Completion:
        async with generator.slots():
            started = time.perf_counter()
            generated = await generate_text(generator, text, params, self.wrapper)
            latency = time.perf_counter() - started
        if generated.latency is not None:  # the provider's own count: its attempts only
            latency = generated.latency
        return new_completion(
            text,
            generator,
            params,
            metadata,
            generated.text,
            stop_reason=generated.stop_reason,
            usage=generated.usage,
            latency=latency,
            extra=generated.extra,
        )

    def _parse_text(self, result: Completion) -> str:
        return result.generated

    def _recovery_dialog(self, result: Completion, message: str) -> list[t.Any]:
        return []

    def _failed(self, job: Job[str], result: Completion | None, error: BaseException) -> Completion:
        if result is None:
            result = new_completion(
                self.text + job.input, job.generator, job.params, dict(self.metadata)
            )
        result.failed = True
        result.error = error
        return result

    def _fit_inputs(self, many: t.Any) -> list[str]:
        return [many] if isinstance(many, str) else list(many)
