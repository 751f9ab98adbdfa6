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

_PROVIDERS = {
    "LiteLLMGenerator": "litellm_",
    "OpenAIGenerator": "openai_",
    "AnthropicGenerator": "anthropic_",
}


def __getattr__(name: str) -> type[Generator]:
    """The provider classes, as rigging exports `LiteLLMGenerator`: loaded on first use, so
    importing this package loads no provider."""
    module = _PROVIDERS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_rigging.generator' has no attribute {name!r}")
    import importlib

    provider: type[Generator] = getattr(
        importlib.import_module(f"pytest_rigging.generator.{module}"), name
    )
    return provider
