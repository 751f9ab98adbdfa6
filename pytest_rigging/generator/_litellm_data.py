"""What litellm knows of providers and models, read from the files it ships instead of by
importing it: the import costs seconds of CPU and ~200 MB, which the process checking a
run's models (an xdist controller, which makes no call) or a native provider must not pay.

Once litellm is imported, its own objects are used."""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import sys
import typing as t
from pathlib import Path


def _package() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def model_data() -> dict[str, t.Any]:
    """litellm's model data (`litellm.model_cost`): the JSON it bundles, which it loads
    itself when told to stay offline, as the plugin tells it."""
    loaded = sys.modules.get("litellm")
    if loaded is not None and isinstance(getattr(loaded, "model_cost", None), dict):
        return t.cast(dict[str, t.Any], loaded.model_cost)
    return _bundled_model_data()


@functools.cache
def _bundled_model_data() -> dict[str, t.Any]:
    package = _package()
    if package is None:
        return {}
    try:
        data = json.loads((package / "model_prices_and_context_window_backup.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    data.pop("fallback_generalizations", None)  # rules litellm loads apart, not a model
    for name, entry in data.items():  # an alias takes its model's data, as litellm's loader does
        target = data.get(entry.get("alias_of", "")) if isinstance(entry, dict) else None
        if isinstance(target, dict):
            own = {k: v for k, v in entry.items() if k != "alias_of"}
            data[name] = {**target, **own}
    return data


def provider_names() -> frozenset[str] | None:
    """The provider prefixes litellm routes (`litellm.provider_list`), from the source of
    its `LlmProviders` enum; None when that can't be read (litellm moved it): the caller
    then imports litellm and asks it."""
    loaded = sys.modules.get("litellm")
    if loaded is not None and hasattr(loaded, "provider_list"):
        return frozenset(getattr(p, "value", p) for p in loaded.provider_list)
    return _enum_values()


@functools.cache
def _enum_values() -> frozenset[str] | None:
    package = _package()
    if package is None:
        return None
    try:
        tree = ast.parse((package / "types" / "utils.py").read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "LlmProviders":
            values = {
                statement.value.value
                for statement in node.body
                if isinstance(statement, ast.Assign)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            }
            return frozenset(values) or None
    return None
