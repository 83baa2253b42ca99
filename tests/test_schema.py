"""components/stage.schema.json: generated from the stage config model; it judges stage files as the
program does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components.schema import stage_file_schema

PROJECT_DIR = Path(__file__).resolve().parents[1]
COMMITTED = PROJECT_DIR / "components" / "stage.schema.json"


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(COMMITTED.read_text()))


def test_the_committed_schema_is_the_generated_one() -> None:
    assert json.loads(COMMITTED.read_text()) == stage_file_schema(), (
        "components/stage.schema.json is stale: python -m components schema > components/stage.schema.json"
    )


@pytest.mark.parametrize("stage", ["local", "staging", "production"])
def test_every_committed_stage_file_is_valid(stage: str) -> None:
    document = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stage}.yaml").read_text())
    assert [error.message for error in validator().iter_errors(document)] == []


def local() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_DIR / "Pulumi.local.yaml").read_text())


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda c: c["sidekiq-fleet:sidekiq"].update(timeoutt=5), "sidekiq-fleet:sidekiq"),
        (lambda c: c["sidekiq-fleet:hosts"].update(provider="gcp"), "sidekiq-fleet:hosts"),
        (lambda c: c["sidekiq-fleet:rollout"].update(batchSize=0), "sidekiq-fleet:rollout.batchSize"),
        (lambda c: c.pop("sidekiq-fleet:app"), ""),
        (lambda c: c["sidekiq-fleet:sidekiq"].update(scope="global"), "sidekiq-fleet:sidekiq.scope"),
    ],
)
def test_a_wrong_stage_file_is_refused(change, path: str) -> None:
    document = local()
    change(document["config"])
    where = [".".join(map(str, error.absolute_path)) for error in validator().iter_errors(document)]
    assert where, "the schema accepted it"
    assert any(found.startswith(f"config.{path}".rstrip(".")) for found in where), where


def test_any_string_may_be_a_secret_and_other_namespaces_are_free() -> None:
    document = local()
    document["config"]["sidekiq-fleet:env"]["REDIS_URL"] = {"secure": "v1:abc"}
    document["config"]["aws:region"] = "eu-west-1"
    assert list(validator().iter_errors(document)) == []
    document["config"]["sidekiq-fleet:env"]["REDIS_URL"] = {"secure": 1}
    assert list(validator().iter_errors(document))
