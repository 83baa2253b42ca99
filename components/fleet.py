"""The whole stage: hosts, then one Sidekiq service per host, restarted batch by batch."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import pulumi

from . import layout
from .config import Stage
from .hosts import Host, provision_hosts
from .outputs import OUTPUTS_VERSION, StackOutputs
from .render import render_files
from .service import BUNDLE_DIR, SidekiqService, write_bundle


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def deploy_fleet(stage: Stage, project_dir: Path) -> dict[str, pulumi.Output[Any]]:
    """Register every resource of the stage and return the stack outputs (components/outputs.py).

    The restart of batch k+1 waits for every restart of batch k, so a host that
    does not come back halts the rollout and later hosts keep the old version.
    """
    config = stage.config
    hosts = provision_hosts(f"{config.app}-{stage.name}", stage)
    files = render_files(stage, project_dir)
    bundle = write_bundle(files, project_dir / BUNDLE_DIR / stage.name)
    assert config.ssh.private_key is not None, "resolve_files() reads ssh.privateKeyFile first"
    private_key = pulumi.Output.secret(config.ssh.private_key.get_secret_value())

    services: list[SidekiqService] = []
    previous: list[pulumi.Resource] = []
    for batch in batches(hosts, config.rollout.batch_size):
        current = [
            SidekiqService(host.name, stage, host, files, bundle, private_key, restart_after=previous)
            for host in batch
        ]
        services += current
        previous = [service.restart for service in current]

    # What the ops commands address: the target (every slot) and each process's slot template.
    group = stage.config.sidekiq.unit_name
    units = [layout.target_unit(group), *(layout.template_unit(group, p.name) for p in stage.processes)]
    control = layout.control_path(stage)
    outputs = pulumi.Output.from_input(_outputs(stage, hosts, services, units, control))

    # Checked against the contract that readers use, then exported key by key.
    def checked_against_the_contract(plain: dict[str, Any]) -> dict[str, Any]:
        return StackOutputs.model_validate(plain).model_dump(by_alias=True)

    checked = outputs.apply(checked_against_the_contract)
    keys = [field.alias or name for name, field in StackOutputs.model_fields.items()]
    return {key: checked.apply(operator.itemgetter(key)) for key in keys}


def _outputs(
    stage: Stage, hosts: list[Host], services: list[SidekiqService], units: list[str], control: str
) -> dict[str, Any]:
    config = stage.config
    return {
        "outputsVersion": OUTPUTS_VERSION,
        "stage": stage.name,
        "app": config.app,
        "appVersion": config.app_version,
        "scope": config.sidekiq.scope,
        "deployUser": config.sidekiq.user,
        "units": units,
        "control": control,
        "batchSize": config.rollout.batch_size,
        "opsIdentityFile": config.ops.identity_file,
        "hosts": [
            {
                "name": host.name,
                "address": host.address,
                "port": host.port,
                "sshUser": stage.ssh_user,
                "hostKey": service.host_key,
                "units": units,
                "control": control,
                "appVersion": service.deployed_version,
                **host.details,
            }
            for host, service in zip(hosts, services, strict=True)
        ],
    }
