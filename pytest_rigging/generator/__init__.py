"""Generators: `get_generator("[provider!]model[,key=value,...]")` and friends.

Providers `litellm` (the default), `echo` and `scripted` are built in; their modules load
only when an identifier names them.
"""

from pytest_rigging.generator.base import (
    GeneratedMessage,
    GeneratedText,
    GenerateParams,
    Generator,
    Usage,
    chat,
    complete,
    get_generator,
    get_identifier,
    register_generator,
)

__all__ = [
    "GenerateParams",
    "GeneratedMessage",
    "GeneratedText",
    "Generator",
    "Usage",
    "chat",
    "complete",
    "get_generator",
    "get_identifier",
    "register_generator",
]
