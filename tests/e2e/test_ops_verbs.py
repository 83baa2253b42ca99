"""Every `sidekiq-fleet` verb on three local hosts deployed by the real program, as the deploy user.

The stack is deployed by `pulumi up` (the real engine and pulumi-command); the command then reads
its outputs through the Automation API, as a person runs it. Every check reads the hosts themselves
(systemctl, the journal, the files), never the command's own idea of them.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import localhosts
from components.scripts import host_key_from
from ops import ssh
from tests.e2e.conftest import CONCURRENCY, SIDEKIQ_VERSION, wait_until
from tests.e2e.test_local_stage import APP, job_processed, sh
from tests.pulumi_project import PROJECT_DIR, PulumiProject

pytestmark = pytest.mark.e2e

DISTROS = ("bookworm", "trixie")

HOST_COUNT = 3
SLOTS = ("a", "b")
UNIT_FILE = "/etc/systemd/system/sidekiq-default@.service"
ENV_FILE = "/etc/sidekiq-fleet/sidekiq.env"


def slot_unit(slot: str) -> str:
    return f"sidekiq-default@{slot}.service"


def systemd_view(host: localhosts.Host) -> dict[str, dict]:
    """Per slot, what systemctl says: enabled, ActiveState, MainPID (None when 0)."""
    view = {}
    for slot in SLOTS:
        unit = slot_unit(slot)
        enabled = host.exec(f"systemctl is-enabled --quiet {unit}").returncode == 0
        shown = dict(
            line.split("=", 1) for line in sh(host, f"systemctl show -p ActiveState,MainPID {unit}").split()
        )
        view[slot] = {"enabled": enabled, "state": shown["ActiveState"], "pid": int(shown["MainPID"]) or None}
    return view


def enabled_slot(host: localhosts.Host) -> str:
    (slot,) = [s for s, v in systemd_view(host).items() if v["enabled"]]
    return slot


def serving_pid(host: localhosts.Host) -> int:
    return systemd_view(host)[enabled_slot(host)]["pid"]


def journal(host: localhosts.Host, *args: str) -> list[dict]:
    lines = sh(host, "journalctl -o json --no-pager " + " ".join(map(shlex.quote, args))).splitlines()
    return [entry for entry in map(json.loads, lines) if isinstance(entry.get("MESSAGE"), str)]


def first_at(entries: list[dict], text: str, **fields: object) -> int:
    for entry in entries:
        if text in entry["MESSAGE"] and all(str(entry.get(k)) == str(v) for k, v in fields.items()):
            return int(entry["__REALTIME_TIMESTAMP"])
    raise AssertionError(f"no journal line with {text!r} and {fields}")


@pytest.fixture(scope="module")
def deployed(project: PulumiProject, hosts: localhosts.Fleet) -> PulumiProject:
    project.up()
    return project


def fleet(
    project: PulumiProject,
    hosts: localhosts.Fleet,
    *args: str,
    timeout: float = 300,
    identity: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`sidekiq-fleet ARGS` (this checkout's ops package), on the stage's stack, as the deploy user: with
    no -i, as a newcomer runs it after bin/demo, the stage's ops.identityFile is the key."""
    verb, *rest = args
    argv = [sys.executable, "-m", "ops", "--project", str(project.directory), verb, "local"]
    if identity is not None:
        argv += ["-i", str(identity)]
    return subprocess.run(
        [*argv, *rest], cwd=PROJECT_DIR, env=project.env, capture_output=True, text=True, timeout=timeout
    )


def host_lines(result: subprocess.CompletedProcess[str], hosts: list[localhosts.Host]) -> dict[str, str]:
    """The result line of each host (name, outcome, detail)."""
    width = max(len(h.name) for h in hosts)
    return {
        line[:width].rstrip(): line[width:].strip()
        for line in result.stdout.splitlines()
        if any(line.startswith(f"{h.name} ") for h in hosts)
    }


def test_the_first_connection_learns_each_hosts_key(deployed, hosts) -> None:
    """What EC2 hosts export as hostKey (trust on first use): prepare's report of the host's key,
    here compared with the key the harness generated for each host."""
    state = json.loads(deployed.pulumi("stack", "export").output)
    prepared = {
        r["urn"].rsplit("::", 1)[1].removesuffix("-prepare"): r["outputs"]["stdout"]
        for r in state["deployment"]["resources"]
        if r["urn"].endswith("-prepare") and r["type"] == "command:remote:Command"
    }
    assert {name: host_key_from(stdout) for name, stdout in prepared.items()} == {
        host.name: " ".join(host.host_key.split()[:2]) for host in hosts
    }


def test_status_matches_systemctl_on_every_host(deployed, hosts) -> None:
    result = fleet(deployed, hosts, "status", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [h["name"] for h in document["hosts"]] == [h.name for h in hosts]
    for host, entry in zip(hosts, document["hosts"], strict=True):
        view = systemd_view(host)
        # One record per slot that is enabled or running, and exactly what systemctl says of it.
        shown = {r["slot"]: r for r in entry["processes"]}
        assert set(shown) == {s for s, v in view.items() if v["enabled"] or v["state"] != "inactive"}
        for slot, record in shown.items():
            assert record["process"] == "default"
            assert (record["enabled"], record["state"], record["pid"]) == (
                view[slot]["enabled"],
                view[slot]["state"],
                view[slot]["pid"],
            ), host.name
            assert record["version"] == "local-1"
            assert record["release"] == "/var/www/example/local/releases/20260101000000"
            assert record["concurrency"] == CONCURRENCY[host.distro]
            assert record["sidekiq"] == SIDEKIQ_VERSION[host.distro]
            assert record["quiet"] is False
    # The text form: a table row per record, each host once, then the summary.
    result = fleet(deployed, hosts, "status")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:-1]]
    assert [row[0] for row in rows] == [host.name for host in hosts]
    for host, row in zip(hosts, rows, strict=True):
        assert row[1:6] == ["default", enabled_slot(host), "yes", "active", str(serving_pid(host))]
        # MAX, RECYCLE AT, RECYCLED: the local stage sets no memory limit and never recycled.
        assert row[10:15] == ["-", "-", "-", SIDEKIQ_VERSION[host.distro], "local-1"]
    assert result.stdout.splitlines()[-1].startswith("status local: 3 of 3 hosts ok (")


@pytest.mark.distros("trixie")
def test_a_job_in_the_second_capsules_queue_runs_in_the_serving_process(deployed, hosts) -> None:
    """Sidekiq 7's capsules: the app's sidekiq.yml gives the queue `serial` a pool of its own."""
    for host in hosts:
        job_id = f"capsule-{host.name}"
        sh(host, f"cd {APP}/current && bin/push-jobs --queue serial {job_id}", user="deploy")
        job = wait_until(lambda h=host, j=job_id: job_processed(h, j), 30, f"{job_id} to run")
        assert job["pid"] == serving_pid(host)


def test_restart_is_zero_gap_and_batch_by_batch(deployed, hosts) -> None:
    before = {host.name: (enabled_slot(host), serving_pid(host)) for host in hosts}
    result = fleet(deployed, hosts, "restart")
    assert result.returncode == 0, result.stdout + result.stderr
    started = []
    for host in hosts:
        old_slot, old_pid = before[host.name]
        new_slot = "b" if old_slot == "a" else "a"
        assert enabled_slot(host) == new_slot
        new_pid = serving_pid(host)
        assert new_pid not in (None, old_pid)
        entries = journal(host, "-u", slot_unit(old_slot), "-u", slot_unit(new_slot))
        ready = first_at(entries, f"Started sidekiq-default@{new_slot}.service")
        quieted = first_at(entries, "Received TSTP", _PID=old_pid)
        # Zero gap: the new process was READY before the old one stopped taking work.
        assert ready < quieted, host.name
        started.append(ready)
    # rollout.batchSize 1 in the local stage: one host after the other, in the outputs' order.
    assert started == sorted(started)


def test_quiet_tstps_every_running_sidekiq(deployed, hosts) -> None:
    # The previous restart's drains end first, so only the serving process is running.
    for host in hosts:
        old = "b" if enabled_slot(host) == "a" else "a"
        wait_until(lambda h=host, s=old: systemd_view(h)[s]["state"] == "inactive", 60, "the drain")
    pids = {host.name: serving_pid(host) for host in hosts}
    result = fleet(deployed, hosts, "quiet")
    assert result.returncode == 0, result.stderr
    for host in hosts:
        slot = slot_unit(enabled_slot(host))
        first_at(journal(host, "-u", slot), "Received TSTP", _PID=pids[host.name])
        assert serving_pid(host) == pids[host.name], "quiet does not stop Sidekiq"

    def all_quiet() -> bool:
        document = json.loads(fleet(deployed, hosts, "status", "--json").stdout)
        return all(r["quiet"] for h in document["hosts"] for r in h["processes"])

    wait_until(all_quiet, 30, "status to show every process quiet (the heartbeat's title)", interval=2)


def test_logs_are_prefixed_with_the_host_name(deployed, hosts) -> None:
    result = fleet(deployed, hosts, "logs")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines
    assert all(any(line.startswith(f"{h.name} | ") for h in hosts) for line in lines)
    for host in hosts:
        mine = [line for line in lines if line.startswith(f"{host.name} | ")]
        assert any("Received TSTP" in line for line in mine), host.name
    assert "logs local: 3 of 3 hosts ok" in result.stderr


def test_what_deploys_login_prints_reaches_the_operator_escaped(deployed, hosts) -> None:
    """Issue 15, hole 5: deploy's .bashrc prints OSC 52 (writes the operator's clipboard), a C1 CSI
    (U+009B) and a byte that is not UTF-8; the operator sees them written out, and the verbs still work."""
    host = hosts[0]
    bashrc = "/home/deploy/.bashrc"
    attack = r"printf '\033]52;c;cHduZWQ=\a\302\23331m\377\n' >&2"
    sh(host, f"cp -a {bashrc} /root/bashrc.orig")
    prepend = 'printf "%s\\n" "$1" | cat - "$2" > "$2.new" && mv "$2.new" "$2"'
    written = host.exec(["sh", "-c", prepend, "sh", attack, bashrc], user="deploy")
    assert written.returncode == 0, written.stderr
    try:
        # The positive control: a login of deploy's prints the raw sequence.
        raw = subprocess.run(host.ssh_argv("true", user="deploy"), capture_output=True, timeout=60)
        assert b"\x1b]52;c;cHduZWQ=\x07\xc2\x9b31m\xff" in raw.stderr, "the control did not show the attack"
        escaped = r"\x1b]52;c;cHduZWQ=\x07\x9b31m\xff"
        for args in (("logs",), ("logs", "--json"), ("status",), ("status", "--json")):
            result = fleet(deployed, hosts, *args, "--hosts", host.name)
            shown = result.stdout + result.stderr
            assert result.returncode == 0, shown
            if args[0] == "logs":
                assert escaped in shown.replace("\\\\", "\\"), (args, shown)
            raw_controls = [c for c in shown if ord(c) < 32 and c not in "\t\n" or 0x7F <= ord(c) <= 0x9F]
            assert not raw_controls, (args, raw_controls)
    finally:
        sh(host, f"mv -f /root/bashrc.orig {bashrc}")


def test_stop_then_start(deployed, hosts) -> None:
    old = {host.name: serving_pid(host) for host in hosts}
    result = fleet(deployed, hosts, "stop")
    assert result.returncode == 0, result.stderr
    for host in hosts:
        assert all(v["state"] == "inactive" for v in systemd_view(host).values()), host.name
    # status of a stopped stage: the enabled slot, inactive, no PID.
    document = json.loads(fleet(deployed, hosts, "status", "--json").stdout)
    for host, entry in zip(hosts, document["hosts"], strict=True):
        slot = enabled_slot(host)
        assert [(r["slot"], r["enabled"], r["state"], r["pid"]) for r in entry["processes"]] == [
            (slot, True, "inactive", None)
        ]
    result = fleet(deployed, hosts, "start")
    assert result.returncode == 0, result.stderr
    for host in hosts:
        view = systemd_view(host)[enabled_slot(host)]
        assert view["state"] == "active"
        assert view["pid"] not in (None, old[host.name])


def test_hosts_narrows_the_run(deployed, hosts) -> None:
    first, second, third = hosts
    result = fleet(deployed, hosts, "stop", "--hosts", second.name)
    try:
        assert result.returncode == 0, result.stderr
        assert list(host_lines(result, hosts)) == [second.name]
        assert systemd_view(second)[enabled_slot(second)]["state"] == "inactive"
        for host in (first, third):
            assert systemd_view(host)[enabled_slot(host)]["state"] == "active", host.name
    finally:
        result = fleet(deployed, hosts, "start", "--hosts", second.name)
    assert result.returncode == 0, result.stderr
    assert systemd_view(second)[enabled_slot(second)]["state"] == "active"


def test_a_host_that_is_down_fails_alone(deployed, hosts) -> None:
    """The harness freezes the first host's sshd (SIGSTOP): the kernel still accepts the TCP
    connection but nothing answers, as on a host that hangs; the others carry on."""
    down = hosts[0]
    sh(down, "kill -STOP $(cat /run/sshd.pid)")
    try:
        started = time.monotonic()
        result = fleet(deployed, hosts, "status", "--connect-timeout", "3")
        elapsed = time.monotonic() - started
    finally:
        sh(down, "kill -CONT $(cat /run/sshd.pid)")
    assert result.returncode == 1
    lines = host_lines(result, hosts)
    assert lines[down.name] == f"FAILED   no SSH connection to {down.address}:22 within 3 s (connect timeout)"
    for host in hosts[1:]:
        assert lines[host.name].split()[:2] == ["default", enabled_slot(host)], lines  # its table row
    assert result.stdout.splitlines()[-1].startswith(f"status local: 2 of 3 hosts ok; failed: {down.name} (")
    assert elapsed < 30


def test_a_wrong_host_key_is_refused(deployed, hosts, tmp_path: Path) -> None:
    outputs = deployed.outputs()
    first, second, _ = outputs["hosts"]
    second["hostKey"] = first["hostKey"]  # a real key, but another host's
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    result = fleet(deployed, hosts, "status", "--outputs", str(tmp_path / "outputs.json"))
    assert result.returncode == 1
    lines = host_lines(result, hosts)
    assert lines[second["name"]].startswith(
        f"FAILED   host key mismatch at {second['address']}:22: the host did not present the hostKey"
    )
    for name in (first["name"], hosts[2].name):
        assert lines[name].split()[0] == "default", lines  # its table row


def test_capistrano_inventory_is_ruby_listing_every_host(deployed, hosts) -> None:
    result = fleet(deployed, hosts, "inventory", "--format", "capistrano")
    assert result.returncode == 0, result.stderr
    assert hosts[0].exec(["ruby", "-c", "-e", result.stdout]).stdout == "Syntax OK\n"
    stub = "def server(name, **o) = puts([name, o[:user], o[:roles]].inspect)\n"
    printed = sh(hosts[0], shlex.join(["ruby", "-e", stub + result.stdout])).splitlines()
    assert printed == [f'["{h.address}", "deploy", ["sidekiq"]]' for h in hosts]


def test_check_reports_a_hand_edit_and_repair_reinstalls_it(deployed, hosts) -> None:
    # An encrypted env value: check decrypts the stack's config to render the env file, as pulumi up does.
    deployed.config_set("env.API_TOKEN", "e2e-check-secret", secret=True)
    deployed.up()
    result = fleet(deployed, hosts, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(line.startswith("ok       no drift") for line in host_lines(result, hosts).values())
    first, edited, stopped = hosts
    rendered = sh(first, f"sha256sum {UNIT_FILE}").split()[0]
    sh(edited, f"echo 'Nice=5' >> {UNIT_FILE}")
    hand = sh(edited, f"sha256sum {UNIT_FILE}").split()[0]
    sh(stopped, f"systemctl stop {slot_unit(enabled_slot(stopped))}")
    env_sum = sh(first, f"sha256sum {ENV_FILE}").split()[0]
    sh(first, f"echo 'API_TOKEN=by-hand' >> {ENV_FILE}")
    result = fleet(deployed, hosts, "check")
    assert result.returncode == 1
    lines = host_lines(result, hosts)
    assert lines[first.name] == "FAILED   drift: 1 difference(s)"
    assert f"    {ENV_FILE}: sha256 " in result.stdout
    assert f", the render has {env_sum[:12]}" in result.stdout
    assert lines[edited.name] == "FAILED   drift: 1 difference(s)"
    assert f"    {UNIT_FILE}: sha256 {hand[:12]}, the render has {rendered[:12]}" in result.stdout
    assert lines[stopped.name] == "FAILED   drift: 1 difference(s)"
    slot = enabled_slot(stopped)
    assert f"    process default: the enabled slot {slot} is inactive; expected active" in result.stdout
    result = fleet(deployed, hosts, "check", "--repair", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repairing" in result.stderr
    assert "--replace" in result.stderr
    assert all(line.startswith("ok       no drift") for line in host_lines(result, hosts).values())
    assert sh(edited, f"sha256sum {UNIT_FILE}").split()[0] == rendered
    assert sh(first, f"sha256sum {ENV_FILE}").split()[0] == env_sum
    assert systemd_view(stopped)[enabled_slot(stopped)]["state"] == "active"
    result = fleet(deployed, hosts, "check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_authorized_keys_let_the_ops_commands_in_and_destroy_removes_them(deployed, hosts, tmp_path) -> None:
    key = tmp_path / "ops_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e ops", "-f", str(key)], check=True
    )
    public = key.with_suffix(".pub").read_text().strip()
    result = fleet(deployed, hosts, "status", identity=key)
    assert result.returncode == 1
    assert "refused the login of 'deploy': none of the client keys is authorized" in result.stdout
    harness_keys = {host.name: sh(host, "cat /home/deploy/.ssh/authorized_keys") for host in hosts}
    deployed.config_set("sidekiq.authorizedKeys[0]", public)
    deployed.up()
    result = fleet(deployed, hosts, "status", identity=key)
    assert result.returncode == 0, result.stdout + result.stderr
    begin = "# BEGIN sidekiq-fleet sidekiq: sidekiq.authorizedKeys of pulumi up; edits here are overwritten"
    for host in hosts:
        # The harness's own line stays; the block follows it, written as deploy.
        text = sh(host, "cat /home/deploy/.ssh/authorized_keys")
        assert text == f"{harness_keys[host.name]}{begin}\n{public}\n# END sidekiq-fleet sidekiq\n"
        assert sh(host, "stat -c '%U %a' /home/deploy/.ssh/authorized_keys") == "deploy 600\n"
    deployed.pulumi("destroy", "--yes", "--skip-preview")
    for host in hosts:
        assert sh(host, "cat /home/deploy/.ssh/authorized_keys") == harness_keys[host.name]
    outputs_host = hosts[1]
    target = ssh.Target(outputs_host.name, outputs_host.address, 22, "deploy", outputs_host.host_key)
    refused = asyncio.run(ssh.run_command(target, "true", ssh.Options(identities=[key])))
    assert not refused.ok
    assert "none of the client keys is authorized" in (refused.error or "")
