"""Messages: one turn of a conversation, its content parts, and the models parsed from it.

Content is a list of parts (text, image, audio) because multimodal models take them; `content`
stays the text, as most code reads it. Parsing records where each model was found
(`slices`), so a message can show, replace or strip what was read from it.
"""

from __future__ import annotations

import abc
import base64
import copy
import mimetypes
import re
import string
import typing as t
import warnings
from pathlib import Path
from textwrap import dedent
from uuid import UUID, uuid4

import typing_extensions as te
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    model_serializer,
    model_validator,
)

from pytest_rigging._fast import construct
from pytest_rigging.error import MissingModelError
from pytest_rigging.tools.calls import ToolCall

if t.TYPE_CHECKING:
    from pytest_rigging.model import Model

ModelT = t.TypeVar("ModelT", bound="Model")


def _model_class() -> type[Model]:
    """`Model`, imported where a message first needs it: building the models module
    imports pydantic-xml, which a provider that only sends and receives text never needs."""
    from pytest_rigging.model import Model

    return Model


Role = t.Literal["system", "user", "assistant", "tool"]
Detail = t.Literal["auto", "low", "high"]


class MessageDict(te.TypedDict):
    """A message as plain data: `content` is the text, or the parts in OpenAI's shape."""

    role: Role
    content: str | list[dict[str, t.Any]]
    tool_calls: te.NotRequired[list[dict[str, t.Any]]]
    tool_call_id: te.NotRequired[str]


class ContentText(BaseModel):
    """A text part."""

    type: t.Literal["text"] = "text"
    text: str
    cache_control: dict[str, str] | None = None

    def __str__(self) -> str:
        return self.text


class _Media(BaseModel):
    """What image and audio parts share: their data as bytes, and saving it."""

    @abc.abstractmethod
    def to_bytes(self) -> bytes:
        """The media itself, decoded."""

    def save(self, path: Path | str) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.to_bytes())


class ContentImageUrl(_Media):
    """An image part: a URL, or the image itself as a `data:` URL."""

    class ImageUrl(BaseModel):
        url: str
        detail: Detail = "auto"

    type: t.Literal["image_url"] = "image_url"
    image_url: ImageUrl
    cache_control: dict[str, str] | None = None

    def __str__(self) -> str:
        return f"ContentImageUrl(url='{shorten(self.image_url.url, 50)}')"

    @classmethod
    def from_url(cls, url: str, *, detail: Detail = "auto") -> ContentImageUrl:
        return cls(image_url=cls.ImageUrl(url=url, detail=detail))

    @classmethod
    def from_bytes(cls, data: bytes, mimetype: str, *, detail: Detail = "auto") -> ContentImageUrl:
        encoded = base64.b64encode(data).decode()
        return cls.from_url(f"data:{mimetype};base64,{encoded}", detail=detail)

    @classmethod
    def from_file(
        cls, file: Path | str, *, mimetype: str | None = None, detail: Detail = "auto"
    ) -> ContentImageUrl:
        """The image in `file`, embedded; its type guessed from the name unless given."""
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"image file '{path}' does not exist")
        mimetype = mimetype or mimetypes.guess_type(path.name)[0]
        if mimetype is None:
            raise ValueError(f"cannot tell the image type of '{path}': pass mimetype=")
        return cls.from_bytes(path.read_bytes(), mimetype, detail=detail)

    @property
    def mimetype(self) -> str | None:
        """The type of an embedded image (None for a plain URL)."""
        url = self.image_url.url
        if not url.startswith("data:"):
            return None
        return url[len("data:") :].partition(";")[0] or None

    def to_bytes(self) -> bytes:
        url = self.image_url.url
        if not url.startswith("data:") or ";base64," not in url:
            raise ValueError("the image is a URL, not embedded base64 data")
        return base64.b64decode(url.partition(";base64,")[2])


AudioFormat = t.Literal["wav", "mp3", "ogg", "flac"]


class ContentAudioInput(_Media):
    """An audio part, base64-encoded, with its transcript when known (never sent)."""

    class Audio(BaseModel):
        data: str
        format: str
        transcript: str | None = None

    type: t.Literal["input_audio"] = "input_audio"
    input_audio: Audio
    cache_control: dict[str, str] | None = None

    def __str__(self) -> str:
        audio = self.input_audio
        return f"<ContentAudioInput format='{audio.format}' transcript='{audio.transcript}'>"

    @classmethod
    def from_bytes(
        cls, data: bytes, *, format: str, transcript: str | None = None
    ) -> ContentAudioInput:
        encoded = base64.b64encode(data).decode()
        return cls(input_audio=cls.Audio(data=encoded, format=format, transcript=transcript))

    @classmethod
    def from_file(
        cls, file: Path | str, *, format: str | None = None, transcript: str | None = None
    ) -> ContentAudioInput:
        """The audio in `file`; its format guessed from the name unless given."""
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"audio file '{path}' does not exist")
        if format is None:
            mimetype = mimetypes.guess_type(path.name)[0]
            if mimetype is None or not mimetype.startswith("audio/"):
                raise ValueError(f"cannot tell the audio format of '{path}': pass format=")
            format = mimetype.rpartition("/")[2].removeprefix("x-")
            format = {"mpeg": "mp3", "wave": "wav"}.get(format, format)
        return cls.from_bytes(path.read_bytes(), format=format, transcript=transcript)

    @property
    def transcript(self) -> str | None:
        return self.input_audio.transcript

    def to_bytes(self) -> bytes:
        return base64.b64decode(self.input_audio.data)


def _part_type(value: t.Any) -> str | None:
    """Which part a value is: by its `type`, or, for a dict without one, by its keys."""
    if isinstance(value, dict):
        found = value.get("type")
        if found is None:
            found = next((key for key in _PART_KEYS if key in value), None)
        return found
    return getattr(value, "type", None)


_PART_KEYS = ("text", "image_url", "input_audio")

Content = t.Annotated[
    t.Annotated[ContentText, Tag("text")]
    | t.Annotated[ContentImageUrl, Tag("image_url")]
    | t.Annotated[ContentAudioInput, Tag("input_audio")],
    Discriminator(_part_type),
]
CONTENT_TYPES = (ContentText, ContentImageUrl, ContentAudioInput)
ContentTypes = CONTENT_TYPES  # rigging's names
ContentAudioFormat = AudioFormat

SliceType = t.Literal["model", "tool_call", "tool_response", "other"]


class MessageSlice(BaseModel):
    """A range of a message's text and what was read from it (a parsed model)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: SliceType
    obj: SerializeAsAny[t.Any] | None = Field(default=None, repr=False)
    start: int
    stop: int
    metadata: dict[str, t.Any] = Field(default_factory=dict)

    _message: Message | None = PrivateAttr(default=None)

    @property
    def slice_(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def content(self) -> str:
        """The text this slice covers ("[detached]" once its message let it go)."""
        message = self._message
        return "[detached]" if message is None else message.content[self.start : self.stop]

    @content.setter
    def content(self, value: str) -> None:
        """Replace the covered text in the message; the slice then covers `value`."""
        message = self._message
        if message is None:
            warnings.warn("this slice left its message: nothing to change", MessageWarning, 2)
            return
        message._replace_range(self, self.start, self.stop, value)

    def __len__(self) -> int:
        return self.stop - self.start

    def __str__(self) -> str:
        shown = shorten(self.content, 50)
        kind = type(self.obj).__name__ if self.obj is not None else None
        return (
            f"MessageSlice(type={self.type!r}, start={self.start}, stop={self.stop}, "
            f"obj={kind}, content={shown!r})"
        )

    def clone(self) -> MessageSlice:
        """A deep copy, detached (it covers no message until one takes it)."""
        return MessageSlice(
            type=self.type,
            obj=copy.deepcopy(self.obj),
            start=self.start,
            stop=self.stop,
            metadata=copy.deepcopy(self.metadata),
        )


class MessageWarning(UserWarning):
    """Something asked of a message could not be done (a range outside its text, ...)."""


class ParsedMessagePart(t.NamedTuple):
    """A model parsed from a message and where it was: rigging 2's `message.parts`."""

    model: Model
    slice_: slice


MessageLike = t.Union["Message", MessageDict, str, ContentText, ContentImageUrl, ContentAudioInput]
"""What pipelines accept as one message: a Message, a `{"role", "content"}` dict, a
string or a content part (a user message)."""


class Message(BaseModel):
    """One turn: `Message("user", "hi")`; `str(message)` is `[role]: content`.

    `content` is the text of the message; `content_parts` holds every part, images and
    audio included. Serialized, the parts are `content`, as in OpenAI's API.
    """

    uuid: UUID = Field(default_factory=uuid4, repr=False)
    role: Role
    content_parts: list[Content] = Field(default_factory=list, repr=False)
    metadata: dict[str, t.Any] = Field(default_factory=dict, repr=False)
    slices: list[MessageSlice] = Field(default_factory=list, repr=False)
    tool_calls: list[ToolCall] | None = None
    """The tools an assistant message called, in the order asked (every tool mode)."""
    tool_call_id: str | None = None
    """On a `role="tool"` message: the call it answers."""

    def __init__(
        self,
        role: Role,
        content: str | t.Sequence[str | ContentText | ContentImageUrl | ContentAudioInput] = "",
        **kwargs: t.Any,
    ) -> None:
        if "content_parts" not in kwargs:
            kwargs["content_parts"] = _parts(content)
        super().__init__(role=role, **kwargs)

    @model_validator(mode="before")
    @classmethod
    def _content_is_parts(cls, data: t.Any) -> t.Any:
        """A serialized message, or a dict, names its parts (or its text) `content`."""
        if isinstance(data, dict) and "content" in data:
            data = dict(data)
            data.setdefault("content_parts", _parts(data.pop("content")))
        return data

    @model_serializer(mode="wrap")
    def _parts_as_content(self, handler: SerializerFunctionWrapHandler) -> t.Any:
        dumped = handler(self)
        if isinstance(dumped, dict) and "content_parts" in dumped:
            dumped["content"] = dumped.pop("content_parts")
        return dumped

    def model_post_init(self, context: t.Any) -> None:
        for part in self.slices:
            part._message = self

    @classmethod
    def of(cls, role: Role, text: str) -> Message:
        """A text message built without validation or dedenting, for text exactly as a
        provider returned it (the pipelines' hot path)."""
        return construct(
            cls,
            {
                "uuid": uuid4(),
                "role": role,
                "content_parts": [
                    construct(ContentText, {"type": "text", "text": text, "cache_control": None})
                ],
                "metadata": {},
                "slices": [],
                "tool_calls": None,
                "tool_call_id": None,
            },
        )

    def __str__(self) -> str:
        parts = self.content_parts
        head = f"[{self.role}:{self.tool_call_id}]:" if self.tool_call_id else f"[{self.role}]:"
        if len(parts) == 1 and isinstance(parts[0], ContentText):
            shown = f"{head} {parts[0].text}"
        else:
            shown = head + "".join(f"\n |- {part}" for part in parts)
        return shown + "".join(f"\n |- {call}" for call in self.tool_calls or [])

    def __len__(self) -> int:
        return len(self.content)

    def __repr_args__(self) -> t.Iterable[tuple[str | None, t.Any]]:
        yield from super().__repr_args__()
        yield "content", self.content

    @property
    def content(self) -> str:
        """The text of the message: its non-empty text parts, one per line."""
        parts = self.content_parts
        if len(parts) == 1 and isinstance(parts[0], ContentText):
            return parts[0].text
        return "\n".join(p.text for p in parts if isinstance(p, ContentText) and p.text.strip())

    @content.setter
    def content(self, value: str) -> None:
        """Replace the text (other parts stay); slices whose text is still there move
        with it, the others are dropped."""
        old = self.content
        kept = []
        for part in self.slices:
            covered = old[part.start : part.stop]
            found = _same_occurrence(old, part.start, covered, value)
            if found == -1:
                part._message = None
                continue
            part.start, part.stop = found, found + len(covered)
            kept.append(part)
        self._set_text(value if value.strip() else "")
        self.slices = kept

    def _set_text(self, text: str) -> None:
        """One text part holding `text`, where the first text part was (images and audio
        keep their place around it)."""
        parts: list[t.Any] = []
        placed = False
        for part in self.content_parts:
            if not isinstance(part, ContentText):
                parts.append(part)
            elif not placed:
                # the first text part's cache marker stays with the text
                parts.append(ContentText(text=text, cache_control=part.cache_control))
                placed = True
        if not placed:
            parts.append(ContentText(text=text))
        if not text and len(parts) > 1:  # no empty text beside images or audio
            parts = [p for p in parts if not isinstance(p, ContentText)]
        self.content_parts = parts

    def _replace_range(
        self, edited: MessageSlice | None, start: int, stop: int, value: str
    ) -> None:
        """Put `value` in place of the text in [start, stop): later slices move with their
        text, slices overlapping the range lose theirs and are dropped (`edited`, the
        slice being rewritten, then covers `value`)."""
        text = self.content
        shift = len(value) - (stop - start)
        kept = []
        for part in self.slices:
            if part is edited or part.stop <= start:
                kept.append(part)
            elif part.start >= stop:
                part.start, part.stop = part.start + shift, part.stop + shift
                kept.append(part)
            else:
                part._message = None
        self._set_text(text[:start] + value + text[stop:])
        if edited is not None:
            edited.stop = start + len(value)
        self.slices = kept

    @property
    def models(self) -> list[Model]:
        """Every model parsed from this message so far, in the order they were read."""
        if not self.slices:
            return []
        model = _model_class()
        return [part.obj for part in self.slices if isinstance(part.obj, model)]

    @property
    def parts(self) -> list[ParsedMessagePart]:
        """The parsed models with their slices of `content`."""
        if not self.slices:
            return []
        model = _model_class()
        return [
            ParsedMessagePart(part.obj, part.slice_)
            for part in self.slices
            if isinstance(part.obj, model)
        ]

    @property
    def hash(self) -> int:
        """Equal for messages that would be sent alike (uuid and metadata left out)."""
        return hash(str(self.to_openai()))

    def to_dict(self) -> MessageDict:
        """Role and content as OpenAI's API takes them: the text, or the parts."""
        return self.to_openai()

    def to_openai(self) -> MessageDict:
        """This message as OpenAI's chat API takes it: a single text part is a string;
        consecutive text parts are kept apart by a newline; transcripts are not sent."""
        shaped = self._content_openai()
        if self.tool_calls:
            shaped["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            shaped["tool_call_id"] = self.tool_call_id
        return shaped

    def _content_openai(self) -> MessageDict:
        parts = self.content_parts
        if len(parts) == 1 and isinstance(parts[0], ContentText) and parts[0].cache_control is None:
            return {"role": self.role, "content": parts[0].text}
        dumped: list[dict[str, t.Any]] = []
        for index, part in enumerate(parts):
            item = part.model_dump(exclude_none=True)
            following = parts[index + 1] if index + 1 < len(parts) else None
            if (
                isinstance(part, ContentText)
                and isinstance(following, ContentText)
                and not part.text.endswith("\n")
            ):
                item["text"] += "\n"
            if isinstance(part, ContentAudioInput):
                item["input_audio"].pop("transcript", None)
            dumped.append(item)
        return {"role": self.role, "content": dumped}

    def meta(self, **kwargs: t.Any) -> Message:
        """Add metadata (in place) and return this message."""
        self.metadata.update(kwargs)
        return self

    def clone(self) -> Message:
        """A deep copy with the same uuid, slices attached to the copy."""
        cloned = Message(
            self.role,
            uuid=self.uuid,
            content_parts=copy.deepcopy(self.content_parts),
            metadata=copy.deepcopy(self.metadata),
            slices=[s.clone() for s in self.slices],
            tool_calls=[c.model_copy(deep=True) for c in self.tool_calls]
            if self.tool_calls is not None
            else None,
            tool_call_id=self.tool_call_id,
        )
        return cloned

    def apply(self, **kwargs: t.Any) -> Message:
        """A copy with `$name` placeholders in the text filled from `kwargs` (unknown
        placeholders stay as they are)."""
        new = self.clone()
        new.content = string.Template(new.content).safe_substitute(**kwargs)
        return new

    def truncate(self, max_length: int, suffix: str = "\n[truncated]") -> Message:
        """A copy whose text is cut to `max_length` characters, `suffix` marking the cut."""
        new = self.clone()
        text = new.content
        if len(text) > max_length:
            new.content = text[: max(max_length - len(suffix), 0)] + suffix
        return new

    def shorten(self, max_length: int, sep: str = "...") -> Message:
        """A copy whose text keeps its start and end, `sep` standing for the middle."""
        new = self.clone()
        new.content = shorten(new.content, max_length, sep)
        return new

    def strip(self, obj: SliceType | type[t.Any]) -> list[MessageSlice]:
        """Remove the slices of this type (a slice type, or a model class) and their text
        (rigging's older name for `remove_slices`)."""
        return self.remove_slices(obj)

    def remove_slices(self, *targets: MessageSlice | str | type[t.Any]) -> list[MessageSlice]:
        """Cut out, and return, the slices matching any target: a slice itself, a slice
        type (`"model"`), a model class (slices holding one), or a text (slices covering
        exactly that text, any case). The message's text loses what they covered."""
        kinds = t.get_args(SliceType)
        matched = [
            part
            for part in self.slices
            if any(
                part is target
                or (isinstance(target, str) and target in kinds and part.type == target)
                or (
                    isinstance(target, str)
                    and target not in kinds
                    and part.content.lower() == target.lower()
                )
                or (isinstance(target, type) and isinstance(part.obj, target))
                for target in targets
            )
        ]
        if not matched:
            return []
        for part in sorted(matched, key=lambda s: s.start, reverse=True):
            if part._message is self:  # not already dropped inside a wider match
                self._replace_range(None, part.start, part.stop, "")
        text = self.content
        lead = len(text) - len(text.lstrip())
        self._replace_range(None, len(text.rstrip()), len(text), "")
        self._replace_range(None, 0, lead, "")
        return matched

    def iter_slices(
        self, slice_type: SliceType | t.Iterable[SliceType] | None = None, *, reverse: bool = False
    ) -> t.Iterator[MessageSlice]:
        """The slices by position (of one type or several)."""
        wanted = {slice_type} if isinstance(slice_type, str) else slice_type
        ordered = sorted(self.slices, key=lambda s: s.start, reverse=reverse)
        return iter([s for s in ordered if wanted is None or s.type in wanted])

    def find_slices(
        self,
        slice_type: SliceType | None = None,
        filter_fn: t.Callable[[MessageSlice], bool] | None = None,
        *,
        reverse: bool = False,
    ) -> list[MessageSlice]:
        """The slices of a type that `filter_fn` accepts, by position."""
        found = self.iter_slices(slice_type, reverse=reverse)
        return [s for s in found if filter_fn is None or filter_fn(s)]

    def get_slice(
        self, slice_type: SliceType | None = None, *, select: t.Literal["first", "last"] = "first"
    ) -> MessageSlice | None:
        """The first (or last) slice by position, of a type if given."""
        return next(self.iter_slices(slice_type, reverse=select == "last"), None)

    def mark_slice(
        self,
        target: str | tuple[int, int] | int | re.Pattern[str] | type[Model],
        slice_type: SliceType | None = None,
        *,
        obj: t.Any = None,
        metadata: dict[str, t.Any] | None = None,
        select: t.Literal["first", "last", "all"] = "first",
        case_sensitive: bool = True,
    ) -> t.Any:
        """Record slices over text already in the message: every occurrence of a string, a
        `(start, stop)` range, the whole text (`"*"` or -1), every match of a pattern, or
        every element of a model class (each slice holding its model). Returns the first,
        the last, or all of them (None / [] when nothing matched)."""
        text = self.content
        spans: list[tuple[int, int, t.Any]] = []
        is_model = isinstance(target, type) and issubclass(target, _model_class())
        if target in ("*", -1):
            spans = [(0, len(text), obj)] if text else []
        elif isinstance(target, tuple):
            start, stop = target
            if 0 <= start < stop <= len(text):
                spans = [(start, stop, obj)]
            else:
                warnings.warn(
                    f"range ({start}, {stop}) is outside the text (length {len(text)})",
                    MessageWarning,
                    2,
                )
        elif isinstance(target, str):
            if not target:
                warnings.warn("an empty string marks nothing", MessageWarning, 2)
            haystack, needle = (text, target) if case_sensitive else (text.lower(), target.lower())
            found = haystack.find(needle) if needle else -1
            while found != -1:
                spans.append((found, found + len(needle), obj))
                found = haystack.find(needle, found + 1)
        elif isinstance(target, re.Pattern):
            spans = [(m.start(), m.end(), obj) for m in target.finditer(text)]
        elif is_model:
            try:
                parsed = t.cast("type[Model]", target).from_text(text)
            except (MissingModelError, ValidationError):
                parsed = []  # nothing valid to mark: like a string that isn't there
            spans = [(span.start, span.stop, model) for model, span in parsed]
        else:
            raise TypeError(
                "mark_slice takes a string, a (start, stop) range, '*' or -1, a compiled "
                f"pattern or a Model class, got {type(target).__name__}"
            )
        kind: SliceType = slice_type or ("model" if is_model else "other")
        made = self._add_slices(
            kind, [(start, stop, found, metadata) for start, stop, found in spans]
        )
        if select == "all":
            return made
        return (made[0] if select == "first" else made[-1]) if made else None

    def append_slice(
        self,
        content: str | Model,
        slice_type: SliceType | None = None,
        *,
        obj: t.Any = None,
        metadata: dict[str, t.Any] | None = None,
    ) -> MessageSlice:
        """Add `content` (a text, or a model as XML) as a new text part, on a line of its
        own, and a slice over it."""
        if isinstance(content, str):
            text, kind = content, slice_type or "other"
        else:
            text, kind, obj = content.to_pretty_xml(), slice_type or "model", obj or content
        start = len(self.content) + (1 if self.content else 0)
        self.content_parts.append(ContentText(text=text))
        return self._add_slices(kind, [(start, start + len(text), obj, metadata)])[0]

    def replace_with_slice(
        self,
        content: str | Model,
        slice_type: SliceType | None = None,
        *,
        obj: t.Any = None,
        metadata: dict[str, t.Any] | None = None,
    ) -> MessageSlice:
        """Replace the whole content (and slices) with `content` and a slice over it."""
        self.content_parts = []
        for part in self.slices:
            part._message = None
        self.slices = []
        return self.append_slice(content, slice_type, obj=obj, metadata=metadata)

    def _add_slices(
        self,
        kind: SliceType,
        spans: t.Sequence[tuple[int, int, t.Any, dict[str, t.Any] | None]],
    ) -> list[MessageSlice]:
        """A slice of this type over each (start, stop, obj, metadata) span, or the one
        already there (parsing twice records once); one lookup table per call, so
        recording n slices costs O(n), not O(n^2)."""
        existing = {(p.start, p.stop, p.type): p for p in self.slices}
        made = []
        for start, stop, obj, metadata in spans:
            part = existing.get((start, stop, kind))
            if part is None:
                part = MessageSlice(
                    type=kind, obj=obj, start=start, stop=stop, metadata=metadata or {}
                )
                part._message = self
                self.slices.append(part)
                existing[(start, stop, kind)] = part
            made.append(part)
        return made

    # Parsing: every method records what it read in `slices`.

    def try_parse_many(self, *types: type[ModelT], fail_on_missing: bool = False) -> list[ModelT]:
        """Every valid element of each of `types`, in order of position. A type that is
        missing (or has no valid element) raises with `fail_on_missing`, else is skipped."""
        from pytest_rigging.parsing import try_parse_many

        found = try_parse_many(self.content, *types, fail_on_missing=fail_on_missing)
        self._add_slices(
            "model",
            [(s.start, s.stop, m, {"model_type": type(m).__name__}) for m, s in found],
        )
        return [model for model, _ in found]

    def parse(self, model_type: type[ModelT]) -> ModelT:
        """The first valid element of `model_type`, by position."""
        return self.try_parse_many(model_type, fail_on_missing=True)[0]

    def try_parse(self, model_type: type[ModelT]) -> ModelT | None:
        """Like `parse`, but None when nothing valid is there."""
        return next(iter(self.try_parse_many(model_type)), None)

    def parse_set(self, model_type: type[ModelT], minimum: int | None = None) -> list[ModelT]:
        """Every valid element of `model_type`; at least `minimum` of them."""
        return self.try_parse_set(model_type, minimum, fail_on_missing=True)

    def try_parse_set(
        self, model_type: type[ModelT], minimum: int | None = None, fail_on_missing: bool = False
    ) -> list[ModelT]:
        """Like `parse_set`; a missing model gives [] unless `fail_on_missing`. Fewer than
        `minimum` raises either way."""
        found = self.try_parse_many(model_type, fail_on_missing=fail_on_missing)
        if minimum is not None and len(found) < minimum:
            raise MissingModelError(
                f"Expected at least {minimum} {model_type.xml_tags()} elements, found {len(found)}"
            )
        return found

    def parse_many(self, *types: type[ModelT]) -> list[ModelT]:
        """Every element of any of `types`, in order of position; each must appear."""
        return self.try_parse_many(*types, fail_on_missing=True)

    # Building

    @classmethod
    def from_model(
        cls,
        models: Model | t.Sequence[Model],
        role: Role = "user",
        suffix: str | None = None,
        metadata: dict[str, t.Any] | None = None,
        tool_call_id: str | None = None,
    ) -> Message:
        """A message holding `models` as XML, one per line, each recorded as a slice
        (`tool_call_id`: a tool's reply holding them)."""
        listed = [models] if isinstance(models, BaseModel) else list(models)
        text = ""
        slices = []
        for model in listed:
            xml = model.to_pretty_xml()
            slices.append(
                MessageSlice(
                    type="model",
                    obj=model,
                    start=len(text),
                    stop=len(text) + len(xml),
                    metadata={"model_type": type(model).__name__},
                )
            )
            text += xml + "\n"
        if suffix is not None:
            text += f"\n{suffix}"
        from pytest_rigging.model import ErrorModel

        if isinstance(models, ErrorModel):
            metadata = {"error": models.content, **(metadata or {})}
        return cls(
            role,
            [ContentText(text=text)],
            slices=slices,
            metadata=metadata or {},
            tool_call_id=tool_call_id,
        )

    @classmethod
    def fit(cls, value: MessageLike) -> Message:
        """One message from anything a pipeline accepts as a message."""
        if isinstance(value, Message):
            return value
        if isinstance(value, str):  # always valid: no need to validate it
            return cls.of("user", dedent(value))
        if isinstance(value, ContentText | ContentImageUrl | ContentAudioInput):
            return cls("user", [value])
        if isinstance(value, dict):
            return cls.model_validate(value)
        raise TypeError(
            "expected a Message, a {'role', 'content'} dict, a str or a content part, "
            f"got {type(value).__name__}"
        )

    @classmethod
    def fit_as_list(cls, value: MessageLike | t.Sequence[MessageLike] | None) -> list[Message]:
        """A conversation from one message-like value or a sequence of them."""
        if value is None:
            return []
        if isinstance(
            value, Message | str | dict | ContentText | ContentImageUrl | ContentAudioInput
        ):
            return [cls.fit(value)]
        return [cls.fit(v) for v in value]

    @classmethod
    def apply_to_list(cls, messages: t.Sequence[Message], **kwargs: t.Any) -> list[Message]:
        """`apply(**kwargs)` on each message."""
        return [message.apply(**kwargs) for message in messages]


def _parts(content: t.Any) -> list[t.Any]:
    """Content parts from a string (dedented, as a triple-quoted prompt wants), a list of
    strings and parts, or parts already serialized."""
    if content is None:
        return [ContentText(text="")]
    if isinstance(content, str):
        return [ContentText(text=dedent(content))]
    if isinstance(content, CONTENT_TYPES):
        return [content]
    if isinstance(content, t.Sequence):
        return [ContentText(text=dedent(p)) if isinstance(p, str) else p for p in content]
    raise TypeError(
        f"message content must be a str or a list of content parts, got {type(content).__name__}"
    )


def _same_occurrence(old: str, start: int, covered: str, new: str) -> int:
    """Where `covered`, found at `start` in `old` as its k-th occurrence, is in `new`: its
    k-th occurrence there, else the last one (-1: gone)."""
    if not covered:
        return min(start, len(new))
    rank = old.count(covered, 0, start)
    found = -1
    position = new.find(covered)
    while position != -1:
        found = position
        if rank == 0:
            break
        rank -= 1
        position = new.find(covered, position + len(covered))
    return found


def shorten(text: str, max_length: int, sep: str = "...") -> str:
    """`text` cut to `max_length` characters by dropping its middle."""
    if len(text) <= max_length:
        return text
    keep = max(max_length - len(sep), 0)
    head = (keep + 1) // 2
    return text[:head] + sep + (text[len(text) - (keep - head) :] if keep - head else "")


def inject_system_content(messages: list[Message], content: str) -> list[Message]:
    """Add `content` to the conversation's system message, creating one first in line
    if there is none (in place; returns the list). Content already there is not added
    twice."""
    if not content.strip():
        return messages
    if not messages or messages[0].role != "system":
        messages.insert(0, Message("system", content))
    elif content not in messages[0].content:
        # a copy: the message may be shared (a pipeline's, in every chat of a run)
        messages[0] = messages[0].clone()
        messages[0].content += "\n\n" + content
    return messages


def strip_system_content(messages: list[Message], content: str) -> list[Message]:
    """Undo `inject_system_content`: remove `content` from the system message, and the
    message itself once it is empty (returns the list)."""
    if not content.strip() or not messages or messages[0].role != "system":
        return messages
    system = messages[0] = messages[0].clone()  # it may be shared, as above
    system.content = system.content.replace(content, "").strip()
    return messages[1:] if not system.content else messages
