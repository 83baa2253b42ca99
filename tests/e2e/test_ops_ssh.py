"""The ops command's SSH layer against real sshd on local hosts, as the deploy user.

The control script's verbs (status, quiet, stop, start, restart, logs) need issue 8's control
script on the hosts; their end-to-end tests come with it. Here: harmless commands through the
same layer (ops/ssh.py), the host key pinning, a host that is down, batches, the inventories with
real Ruby and OpenSSH, and the stack outputs through the real Automation API.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

import localhosts
from components.config import parse_stage, resolve_files, values_from_stack_file
from ops import cli, inventory, ssh
from ops.outputs import fleet_from_outputs, stack_outputs

pytestmark = pytest.mark.e2e

HOST_COUNT = 2
PROJECT_DIR = Path(__file__).resolve().parents[2]


def outputs_of(hosts: localhosts.Fleet, **changes: dict) -> dict:
    """Stack outputs as the program exports them for these hosts (components/outputs.py)."""
    return {
        "outputsVersion": 3,
        "stage": "local",
        "app": "example",
        "appVersion": "local-1",
        "scope": "system",
        "deployUser": "deploy",
        "units": ["sidekiq.target", "sidekiq-default@.service"],
        "control": "/usr/local/sbin/sidekiqctl",
        "batchSize": 1,
        "hosts": [
            {
                "name": host.name,
                "address": host.address,
                "port": host.port,
                "sshUser": "admin",
                "hostKey": host.host_key,
                "units": ["sidekiq.target", "sidekiq-default@.service"],
                "control": "/usr/local/sbin/sidekiqctl",
                "appVersion": "local-1",
                **changes.get(host.name, {}),
            }
            for host in hosts
        ],
    }


def targets(hosts: localhosts.Fleet, **changes: dict) -> list[ssh.Target]:
    fleet = fleet_from_outputs("local", outputs_of(hosts, **changes))
    return [cli._target(fleet, host) for host in fleet.hosts]


def options(hosts: localhosts.Fleet, **values) -> ssh.Options:
    return ssh.Options(identities=[hosts[0].private_key_path], **values)


def run_many(hosts, command, target_list=None, **values) -> list[ssh.Result]:
    chosen = target_list or targets(hosts)
    return asyncio.run(ssh.run_many(chosen, lambda t: command, options(hosts, **values)))


@contextlib.contextmanager
def socket_listener() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_runs_as_the_deploy_user_on_every_host(hosts: localhosts.Fleet) -> None:
    done = run_many(hosts, "id -un; hostname; echo to-stderr >&2")
    assert [(r.name, r.ok, r.exit_status, r.stdout, r.stderr) for r in done] == [
        (host.name, True, 0, f"deploy\n{host.name}\n", "to-stderr\n") for host in hosts
    ]
    failing = run_many(hosts, "echo first >&2; echo last words >&2; exit 3")
    assert [(r.ok, r.exit_status, r.error) for r in failing] == [(False, 3, "exit status 3: last words")] * 2


def test_parallelism_is_bounded(hosts: localhosts.Fleet) -> None:
    command = "date +%s.%N; sleep 0.5; date +%s.%N"

    def spans(parallel: int) -> list[tuple[float, float]]:
        done = run_many(hosts, command, parallel=parallel)
        return sorted(tuple(map(float, r.stdout.split())) for r in done)

    (_, end1), (start2, _) = spans(1)
    assert start2 >= end1, "with --parallel 1 the second host starts after the first ended"
    (_, end1), (start2, _) = spans(2)
    assert start2 < end1, "with --parallel 2 both run at once"


def test_a_wrong_host_key_is_refused_before_anything_runs(hosts: localhosts.Fleet) -> None:
    first, second = hosts
    swapped = targets(hosts, **{first.name: {"hostKey": second.host_key}})
    done = run_many(hosts, "touch ~/ops-ran", swapped)
    assert not done[0].ok
    assert done[0].exit_status is None
    assert done[0].error == (
        f"host key mismatch at {first.address}:22: the host did not present the hostKey of the stack "
        f"outputs ({second.host_key}); refusing to connect"
    )
    assert first.exec("test -e /home/deploy/ops-ran").returncode == 1
    assert done[1].ok
    assert second.exec("test -e /home/deploy/ops-ran").returncode == 0
    second.exec("rm /home/deploy/ops-ran", check=True)


def test_an_unauthorized_key_is_refused(hosts: localhosts.Fleet, tmp_path: Path) -> None:
    key = tmp_path / "id_other"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key))
    done = asyncio.run(ssh.run_many(targets(hosts)[:1], lambda t: "true", ssh.Options(identities=[key])))
    assert (
        done[0].error
        == f"{hosts[0].address}:22 refused the login of 'deploy': none of the client keys is authorized"
    )


def test_a_stopped_host_fails_fast_while_the_others_run(hosts: localhosts.Fleet) -> None:
    first, second = hosts
    second.exec("systemctl stop ssh.service", check=True)
    try:
        started = time.monotonic()
        done = run_many(hosts, "id -un")
        elapsed = time.monotonic() - started
        out = io.StringIO()
        fleet = fleet_from_outputs("local", outputs_of(hosts))
        status = cli.report(fleet, "quiet", done, elapsed, as_json=False, out=out)
    finally:
        second.exec("systemctl start ssh.service", check=True)
    assert elapsed < 3, f"the refused host took {elapsed:.1f} s"
    assert status == 1
    assert out.getvalue().splitlines() == [
        f"{first.name}  ok       deploy",
        f"{second.name}  FAILED   connection refused by {second.address}:22: is sshd running?",
        f"quiet local: 1 of 2 hosts ok; failed: {second.name} ({elapsed:.1f} s)",
    ]


def test_a_silent_host_fails_within_the_connect_timeout_while_the_others_run(hosts: localhosts.Fleet) -> None:
    with socket_listener() as port:
        silent = ssh.Target("silent", "127.0.0.1", port, "deploy", hosts[0].host_key)
        started = time.monotonic()
        done = run_many(hosts, "id -un", [silent, *targets(hosts)], connect_timeout=1.5)
        elapsed = time.monotonic() - started
    assert [r.ok for r in done] == [False, True, True]
    assert done[0].error == f"no SSH connection to 127.0.0.1:{port} within 1.5 s (connect timeout)"
    assert 1.5 <= elapsed < 3.5


def test_lines_arrive_with_the_host_name(hosts: localhosts.Fleet) -> None:
    seen: list[tuple[str, str, str]] = []
    asyncio.run(
        ssh.run_many(
            targets(hosts),
            lambda t: "echo one; echo two; echo oops >&2",
            options(hosts),
            on_line=lambda *line: seen.append(line),
        )
    )
    for host in hosts:
        mine = [(stream, line) for name, stream, line in seen if name == host.name]
        assert sorted(mine) == [("stderr", "oops"), ("stdout", "one"), ("stdout", "two")]


def test_restart_batches_run_in_order_and_stop_at_a_failed_batch(hosts: localhosts.Fleet) -> None:
    first, second = hosts
    command = "date +%s.%N; sleep 0.3; date +%s.%N"
    done = asyncio.run(
        ssh.run_in_batches(targets(hosts), 1, lambda t: command, options(hosts), "restart local")
    )
    assert [r.ok for r in done] == [True, True]
    (_, end1), (start2, _) = (tuple(map(float, r.stdout.split())) for r in done)
    assert start2 >= end1
    first.exec("systemctl stop ssh.service", check=True)
    try:
        done = asyncio.run(
            ssh.run_in_batches(targets(hosts), 1, lambda t: "touch ~/batch-ran", options(hosts), "r")
        )
    finally:
        first.exec("systemctl start ssh.service", check=True)
    assert [(r.name, r.ok, r.skipped) for r in done] == [
        (first.name, False, False),
        (second.name, False, True),
    ]
    assert done[1].error == f"skipped: batch 1 failed on {first.name}"
    assert second.exec("test -e /home/deploy/batch-ran").returncode == 1


def test_capistrano_inventory_is_ruby_that_names_every_host(hosts: localhosts.Fleet) -> None:
    outputs = outputs_of(hosts)
    # A hostile address shows the quoting: Ruby must read it back as the same text.
    outputs["hosts"].append({**outputs["hosts"][0], "name": "odd", "address": 'a"b#{`id`}\\c', "port": 2222})
    text = inventory.capistrano(fleet_from_outputs("local", outputs))
    host = hosts[0]
    assert host.exec(["ruby", "-c", "-e", text]).stdout == "Syntax OK\n"
    # Capistrano's `server` replaced by one that prints its arguments as JSON.
    stub = 'require "json"\ndef server(name, **o) = puts(JSON.generate([name, o]))\n'
    printed = host.exec(["ruby", "-e", stub + text], check=True).stdout.splitlines()
    assert [json.loads(line) for line in printed] == [
        [hosts[0].address, {"user": "deploy", "roles": ["sidekiq"]}],
        [hosts[1].address, {"user": "deploy", "roles": ["sidekiq"]}],
        ['a"b#{`id`}\\c', {"user": "deploy", "port": 2222, "roles": ["sidekiq"]}],
    ]


def test_ssh_config_inventory_pins_the_key_for_openssh(hosts: localhosts.Fleet, tmp_path: Path) -> None:
    first, second = hosts
    config = tmp_path / "ssh_config"
    config.write_text(inventory.ssh_config(fleet_from_outputs("local", outputs_of(hosts))))
    argv = ["ssh", "-F", str(config), "-i", str(first.private_key_path), "-o", "BatchMode=yes"]
    result = subprocess.run([*argv, second.name, "id -un"], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, "deploy\n"), result.stderr
    swapped = outputs_of(hosts, **{second.name: {"hostKey": first.host_key}})
    config.write_text(inventory.ssh_config(fleet_from_outputs("local", swapped)))
    result = subprocess.run([*argv, second.name, "id -un"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 255
    assert result.stdout == ""
    assert "Host key verification failed." in result.stderr


@pytest.fixture
def stack_project(tmp_path: Path, hosts: localhosts.Fleet) -> tuple[Path, dict[str, str], dict]:
    """A stack `qa` of this project in its own backend, holding these hosts' outputs.

    The outputs are imported as the root stack resource's outputs (`pulumi stack import`), so the
    real CLI serves them without a deploy.
    """
    if shutil.which("pulumi") is None:
        raise AssertionError("no `pulumi` on PATH: run the suite through bin/test, which provides it")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(PROJECT_DIR / "Pulumi.yaml", project / "Pulumi.yaml")
    (tmp_path / "backend").mkdir()
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e-only-passphrase",
    }

    def pulumi(*args: str) -> str:
        result = subprocess.run(
            ["pulumi", *args, "--non-interactive"], cwd=project, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    pulumi("stack", "init", "qa")
    state = json.loads(pulumi("stack", "export", "--stack", "qa"))
    outputs = outputs_of(hosts)
    state["deployment"]["resources"] = [
        {
            "urn": "urn:pulumi:qa::sidekiq-fleet::pulumi:pulumi:Stack::sidekiq-fleet-qa",
            "custom": False,
            "type": "pulumi:pulumi:Stack",
            "outputs": outputs,
        }
    ]
    (tmp_path / "state.json").write_text(json.dumps(state))
    pulumi("stack", "import", "--stack", "qa", "--file", str(tmp_path / "state.json"))
    return project, env, outputs


def test_stack_outputs_through_the_automation_api(stack_project, monkeypatch) -> None:
    project, env, outputs = stack_project
    monkeypatch.setenv("PULUMI_BACKEND_URL", env["PULUMI_BACKEND_URL"])
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", env["PULUMI_CONFIG_PASSPHRASE"])
    assert stack_outputs("qa", project) == outputs
    # The installed console script, as a person runs it.
    command = [str(PROJECT_DIR / ".venv/bin/sidekiq-fleet"), "--project", str(project), "inventory"]
    result = subprocess.run([*command, "qa", "--format", "json"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [host["hostKey"] for host in json.loads(result.stdout)["hosts"]] == [
        host["hostKey"] for host in outputs["hosts"]
    ]
    result = subprocess.run([*command, "staging"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == ""
    # After a progress line when the lookup took over a second.
    assert result.stderr.splitlines()[-1].startswith(
        f"sidekiq-fleet: error: no stack 'staging' in the Pulumi backend of {project}:"
    )


def test_cli_verb_without_the_control_script_fails_per_host(hosts: localhosts.Fleet, tmp_path: Path) -> None:
    """The whole command on real hosts that have no sudoers drop-in yet (issue 8 installs it).

    `sudo -n` fails at once with sudo's own message instead of waiting for a password; a silent
    host is given up after the connect timeout, with a progress line meanwhile; exit status 1.
    """
    with socket_listener() as port:
        outputs = outputs_of(hosts)
        outputs["control"] = "/usr/local/sbin/sidekiqctl"
        outputs["hosts"].append(
            {**outputs["hosts"][0], "name": "silent", "address": "127.0.0.1", "port": port}
        )
        (tmp_path / "outputs.json").write_text(json.dumps(outputs))
        command = [str(PROJECT_DIR / ".venv/bin/sidekiq-fleet"), "quiet", "local"]
        command += ["--outputs", str(tmp_path / "outputs.json"), "-i", str(hosts[0].private_key_path)]
        started = time.monotonic()
        result = subprocess.run(
            [*command, "--connect-timeout", "2"], capture_output=True, text=True, timeout=60
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    # Columns are padded to the longest host name, which depends on the harness's prefix.
    rows = [line.split(None, 2) for line in lines[:3]]
    for host, row in zip(hosts, rows, strict=False):
        assert row == [host.name, "FAILED", "exit status 1: sudo: a password is required"], row
    assert rows[2] == [
        "silent",
        "FAILED",
        f"no SSH connection to 127.0.0.1:{port} within 2 s (connect timeout)",
    ]
    assert lines[3].startswith(
        f"quiet local: 0 of 3 hosts ok; failed: {hosts[0].name}, {hosts[1].name}, silent ("
    )
    assert "quiet local: 2/3 hosts done, waiting for silent (1 s)\n" in result.stderr
    assert 2 <= elapsed < 5


def test_cli_restart_stops_at_the_first_failed_batch(hosts: localhosts.Fleet, tmp_path: Path) -> None:
    """`restart` takes rollout.batchSize from the stack outputs (1 here): the first host fails (no
    drop-in yet), so the second is never contacted."""
    (tmp_path / "outputs.json").write_text(json.dumps(outputs_of(hosts)))
    command = [str(PROJECT_DIR / ".venv/bin/sidekiq-fleet"), "restart", "local", "--json"]
    command += ["--outputs", str(tmp_path / "outputs.json"), "-i", str(hosts[0].private_key_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is False
    first, second = document["hosts"]
    assert (first["name"], first["ok"], first["skipped"], first["exitStatus"]) == (
        hosts[0].name,
        False,
        False,
        1,
    )
    assert first["stderr"].startswith("sudo: a password is required")
    assert second == {
        "name": hosts[1].name,
        "ok": False,
        "skipped": True,
        "error": f"skipped: batch 1 failed on {hosts[0].name}",
        "exitStatus": None,
        "seconds": 0.0,
        "stdout": "",
        "stderr": "",
    }


def test_a_known_hosts_file_from_ssh_keyscan_pins_ed25519_for_the_program_and_the_client(
    hosts: localhosts.Fleet, tmp_path: Path
) -> None:
    """`ssh-keyscan -H` of the real hosts: hashed names, three key types each. The config pins each
    host's ed25519 key, and the ops client, asking for that type, connects."""
    scan = subprocess.run(
        ["ssh-keyscan", "-H", "-T", "10", *(h.address for h in hosts)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line.split() for line in scan.stdout.splitlines() if line and not line.startswith("#")]
    assert all(line[0].startswith("|1|") for line in lines), "hashed names"
    assert sorted(line[1] for line in lines) == sorted(["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"] * 2)
    (tmp_path / "known_hosts").write_text(scan.stdout)
    values = values_from_stack_file(PROJECT_DIR / "Pulumi.local.yaml")
    values["hosts"]["existing"] = [{"name": h.name, "address": h.address} for h in hosts]
    values["ssh"] |= {"privateKeyFile": str(hosts[0].private_key_path), "knownHostsFile": "known_hosts"}
    stage = resolve_files(parse_stage("local", values), tmp_path)
    for host, pinned in zip(hosts, stage.config.hosts.existing, strict=True):
        on_host = host.exec("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
        assert pinned.host_key == " ".join(on_host), host.name
        target = ssh.Target(host.name, host.address, host.port, "deploy", pinned.host_key)
        options = ssh.Options(identities=[host.private_key_path])
        result = asyncio.run(ssh.run_command(target, "echo ok", options))
        assert result.ok, result.error
        assert result.stdout == "ok\n"
