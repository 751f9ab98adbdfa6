"""Building pydantic models on hot paths without re-validating what we built ourselves."""

from __future__ import annotations

import typing as t

from pydantic import BaseModel

ModelT = t.TypeVar("ModelT", bound=BaseModel)


def construct(cls: type[ModelT], values: dict[str, t.Any]) -> ModelT:
    """What `cls.model_construct(**values)` does, for `values` that hold every field.

    pydantic's own `model_construct` looks up each default it is not given through
    `inspect.signature`, which costs more than everything else a pipeline does per chat.
    """
    instance = cls.__new__(cls)
    object.__setattr__(instance, "__dict__", values)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    private = cls.__private_attributes__
    object.__setattr__(
        instance,
        "__pydantic_private__",
        {name: attribute.get_default() for name, attribute in private.items()} if private else None,
    )
    return instance
