"""What litellm knows of providers and models, read from the files it ships instead of by
importing it: the import costs seconds of CPU and ~200 MB, which the process checking a
run's models (an xdist controller, which makes no call) or a native provider must not pay.

Once litellm is imported, its own objects are used; whether it routes a name its data
doesn't list is asked of litellm itself (`routes`)."""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import sys
import tokenize
import typing as t
from pathlib import Path

_DATA = "model_prices_and_context_window_backup.json"


def _package() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def model_data() -> dict[str, t.Any]:
    """litellm's model data (`litellm.model_cost`): the JSON it bundles, which it loads
    itself when `LITELLM_LOCAL_MODEL_COST_MAP` keeps it offline (the plugin sets it for
    litellm's import unless the user set it; a user who asks for the remote map gets it
    once litellm is imported, and these checks read the bundled one until then)."""
    loaded = sys.modules.get("litellm")
    if loaded is not None and isinstance(getattr(loaded, "model_cost", None), dict):
        return t.cast(dict[str, t.Any], loaded.model_cost)
    return _bundled_model_data()


@functools.cache
def sent_name(model: str, provider: str) -> str:
    """The model name litellm sends for `model` of `provider`: another name for a model
    in its data (`claude-sonnet-latest`) is sent as that model's own name, whatever the
    server; any other name as it is."""
    names = (model, f"{provider}/{model}")
    if not _mentioned(names):
        return model
    owners = _bundled()[1]
    for name in names:
        owner = owners.get(name)
        if owner is not None:
            return owner.removeprefix(f"{provider}/")
    return model


def token_prices(model: str, provider: str | None = None) -> tuple[float, float] | None:
    """The USD price of an input and of an output token of `model` in litellm's data
    (`provider/model` too when a provider is given; `model`'s part after its provider's
    prefix when it has one); None when the data lists no price for it."""
    names = [model]
    if provider is not None:
        names.append(f"{provider}/{model}")
    elif "/" in model:
        names.append(model.split("/", 1)[1])
    if "litellm" not in sys.modules and not _mentioned(tuple(names)):
        return None
    data = model_data()
    for name in names:
        entry = data.get(name)
        if isinstance(entry, dict):
            input_price = _price(entry.get("input_cost_per_token"))
            output_price = _price(entry.get("output_cost_per_token"))
            if input_price is not None and output_price is not None:
                return input_price, output_price
    return None


def _price(value: object) -> float | None:
    """A price as the data gives it: a number (a bool is a flag, not a price)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@functools.cache
def _mentioned(names: tuple[str, ...]) -> bool:
    """Whether litellm's bundled data names any of `names`: a name it never mentions (a
    local server's model, usually) is known at once, without parsing the data (~20 ms)."""
    package = _package()
    try:
        text = (package / _DATA).read_text(encoding="utf-8") if package is not None else ""
    except OSError:
        return False
    return any(json.dumps(name, ensure_ascii=False) in text for name in names)


def _bundled_model_data() -> dict[str, t.Any]:
    return _bundled()[0]


@functools.cache
def _bundled() -> tuple[dict[str, t.Any], dict[str, str]]:
    """The bundled model data, and which model each other name stands for."""
    package = _package()
    if package is None:
        return {}, {}
    try:
        data = json.loads((package / _DATA).read_text())
    except (OSError, ValueError):
        return {}, {}
    if not isinstance(data, dict):
        return {}, {}
    data.pop("fallback_generalizations", None)  # rules litellm loads apart, not a model
    return data, _expand_aliases(data)


def _expand_aliases(data: dict[str, t.Any]) -> dict[str, str]:
    """Other names for a model, served as that model, as litellm's loader does: a row
    whose `alias_of` names a model, and the names in a model's `aliases` list (a name
    that is already a model, or claimed twice, or an alias of nothing, is dropped).
    Returns which model each name stands for."""
    pointers = {
        name: row["alias_of"]
        for name, row in data.items()
        if isinstance(row, dict) and isinstance(row.get("alias_of"), str)
    }
    owners: dict[str, str] = {}
    for name, row in data.items():
        aliases = row.pop("aliases", None) if isinstance(row, dict) else None
        if name in pointers or not isinstance(aliases, list):
            continue
        for alias in aliases:
            if (
                isinstance(alias, str)
                and alias not in owners
                and (alias not in data or alias in pointers)
            ):
                owners[alias] = name
    for alias, target in pointers.items():
        if target in data and target not in pointers and alias not in owners:
            owners[alias] = target
    for alias in pointers.keys() - owners.keys():
        del data[alias]
    for alias, owner in owners.items():
        data[alias] = data[owner]
    return owners


def routes(model: str) -> bool:
    """Whether litellm picks a provider for `model` (named without one, and not in its
    data): asked of litellm itself, which is imported for it. Besides its data, litellm
    routes a few names by rules of its own that change between its versions (names listed
    in code, patterns for model families); a name none of them routes is most likely a
    typo, so this import is paid on the way to an error, almost always."""
    from pytest_rigging.generator.litellm_ import _litellm

    try:
        _litellm().get_llm_provider(model=model)
    except Exception:  # litellm's BadRequestError "LLM Provider NOT provided", or any
        return False
    return True


def provider_names() -> frozenset[str]:
    """The provider prefixes litellm routes (`litellm.provider_list`), from the source of
    its `LlmProviders` enum; when that can't be read whole (litellm moved or reshaped it),
    litellm is imported and asked."""
    loaded = sys.modules.get("litellm")
    if loaded is None or not hasattr(loaded, "provider_list"):
        names = _enum_values()
        if names is not None:
            return names
        from pytest_rigging.generator.litellm_ import _litellm

        loaded = _litellm()
    return frozenset(getattr(p, "value", p) for p in loaded.provider_list)


@functools.cache
def _enum_values() -> frozenset[str] | None:
    """The values of litellm's `LlmProviders` enum, read from its source by tokens, not by
    `ast.parse`: this may run on the engine's loop thread while pytest parses tracebacks
    on its own, and CPython 3.11 builds AST objects on state the threads share (a
    `SystemError: AST constructor recursion depth mismatch` in either)."""
    package = _package()
    if package is None:
        return None
    try:
        source = (package / "types" / "utils.py").read_text()
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, SyntaxError, ValueError, tokenize.TokenError):
        return None
    for index, token in enumerate(tokens[:-1]):
        if token.string == "class" and tokens[index + 1].string == "LlmProviders":
            return _members(tokens[index + 2 :])
    return None


def _members(tokens: list[tokenize.TokenInfo]) -> frozenset[str] | None:
    """The string values assigned in the class body these tokens start in (after its
    name); None when a member is anything but a plain string: ask litellm instead."""
    values: set[str] = set()
    depth, statement = 0, list[tokenize.TokenInfo]()
    for token in tokens:
        if token.type == tokenize.INDENT:
            depth += 1
        elif token.type == tokenize.DEDENT:
            depth -= 1
            if depth == 0:
                break
        elif token.type == tokenize.NEWLINE and depth == 1:
            words = [part.string for part in statement]
            if "=" in words:
                value = words[words.index("=") + 1 :]
                if len(value) != 1 or not _plain_string(value[0]):
                    return None
                values.add(value[0][1:-1])
            statement = []
        elif depth == 1 and token.type not in (tokenize.COMMENT, tokenize.NL):
            statement.append(token)
    return frozenset(values) or None


def _plain_string(text: str) -> bool:
    return len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0] and "\\" not in text
