"""Parsing models: pydantic classes that read themselves out of XML-ish model output.

Each `Model` owns a tag, the class name in kebab case (`CommaDelimitedAnswer` ->
`comma-delimited-answer`) unless `class Foo(Model, tag="x")` says otherwise. Model output
is prose more often than XML, so parsing is tolerant: text around the tags, attributes on
the opening tag, any letter case, and a tag named in prose before the real element (the
real element wins). It is also hostile-input safe: every scan is one pass over the text
with no backtracking across it, so cost is linear in the text's size.
"""

from __future__ import annotations

import re
import types
import typing as t
from functools import cache, lru_cache

from pydantic import BaseModel, ValidationError, field_validator

from pytest_rigging.error import InvalidModelSpecifiedError, MissingModelError

__all__ = [
    "Answer",
    "CommaDelimitedAnswer",
    "DelimitedAnswer",
    "Description",
    "Instructions",
    "Model",
    "NewlineDelimitedAnswer",
    "Question",
    "QuestionAnswer",
    "Thinking",
    "YesNoAnswer",
]

_UNESCAPE = re.compile(r"&(lt|gt|amp|quot|apos);")
_ENTITY_CHARS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

ModelT = t.TypeVar("ModelT", bound="Model")


def kebab(name: str) -> str:
    """`CommaDelimitedAnswer` -> `comma-delimited-answer`, `user_name` -> `user-name`."""
    return _CAMEL.sub("-", name).replace("_", "-").lower()


@lru_cache(maxsize=512)
def _tag_pattern(tag: str) -> re.Pattern[str]:
    # `[^<>]*` stops at the next angle bracket, so a failed attempt never scans further
    # than the next tag-like token: this is what keeps hostile text linear.
    return re.compile(rf"<(/?){re.escape(tag)}(?:\s[^<>]*)?>", re.IGNORECASE)


@lru_cache(maxsize=512)
def _simple_pattern(tag: str) -> re.Pattern[str]:
    return re.compile(
        rf"<{re.escape(tag)}(?:\s[^<>]*)?>([^<]*)</{re.escape(tag)}\s*>", re.IGNORECASE
    )


def find_elements(tag: str, text: str) -> list[tuple[int, int, int, int]]:
    """Every complete `<tag ...>...</tag>` in `text`, ordered by start position.

    Returns (start, inner_start, inner_end, end) tuples. A closing tag pairs with the
    nearest unmatched opening tag before it, so an opening tag mentioned in prose never
    swallows the real element that follows it.
    """
    opened: list[tuple[int, int]] = []
    found: list[tuple[int, int, int, int]] = []
    inside_another = False
    for match in _tag_pattern(tag).finditer(text):
        if not match.group(1):
            opened.append(match.span())
        elif opened:
            start, inner_start = opened.pop()
            inner_end, end = match.span()
            found.append((start, inner_start, inner_end, end))
            inside_another = inside_another or bool(opened)
    if inside_another:  # an element closed inside an open one: close order != start order
        found.sort()
    return found


def _clean(text: str) -> str:
    if "&" in text:
        text = _UNESCAPE.sub(lambda m: _ENTITY_CHARS[m.group(1)], text)
    return text.strip()


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _FieldPlan(t.NamedTuple):
    name: str
    tag: str
    model: type[Model] | None
    many: bool


def _unwrap(annotation: t.Any) -> tuple[t.Any, bool]:
    """Strip Optional/Annotated and report whether the field holds a list."""
    many = False
    while True:
        origin = t.get_origin(annotation)
        if origin is t.Annotated:
            annotation = t.get_args(annotation)[0]
        elif origin in (t.Union, types.UnionType):
            args = [a for a in t.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, many
            annotation = args[0]
        elif origin in (list, tuple, set, t.Sequence):
            many = True
            annotation = (t.get_args(annotation) or (str,))[0]
        else:
            return annotation, many


class Model(BaseModel):
    """Base class of every parsing model.

    A model with one scalar field takes the element's text (`Answer.content`); a model
    with several fields, or nested models, reads each field from a child element named
    after it (`user_name` -> `<user-name>`) or after the nested model's tag.
    """

    __xml_tag__: t.ClassVar[str] = "model"

    def __init_subclass__(cls, tag: str | None = None, **kwargs: t.Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__xml_tag__ = tag or kebab(cls.__name__)

    @classmethod
    def xml_tags(cls) -> str:
        """The empty element, as a prompt would show it: `<answer></answer>`."""
        return f"<{cls.__xml_tag__}></{cls.__xml_tag__}>"

    @classmethod
    def xml_start_tag(cls) -> str:
        return f"<{cls.__xml_tag__}>"

    @classmethod
    def xml_end_tag(cls) -> str:
        return f"</{cls.__xml_tag__}>"

    @classmethod
    def xml_example(cls) -> str:
        """An example of the expected shape, for prompts and recovery messages."""
        plans = _plan(cls)
        if plans is None:
            return cls.xml_tags()
        lines = [cls.xml_start_tag()]
        for plan in plans:
            inner = (
                plan.model.xml_example()
                if plan.model is not None
                else f"<{plan.tag}>...</{plan.tag}>"
            )
            lines.extend("  " + line for line in inner.splitlines())
        lines.append(cls.xml_end_tag())
        return "\n".join(lines)

    def to_pretty_xml(self) -> str:
        """This instance as XML, in the shape `from_text` reads back."""
        plans = _plan(type(self))
        tag = self.__xml_tag__
        if plans is None:
            value = next(iter(self.__dict__.values()), "")
            return f"<{tag}>{escape(str(value))}</{tag}>"
        lines = [f"<{tag}>"]
        for plan in plans:
            value = getattr(self, plan.name)
            for item in (value if plan.many else [value]) if value is not None else []:
                inner = (
                    item.to_pretty_xml()
                    if isinstance(item, Model)
                    else f"<{plan.tag}>{escape(str(item))}</{plan.tag}>"
                )
                lines.extend("  " + line for line in inner.splitlines())
        lines.append(f"</{tag}>")
        return "\n".join(lines)

    @classmethod
    def from_text(cls: type[ModelT], content: str | bytes) -> list[tuple[ModelT, slice]]:
        """Every valid element of this model in `content`, with its position, in order.

        Raises `MissingModelError` when there is no element at all, and the first
        element's `ValidationError` when elements exist but none is valid.
        """
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        results: list[tuple[ModelT, slice]] = []
        first_error: ValidationError | None = None
        tag = cls.__xml_tag__
        read = _reader(cls)

        def collect(elements: t.Iterable[tuple[str, int, int]]) -> int:
            nonlocal first_error
            seen = 0
            for inner, start, end in elements:
                seen += 1
                try:
                    results.append((read(inner), slice(start, end)))
                except ValidationError as error:
                    first_error = first_error or error
            return seen

        # Usually each closing tag directly follows its element's text: one regex
        # finds them all. When as many elements were found as there are closing
        # tags, each paired with the nearest opening tag before it, just as the
        # general pairing would; otherwise that pairing decides.
        simple = _simple_pattern(tag).finditer(content)
        if collect((m.group(1), m.start(), m.end()) for m in simple) != content.lower().count(
            f"</{tag}"
        ):
            results.clear()
            first_error = None
            spans = find_elements(tag, content)
            collect((content[a:b], start, end) for start, a, b, end in spans)
        if not results and first_error is None:
            raise MissingModelError(f"Failed to find '{cls.xml_tags()}' in text")
        if not results and first_error is not None:
            raise first_error
        return results

    @classmethod
    def one_from_text(cls: type[ModelT], content: str | bytes) -> tuple[ModelT, slice]:
        """The first valid element by position."""
        return cls.from_text(content)[0]


@cache
def _reader(cls: type[ModelT]) -> t.Callable[[str], ModelT]:
    """A function from an element's inner text to a validated `cls`, built once per class
    (parsing calls it once per element, so everything it can look up early, it does)."""
    validate = cls.__pydantic_validator__.validate_python
    plans = _plan(cls)
    if plans is None:
        name, info = next(iter(cls.model_fields.items()))
        child_tag = kebab(info.alias or name)

        def read_text(inner: str) -> ModelT:
            if "<" in inner:
                child = find_elements(child_tag, inner)
                if child:
                    inner = inner[child[0][1] : child[0][2]]
            return t.cast(ModelT, validate({name: _clean(inner)}))

        return read_text

    def read_fields(inner: str) -> ModelT:
        values: dict[str, t.Any] = {}
        for plan in plans:
            if plan.model is not None:
                read = _reader(plan.model)
                tag = plan.model.__xml_tag__
                found = [read(inner[s:e]) for _, s, e, _ in find_elements(tag, inner)]
            else:
                found = [_clean(inner[s:e]) for _, s, e, _ in find_elements(plan.tag, inner)]
            if plan.many:
                values[plan.name] = found
            elif found:
                values[plan.name] = found[0]
        return t.cast(ModelT, validate(values))

    return read_fields


@cache
def _plan(cls: type[Model]) -> tuple[_FieldPlan, ...] | None:
    """How to read each field of `cls`; None for a one-scalar-field (text) model."""
    plans = []
    for name, info in cls.model_fields.items():
        inner, many = _unwrap(info.annotation)
        nested = inner if isinstance(inner, type) and issubclass(inner, Model) else None
        alias = info.alias or name
        plans.append(_FieldPlan(name, nested.__xml_tag__ if nested else kebab(alias), nested, many))
    if not plans:
        raise InvalidModelSpecifiedError(f"{cls.__name__} has no fields to parse into")
    if len(plans) == 1 and plans[0].model is None and not plans[0].many:
        return None
    return tuple(plans)


class Answer(Model):
    content: str


class Question(Model):
    content: str


class Description(Model):
    content: str


class Instructions(Model):
    content: str


class Thinking(Model):
    content: str


class QuestionAnswer(Model):
    question: Question
    answer: Answer


class YesNoAnswer(Model):
    """Yes/no, true/false (any case, leading words only) as a bool."""

    boolean: bool

    @field_validator("boolean", mode="before")
    @classmethod
    def _read_yes_no(cls, value: t.Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text.startswith(("yes", "true")):
            return True
        if text.startswith(("no", "false")):
            return False
        raise ValueError(f"expected yes/no/true/false, got {str(value)[:40]!r}")

    @classmethod
    def xml_example(cls) -> str:
        return f"{cls.xml_start_tag()}yes/no{cls.xml_end_tag()}"


class DelimitedAnswer(Model):
    """A list in one element, split on whichever delimiter yields the most items."""

    content: str
    _delimiters: t.ClassVar[tuple[str, ...]] = (",", "-", "/", "|")

    @field_validator("content")
    @classmethod
    def _has_items(cls, value: str) -> str:
        if not cls._split(value):
            raise ValueError("expected at least one delimited item")
        return value

    @classmethod
    def _split(cls, content: str) -> list[str]:
        best: list[str] = []
        for delimiter in cls._delimiters:
            parts = [p.strip().strip("'\"`").strip() for p in content.split(delimiter)]
            parts = [p for p in parts if p]
            if len(parts) > len(best):
                best = parts
        return best

    @property
    def items(self) -> list[str]:
        return self._split(self.content)

    @classmethod
    def xml_example(cls) -> str:
        joiner = cls._delimiters[0] if cls._delimiters[0] == "\n" else cls._delimiters[0] + " "
        return f"{cls.xml_start_tag()}{joiner.join(['item1', 'item2', 'item3'])}{cls.xml_end_tag()}"


class CommaDelimitedAnswer(DelimitedAnswer):
    _delimiters: t.ClassVar[tuple[str, ...]] = (",",)


class NewlineDelimitedAnswer(DelimitedAnswer):
    _delimiters: t.ClassVar[tuple[str, ...]] = ("\n",)
