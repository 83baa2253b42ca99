"""A JSON schema of `Pulumi.<stage>.yaml`, generated from the stage config model, for editors and CI.

`python -m components schema > components/stage.schema.json` writes it; tests/test_schema.py fails when the
committed file is stale. It lives under components/ because mutmut copies that tree for the fast suite.
"""

from __future__ import annotations

from typing import Any

from .config import NAMESPACE, StageConfig

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
