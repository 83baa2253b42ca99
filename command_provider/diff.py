"""Diff of old and new inputs, with detailed property paths the engine understands.

The SDK registers every Command and CopyToRemote with ``replace_on_changes=["triggers[*]"]``.
The engine turns a change into a replacement only when a *detailedDiff* path matches that
pattern, e.g. ``triggers[0]``; a bare top-level ``triggers`` key does not match. So changes are
reported down to their leaves: ``triggers[0]``, ``connection.host``, ``environment.FOO``,
``create``. This module never marks replacements itself; the engine does that from the paths.

The walk follows the engine's own object diff: an added or removed property is reported where
it appears or disappears, two objects or two arrays are compared element by element, anything
else is compared as a whole. Assets and archives are leaves. Secrets are compared by what they
wrap, so making a value secret is not a change. A null property counts as absent.
"""

from __future__ import annotations

import re
from typing import Any

from . import wire

ADD = "ADD"
DELETE = "DELETE"
UPDATE = "UPDATE"

# Keys written in dotted form; anything else is written as ["key"] so the path stays parseable.
_SIMPLE_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")
_MISSING = object()


def key_path(parent: str | None, key: str) -> str:
    """The property path of ``key`` under ``parent`` (``None`` for the top level)."""
    if _SIMPLE_KEY.match(key):
        return key if parent is None else f"{parent}.{key}"
    quoted = key.replace('"', '\\"')
    return f'{parent or ""}["{quoted}"]'


def index_path(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def detailed_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
    """Leaf paths that differ between two input maps, each with ADD, DELETE or UPDATE.

    Both maps may hold secret wrappers and, in ``new``, unknowns; keys starting with ``__`` are
    engine bookkeeping and ignored.
    """
    old = wire.reveal(old)
    new = wire.reveal(new)
    changes: dict[str, str] = {}
    for key in sorted(set(old) | set(new)):
        if key.startswith("__"):
            continue
        _diff_value(key_path(None, key), _present(old, key), _present(new, key), changes)
    return changes


def changed_keys(changes: dict[str, str]) -> list[str]:
    """The top-level property names that the paths of ``changes`` start with."""
    keys = set()
    for path in changes:
        if path.startswith('["'):
            keys.add(path[2 : path.index('"]')].replace('\\"', '"'))
        else:
            keys.add(re.split(r"[.\[]", path, maxsplit=1)[0])
    return sorted(keys)


def _present(values: dict[str, Any], key: str) -> Any:
    value = values.get(key, _MISSING)
    return _MISSING if value is None else value


def _diff_value(path: str, old: Any, new: Any, changes: dict[str, str]) -> None:
    if old is _MISSING and new is _MISSING:
        return
    if old is _MISSING:
        changes[path] = ADD
        return
    if new is _MISSING:
        changes[path] = DELETE
        return
    if wire.is_unknown(new) or wire.is_unknown(old):
        changes[path] = UPDATE
        return
    old_leafy = wire.is_asset(old) or wire.is_archive(old)
    new_leafy = wire.is_asset(new) or wire.is_archive(new)
    if old_leafy or new_leafy:
        if not (old_leafy and new_leafy and wire.same_asset(old, new)):
            changes[path] = UPDATE
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff_value(key_path(path, key), _present(old, key), _present(new, key), changes)
        return
    if isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            _diff_value(
                index_path(path, index),
                old[index] if index < len(old) else _MISSING,
                new[index] if index < len(new) else _MISSING,
                changes,
            )
        return
    if not _same_scalar(old, new):
        changes[path] = UPDATE


def _same_scalar(old: Any, new: Any) -> bool:
    # True == 1.0 in Python; on the wire a bool and a number are different values.
    return type(old) is type(new) and old == new
