"""The way off capistrano-sidekiq, end to end with Debian's cap and net-ssh: `sidekiq-fleet import` reads
the Capistrano project of a host that runs capistrano-sidekiq's user unit, and `pulumi up` with the
written stack file adopts that unit under load; then contrib/capistrano/sidekiq_fleet.rake logs in as
deploy and runs the control script through its sudoers drop-in, as a Capistrano deploy would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import localhosts
from ops import control
from tests.e2e.conftest import assert_clean_trial, wait_until
from tests.e2e.test_adopt import CAP_UNIT, REDIS_URL, SAVED, seed_capistrano_user_unit, sidekiq_count
from tests.pulumi_project import PROJECT_DIR, STACK, PulumiProject, bench_rollout

pytestmark = pytest.mark.e2e

HOST_COUNT = 1
CONTROL = "/usr/local/sbin/sidekiqctl"


@pytest.fixture(scope="module")
def deployed(project: PulumiProject, hosts: localhosts.Fleet) -> PulumiProject:
    project.up()
    return project


@pytest.fixture(scope="module")
def load(project: PulumiProject, hosts: localhosts.Fleet) -> object:
    """bench/rollout.py's steady load and measures, one for the module: each trial's jobs get their own
    prefix, so jobs.log never holds two trials' jobs under one id."""
    return bench_rollout().Bench(list(hosts), project, rate=20, job_seconds=0.1)


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
        'set :deploy_to, "/var/www/example/local"\n'
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


def test_import_writes_a_stack_that_adopts_capistrano_sidekiqs_unit_with_no_gap(
    project: PulumiProject, hosts: localhosts.Fleet, cap_project: Path, load
) -> None:
    (host,) = hosts
    seed_capistrano_user_unit(host)
    wait_until(lambda: sidekiq_count(host) == 1, 60, "capistrano-sidekiq's Sidekiq to run")
    stack_file = project.directory / f"Pulumi.{STACK}.yaml"
    salt = yaml.safe_load(stack_file.read_text()).get("encryptionsalt")
    imported = subprocess.run(
        [sys.executable, "-m", "ops", "--project", str(project.directory), "import", "--capistrano",
         str(cap_project), "--stage", STACK, "--known-hosts", str(host.known_hosts_path), "--force"],
        capture_output=True, text=True, timeout=300, cwd=PROJECT_DIR,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    written = yaml.safe_load(stack_file.read_text())
    assert written["config"]["sidekiq-fleet:sidekiq"]["adopt"] == [CAP_UNIT]
    assert written["config"]["sidekiq-fleet:sidekiq"]["appDir"] == "/var/www/example/local/current"
    assert "pulumi config set --secret --path ssh.privateKey" in imported.stderr
    # What import says is left to do: the stack's own salt (stack init wrote it), the provisioning login
    # with passwordless sudo and its key, and the env capistrano-sidekiq's unit had.
    if salt:
        stack_file.write_text(stack_file.read_text() + yaml.safe_dump({"encryptionsalt": salt}))
    project.config_set("ssh.user", "admin")
    project.config_set("ssh.privateKeyFile", str(host.private_key_path))
    project.config_set("env.REDIS_URL", REDIS_URL, secret=True)

    def up() -> tuple[float, str]:
        run = project.up()
        return run.seconds, run.output

    trial = load.trial("import", 1, up)
    print(f"import and adopt: {trial.hosts}")
    assert f"adopting {CAP_UNIT}: sent TSTP to its main process" in trial.output
    assert_clean_trial(trial, min_pushed=50)
    assert host.exec(f"test -e {SAVED}/{CAP_UNIT}").returncode == 0
    assert sidekiq_count(host) == 1


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


def test_cap_restart_moves_sidekiq_to_the_other_slot(deployed, hosts, cap_project, load) -> None:
    (host,) = hosts
    old_slot, old_pid = serving(host)

    def restart() -> tuple[float, str]:
        result = cap(cap_project, "sidekiq:restart")
        return 0.0, result.stdout + result.stderr

    trial = load.trial("cap", 1, restart)
    print(f"cap sidekiq:restart: {trial.hosts}")
    new_slot, new_pid = serving(host)
    assert new_slot == {"a": "b", "b": "a"}[old_slot]
    assert new_pid not in (None, old_pid)
    assert_clean_trial(trial, min_pushed=50)
