"""Parsing models: pydantic-xml classes that read themselves out of model output.

`Model` is a `pydantic_xml.BaseXmlModel`, so fields are declared as in rigging, with
`element()`, `attr()` and `wrapped()`. Each model owns a tag, the class name in kebab case
(`CommaDelimitedAnswer` -> `comma-delimited-answer`) unless `class Foo(Model, tag="x")`
says otherwise.

Model output is prose more often than XML, so finding elements is our own linear scan,
tolerant of text around the tags, attributes on the opening tag, any letter case, and a
tag named in prose before the real element (the real element wins). Once found, an
element that needs XML structure is built by pydantic-xml; a model that only reads its
element's text takes the text as written, raw `<` and `&` included. Every scan is one pass
with no backtracking across the text, so hostile output costs time linear in its size.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import textwrap
import types
import typing as t
import weakref
from array import array
from collections import abc
from functools import lru_cache

import typing_extensions as te
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PydanticUndefinedAnnotation,
    ValidationError,
    create_model,
    field_serializer,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticUndefined
from pydantic_xml import BaseXmlModel, attr, element, wrapped
from pydantic_xml import create_model as create_xml_model
from pydantic_xml.element.element import SearchMode
from pydantic_xml.element.native import etree
from pydantic_xml.errors import BaseError as XmlDeclarationError
from pydantic_xml.errors import ModelFieldError, ParsingError
from pydantic_xml.fields import XmlEntityInfo, extract_field_xml_entity_info
from pydantic_xml.model import XmlModelMeta
from pydantic_xml.typedefs import EntityLocation, NsMap

from pytest_rigging.error import InvalidModelSpecifiedError, MissingModelError

__all__ = [
    "BASIC_TYPES",
    "MAX_DEPTH",
    "Answer",
    "CommaDelimitedAnswer",
    "DelimitedAnswer",
    "Description",
    "ErrorModel",
    "Instructions",
    "JsonSchema",
    "Model",
    "ModelT",
    "NewlineDelimitedAnswer",
    "Primitive",
    "PrimitiveT",
    "Question",
    "QuestionAnswer",
    "SystemErrorModel",
    "Thinking",
    "ValidationErrorModel",
    "YesNoAnswer",
    "attr",
    "element",
    "escape",
    "find_elements",
    "kebab",
    "make_from_schema",
    "make_from_signature",
    "make_primitive",
    "wrapped",
]

ModelT = t.TypeVar("ModelT", bound="Model")
PrimitiveT = t.TypeVar("PrimitiveT", int, str, float, bool)
JsonSchema = t.Mapping[str, t.Any]
"""A JSON schema as `json.loads` returns it: a format of its own, not one of our records."""

BASIC_TYPES: tuple[type, ...] = (int, str, float, bool)
"""Field types that make a one-field model "simple" (`Model.is_simple`)."""

Span = tuple[int, int, int, int]
MAX_DEPTH = 64
"""How deep an element's children may nest before it is rejected as invalid."""

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|apos);")
_ENTITY_CHARS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_STRAY_AMP = re.compile(r"&(?!(?:lt|gt|amp|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);)")
_STRAY_LT = re.compile(r"<(?![A-Za-z_/!?])")
# The lookbehind lets a name start only after whitespace, so a long run of name
# characters with no `=` is tried once, not once per character.
_ATTRIBUTE = re.compile(
    r"""(?:(?<=\s)|^)([^\s=/<>"']+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'<>]+))"""
)
_CDATA_OPEN, _CDATA_CLOSE = "<![CDATA[", "]]>"
_STD_BACKEND = etree.__name__ == "xml.etree.ElementTree"


def kebab(name: str) -> str:
    """`CommaDelimitedAnswer` -> `comma-delimited-answer`, `user_name` -> `user-name`."""
    return _CAMEL.sub("-", name).replace("_", "-").lower()


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attribute(text: str) -> str:
    return escape(text).replace('"', "&quot;")


def _unescape(text: str) -> str:
    # One pass, so `&amp;lt;` stays `&lt;` (rigging's chained replaces turn it into `<`).
    return _ENTITY.sub(lambda m: _ENTITY_CHARS[m.group(1)], text) if "&" in text else text


def _decode(raw: str) -> str:
    """Raw element content to the characters it stands for: CDATA sections verbatim,
    entities decoded outside them. A scan with `find`, so an unclosed section costs one
    pass, where a regex would rescan the rest of the text from every opener."""
    if _CDATA_OPEN not in raw:
        return _unescape(raw)
    parts: list[str] = []
    position = 0
    while (start := raw.find(_CDATA_OPEN, position)) >= 0:
        stop = raw.find(_CDATA_CLOSE, start + len(_CDATA_OPEN))
        if stop < 0:
            break
        parts += [_unescape(raw[position:start]), raw[start + len(_CDATA_OPEN) : stop]]
        position = stop + len(_CDATA_CLOSE)
    parts.append(_unescape(raw[position:]))
    return "".join(parts)


def _text(raw: str) -> str:
    """An element's content as the text it stands for, without layout whitespace."""
    return _layout(_decode(raw)) if "&" in raw or "<" in raw else _layout(raw)


def _layout(text: str) -> str:
    """Indentation and surrounding whitespace are how models lay out XML, not content."""
    return textwrap.dedent(text).strip() if "\n" in text else text.strip()


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


def find_elements(tag: str, text: str) -> list[Span]:
    """Every complete `<tag ...>...</tag>` in `text`, ordered by start position.

    Returns (start, inner_start, inner_end, end) tuples. A closing tag pairs with the
    nearest unmatched opening tag before it, so an opening tag mentioned in prose never
    swallows the real element that follows it.
    """
    opened: list[tuple[int, int]] = []
    found: list[Span] = []
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


def _innermost(spans: list[Span]) -> list[Span]:
    """Only the elements holding no element of the same tag, as rigging reads nesting:
    in `<a>x <a>y</a> z</a>` the element is `<a>y</a>`. They are disjoint, so reading
    them reads each character once."""
    return [
        span
        for index, span in enumerate(spans)
        if index + 1 == len(spans) or spans[index + 1][0] >= span[3]
    ]


def _outermost_and_innermost(spans: list[Span]) -> list[Span]:
    """Drop the middle levels of same-tag nesting, for models that hold their own tag
    (a tree of `<node>`s), where the outermost element is the whole model.

    Outermost elements are disjoint, and so are innermost ones, so what is left totals at
    most twice the text: parsing `<a>` nested n deep reads O(n) characters, not O(n^2).
    """
    kept: list[Span] = []
    reach = -1
    for index, span in enumerate(spans):
        outermost = span[0] >= reach
        innermost = index + 1 == len(spans) or spans[index + 1][0] >= span[3]
        if outermost or innermost:
            kept.append(span)
        reach = max(reach, span[3])
    return kept


def _attributes(tag: str, opening: str) -> dict[str, str]:
    """Attributes of an opening tag as models write them: quoted either way or unquoted."""
    return {
        m.group(1): _unescape(next(v for v in m.group(2, 3, 4) if v is not None))
        for m in _ATTRIBUTE.finditer(opening[len(tag) + 1 : -1])
    }


def _invalid(cls: type[BaseModel], kind: str, reason: str, value: str) -> ValidationError:
    """A parse failure of one element as a `ValidationError`, so callers treat a broken
    element like an invalid one (both are the model's fault, both are retried)."""
    error = PydanticCustomError(kind, "{reason}", {"reason": reason})
    return ValidationError.from_exception_data(
        cls.__name__, [InitErrorDetails(type=error, loc=(), input=value)]
    )


#
# What parsing needs to know about a model, worked out once per class
#


def _entity(info: FieldInfo) -> XmlEntityInfo | None:
    entity = extract_field_xml_entity_info(info)
    return entity if isinstance(entity, XmlEntityInfo) else None


def _alternatives(annotation: t.Any) -> t.Iterator[t.Any]:
    """The types a field may hold: Annotated and Optional/Union taken apart."""
    origin = t.get_origin(annotation)
    if origin is t.Annotated:
        yield from _alternatives(t.get_args(annotation)[0])
    elif origin in (t.Union, types.UnionType):
        for arg in t.get_args(annotation):
            if arg is not type(None):
                yield from _alternatives(arg)
    else:
        yield annotation


def _is_subclass(value: t.Any, parent: type | tuple[type, ...]) -> bool:
    return isinstance(value, type) and issubclass(value, parent)


def _is_xml_model(annotation: t.Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseXmlModel)


def is_model(value: t.Any) -> t.TypeGuard[type[Model]]:
    """Whether `value` is a parsing model class (a `Model` subclass)."""
    return isinstance(value, type) and issubclass(value, Model)


def _models_in(annotation: t.Any) -> list[type[Model]]:
    """Parsing models a field holds, directly or in a collection."""
    found: list[type[Model]] = []
    for option in _alternatives(annotation):
        if _is_xml_model(option):
            found.append(option)
        elif t.get_origin(option) is not None:
            for arg in t.get_args(option):
                found.extend(_models_in(arg))
    return found


def _reads_text(info: FieldInfo) -> bool:
    """Whether pydantic-xml fills this field from its element's own text (an unmarked
    scalar). Unresolved forward references count as not, rather than guessing."""
    entity = _entity(info)
    if entity is not None and entity.location is not None:
        return False
    for option in _alternatives(info.annotation):
        origin = t.get_origin(option) or option
        if isinstance(option, str | t.ForwardRef) or _is_xml_model(origin):
            return False
        if _is_subclass(origin, (abc.Collection, abc.Iterator)) and not _is_subclass(
            origin, (str, bytes)
        ):
            return False
    return True


def _is_attribute(info: FieldInfo) -> bool:
    entity = _entity(info)
    return entity is not None and entity.location == EntityLocation.ATTRIBUTE


class _Plan(t.NamedTuple):
    text_key: str | None
    """For a model that reads only its element's text (plus attributes): the key to
    validate that text under. None for models built from child elements."""
    direct: bool
    """The text can be validated without building an element: no attributes, no
    pydantic-xml field validators."""
    leaf_tags: tuple[str, ...]
    """Tags (in this model and its nested models) holding plain text, escaped when an
    element is not well-formed XML."""
    nests: bool
    """The model's element may hold an element of its own tag (a nested model or field
    of that tag), so an outer element is read as well as the inner ones."""


_PLANS: weakref.WeakKeyDictionary[type[Model], _Plan] = weakref.WeakKeyDictionary()


def _plan(cls: type[Model]) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        cls.ensure_valid()
        plan = _PLANS[cls] = _make_plan(cls)
    return plan


def _text_field(cls: type[Model]) -> str | None:
    """The one field a text-only model (its text, and attributes at most) reads."""
    fields = cls.model_fields
    text = [name for name, info in fields.items() if _reads_text(info)]
    others = [info for name, info in fields.items() if name not in text]
    if len(text) == 1 and all(_is_attribute(info) for info in others):
        return text[0]
    return None


def _make_plan(cls: type[Model]) -> _Plan:
    name = _text_field(cls)
    if name is None:
        leaves = _leaf_tags(cls, set())
        nests = cls.__xml_tag__ in leaves or cls.__xml_tag__ in _model_tags(cls, set())
        return _Plan(None, False, tuple(sorted(leaves)), nests)
    info = cls.model_fields[name]
    key = info.validation_alias if isinstance(info.validation_alias, str) else name
    direct = len(cls.model_fields) == 1 and not cls.__xml_field_validators__
    return _Plan(key, direct, (), False)


def _model_tags(cls: type[Model], seen: set[type[Model]]) -> set[str]:
    """The tags of every model nested in `cls`, at any depth."""
    seen.add(cls)
    tags: set[str] = set()
    for info in cls.model_fields.values():
        for model in _models_in(info.annotation):
            if issubclass(model, Model):
                tags.add(model.__xml_tag__)
                if model not in seen:
                    tags |= _model_tags(model, seen)
    return tags


def _leaf_tags(cls: type[Model], seen: set[type[Model]]) -> set[str]:
    seen.add(cls)
    tags: set[str] = set()
    for name, info in cls.model_fields.items():
        entity = _entity(info)
        location = entity.location if entity is not None else None
        if location == EntityLocation.ATTRIBUTE or _reads_text(info):
            continue
        nested = _models_in(info.annotation)
        for model in nested:
            if model in seen or not issubclass(model, Model):
                continue
            model.ensure_valid()
            if _text_field(model) is not None:
                tags.add(model.__xml_tag__)
            else:
                tags |= _leaf_tags(model, seen)
        if not nested and entity is not None:
            inner = entity.wrapped if location == EntityLocation.WRAPPED else entity
            path = inner.path if inner is not None and inner.path else info.alias or name
            tags.add(path.rsplit("/", 1)[-1])
    return tags


def _own_annotations(cls: type) -> dict[str, t.Any]:
    """A class's own annotations, unevaluated where they can't be yet (Python 3.14
    evaluates them lazily, so a model naming itself would fail while being defined)."""
    if sys.version_info >= (3, 14):
        import annotationlib

        return dict(annotationlib.get_annotations(cls, format=annotationlib.Format.FORWARDREF))
    return dict(inspect.get_annotations(cls))


@te.dataclass_transform(kw_only_default=True, field_specifiers=(attr, element, wrapped, Field))
class _ModelMeta(XmlModelMeta):
    """Reports declarations pydantic-xml cannot use, or that cannot parse, as
    `InvalidModelSpecifiedError` where the class is defined.

    A model with several unmarked scalar fields (`name: str; age: int`) would have them all
    read its element's text; rigging's users write such models expecting one child element
    per field, so those fields are declared `element()` for them."""

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, t.Any],
        **kwargs: t.Any,
    ) -> type:
        declared = dict(namespace)
        cls = mcls._create(name, bases, namespace, **kwargs)
        text = [field for field, info in cls.model_fields.items() if _reads_text(info)]
        if len(text) <= 1:
            return cls
        annotated = _own_annotations(cls)
        for field in text:
            given = declared.get(field, PydanticUndefined)
            if field not in annotated or isinstance(given, FieldInfo):
                raise InvalidModelSpecifiedError(
                    f"{name}: fields {', '.join(map(repr, text))} would all read the text of "
                    f"<{cls.__xml_tag__}>; declare all but one with element() or attr()"
                )
            declared[field] = element() if given is PydanticUndefined else element(default=given)
        declared["__annotations__"] = annotated
        declared.pop("__annotate__", None)
        return mcls._create(name, bases, declared, **kwargs)

    @classmethod
    def _create(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, t.Any], **kwargs: t.Any
    ) -> type[BaseXmlModel]:
        try:
            return super().__new__(
                mcls,
                name,
                bases,  # type: ignore[arg-type]  # pydantic-xml says `Tuple[type]`: any count works
                namespace,
                **kwargs,
            )
        except ModelFieldError as error:
            raise InvalidModelSpecifiedError(
                f"{name}.{error.field_name}: {error.message}; "
                "declare the field with element(), attr() or wrapped()"
            ) from error
        except XmlDeclarationError as error:
            raise InvalidModelSpecifiedError(f"{name} is not a usable model: {error}") from error


class Model(BaseXmlModel, metaclass=_ModelMeta, __xml_abstract__=True):
    """Base class of every parsing model.

    An unmarked scalar field reads the element's text (`Answer.content`); `attr()` fields
    read attributes of the opening tag, `element()` and `wrapped()` fields and nested
    models read child elements, all as pydantic-xml defines them.
    """

    model_config = ConfigDict(use_attribute_docstrings=True)

    __xml_tag__: t.ClassVar[str]
    """Every subclass has one (`__init_subclass__`); pydantic-xml's may be None."""

    def __init_subclass__(
        cls,
        tag: str | None = None,
        ns: str | None = None,
        nsmap: NsMap | None = None,
        ns_attrs: bool | None = None,
        skip_empty: bool | None = None,
        search_mode: SearchMode | None = None,
        **kwargs: t.Any,
    ) -> None:
        super().__init_subclass__(tag, ns, nsmap, ns_attrs, skip_empty, search_mode, **kwargs)
        # A parametrized generic (`Primitive[int]`) keeps its parent's tag: its name
        # is pydantic's, not the user's.
        if tag is None and "[" not in cls.__name__:
            cls.__xml_tag__ = kebab(cls.__name__)

    @classmethod
    def xml_tags(cls) -> str:
        """The empty element, as a prompt would show it: `<answer></answer>`."""
        return cls.xml_start_tag() + cls.xml_end_tag()

    @classmethod
    def xml_start_tag(cls) -> str:
        return f"<{cls.__xml_tag__}>"

    @classmethod
    def xml_end_tag(cls) -> str:
        return f"</{cls.__xml_tag__}>"

    @classmethod
    def is_simple(cls) -> bool:
        """One unmarked field of a basic type: rigging's test for its plain-text path."""
        fields = list(cls.model_fields.values())
        return (
            len(fields) == 1
            and _entity(fields[0]) is None
            and _basic(fields[0].annotation) in BASIC_TYPES
        )

    @classmethod
    def is_simple_with_attrs(cls) -> bool:
        """Simple but for extra `attr()` fields: the element's text still fills one field."""
        fields = list(cls.model_fields.values())
        plain = [info for info in fields if _entity(info) is None]
        return (
            len(plain) == 1
            and len(fields) > 1
            and all(_is_attribute(info) for info in fields if info is not plain[0])
            and _basic(plain[0].annotation) in BASIC_TYPES
        )

    @classmethod
    def ensure_valid(cls) -> None:
        """Raise `InvalidModelSpecifiedError` if `cls` cannot parse: it has no fields (a
        base class can be declared so, but not parsed), or names a type that is still
        undefined (a forward reference pydantic could not resolve)."""
        if not cls.model_fields:
            raise InvalidModelSpecifiedError(f"{cls.__name__} has no fields to parse into")
        if cls.__xml_serializer__ is None and not cls.__pydantic_generic_metadata__["parameters"]:
            try:
                cls.model_rebuild()
            except PydanticUndefinedAnnotation as error:
                raise InvalidModelSpecifiedError(
                    f"{cls.__name__} is not fully defined ({error.message}); "
                    f"define the type, then call {cls.__name__}.model_rebuild()"
                ) from error

    @classmethod
    def xml_example(cls) -> str:
        """The expected shape for prompts and recovery messages: field examples as
        values, field descriptions (or docstrings) as comments, nested models expanded."""
        return _example(cls, frozenset({cls}))

    def to_xml(
        self,
        *,
        skip_empty: bool = False,
        exclude_none: bool = False,
        exclude_unset: bool = False,
        escape: bool = False,
        **kwargs: t.Any,
    ) -> str:
        """The model as one line of XML, always a `str` (rigging's type), empty elements
        written out in full (`<answer></answer>`, what `from_text` finds).

        Text is written as rigging writes it, raw (`a & b`, `x < y`), so the output reads
        back with `from_text` as the text it holds; text that would read back otherwise
        (one holding an entity such as `&lt;`, a CDATA marker or its own closing tag) is
        escaped. `escape=True` gives well-formed XML instead (`a &amp; b`), for XML
        parsers, through pydantic-xml's serializer, which then takes `kwargs`
        (`encoding`, `short_empty_elements`, ...). Without it only `short_empty_elements`
        applies, and `encoding` is accepted and ignored, as the result is a `str`."""
        tree_options = {
            "skip_empty": skip_empty,
            "exclude_none": exclude_none,
            "exclude_unset": exclude_unset,
        }
        if not escape:
            short = bool(kwargs.pop("short_empty_elements", False))
            kwargs.pop("encoding", None)
            if kwargs:
                raise TypeError(
                    f"to_xml() takes {', '.join(sorted(kwargs))} only with escape=True "
                    "(options of the XML serializer)"
                )
            return _compact(self.to_xml_tree(**tree_options), short=short)
        kwargs.setdefault("encoding", "unicode")
        if _STD_BACKEND:
            kwargs.setdefault("short_empty_elements", False)
        xml = super().to_xml(**tree_options, **kwargs)
        return xml if isinstance(xml, str) else xml.decode(kwargs["encoding"])

    def to_pretty_xml(
        self,
        *,
        skip_empty: bool = False,
        exclude_none: bool = False,
        exclude_unset: bool = False,
        escape: bool = False,
        **_: t.Any,
    ) -> str:
        """Indented XML for prompts, messages and logs, multi-line text indented on its
        own lines; reads back with `from_text` to an equal model. Text is raw, as rigging
        writes it, with the exceptions `to_xml` gives; `escape=True` escapes all of it
        (well-formed XML). Unknown options are ignored, as rigging ignores them."""
        tree = self.to_xml_tree(
            skip_empty=skip_empty, exclude_none=exclude_none, exclude_unset=exclude_unset
        )
        return "\n".join(_pretty(tree, 0, escaped=escape))

    def __str__(self) -> str:
        return self.to_pretty_xml()

    @t.overload
    @classmethod
    def from_text(
        cls, content: str | bytes, *, return_errors: t.Literal[False] = False
    ) -> list[tuple[te.Self, slice]]: ...

    @t.overload
    @classmethod
    def from_text(
        cls, content: str | bytes, *, return_errors: t.Literal[True]
    ) -> list[tuple[te.Self | ValidationError, slice]]: ...

    @classmethod
    def from_text(
        cls, content: str | bytes, *, return_errors: bool = False
    ) -> list[tuple[te.Self, slice]] | list[tuple[te.Self | ValidationError, slice]]:
        """Every element of this model in `content`, in order, with its position.

        Invalid elements are skipped, or with `return_errors` listed as their
        `ValidationError`. Raises `MissingModelError` when there is no element at all,
        and the first element's `ValidationError` when none is valid.
        """
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        plan = _plan(cls)
        spans = _locate(
            cls.__xml_tag__, content, simple=plan.text_key is not None, nests=plan.nests
        )
        if not spans:
            raise MissingModelError(f"Failed to find '{cls.xml_tags()}' in text")
        read = _reader(cls, plan, content)
        found: list[tuple[te.Self | ValidationError, slice]] = []
        failed = 0
        for index in range(0, len(spans), 4):
            span = spans[index : index + 4]
            where = slice(span[0], span[3])
            try:
                found.append((read(span), where))
            except ValidationError as error:
                found.append((error, where))
                failed += 1
        if return_errors or not failed:
            return found
        if failed == len(found):
            raise t.cast(ValidationError, found[0][0])
        return [(m, s) for m, s in found if not isinstance(m, ValidationError)]

    @classmethod
    def one_from_text(
        cls, content: str | bytes, *, fail_on_many: bool = False
    ) -> tuple[te.Self, slice]:
        """The first valid element by position; with `fail_on_many`, a `ValidationError`
        if there is more than one."""
        found = cls.from_text(content)
        if fail_on_many and len(found) > 1:
            raise _invalid(
                cls,
                "multiple_elements",
                f"found {len(found)} valid {cls.xml_tags()} elements where one was expected "
                "(fail_on_many=True)",
                content if isinstance(content, str) else content.decode("utf-8", "replace"),
            )
        return found[0]


def _basic(annotation: t.Any) -> t.Any:
    return t.get_args(annotation)[0] if t.get_origin(annotation) is t.Annotated else annotation


def _first_example(info: FieldInfo) -> str:
    return str(next(iter(info.examples or []), ""))


def _entity_name(name: str, info: FieldInfo) -> str:
    entity = _entity(info)
    return (entity.path if entity is not None and entity.path else None) or info.alias or name


def _example(cls: type[Model], seen: frozenset[type[Model]]) -> str:
    fields = cls.model_fields
    attributes = "".join(
        f' {_entity_name(name, info)}="{escape_attribute(_first_example(info))}"'
        for name, info in fields.items()
        if _is_attribute(info)
    )
    tag = cls.__xml_tag__
    text = [info for info in fields.values() if _reads_text(info)]
    children = [(n, i) for n, i in fields.items() if not _is_attribute(i) and not _reads_text(i)]
    if not children:
        example = escape(_first_example(text[0])) if text else ""
        return f"<{tag}{attributes}>{example}</{tag}>"
    lines = [f"<{tag}{attributes}>"]
    for info in text:
        if example := _first_example(info):
            lines.append(f"  {escape(example)}")
    for name, info in children:
        if info.description:
            lines.append(f"  <!-- {escape(info.description.strip())} -->")
        lines.extend("  " + line for line in _child_example(name, info, seen))
    lines.append(f"</{tag}>")
    return "\n".join(lines)


def _child_example(name: str, info: FieldInfo, seen: frozenset[type[Model]]) -> list[str]:
    nested = [m for m in _models_in(info.annotation) if issubclass(m, Model)]
    entity = _entity(info)
    wrapper = entity is not None and entity.location == EntityLocation.WRAPPED
    inner = entity.wrapped if entity is not None and wrapper else entity
    path = inner.path if inner is not None else None
    if nested:
        body = _model_example(nested[0], path, seen).splitlines()
    else:
        body = _leaf_example(path or info.alias or name, info)
    if entity is not None and wrapper:
        for tag in reversed((entity.path or name).split("/")):
            body = [f"<{tag}>", *("  " + line for line in body), f"</{tag}>"]
    return body


def _model_example(model: type[Model], tag: str | None, seen: frozenset[type[Model]]) -> str:
    """A nested model's example (its own override if it has one; a model already being
    shown, as an empty element), under the tag its field gives it, if any."""
    old = model.__xml_tag__
    if model in seen:
        return f"<{tag or old}/>"
    if inspect.getattr_static(model, "xml_example") is not vars(Model)["xml_example"]:
        example = model.xml_example()
    else:
        example = _example(model, seen | {model})
    if not tag or tag == old:
        return example
    return f"<{tag}{example[len(old) + 1 : -len(old) - 3]}</{tag}>"


def _leaf_example(tag: str, info: FieldInfo) -> list[str]:
    example = _first_example(info)
    return [f"<{tag}>{escape(example)}</{tag}>" if example else f"<{tag}/>"]


def _written(text: str, tag: str, *, escaped: bool) -> str:
    """An element's text as written: escaped when asked, or when raw text would read
    back as something else (an entity or a CDATA section decoded, or the element ended
    early by its own closing tag)."""
    if escaped or _decode(text) != text or f"</{tag.lower()}" in text.lower():
        return escape(text)
    return text


def _opening(node: t.Any) -> str:
    attributes = "".join(f' {k}="{escape_attribute(v)}"' for k, v in node.attrib.items())
    return f"{node.tag}{attributes}"


def _pretty(node: t.Any, depth: int, *, escaped: bool) -> list[str]:
    pad = "  " * depth
    opening = _opening(node)
    text = _written(_layout(node.text or ""), node.tag, escaped=escaped)
    children = list(node)
    if not children and "\n" not in text:
        if text:
            return [f"{pad}<{opening}>{text}</{node.tag}>"]
        return [f"<{opening}></{node.tag}>" if depth == 0 else f"{pad}<{opening} />"]
    lines = [f"{pad}<{opening}>"]
    lines.extend(f"{pad}  {line}" if line.strip() else "" for line in text.splitlines())
    for child in children:
        lines.extend(_pretty(child, depth + 1, escaped=escaped))
    lines.append(f"{pad}</{node.tag}>")
    return lines


def _compact(node: t.Any, *, short: bool) -> str:
    text = _written(node.text or "", node.tag, escaped=False)
    children = list(node)
    if short and not text and not children:
        return f"<{_opening(node)} />"
    inner = "".join(
        _compact(child, short=short) + _written(child.tail or "", node.tag, escaped=False)
        for child in children
    )
    return f"<{_opening(node)}>{text}{inner}</{node.tag}>"


#
# Parsing
#


def _locate(tag: str, content: str, *, simple: bool, nests: bool) -> array[int]:
    """Elements to parse, in order, as a flat array of spans (four ints each: arrays hold
    no objects the garbage collector must walk, and a large text has 100,000s of spans).
    Usually each closing tag directly follows its element's text and one regex finds
    them all; when it finds as many elements as there are closing tags, they are exactly
    what the general pairing would find."""
    found = array("q")
    if simple:
        add = found.extend
        for m in _simple_pattern(tag).finditer(content):
            add((m.start(), m.start(1), m.end(1), m.end()))
        if len(found) // 4 == content.lower().count(f"</{tag.lower()}"):
            return found
        del found[:]
    pick = _outermost_and_innermost if nests else _innermost
    for span in pick(find_elements(tag, content)):
        found.extend(span)
    return found


def _reader(cls: type[ModelT], plan: _Plan, content: str) -> t.Callable[[t.Sequence[int]], ModelT]:
    """How to build one element of `content`. A text-only model without attributes is
    validated straight from the text: what pydantic-xml would build, without the tree."""
    if not plan.direct or plan.text_key is None:
        return lambda span: _build(cls, plan, content, span)
    validate = cls.__pydantic_validator__.validate_python
    key = plan.text_key
    if cls.model_config.get("extra") == "allow":  # new attributes join the set: not shared
        return lambda span: t.cast(ModelT, validate({key: _text(content[span[1] : span[2]])}))
    # Every such model has set exactly its one field: one shared set instead of one per
    # element (setting that field again adds nothing to it; copies copy it).
    fields_set = {key}

    def read(span: t.Sequence[int]) -> ModelT:
        model = validate({key: _text(content[span[1] : span[2]])})
        object.__setattr__(model, "__pydantic_fields_set__", fields_set)
        return t.cast(ModelT, model)

    return read


def _build(cls: type[ModelT], plan: _Plan, content: str, span: t.Sequence[int]) -> ModelT:
    start, inner_start, inner_end, _ = span
    opening = content[start:inner_start]
    inner = content[inner_start:inner_end]
    name = cls.__xml_serializer__.element_name if cls.__xml_serializer__ else cls.__xml_tag__
    if plan.text_key is not None:
        # The text is taken as written (raw `<` and `&` are prose), so only the opening
        # tag's attributes go through XML.
        root = etree.Element(name, _attributes(cls.__xml_tag__, opening))
        root.text = _text(inner)
        return _from_tree(cls, root, content[start : span[3]], empty_as_string=True)
    root = _parse_element(cls, inner, plan.leaf_tags)
    root.tag = name
    root.attrib.update(_attributes(cls.__xml_tag__, opening))
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            # pydantic-xml recurses per level: deeper than this, Python's stack would end
            # the parse with a RecursionError instead of an answer.
            raise _invalid(
                cls,
                "too_deep",
                f"<{cls.__xml_tag__}> nests elements more than {MAX_DEPTH} levels deep",
                content[start : span[3]],
            )
        if node.text:
            node.text = _layout(node.text)
        stack.extend((child, depth + 1) for child in node)
    return _from_tree(cls, root, content[start : span[3]], empty_as_string=False)


def _parse_element(cls: type[Model], inner: str, leaf_tags: tuple[str, ...]) -> t.Any:
    """The element as a tree; if it is not well-formed, once more after escaping the
    text fields' content and stray `&`/`<`, as models write prose into XML."""
    tag = cls.__xml_tag__
    xml = f"<{tag}>{inner}</{tag}>"
    try:
        return etree.fromstring(xml)
    except SyntaxError:  # ElementTree's ParseError and lxml's XMLSyntaxError
        pass
    try:
        return etree.fromstring(_repair(xml, leaf_tags))
    except SyntaxError as error:
        raise _invalid(
            cls, "invalid_xml", f"<{tag}> is not well-formed XML ({error})", xml
        ) from None


def _repair(xml: str, leaf_tags: tuple[str, ...]) -> str:
    spans = sorted(span for tag in leaf_tags for span in find_elements(tag, xml))
    parts: list[str] = []
    position = 0
    for _, inner_start, inner_end, _ in spans:
        if inner_start < position:  # inside text already escaped
            continue
        parts += [xml[position:inner_start], escape(_decode(xml[inner_start:inner_end]))]
        position = inner_end
    parts.append(xml[position:])
    return _STRAY_LT.sub("&lt;", _STRAY_AMP.sub("&amp;", "".join(parts)))


def _from_tree(cls: type[ModelT], root: t.Any, source: str, *, empty_as_string: bool) -> ModelT:
    try:
        return cls.from_xml_tree(root, empty_as_string=empty_as_string)
    except ParsingError as error:
        raise _invalid(cls, "invalid_xml", str(error), source) from None


#
# Built at runtime: primitives, JSON schemas, signatures
#


def _strip_text(value: t.Any) -> t.Any:
    return value.strip() if isinstance(value, str) else value


class Primitive(Model, t.Generic[PrimitiveT]):
    """One scalar read from the element's text; `make_primitive` builds named subclasses."""

    content: t.Annotated[PrimitiveT, BeforeValidator(_strip_text)]


@t.overload
def make_primitive(
    name: str,
    type_: type[PrimitiveT],
    *,
    tag: str | None = None,
    doc: str | None = None,
    validator: t.Callable[[str], str | None] | None = None,
    strip_content: bool = True,
) -> type[Primitive[PrimitiveT]]: ...


@t.overload
def make_primitive(
    name: str,
    *,
    tag: str | None = None,
    doc: str | None = None,
    validator: t.Callable[[str], str | None] | None = None,
    strip_content: bool = True,
) -> type[Primitive[str]]: ...


def make_primitive(
    name: str,
    type_: type[t.Any] = str,
    *,
    tag: str | None = None,
    doc: str | None = None,
    validator: t.Callable[[str], str | None] | None = None,
    strip_content: bool = True,
) -> type[Primitive[t.Any]]:
    """A one-field model without a class statement, for output types built at runtime.

    `validator` gets the content and may return a replacement (None keeps it).
    """
    annotation: t.Any = t.Annotated[type_, BeforeValidator(_strip_text)] if strip_content else type_
    validators: dict[str, t.Any] = {}
    if validator is not None:
        check = validator

        def _validate(value: t.Any) -> t.Any:
            return check(value) or value

        validators["content_validator"] = field_validator("content")(_validate)
    base: type[Primitive[t.Any]] = Primitive[type_]  # type: ignore[valid-type]  # `type_` is a value, parametrized at run time
    return create_model(
        name,
        __base__=base,
        __doc__=doc,
        __cls_kwargs__={"tag": tag},
        __validators__=validators,
        content=(annotation, ...),
    )


_JSON_TYPES: dict[str, t.Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
    "object": dict,
    "array": list,
}


def _schema_type(name: str, schema: JsonSchema) -> t.Any:
    if "$ref" in schema:
        raise InvalidModelSpecifiedError(
            f"property {name!r} is a $ref: dereference the schema before building a model"
        )
    if "enum" in schema:
        return t.Literal[tuple(schema["enum"])]
    kind = schema.get("type", "string")
    if kind == "array":
        return types.GenericAlias(list, _schema_type(f"{name}_item", schema.get("items", {})))
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, abc.Mapping):
            return types.GenericAlias(dict, (str, _schema_type(f"{name}_item", values)))
        return make_from_schema(schema, schema.get("title") or name, allow_primitive=True)
    for union in ("anyOf", "oneOf", "allOf"):
        if union in schema:
            options = tuple(_schema_type(name, option) for option in schema[union])
            return t.Union[options]  # noqa: UP007
    if isinstance(kind, list):
        return t.Union[tuple(_JSON_TYPES.get(k, t.Any) for k in kind)]  # noqa: UP007
    return _JSON_TYPES.get(kind, t.Any)


def make_from_schema(
    schema: JsonSchema, name: str | None = None, *, allow_primitive: bool = False
) -> type[Model]:
    """A model from a (dereferenced) JSON object schema, each property a child element;
    arrays are a wrapper element of `<item>` elements (or of the items' model elements).

    With `allow_primitive`, a one-property schema becomes a text-only model instead.
    """
    properties: JsonSchema = schema.get("properties") or {}
    model_name = name or schema.get("title") or "SchemaModel"
    if not properties:
        raise InvalidModelSpecifiedError(
            f"schema for {model_name!r} has no properties to build fields from"
        )
    required = set(schema.get("required", []))
    as_text = allow_primitive and len(properties) == 1
    fields: dict[str, t.Any] = {}
    for key, sub_schema in properties.items():
        field_name = re.sub(r"\W", "_", key)
        if not field_name.isidentifier() or field_name.startswith("_") or field_name in fields:
            raise InvalidModelSpecifiedError(
                f"schema property {key!r} of {model_name!r} cannot be a field name"
            )
        options: dict[str, t.Any] = {
            "default": ... if key in required else None,
            "description": sub_schema.get("description", ""),
            "title": sub_schema.get("title", ""),
            "alias": key if key != field_name else None,
        }
        if sub_schema.get("type") == "array":
            of_models = sub_schema.get("items", {}).get("type") == "object"
            field = wrapped(key, None if of_models else element("item"), **options)
        else:
            field = (Field if as_text else element)(**options)
        fields[field_name] = (_schema_type(key, sub_schema), field)
    return create_xml_model(model_name, __base__=Model, **fields)


def make_from_signature(signature: inspect.Signature, name: str | None = None) -> type[Model]:
    """A model of a function's parameters, each a child element, so a model can write a
    call as XML. Lists become a wrapper element of `<item>` (or singular-name) elements;
    `Annotated[T, "text"]` gives the field its description."""
    model_name = name or "SignatureModel"
    fields: dict[str, t.Any] = {}
    for param_name, param in signature.parameters.items():
        where = f"parameter {param_name!r} of {model_name}"
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise InvalidModelSpecifiedError(f"{where}: *args and **kwargs cannot be fields")
        annotation = param.annotation
        if annotation is inspect.Parameter.empty:
            raise InvalidModelSpecifiedError(f"{where} has no type annotation")
        if isinstance(annotation, str):
            raise InvalidModelSpecifiedError(
                f"{where} is annotated with the string {annotation!r}: pass "
                "inspect.signature(function, eval_str=True)"
            )
        description = ""
        if t.get_origin(annotation) is t.Annotated:
            annotation, *extra = t.get_args(annotation)
            description = next((x for x in extra if isinstance(x, str)), "")
        for part in (annotation, t.get_origin(annotation), *t.get_args(annotation)):
            if _is_subclass(part, BaseModel) and not _is_subclass(part, BaseXmlModel):
                raise InvalidModelSpecifiedError(
                    f"{where}: pydantic models must inherit from BaseXmlModel (use Model)"
                )
            if dataclasses.is_dataclass(part):
                raise InvalidModelSpecifiedError(f"{where}: dataclasses are not supported")
        default = ... if param.default is inspect.Parameter.empty else param.default
        listed = next((a for a in _alternatives(annotation) if t.get_origin(a) is list), None)
        if listed is not None:
            item = t.get_args(listed)[0]
            scalar = _is_subclass(item, (str, int, float, bool, bytes)) or item is t.Any
            plural = len(param_name) > 1 and param_name.endswith("s")
            item_tag = param_name[:-1] if plural and not scalar else "item"
            field = wrapped(
                param_name, element(tag=item_tag, default=default, description=description)
            )
        else:
            field = element(default=default, description=description)
        fields[param_name] = (annotation, field)
    return create_xml_model(model_name, __base__=Model, **fields)


#
# Structured errors to show a model
#


class ErrorModel(Model, tag="error"):
    """An exception as XML, so a model can be shown what went wrong."""

    type: str = attr(default="Exception")
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _exception_text(cls, value: t.Any) -> t.Any:
        return str(value) if isinstance(value, Exception) else value

    @classmethod
    def from_exception(cls, exception: Exception) -> te.Self:
        return cls(content=str(exception), type=type(exception).__name__)


class SystemErrorModel(ErrorModel, tag="system-error"):
    content: str


class ValidationErrorModel(ErrorModel, tag="validation-error"):
    content: str


#
# Common models
#


class Thinking(Model):
    content: str


class Question(Model):
    content: str


class Answer(Model):
    content: str


class QuestionAnswer(Model):
    question: Question = element()
    """The question"""
    answer: Answer = element()
    """The answer"""


class Description(Model):
    content: str


class Instructions(Model):
    content: str


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

    @field_serializer("boolean", when_used="json")
    def _write_yes_no(self, value: bool) -> str:
        # XML is what a model reads back: "yes"/"no", as rigging writes it.
        return "yes" if value else "no"

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
