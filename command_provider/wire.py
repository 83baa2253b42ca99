"""Pulumi wire values: reading property Structs without losing what they say.

The engine sends properties as ``google.protobuf.Struct`` values in which some objects are
special, recognised by a signature key:

* a secret is ``{SIG: SECRET_SIG, "value": <inner>}``;
* an asset is ``{SIG: ASSET_SIG, "text" | "path" | "uri": ..., "hash": ...}``;
* an archive is ``{SIG: ARCHIVE_SIG, "path" | "assets" | "uri": ..., "hash": ...}``;
* an unknown value (only during preview) is the string ``UNKNOWN``.

The provider echoes input Structs back untouched as outputs, so secret wrappers survive; it only
unwraps (``reveal``) to read values. Everything here is pure and needs no network.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

SIG = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"
ARCHIVE_SIG = "0def7320c3a5731c473e5ecbe6d01bc7"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def to_python(struct: struct_pb2.Struct | None) -> dict[str, Any]:
    """A Struct as plain Python (numbers become floats); an absent Struct is ``{}``."""
    if struct is None:
        return {}
    return json_format.MessageToDict(struct)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG) == SECRET_SIG


def is_asset(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG) == ASSET_SIG


def is_archive(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG) == ARCHIVE_SIG


def is_unknown(value: Any) -> bool:
    return value == UNKNOWN


def reveal(value: Any) -> Any:
    """``value`` with every secret wrapper replaced by what it wraps, at any depth.

    Assets and archives stay signature objects (their fields are revealed too).
    """
    if isinstance(value, dict):
        if is_secret(value):
            return reveal(value.get("value"))
        return {key: reveal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item) for item in value]
    return value


def contains_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_secret(item) for item in value)
    return False


def contains_unknown(value: Any) -> bool:
    if is_unknown(value):
        return True
    if isinstance(value, dict):
        return any(contains_unknown(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_unknown(item) for item in value)
    return False


def same_asset(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two asset (or archive) objects denote the same content.

    When both carry a hash the hashes decide (a path asset whose file changed keeps its path but
    not its hash); otherwise every field but the hash is compared.
    """
    if old.get("hash") and new.get("hash"):
        return old["hash"] == new["hash"] and old.get(SIG) == new.get(SIG)

    def strip(value: dict[str, Any]) -> dict[str, Any]:
        return {key: item for key, item in value.items() if key != "hash"}

    return strip(old) == strip(new)


def as_int(value: Any, default: int) -> int:
    """A wire number (a float) as an int; ``default`` when absent."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return int(value)


def string_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of strings")
    return list(value)


def string_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise ValueError("expected a map of strings")
    return dict(value)
