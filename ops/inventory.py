"""The stage's hosts for other tooling: Capistrano, Ansible, OpenSSH, JSON. Pure functions."""

from __future__ import annotations

import json
import re

import yaml

from .outputs import Fleet

FORMATS = ("capistrano", "ansible", "ssh-config", "json")


def ruby_string(text: str) -> str:
    """A double-quoted Ruby literal: backslash, quote and `#` (interpolation) escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("#", "\\#")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def capistrano(fleet: Fleet) -> str:
    """`config/deploy/<stage>.rb` lines."""
    lines = [f"# The {fleet.stage} stage's Sidekiq hosts, from its stack outputs (sidekiq-fleet inventory)."]
    for host in fleet.hosts:
        port = "" if host.port == 22 else f", port: {host.port}"
        user = ruby_string(fleet.deploy_user)
        lines.append(f"server {ruby_string(host.address)}, user: {user}{port}, roles: %w[sidekiq]")
    return "\n".join(lines) + "\n"


def ansible(fleet: Fleet) -> str:
    """A YAML inventory: group `sidekiq` (and `sidekiq_<stage>`), one entry per host."""
    hosts = {
        host.name: {
            "ansible_host": host.address,
            "ansible_port": host.port,
            "ansible_user": fleet.deploy_user,
        }
        for host in fleet.hosts
    }
    group = re.sub(r"[^A-Za-z0-9_]", "_", f"sidekiq_{fleet.stage}")
    document = {"all": {"children": {"sidekiq": {"children": {group: {"hosts": hosts}}}}}}
    return yaml.safe_dump(document, sort_keys=False)


def _ssh_word(text: str) -> str:
    """One ssh_config argument: double-quoted when it has blanks; quotes and newlines are refused."""
    if any(character in text for character in '"\n\r'):
        raise ValueError(f"{text!r} cannot be written into ssh_config")
    return f'"{text}"' if any(character.isspace() for character in text) or not text else text


def ssh_config(fleet: Fleet) -> str:
    """`Host` blocks; each host key is pinned as the only known key (KnownHostsCommand, OpenSSH 8.5+)."""
    blocks = [f"# The {fleet.stage} stage's Sidekiq hosts, from its stack outputs (sidekiq-fleet inventory)."]
    for host in fleet.hosts:
        lines = [
            f"Host {_ssh_word(host.name)}",
            f"  HostName {_ssh_word(host.address)}",
            f"  Port {host.port}",
            f"  User {_ssh_word(fleet.deploy_user)}",
        ]
        if host.host_key is None:
            lines.append("  # no hostKey in the stack outputs: not pinned")
        else:
            key_type, key_data = host.host_key.split()[:2]
            # %H is the name ssh looks up; the command prints one known_hosts line for it.
            lines += [
                f"  KnownHostsCommand /bin/echo %H {_ssh_word(key_type)} {_ssh_word(key_data)}",
                "  UserKnownHostsFile /dev/null",
                "  GlobalKnownHostsFile /dev/null",
                "  StrictHostKeyChecking yes",
            ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def as_json(fleet: Fleet) -> str:
    document = {
        "stage": fleet.stage,
        "deployUser": fleet.deploy_user,
        "hosts": [
            {"name": host.name, "address": host.address, "port": host.port, "hostKey": host.host_key}
            for host in fleet.hosts
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def render_inventory(fleet: Fleet, form: str) -> str:
    renderers = {"capistrano": capistrano, "ansible": ansible, "ssh-config": ssh_config, "json": as_json}
    return renderers[form](fleet)
