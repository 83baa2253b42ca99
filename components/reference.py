"""The stage config's reference, generated from its model: the JSON schema of `Pulumi.<stage>.yaml`
(schema/stage.json, for editors and CI) and the key reference of docs/configuration.md.

`python -m components reference` writes both; tests/test_reference.py fails when either is stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import jinja2
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .config import NAMESPACE, StageConfig
from .config.model import models_in

SCHEMA_FILE = "schema/stage.json"
DOCS_FILE = "docs/configuration.md"
DOCS_TEMPLATE = "docs/configuration.md.j2"

SECURE = {
    "type": "object",
    "description": "a value set with `pulumi config set --secret`",
    "properties": {"secure": {"type": "string"}},
    "required": ["secure"],
    "additionalProperties": False,
}


def _secrets_allowed(node: Any) -> Any:
    """Any string of the config may be a secret: Pulumi stores it as {secure: ...}."""
    if isinstance(node, list):
        return [_secrets_allowed(item) for item in node]
    if not isinstance(node, dict):
        return node
    walked = {key: _secrets_allowed(value) for key, value in node.items()}
    if walked.get("type") == "string":
        return {"anyOf": [walked, {"$ref": "#/$defs/Secure"}]}
    return walked


def stage_file_schema() -> dict[str, Any]:
    model = StageConfig.model_json_schema(by_alias=True)
    definitions = {name: _secrets_allowed(schema) for name, schema in model.pop("$defs", {}).items()}
    definitions["Secure"] = SECURE
    properties = _secrets_allowed(model["properties"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Pulumi.<stage>.yaml of {NAMESPACE}",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                # Other namespaces (aws:region, ...) are the providers' business.
                "properties": {f"{NAMESPACE}:{key}": value for key, value in properties.items()},
                "required": [f"{NAMESPACE}:{key}" for key in model.get("required", [])],
            },
            "encryptionsalt": {"type": "string"},
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
        },
        "$defs": definitions,
    }


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list or any(_is_list(arg) for arg in get_args(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{json.dumps(value)}`" if value not in ({}, []) else "empty"


def _expected(field: FieldInfo) -> str:
    if field.description:
        return field.description
    choices = get_args(field.annotation)
    if get_origin(field.annotation) is Literal:
        return " or ".join(f"`{choice}`" for choice in choices)
    return "see below"


def _sections(
    model: type[BaseModel], key: str, title: str
) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """(title, rows of key, default, expected form) for MODEL at KEY, then for each model inside it."""
    prefix = f"{key}." if key else ""
    rows, inner = [], []
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        rows.append((f"`{path}`", _default(field), _expected(field)))
        item = "[]" if _is_list(field.annotation) else ""
        for sub, tag in models_in(field.annotation):
            inner.append((sub, path + item, f"{path}{item} ({tag})" if tag else path + item))
    yield title, rows
    for sub, sub_key, sub_title in inner:
        yield from _sections(sub, sub_key, sub_title)


def key_reference() -> str:
    """Markdown: one table per section of the config, every key with its default and expected form."""
    parts = []
    for title, rows in _sections(StageConfig, "", "Top level"):
        lines = [f"### {title}", "", "| key | default | expected |", "|---|---|---|"]
        lines += [f"| {key} | {default} | {form} |" for key, default, form in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def generated_files(project_dir: Path) -> dict[str, str]:
    """What `python -m components reference` writes, by path relative to the project."""
    template = (project_dir / DOCS_TEMPLATE).read_text()
    docs = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return {
        SCHEMA_FILE: json.dumps(stage_file_schema(), indent=2, sort_keys=True) + "\n",
        DOCS_FILE: docs.from_string(template).render(reference=key_reference()),
    }
