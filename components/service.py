"""The Sidekiq service on one host: Pulumi wiring only.

pulumi-command REPLACES a resource whose triggers change, creating the new one
and then running the OLD one's ``delete``. So the copy, install and restart
commands, which are triggered by content and version, have no ``delete``; the
uninstall lives on its own resource that nothing ever replaces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pulumi
from pulumi_command import local, remote

from . import scripts
from .config import Stage
from .hosts import Host
from .render import RenderedFile, files_digest


def copy_name(file: RenderedFile) -> str:
    """Stable per file: a unit by its name, so that adding a process adds a copy and moves none."""
    return f"unit-{file.path.rsplit('/', 1)[1]}" if file.role == "unit" else file.role


def _secret_if(value: str, secret: bool) -> pulumi.Input[str]:
    return pulumi.Output.secret(value) if secret else value


class SidekiqService(pulumi.ComponentResource):
    """Push, validate and install the files, then (re)start Sidekiq gracefully."""

    restart: remote.Command

    def __init__(
        self,
        name: str,
        stage: Stage,
        host: Host,
        files: Sequence[RenderedFile],
        private_key: pulumi.Input[str],
        restart_after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("sidekiq-fleet:service:SidekiqService", name, None, opts)
        ssh = stage.config.ssh
        app_version = stage.config.app_version
        has_secrets = any(f.secret for f in files)
        connection = remote.ConnectionArgs(
            host=host.address,
            port=host.port,
            user=stage.ssh_user,
            private_key=private_key,
            host_key=host.host_key,
            dial_error_limit=ssh.dial_error_limit,
            per_dial_timeout=ssh.per_dial_timeout,
        )
        logged = remote.Logging.STDOUT_AND_STDERR

        def child(**kwargs: object) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, **kwargs)  # type: ignore[arg-type]

        port_open = local.Command(
            f"{name}-port-open",
            create=pulumi.Output.from_input(host.address).apply(
                lambda address: scripts.wait_for_port(address, host.port, ssh.ready_timeout)
            ),
            interpreter=["/bin/bash", "-c"],
            opts=child(),
        )
        prepare = remote.Command(
            f"{name}-prepare",
            connection=connection,
            create=scripts.prepare_host(stage, host.name),
            logging=logged,
            opts=child(depends_on=[port_open]),
        )
        copies = [
            remote.CopyToRemote(
                f"{name}-copy-{copy_name(file)}",
                connection=connection,
                source=(
                    pulumi.Output.secret(file.content).apply(pulumi.StringAsset)
                    if file.secret
                    else pulumi.StringAsset(file.content)
                ),
                remote_path=file.staged_path,
                triggers=[_secret_if(hashlib.sha256(file.content.encode()).hexdigest(), file.secret)],
                opts=child(
                    depends_on=[prepare],
                    additional_secret_outputs=["source"] if file.secret else None,
                ),
            )
            for file in files
        ]
        digest = _secret_if(files_digest(files), has_secrets)
        keys = stage.config.sidekiq.authorized_keys
        # Only when set: a stage without authorizedKeys keeps its install untouched by this feature.
        keys_digest = [hashlib.sha256("\n".join(keys).encode()).hexdigest()] if keys else []
        install = remote.Command(
            f"{name}-install",
            connection=connection,
            create=scripts.install(stage, files, host.name),
            triggers=[digest, *keys_digest],
            logging=logged,
            opts=child(depends_on=copies),
        )
        self.restart = remote.Command(
            f"{name}-restart",
            connection=connection,
            create=scripts.restart(stage, host.name, app_version),
            triggers=[app_version, digest],
            logging=logged,
            # Journal lines printed on failure may hold application data.
            opts=child(
                depends_on=[install, *restart_after],
                additional_secret_outputs=["stdout", "stderr"],
            ),
        )
        # Only `pulumi destroy`, or dropping the host from the stage, deletes this.
        self.uninstall = remote.Command(
            f"{name}-uninstall",
            connection=connection,
            delete=scripts.uninstall(stage, files, host.name),
            logging=logged,
            opts=child(depends_on=[prepare]),
        )
        # For hosts without a configured key (EC2): what the first connection found, trust on first use.
        self.learned_host_key = prepare.stdout.apply(scripts.host_key_from)
        self.deployed_version = self.restart.id.apply(lambda _: app_version)
        self.register_outputs({"appVersion": self.deployed_version})
