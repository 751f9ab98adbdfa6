"""Models out of plain text, as rigging's `rigging.parsing` gives them: each function
returns `(model, slice)` pairs, the slice locating the element in the text, in order of
position. `Message.parse` and friends do the same over a message and return the models."""

from __future__ import annotations

import typing as t

from pytest_rigging.error import MissingModelError

if t.TYPE_CHECKING:
    from pytest_rigging.model import ModelT

__all__ = ["parse", "parse_many", "parse_set", "try_parse", "try_parse_many", "try_parse_set"]


def parse(text: str, model_type: type[ModelT]) -> tuple[ModelT, slice]:
    """The first valid element of `model_type`; raises when there is none."""
    return try_parse_many(text, model_type, fail_on_missing=True)[0]


def try_parse(text: str, model_type: type[ModelT]) -> tuple[ModelT, slice] | None:
    """Like `parse`, but None when nothing valid is there."""
    return next(iter(try_parse_many(text, model_type)), None)


def parse_set(
    text: str, model_type: type[ModelT], *, minimum: int | None = None
) -> list[tuple[ModelT, slice]]:
    """Every valid element of `model_type`; at least one, and at least `minimum`."""
    return try_parse_set(text, model_type, minimum=minimum, fail_on_missing=True)


def try_parse_set(
    text: str,
    model_type: type[ModelT],
    *,
    minimum: int | None = None,
    fail_on_missing: bool = False,
) -> list[tuple[ModelT, slice]]:
    """Like `parse_set`; a missing model gives [] unless `fail_on_missing`. Fewer than
    `minimum` raises either way."""
    found = try_parse_many(text, model_type, fail_on_missing=fail_on_missing)
    if minimum is not None and len(found) < minimum:
        raise MissingModelError(
            f"Expected at least {minimum} {model_type.xml_tags()} elements, found {len(found)}"
        )
    return found


def parse_many(text: str, *types: type[ModelT]) -> list[tuple[ModelT, slice]]:
    """Every valid element of any of `types`; each type must appear."""
    return try_parse_many(text, *types, fail_on_missing=True)


def try_parse_many(
    text: str, *types: type[ModelT], fail_on_missing: bool = False
) -> list[tuple[ModelT, slice]]:
    """Every valid element of each of `types`, in order of position. A type that is
    missing (or has no valid element) raises with `fail_on_missing`, else is skipped."""
    found: list[tuple[ModelT, slice]] = []
    for model_type in types:
        try:
            found.extend(model_type.from_text(text))
        except Exception:
            if fail_on_missing:
                raise
    found.sort(key=lambda pair: pair[1].start)
    return found
