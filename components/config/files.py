"""The files a stage names, read before deploying: ssh.privateKeyFile and ssh.knownHostsFile.

Kept apart from parse_stage so that validation and `render` touch no files.
"""

from __future__ import annotations

from pathlib import Path

import asyncssh
from pydantic import SecretStr

from . import keys
from .errors import StageConfigError
from .model import NAMESPACE, ExistingHost, ExistingHosts, Stage


def pinned_key(known: asyncssh.SSHKnownHosts, host: ExistingHost) -> str:
    """The host's key to pin. OpenSSH's rules through asyncssh: hashed names, host lists and patterns
    match, @revoked keys are never pinned, and [address]:port is looked up first, then the address.
    Raises ValueError saying what the file lacks."""
    host_keys, ca_keys, revoked, *_ = known.match(host.address, "", host.port)
    revoked_data = {key.public_data for key in revoked}
    usable = [key for key in host_keys if key.public_data not in revoked_data]
    pinned = keys.preferred_host_key(usable)
    if pinned is not None:
        return pinned
    if usable:
        raise ValueError(f"has no key of a type the program can pin ({', '.join(keys.HOST_KEY_TYPES)})")
    if ca_keys:
        raise ValueError("has only a @cert-authority key, which cannot be pinned")
    raise ValueError("has no key")


def resolve_files(stage: Stage, base_dir: Path) -> Stage:
    """Read ssh.privateKeyFile and ssh.knownHostsFile into the stage.

    A host's own hostKey wins over the file. Of several keys for a host in the file, one is pinned,
    ed25519 first: the command provider and the ops client then ask the host for that type.
    """
    ssh = stage.config.ssh
    problems = []
    private_key = ssh.private_key
    if ssh.private_key_file is not None:
        path = base_dir / ssh.private_key_file
        try:
            text = path.read_text()
            keys.check_private_key(text)
            private_key = SecretStr(text)
        except (OSError, ValueError) as error:
            problems.append(
                f"{NAMESPACE}:ssh.privateKeyFile: cannot use {path}: {error}; "
                "expected a readable OpenSSH private key file"
            )
    hosts = stage.config.hosts
    if isinstance(hosts, ExistingHosts) and ssh.known_hosts_file is not None:
        path = base_dir / ssh.known_hosts_file
        try:
            known: asyncssh.SSHKnownHosts | None = asyncssh.import_known_hosts(path.read_text())
        except (OSError, ValueError) as error:
            known = None
            problems.append(
                f"{NAMESPACE}:ssh.knownHostsFile: cannot read {path}: {error}; expected a known_hosts file"
            )
        pinned = []
        for index, host in enumerate(hosts.existing):
            key = host.host_key
            if key is None and known is not None:
                try:
                    key = pinned_key(known, host)
                except ValueError as why_not:
                    problems.append(
                        f"{NAMESPACE}:hosts.existing[{index}].hostKey: {path} {why_not} for {host.address} "
                        f"port {host.port}; expected a host key line for it, or hostKey set"
                    )
            pinned.append(host.model_copy(update={"host_key": key}))
        hosts = hosts.model_copy(update={"existing": pinned})
    if problems:
        raise StageConfigError(stage.name, problems)
    config = stage.config.model_copy(
        update={"hosts": hosts, "ssh": ssh.model_copy(update={"private_key": private_key})}
    )
    return stage.model_copy(update={"config": config})
