"""contrib/capistrano/sidekiq_fleet.rake on a host deployed by the real program: Capistrano (Debian's
cap and net-ssh) logs in as deploy and runs the control script through its sudoers drop-in, as a
Capistrano deploy would after this project replaced capistrano-sidekiq."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import localhosts
from ops import control
from tests.pulumi_project import PROJECT_DIR, PulumiProject

pytestmark = pytest.mark.e2e

HOST_COUNT = 1
CONTROL = "/usr/local/sbin/sidekiqctl"


@pytest.fixture(scope="module")
def deployed(project: PulumiProject, hosts: localhosts.Fleet) -> PulumiProject:
    project.up()
    return project


@pytest.fixture(scope="module")
def cap_project(tmp_path_factory: pytest.TempPathFactory, hosts: localhosts.Fleet) -> Path:
    """The basic fixture project with the rake file in lib/capistrano/tasks/ and a stage `local` for the
    host: the harness's key (authorized for deploy), its known_hosts, nothing of ~/.ssh."""
    assert shutil.which("cap"), "no `cap`: apt-get install capistrano ruby-ed25519 ruby-bcrypt-pbkdf"
    (host,) = hosts
    directory = tmp_path_factory.mktemp("capistrano") / "app"
    shutil.copytree(PROJECT_DIR / "tests" / "fixtures" / "capistrano" / "basic", directory)
    tasks = directory / "lib" / "capistrano" / "tasks"
    tasks.mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "contrib" / "capistrano" / "sidekiq_fleet.rake", tasks)
    ruby = json.dumps  # a JSON string of a path is a Ruby string literal too
    (directory / "config" / "deploy" / "local.rb").write_text(
        f'server {ruby(host.address)}, user: "deploy", port: {host.port}, roles: %w[sidekiq]\n'
        "set :ssh_options, {\n"
        f"  keys: [{ruby(str(host.private_key_path))}], keys_only: true, config: false,\n"
        f"  user_known_hosts_file: {ruby(str(host.known_hosts_path))},\n"
        '  global_known_hosts_file: "/dev/null",\n'
        "  verify_host_key: :always, auth_methods: %w[publickey], non_interactive: true,\n"
        "}\n"
    )
    return directory


def cap(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "SSHKIT_COLOR"}
    result = subprocess.run(
        ["cap", "local", *args], cwd=directory, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def serving(host: localhosts.Host) -> tuple[str, int]:
    """The enabled slot and its PID, from the control script's status as deploy (its sudoers line)."""
    result = host.exec(f"sudo -n {CONTROL} status", user="deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = [r for r in control.parse_status(result.stdout) if r["enabled"]]
    return record["slot"], record["pid"]


def test_cap_status_shows_each_slot(deployed, hosts, cap_project) -> None:
    (host,) = hosts
    slot, pid = serving(host)
    shown = [
        line
        for line in cap(cap_project, "sidekiq:status").stdout.splitlines()
        if line.startswith(host.address)
    ]
    records = control.parse_status("\n".join(line.removeprefix(f"{host.address} ") for line in shown))
    assert [(r["process"], r["slot"], r["enabled"], r["pid"]) for r in records if r["enabled"]] == [
        ("default", slot, True, pid)
    ]


def test_cap_restart_moves_sidekiq_to_the_other_slot(deployed, hosts, cap_project) -> None:
    (host,) = hosts
    old_slot, old_pid = serving(host)
    cap(cap_project, "sidekiq:restart")
    new_slot, new_pid = serving(host)
    assert new_slot == {"a": "b", "b": "a"}[old_slot]
    assert new_pid not in (None, old_pid)
