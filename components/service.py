"""The Sidekiq service on one host: Pulumi wiring only.

pulumi-command REPLACES a resource whose triggers change, creating the new one
and then running the OLD one's ``delete``. So the copy, install and restart
commands, which are triggered by content and version, have no ``delete``; the
uninstall lives on its own resource that nothing ever replaces.

Every resource costs a no-op ``pulumi up`` a Check and a Diff in the engine and
the provider, so the files that are not secret travel in one copy per host.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pulumi
from pulumi_command import local, remote

from . import scripts
from .config import Stage
from .hosts import Host
from .render import RenderedFile, files_digest

# Where write_bundle() puts the files that are not secret, per stack, under the project's git-ignored
# state directory.
BUNDLE_DIR = Path(".state") / "staged"


def write_bundle(files: Sequence[RenderedFile], directory: Path) -> pulumi.FileArchive:
    """Write the files that are not secret, and nothing else, into directory, for one copy per host.

    CopyToRemote takes a text asset or a local path only, so one copy of many files needs a
    directory. The secret env file never touches the local disk: it keeps its own copy.
    """
    public = {posixpath.basename(f.staged_path): f.content for f in files if not f.secret}
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.iterdir():
        if path.name not in public:  # a removed process's unit must not be staged again
            path.unlink()
    for name, content in public.items():
        path = directory / name
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
    # Relative (Pulumi runs the program in the project directory), so that the state does not change
    # when the checkout moves. The trailing slash copies the files into the remote staging directory,
    # not the directory itself.
    return pulumi.FileArchive(os.path.relpath(directory) + "/")


def _secret_if(value: str, secret: bool) -> pulumi.Input[str]:
    return pulumi.Output.secret(value) if secret else value


class SidekiqService(pulumi.ComponentResource):
    """Push, validate and install the files, then (re)start Sidekiq gracefully.

    ``bundle`` holds the files that are not secret (write_bundle()); the secret ones are copied one by one.
    """

    restart: remote.Command

    def __init__(
        self,
        name: str,
        stage: Stage,
        host: Host,
        files: Sequence[RenderedFile],
        bundle: pulumi.Archive,
        private_key: pulumi.Input[str],
        restart_after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("sidekiq-fleet:service:SidekiqService", name, None, opts)
        ssh = stage.config.ssh
        app_version = stage.config.app_version
        has_secrets = any(f.secret for f in files)

        def connection_to(host_key: pulumi.Input[str | None]) -> remote.ConnectionArgs:
            return remote.ConnectionArgs(
                host=host.address,
                port=host.port,
                user=stage.ssh_user,
                private_key=private_key,
                # An Output that resolves to None leaves hostKey unset, as None does: the SDK's type
                # does not say so.
                host_key=cast("pulumi.Input[str] | None", host_key),
                dial_error_limit=ssh.dial_error_limit,
                per_dial_timeout=ssh.per_dial_timeout,
            )

        logged = remote.Logging.STDOUT_AND_STDERR

        def child(**kwargs: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, **kwargs)

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
            connection=connection_to(host.host_key),
            create=scripts.prepare_host(stage, host.name),
            logging=logged,
            opts=child(depends_on=[port_open]),
        )
        # The configured key, else (EC2) what prepare's first connection found: trust on first use
        # for that one connection only, as every later one pins it.
        self.host_key: pulumi.Input[str | None] = host.host_key or prepare.stdout.apply(scripts.host_key_from)
        connection = connection_to(self.host_key)
        public = [file for file in files if not file.secret]
        (staging,) = {posixpath.dirname(file.staged_path) for file in public}
        # CopyToRemote's update copies only when the source changed: a host replaced behind the same
        # name (a new key or address) would keep an empty staging directory. A new connection
        # replaces the copy instead, which copies.
        recopy = ["connection"]
        copies = [
            remote.CopyToRemote(
                f"{name}-copy-files",
                connection=connection,
                source=bundle,
                remote_path=staging,
                triggers=[files_digest(public)],
                opts=child(depends_on=[prepare], replace_on_changes=recopy),
            ),
            *(
                remote.CopyToRemote(
                    f"{name}-copy-{file.role}",
                    connection=connection,
                    source=pulumi.Output.secret(file.content).apply(pulumi.StringAsset),
                    remote_path=file.staged_path,
                    triggers=[pulumi.Output.secret(hashlib.sha256(file.content.encode()).hexdigest())],
                    opts=child(
                        depends_on=[prepare], additional_secret_outputs=["source"], replace_on_changes=recopy
                    ),
                )
                for file in files
                if file.secret
            ),
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
        self.deployed_version = self.restart.id.apply(lambda _: app_version)
        self.register_outputs({"appVersion": self.deployed_version})
