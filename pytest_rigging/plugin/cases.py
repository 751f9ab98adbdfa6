"""Eval cases from data files: `@pytest.mark.rig_cases(FILE, id=FIELD)` parametrizes a test
with a file's rows, as `parametrize` would.

A case's id is its id field's value or a short hash of its content, never its row number,
so inserting a row renames nothing and every xdist worker and shard agrees. Each case
carries the hash of its content and its dataset's, which the JSON report and the baseline
keep, so that an edited case is told apart from a regression. Rows are read as a stream:
what is kept is the cases selected (`limit=`, `sample=`), not the file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import hashlib
import heapq
import json
import os
import re
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from pydantic import BaseModel, TypeAdapter

RowT = t.TypeVar("RowT")

FORMATS = ("jsonl", "json", "csv", "hf")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
HUB = "hf://"
"""A Hugging Face hub dataset's source: `hf://owner/name`."""
ID_LENGTH = 12
"""Hex digits of a content hash that make a case's id when no id field is named: 48 bits,
so that 100,000 cases have about one chance in 50,000 of two sharing one."""
_UNSAFE_ID = re.compile(r"[^\w.\-]+")
RESERVED = frozenset({"request"})
"""Names pytest refuses as parameters: such a field is read through `rig_case` only."""


class CasesError(ValueError):
    """A dataset that can't be read as cases; the message names the file, the line and the
    field where it can."""


@dataclass(frozen=True)
class Dataset:
    """A dataset as a run read it: its source as shown, its format and its hash (of every
    row read, in order: the same rows give the same hash in every format)."""

    source: str
    format: str
    hash: str
    rows: int
    """Rows read (the whole dataset unless `limit=` stopped before its end)."""


@dataclass(frozen=True, eq=False)
class Case(t.Generic[RowT]):
    """One case of a `rig_cases` dataset, as the `rig_case` fixture gives it.

    `data` is the row as the case model validated it (`model=`), or as a dict of its
    fields; `case["field"]` reads a field of either. `hash` is its content's, `line` where
    it starts in its file (its index in a Hugging Face dataset)."""

    id: str
    data: RowT
    fields: t.Mapping[str, t.Any] = dataclasses.field(repr=False)
    line: int
    hash: str
    dataset: Dataset = dataclasses.field(repr=False)

    def __getitem__(self, name: str) -> t.Any:
        return self.fields[name]

    def get(self, name: str, default: t.Any = None) -> t.Any:
        return self.fields.get(name, default)


@dataclass(frozen=True)
class Source:
    """What a `rig_cases` marker asks for, checked."""

    source: str
    id: str | None = None
    fields: tuple[tuple[str, str], ...] | None = None
    """(field in the file, name given to the test), in order."""
    model: type[BaseModel] | None = None
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    format: str | None = None
    split: str | None = None
    revision: str | None = None
    config: str | None = None


def _marker_signature(
    source: str | os.PathLike[str],
    *,
    id: str | None = None,
    fields: t.Sequence[str] | t.Mapping[str, str] | None = None,
    model: type[BaseModel] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    format: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    config: str | None = None,
) -> Source:
    """`@pytest.mark.rig_cases(...)`'s arguments, checked like a call's."""
    if not isinstance(source, str | os.PathLike) or not str(source).strip():
        raise CasesError(f"the source must be a file path or {HUB}owner/name, got {source!r}")
    if id is not None and (not isinstance(id, str) or not id):
        raise CasesError(f"id= must name a field, got {id!r}")
    pairs = None
    if fields is not None:
        if isinstance(fields, str) or not isinstance(fields, t.Sequence | t.Mapping):
            raise CasesError(
                f"fields= must be a list of field names or a dict renaming them, got {fields!r}"
            )
        items = fields.items() if isinstance(fields, t.Mapping) else ((f, f) for f in fields)
        pairs = tuple(items)
        bad = [p for p in pairs if not all(isinstance(n, str) and n for n in p)]
        if bad or not pairs:
            raise CasesError(f"fields= must name fields as non-empty strings, got {fields!r}")
        given_names = [name for _, name in pairs]
        if len(set(given_names)) != len(given_names):
            raise CasesError(f"fields= gives two fields one name: {fields!r}")
    if model is not None and not _is_model(model):
        raise CasesError(f"model= must be a pydantic model class, got {model!r}")
    for name, number, low in (("limit", limit, 1), ("sample", sample, 1), ("seed", seed, 0)):
        if number is not None and (
            not isinstance(number, int) or isinstance(number, bool) or number < low
        ):
            raise CasesError(f"{name}= must be a whole number >= {low}, got {number!r}")
    if format is not None and format not in FORMATS:
        raise CasesError(f"format= must be one of {', '.join(FORMATS)}, got {format!r}")
    for name, text in (("split", split), ("revision", revision), ("config", config)):
        if text is not None and (not isinstance(text, str) or not text):
            raise CasesError(f"{name}= must be a non-empty string, got {text!r}")
    return Source(
        os.fspath(source), id, pairs, model, limit, sample, seed, format, split, revision, config
    )


def _is_model(value: object) -> bool:
    from pydantic import BaseModel

    return isinstance(value, type) and issubclass(value, BaseModel)


def read_marker(marker: pytest.Mark) -> Source:
    """The marker's arguments; a wrong one is a `CasesError` naming it."""
    try:
        return _marker_signature(*marker.args, **marker.kwargs)
    except TypeError as error:
        raise CasesError(str(error).replace("_marker_signature() ", "")) from None


class Row(t.NamedTuple):
    """A row as a reader yields it: where it starts, and its fields."""

    line: int
    values: dict[str, t.Any]


class _Where:
    """How messages name a place in a dataset: `cases.csv:14`, or a Hugging Face dataset's
    row by its index, as Python reads it: `data['test'][14]`."""

    def __init__(self, shown: str, lines: bool, path: Path | None = None) -> None:
        self.shown = shown
        self.lines = lines
        self.path = path
        """The file, for what a message must read again in it (where it isn't UTF-8)."""

    def __call__(self, line: int) -> str:
        return f"{self.shown}:{line}" if self.lines else f"{self.shown}[{line}]"


def format_of(source: Source, path: Path | None) -> str:
    """The reader a source needs: `format=`, else the suffix; a folder or `hf://` name is
    a Hugging Face dataset."""
    if source.format is not None:
        return source.format
    if path is None or path.is_dir():
        return "hf"
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise CasesError(
            f"{source.source}: cannot tell the format from the suffix {path.suffix!r}: "
            f"name the file .jsonl, .json or .csv, or pass format= (one of {', '.join(FORMATS)})"
        )
    return found


def _jsonl(path: Path, where: _Where) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if not line or line.isspace():
                continue
            try:
                value = json.loads(line)
            except ValueError as error:
                raise CasesError(f"{where(number)}: not JSON: {_json_problem(error)}") from None
            yield Row(number, _object(value, where, number))


def _json(path: Path, where: _Where) -> Iterator[Row]:
    """A JSON array of objects, each with the line it starts on."""
    text = path.read_text(encoding="utf-8-sig")
    decoder = json.JSONDecoder()
    position = _blank(text, 0)
    if text[position : position + 1] != "[":
        raise CasesError(f"{where(_line(text, position))}: expected a JSON array of objects")
    line, counted = 1, 0
    position = _blank(text, position + 1)
    if text[position : position + 1] == "]":
        return  # no case: `load` says so
    while True:
        line += text.count("\n", counted, position)
        counted = position
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError as error:
            raise CasesError(f"{where(line)}: not JSON: {_json_problem(error)}") from None
        yield Row(line, _object(value, where, line))
        position = _blank(text, position)
        closing = text[position : position + 1]
        if closing == "]":
            after = _blank(text, position + 1)
            if after < len(text):
                at = _line(text, after)
                raise CasesError(f"{where(at)}: not JSON: text after the array's closing ']'")
            return
        if closing != ",":
            at = _line(text, position)
            raise CasesError(f"{where(at)}: not JSON: expected ',' or ']' after an object")
        position = _blank(text, position + 1)


def _blank(text: str, position: int) -> int:
    """Where the text after `position`'s whitespace starts."""
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _json_problem(error: ValueError) -> str:
    message = getattr(error, "msg", None)
    column = getattr(error, "colno", None)
    return f"{message} (column {column})" if message and column else str(error)


def _object(value: object, where: _Where, line: int) -> dict[str, t.Any]:
    if not isinstance(value, dict):
        raise CasesError(f"{where(line)}: expected an object of fields, got {type(value).__name__}")
    return value


def _csv(path: Path, where: _Where) -> Iterator[Row]:
    """RFC 4180, strictly: the header names the fields; a ragged row or an unterminated
    quote is an error naming its line. Cells are text (the case model may say otherwise)."""
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file, strict=True)
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise CasesError(f"{where(start)}: {_csv_problem(str(error))}") from None
            if not cells:
                continue
            if header is None:
                header = _header(cells, where(start))
                continue
            if len(cells) != len(header):
                raise CasesError(f"{where(start)}: expected {len(header)} fields, got {len(cells)}")
            yield Row(start, dict(zip(header, cells, strict=True)))


def _header(cells: list[str], where: str) -> list[str]:
    names = [c.strip() for c in cells]
    if not all(names):
        raise CasesError(f"{where}: the header has an empty field name: {cells!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CasesError(f"{where}: the header names {', '.join(map(repr, repeated))} twice")
    return names


def _csv_problem(message: str) -> str:
    if "unexpected end of data" in message or "EOF" in message:
        return "unterminated quoted field (a quote opened in this row is never closed)"
    return f"not CSV: {message}"


def _hugging_face(source: Source, path: Path | None, shown: str) -> tuple[Iterator[Row], str]:
    """The rows of a Hugging Face dataset, as Python values, and how messages name it (with
    its split: `data['test']`): a folder `save_to_disk` wrote, or a hub name
    (`hf://owner/name`, pinned with `revision=`). Needs the `datasets` extra."""
    if path is not None and (source.revision is not None or source.config is not None):
        given = "revision=" if source.revision is not None else "config="
        raise CasesError(
            f"{shown}: {given} is for a hub dataset ({HUB}owner/name); a folder that "
            "save_to_disk wrote holds one version of one config"
        )
    datasets = _datasets(shown)
    try:
        if path is not None:
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(
                source.source.removeprefix(HUB),
                source.config,
                split=source.split,
                revision=source.revision,
            )
    except Exception as error:  # the loader's own (pyarrow's, the hub client's): named, not hidden
        if path is not None and isinstance(error, FileNotFoundError):
            raise CasesError(f"{shown}: not a dataset that save_to_disk wrote: {error}") from None
        problem = f"{type(error).__name__}: {error}"
        raise CasesError(f"{shown}: cannot load the dataset: {problem}") from None
    if isinstance(loaded, datasets.DatasetDict | datasets.IterableDatasetDict):
        splits = ", ".join(loaded)
        if source.split is None:
            raise CasesError(f"{shown}: the dataset has splits ({splits}): pick one with split=")
        if source.split not in loaded:
            raise CasesError(f"{shown}: no split {source.split!r} (it has: {splits})")
        loaded = loaded[source.split]
    elif path is not None and source.split is not None and source.split != str(loaded.split):
        raise CasesError(
            f"{shown}: split={source.split!r}, but the folder holds one Dataset "
            "(not a DatasetDict of splits): leave out split="
        )
    if source.split is not None:
        shown = f"{shown}[{source.split!r}]"
    rows = (Row(index, row) for index, row in enumerate(loaded.with_format(None)))
    return rows, shown


def _datasets(shown: str) -> t.Any:
    """The `datasets` module; its absence is a `CasesError` saying how to install it."""
    try:
        import datasets
    except ModuleNotFoundError as error:
        if error.name != "datasets":
            raise CasesError(f"{shown}: cannot import datasets: {error}") from None
        raise CasesError(
            f"{shown}: reading a Hugging Face dataset needs the datasets package: "
            "pip install 'pytest-rigging[datasets]'"
        ) from None
    except ImportError as error:
        raise CasesError(f"{shown}: cannot import datasets: {error}") from None
    return datasets


def unpinned(source: Source) -> str | None:
    """Why a hub dataset without `revision=` is worth a warning: what it loads can change
    under the suite."""
    if not source.source.startswith(HUB) or source.revision is not None:
        return None
    return (
        f"{source.source} is not pinned: the hub dataset can change under the suite; "
        "pin it with revision=<commit sha>"
    )


def _rows(source: Source, base: Path, root: Path) -> tuple[Iterator[Row], _Where, str]:
    """The rows of `source` (relative paths from `base`, shown from `root`), the way to
    name a place in them, and the format."""
    if source.source.startswith(HUB):
        rows, shown = _hugging_face(source, None, source.source)
        return rows, _Where(shown, lines=False), "hf"
    path = Path(source.source).expanduser()
    if not path.is_absolute():
        path = base / path
    shown = _shown(path, root)
    if not path.exists():
        raise CasesError(f"{shown}: no such file")
    kind = format_of(source, path)
    if kind == "hf":
        rows, shown = _hugging_face(source, path, shown)
        return rows, _Where(shown, lines=False), kind
    if path.is_dir():
        raise CasesError(f"{shown}: is a folder, not a {kind} file")
    for name, given in (
        ("split", source.split),
        ("revision", source.revision),
        ("config", source.config),
    ):
        if given is not None:
            raise CasesError(f"{shown}: {name}= is for a Hugging Face dataset, not a {kind} file")
    where = _Where(shown, lines=True, path=path)
    readers = {"jsonl": _jsonl, "json": _json, "csv": _csv}
    return readers[kind](path, where), where, kind


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)
"""`json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)`, made once: the
call builds its encoder each time, a quarter of the time of hashing a short row."""


def content_hash(values: t.Mapping[str, t.Any]) -> str:
    """A row's content as a hash: its fields, keys sorted, as JSON (a value JSON can't
    hold, as its text). A null field counts as absent and a whole float as an int, so that
    rows hash alike in a JSONL file and in a Hugging Face dataset, whose columns give every
    row every field (null where it had none) and one type of number."""
    if not all(type(v) in _AS_JSON for v in values.values()):
        values = {k: _as_json(v) for k, v in values.items() if v is not None}
    text = _CANONICAL.encode(values)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_AS_JSON = frozenset({str, int, bool})
"""Types of field that a row hashes as they are."""


def _as_json(value: t.Any) -> t.Any:
    kind = type(value)
    if kind in _AS_JSON:
        return value
    if kind is float:
        return int(value) if value.is_integer() else value
    if isinstance(value, t.Mapping):
        return {k: _as_json(v) for k, v in value.items() if v is not None}
    if kind is list or kind is tuple:
        return [_as_json(v) for v in value]
    return value


def case_id(value: object) -> str:
    """An id field's value as an item id shows it: `-k` friendly (letters and digits of
    any script, `_`, `.`, `-`; any other run of characters becomes `_`). pytest shows
    what isn't ASCII escaped, as it does a `parametrize` id (`caf\\xe9`)."""
    return _UNSAFE_ID.sub("_", str(value))


class _Picked(t.NamedTuple):
    line: int
    id: str
    hash: str
    data: t.Any
    """The row's fields, or the case model made of them."""


class _Kept(t.NamedTuple):
    """The rows kept, as four lists rather than a tuple a row: each tuple would be one
    more object for the garbage collector to walk while the rest is read."""

    lines: list[int]
    ids: list[str]
    hashes: list[str]
    data: list[t.Any]
    """Each row's fields, or the case model made of them."""


def load(source: Source, base: Path, root: Path) -> list[Case[t.Any]]:
    """The cases `source` selects, in the file's order; any problem is a `CasesError`
    naming the file, the line and the field."""
    rows, where, kind = _rows(source, base, root)
    validate = _validator(source.model, kind) if source.model is not None else None
    seen: dict[str, int] = {}
    whole = hashlib.sha256()
    kept = _Kept([], [], [], [])
    ranked: list[tuple[int, int, _Picked]] = []  # a max-heap by rank, negated
    count = 0
    try:
        for line, row in rows:
            values = row if source.fields is None else _selected(row, source.fields, where, line)
            digest = content_hash(values)
            whole.update(digest.encode("ascii"))
            name = _id_of(row, source.id, digest, where(line))
            first = seen.setdefault(name, line)
            if first != line:
                raw = str(row[source.id]) if source.id else name
                made = "" if raw == name else f" (made of {raw!r})"
                raise CasesError(
                    f"{where(line)}: case id {name!r}{made} is also the id of the case "
                    f"{_other(where, first)}: ids must be unique"
                    + ("" if source.id else " (two rows with the same content)")
                )
            data = values if validate is None else validate(values, where(line))
            count += 1
            if source.sample is None:
                kept.lines.append(line)
                kept.ids.append(name)
                kept.hashes.append(digest)
                kept.data.append(data)
            else:
                rank = _rank(source.seed, name)
                one = _Picked(line, name, digest, data)
                if len(ranked) < source.sample:
                    heapq.heappush(ranked, (-rank, count, one))
                elif rank < -ranked[0][0]:
                    heapq.heapreplace(ranked, (-rank, count, one))
            if source.limit is not None and count >= source.limit:
                break
    except UnicodeDecodeError:
        raise CasesError(_undecodable(where)) from None
    except OSError as error:
        raise CasesError(f"{where.shown}: cannot read it: {error.strerror or error}") from None
    if not count:
        raise CasesError(f"{where.shown}: no cases (the dataset is empty)")
    if source.sample is not None:
        if source.sample > count:
            raise CasesError(
                f"{where.shown}: sample={source.sample} is more than the {count} cases read"
            )
        picked = [one for _, _, one in sorted(ranked, key=lambda r: r[1])]
        kept = _Kept(*(list(column) for column in zip(*picked, strict=True)))
    dataset = Dataset(where.shown, kind, whole.hexdigest(), count)
    cases: list[Case[t.Any]] = []
    for line, name, digest, data in zip(*kept, strict=True):
        fields: t.Mapping[str, t.Any] = data
        if validate is not None:
            fields = {field: getattr(data, field) for field in type(data).model_fields}
            fields |= data.model_extra or {}
        cases.append(Case(name, data, fields, line, digest, dataset))
    return cases


def _undecodable(where: _Where) -> str:
    """Where a file stops being UTF-8 text (a spreadsheet's export in another encoding)."""
    raw = where.path.read_bytes() if where.path is not None else b""
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        raw[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = raw.count(b"\n", 0, offset) + 1
        return f"{where(line)}: not UTF-8 text (byte 0x{raw[offset]:02x}): save it as UTF-8"
    return f"{where.shown}: not UTF-8 text: save it as UTF-8"


def _other(where: _Where, line: int) -> str:
    return f"on line {line}" if where.lines else f"at {where(line)}"


def _rank(seed: int, name: str) -> int:
    """A case's place in the seeded sample: by its id, so that a case is drawn or not
    whatever rows are added around it."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")


def _selected(
    row: dict[str, t.Any], fields: tuple[tuple[str, str], ...], where: _Where, line: int
) -> dict[str, t.Any]:
    selected = {}
    for field, name in fields:
        if field not in row:
            raise CasesError(f"{where(line)}: no field {field!r} (the row has: {_names(row)})")
        selected[name] = row[field]
    return selected


def _names(row: t.Mapping[str, t.Any]) -> str:
    return ", ".join(row) or "no fields"


def _id_of(row: dict[str, t.Any], field: str | None, digest: str, where: str) -> str:
    if field is None:
        return digest[:ID_LENGTH]
    if field not in row:
        raise CasesError(f"{where}: no id field {field!r} (the row has: {_names(row)})")
    value = row[field]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CasesError(f"{where}: the id field {field!r} is empty")
    return case_id(value)


Validator = t.Callable[[dict[str, t.Any], str], "BaseModel"]


def _validator(model: type[BaseModel], kind: str) -> Validator:
    """Validate a row with the case model. A CSV row's cells are text: a field that takes
    text gets the cell as it is (an empty cell is ""); for any other, the cell is read as
    JSON first (`3`, `["a", "b"]`), and an empty one is left out (the field's default
    applies)."""
    from pydantic import ValidationError

    texts = _TextFields(model) if kind == "csv" else None

    def validate(values: dict[str, t.Any], where: str) -> BaseModel:
        try:
            return model.model_validate(texts.typed(values) if texts is not None else values)
        except ValidationError as error:
            raise CasesError(f"{where}: {_validation_problem(error, model)}") from None

    return validate


class _TextFields:
    """Which of a case model's fields take a CSV cell's text as it is."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self._adapters: dict[str, TypeAdapter[t.Any] | None] = {}

    def _adapter(self, name: str) -> TypeAdapter[t.Any] | None:
        if name not in self._adapters:
            from pydantic import TypeAdapter

            field = self.model.model_fields.get(name)
            kind: t.Any = None if field is None else field.annotation
            if field is not None and field.metadata:
                kind = t.Annotated[(kind, *field.metadata)]
            self._adapters[name] = None if field is None else TypeAdapter(kind)
        return self._adapters[name]

    def _takes_text(self, name: str, text: str) -> bool:
        adapter = self._adapter(name)
        if adapter is None:
            return True
        try:
            adapter.validate_python(text, strict=True)
        except ValueError:
            return False
        return True

    def typed(self, values: dict[str, t.Any]) -> dict[str, t.Any]:
        typed: dict[str, t.Any] = {}
        for name, text in values.items():
            if not isinstance(text, str) or self._takes_text(name, text):
                typed[name] = text
            elif text.strip():
                try:
                    typed[name] = json.loads(text)
                except ValueError:
                    typed[name] = text
        return typed


def _validation_problem(error: t.Any, model: type[BaseModel]) -> str:
    problems = []
    for found in error.errors(include_url=False):
        field = ".".join(map(str, found["loc"])) or "(the row)"
        got = f" (got {found['input']!r})" if found["type"] != "missing" else ""
        problems.append(f"field {field!r}: {found['msg']}{got}")
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    return f"does not fit {model.__name__}: " + "; ".join(problems[:3]) + more


def parameters(
    cases: t.Sequence[Case[t.Any]], wanted: t.Collection[str], taken: t.Collection[str]
) -> list[str]:
    """The fields passed to the test and its fixtures by name: those they ask for
    (`wanted`), less `rig_*` and pytest's reserved names; a field `parametrize` sets too
    (`taken`) is an error, and so is a case without a field that another case passes."""
    names: dict[str, None] = {}
    for case in cases:
        names.update(dict.fromkeys(case.fields))
    passed = [n for n in names if n in wanted and n not in RESERVED and not n.startswith("rig_")]
    clashing = [n for n in passed if n in taken]
    if clashing:
        raise CasesError(
            f"field {clashing[0]!r} is also set by @pytest.mark.parametrize: rename the field "
            "with fields={...} or the parameter"
        )
    for case in cases:
        for name in passed:
            if name not in case.fields:
                where = _Where(case.dataset.source, case.dataset.format != "hf")(case.line)
                raise CasesError(
                    f"{where}: no field {name!r}, which the test asks for "
                    f"(the row has: {_names(case.fields)})"
                )
    return passed


_LOADED = pytest.StashKey[dict[tuple[t.Any, ...], list[Case[t.Any]]]]()


def _cached(config: pytest.Config, source: Source, base: Path) -> list[Case[t.Any]]:
    """Cases are read once per file and marker arguments (two tests over one file share
    them), and again if the file changed meanwhile."""
    loaded = config.stash.setdefault(_LOADED, {})
    path = base / source.source
    try:
        stat = path.stat()
        key: tuple[t.Any, ...] = (source, str(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = (source, str(path))
    if key not in loaded:
        loaded[key] = load(source, base, config.rootpath)
    return loaded[key]


def generate(metafunc: pytest.Metafunc) -> list[str]:
    """Parametrize the test with its cases (before its cells, so that ids read
    `test[case-cell]`); returns what it parametrized: the fields passed by name, and
    `rig_case`. A problem is a collection error naming the test, the file, the line and
    the field."""
    definition = metafunc.definition
    marker = definition.get_closest_marker("rig_cases")
    where = f"{definition.nodeid}: @pytest.mark.rig_cases"
    if marker is None:
        raise pytest.Collector.CollectError(
            f"{definition.nodeid}: rig_case gives the case of a @pytest.mark.rig_cases test; "
            "this test has no rig_cases marker"
        )
    try:
        source = read_marker(marker)
        note = unpinned(source)
        if note is not None:
            from pytest_rigging.plugin.state import RiggingWarning

            definition.warn(RiggingWarning(f"{where}: {note}"))
        cases = _cached(metafunc.config, source, definition.path.parent)
        names = parameters(cases, set(metafunc.fixturenames), parametrized(definition))
    except CasesError as error:
        raise pytest.Collector.CollectError(f"{where}: {error}") from None
    arguments = [*names, "rig_case"]
    metafunc.parametrize(
        arguments,
        [(*(c.fields[n] for n in names), c) for c in cases],
        ids=[c.id for c in cases],
        indirect=["rig_case"],
    )
    return arguments


def field_names(metafunc: pytest.Metafunc) -> set[str]:
    """Every field of a `rig_cases` test's cases (those it doesn't take by name too), as a
    judge's rubric may name them; none for another test. Its cases are read by then."""
    marker = metafunc.definition.get_closest_marker("rig_cases")
    if marker is None:
        return set()
    try:
        cases = _cached(metafunc.config, read_marker(marker), metafunc.definition.path.parent)
    except CasesError:  # said by generate already
        return set()
    return {name for case in cases for name in case.fields}


@contextlib.contextmanager
def asking_for_case(function: t.Any) -> Iterator[None]:
    """While pytest makes the items of a `rig_cases` test, the test asks for `rig_case`,
    so that each item holds its case whatever it asks for itself. The function's own marks
    are put back after: one function object can be collected elsewhere too (a method that
    a class without `rig_cases` inherits)."""
    own = vars(function).get("pytestmark")
    pytest.mark.usefixtures("rig_case")(function)
    try:
        yield
    finally:
        if own is None:
            del function.pytestmark
        else:
            function.pytestmark = own


def case_of(item: pytest.Item) -> Case[t.Any] | None:
    """An item's case; None for an item of a test without `rig_cases`."""
    from pytest_rigging.plugin._compat import call_params

    case = call_params(item).get("rig_case")
    return case if isinstance(case, Case) else None


def case_ids(config: pytest.Config, items: t.Iterable[pytest.Item]) -> dict[str, list[str]]:
    """Each `rig_cases` test function's case ids (by `records.group_key`), all of them,
    whichever of its items were collected (a node id may name one): a baseline's case
    missing from them was removed from its dataset; one among them that didn't run was
    deselected, or ran in another shard. Read from the cases collection loaded."""
    from pytest_rigging.plugin.records import group_key

    ids: dict[str, list[str]] = {}
    for item in items:
        if "rig_case" not in getattr(item, "fixturenames", ()):
            continue
        function = group_key(item.nodeid)
        marker = None if function in ids else item.get_closest_marker("rig_cases")
        if marker is None:
            continue
        try:
            cases = _cached(config, read_marker(marker), item.path.parent)
        except CasesError:  # collection said so already
            continue
        ids[function] = [case.id for case in cases]
    return ids


def parametrized(definition: pytest.Item) -> dict[str, bool]:
    """The test's `parametrize` arguments, each with whether it is indirect."""
    names: dict[str, bool] = {}
    for mark in definition.iter_markers("parametrize"):
        argnames = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(argnames, str):
            argnames = [n.strip() for n in argnames.split(",") if n.strip()]
        indirect = mark.kwargs.get("indirect", False)
        for name in argnames:
            names[name] = indirect is True or (
                isinstance(indirect, list | tuple) and name in indirect
            )
    return names
