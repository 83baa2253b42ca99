"""The hosts of a stage, from its stack outputs (their contract: components/outputs.py).

The outputs come from the Pulumi Automation API (the project directory, stack name = stage), or
from a saved `pulumi stack output --json` for runners without the engine. The stage file is not
used: for EC2 only the outputs know the addresses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from components.config import key_path
from components.outputs import OUTPUTS_VERSION, StackOutputs
from components.project import PROJECT_DIR

T = TypeVar("T")


class OpsError(Exception):
    """A problem with the command line, the stack or its outputs: nothing ran on any host."""


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int
    host_key: str | None
    control_script: str


@dataclass(frozen=True)
class Fleet:
    stage: str
    deploy_user: str
    scope: str
    batch_size: int
    hosts: tuple[Host, ...]
    identity_file: str | None = None

    def select(self, names: Sequence[str] | None) -> list[Host]:
        """The hosts named (in the outputs' order), or all; an unknown name is an error."""
        if not names:
            return list(self.hosts)
        known = [host.name for host in self.hosts]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise OpsError(
                f"--hosts: {', '.join(unknown)} not in the stack outputs of {self.stage}; "
                f"expected some of: {', '.join(known)}"
            )
        return [host for host in self.hosts if host.name in names]


def fleet_from_outputs(stage: str, outputs: Mapping[str, Any]) -> Fleet:
    """Check the outputs against the contract (components/outputs.py) and keep what the ops commands use."""
    if "hosts" not in outputs:
        raise OpsError(
            f"stack outputs of {stage} have no `hosts` (keys: {', '.join(sorted(outputs)) or 'none'}); "
            "expected the outputs of this program after a `pulumi up`"
        )
    version = outputs.get("outputsVersion")
    if version != OUTPUTS_VERSION:
        written_by = f"outputsVersion {json.dumps(version)}" if version is not None else "an earlier version"
        raise OpsError(
            f"stack outputs of {stage} were written by {written_by}; this sidekiq-fleet reads outputsVersion "
            f"{OUTPUTS_VERSION}: run `pulumi up -s {stage}` once with it, then try again"
        )
    try:
        checked = StackOutputs.model_validate(outputs)
    except ValidationError as error:
        problems = [
            f"{key_path(tuple(e['loc']))} is {json.dumps(e.get('input'), default=str)}: {e['msg']}"
            if e["type"] != "missing"
            else f"{key_path(tuple(e['loc']))} is missing"
            for e in error.errors()
        ]
        raise OpsError(f"stack outputs of {stage}: {'; '.join(problems)}") from None
    hosts = tuple(Host(h.name, h.address, h.port, h.host_key, h.control) for h in checked.hosts)
    return Fleet(
        stage=stage,
        deploy_user=checked.deploy_user,
        scope=checked.scope,
        batch_size=checked.batch_size,
        hosts=hosts,
        identity_file=checked.ops_identity_file,
    )


def read_outputs_file(path: Path) -> dict[str, Any]:
    """A saved `pulumi stack output --json`."""
    try:
        text = path.read_text()
    except OSError as error:
        raise OpsError(f"--outputs: cannot read {path}: {error.strerror}") from error
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as error:
        raise OpsError(
            f"--outputs: {path} is not JSON ({error}); expected `pulumi stack output --json`"
        ) from error
    if not isinstance(outputs, dict):
        raise OpsError(f"--outputs: {path} holds no JSON object; expected `pulumi stack output --json`")
    return outputs


def _read_stack(stage: str, project_dir: Path, what: str, read: Callable[[Any], T]) -> T:
    """READ(workspace) through the Automation API, its failures as OpsError."""
    from pulumi import automation

    try:
        return read(automation.LocalWorkspace(work_dir=str(project_dir)))
    except automation.StackNotFoundError as error:
        raise OpsError(
            f"no stack {stage!r} in the Pulumi backend of {project_dir}: select the backend "
            f"(PULUMI_BACKEND_URL or `pulumi login`), run `pulumi up -s {stage}` first, "
            "or pass --outputs FILE (a saved `pulumi stack output --json`)"
        ) from error
    except automation.CommandError as error:
        # Its text is the whole CLI result; the CLI's own message is the end of its stderr.
        reason = str(error).rpartition("stderr:")[2].strip() or str(error)
        raise OpsError(f"reading the {what} of {stage} failed: {reason}") from error
    except FileNotFoundError as error:
        raise OpsError(
            f"cannot run the Pulumi CLI ({error}): put `pulumi` on PATH (source toolchain/env.sh), "
            "or pass --outputs FILE (a saved `pulumi stack output --json`)"
        ) from error


def stack_outputs(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The stack's outputs through the Automation API, without selecting the stack."""
    outputs = _read_stack(stage, project_dir, "stack outputs", lambda w: w.stack_outputs(stage))
    return {key: output.value for key, output in outputs.items()}


def stack_config(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """The stack's config, secrets decrypted (`pulumi config --show-secrets`), as `namespace:key` ->
    value; objects and lists as JSON text."""
    config = _read_stack(stage, project_dir, "stack config", lambda w: w.get_all_config(stage))
    return {key: value.value for key, value in config.items()}
