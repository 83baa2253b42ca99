"""Pydantic's errors, translated: each names the config key (``sidekiq-fleet:hosts.existing[0].port``)
and its expected form, and every problem of a stage is reported at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from .model import NAMESPACE, STAGE_NAME, Stage, StageConfig, models_in


class StageConfigError(ValueError):
    """Invalid stage configuration; ``problems`` holds one line per problem."""

    def __init__(self, stage: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"stage {stage!r} has {len(problems)} configuration problem(s):\n{lines}")


def _descriptions(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Expected forms by key path, e.g. {"hosts.count": "an integer from 1 to 100"}."""
    found: dict[str, str] = {}
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        if field.description:
            found[key] = field.description
        for sub, _ in models_in(field.annotation):
            found.update(_descriptions(sub, key + "."))
    return found


_DESCRIPTIONS = _descriptions(StageConfig)


_UNION_TAGS = ("by-id", "lookup")


def key_path(loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location into a key path such as hosts.existing[0].port (also used for
    the stack outputs' errors)."""
    path = ""
    for i, item in enumerate(loc):
        # Discriminated unions add their tag to the location; the user never wrote it.
        if item in _UNION_TAGS or (i == 1 and loc[0] == "hosts" and item in ("ec2", "existing")):
            continue
        if isinstance(item, int):
            path += f"[{item}]"
        elif item == "[key]":
            continue  # pragma: no mutate - "[key]" ends a location, so break is the same
        else:
            path += f".{item}" if path else str(item)
    return path


def _message(error: Mapping[str, Any]) -> str:
    path = key_path(tuple(error["loc"]))
    key = f"{NAMESPACE}:{path}" if path else f"{NAMESPACE} (top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key; see docs/configuration.md"
    if kind == "union_tag_not_found":
        return f"{key}.provider: is required; expected ec2 or existing"
    if kind == "union_tag_invalid":
        return f"{key}.provider: got {error['ctx']['tag']!r}; expected ec2 or existing"
    if kind == "value_error":
        # Cross-field checks name their key first: "sshIngressCidrs: ...".
        reason = error["msg"].removeprefix("Value error, ")
        sub_key, sep, rest = reason.partition(": ")
        if sep and re.fullmatch(r"[A-Za-z][A-Za-z_.\[\]0-9]*", sub_key):
            return f"{NAMESPACE}:{path + '.' if path else ''}{sub_key}: {rest}"
    if "[key]" in error["loc"]:
        return f"{key}: the name is invalid; expected letters, digits and _, not starting with a digit"
    text = "is required" if kind == "missing" else error["msg"].removeprefix("Value error, ")
    # A map's entries (env.NAME, tags.NAME) take the map's own description.
    lookup = re.sub(r"\[\d+\]", "", path)
    expected = _DESCRIPTIONS.get(lookup) or _DESCRIPTIONS.get(lookup.rpartition(".")[0])
    if expected and "; expected" not in text:
        text += f"; expected {expected}"
    return f"{key}: {text}"


def parse_stage(stage: str, values: Mapping[str, Any]) -> Stage:
    """Validate the stage's config values (keys without the namespace).

    Raises StageConfigError listing every problem at once.
    """
    problems: list[str] = []
    if not re.fullmatch(STAGE_NAME, stage):
        problems.append(f"stage name {stage!r}: expected letters, digits, . _ -")
    try:
        config = StageConfig.model_validate(dict(values))
    except ValidationError as err:
        problems.extend(_message(e) for e in err.errors())
        raise StageConfigError(stage, problems) from None
    if problems:
        raise StageConfigError(stage, problems)
    return Stage(name=stage, config=config)
