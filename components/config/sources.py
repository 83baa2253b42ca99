"""Where the stage config's values come from: the running Pulumi program, the Automation API's
config, or the stage file itself (for `render` and the tests, without the engine)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .model import NAMESPACE, SECRET_PLACEHOLDER


def _decode(value: Any) -> Any:
    """Pulumi hands object and list config values over as JSON text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def values_from_config(config: Mapping[str, Any], project: str = NAMESPACE) -> dict[str, Any]:
    """The project's values from `namespace:key` -> value as Pulumi gives them (the running program's
    config, or the Automation API's `get_all_config`, decrypted): objects and lists come as JSON text."""
    prefix = f"{project}:"
    return {
        key.removeprefix(prefix): _decode(value)
        for key, value in sorted(config.items())
        if key.startswith(prefix)
    }


def values_from_pulumi() -> dict[str, Any]:
    """Every config value of this project's namespace from the running Pulumi program."""
    from pulumi.runtime import config as runtime_config

    keys = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    return values_from_config({key: runtime_config.get_config(key) for key in keys})


def values_from_stack_file(path: Path, project: str = NAMESPACE) -> dict[str, Any]:
    """Config values from ``Pulumi.<stage>.yaml`` without the engine.

    Encrypted values cannot be read without the engine; they are replaced by a
    placeholder that validates like a string.
    """
    document = yaml.safe_load(path.read_text()) or {}
    prefix = f"{project}:"

    def reveal(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"secure"}:
                return SECRET_PLACEHOLDER
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [reveal(v) for v in value]
        return value

    config = document.get("config") or {}
    values: dict[str, Any] = {}
    for key, value in config.items():
        if ":" not in key:
            key = prefix + key
        if key.startswith(prefix):
            values[key.removeprefix(prefix)] = reveal(value)
    return values
