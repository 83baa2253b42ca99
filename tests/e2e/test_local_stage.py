"""The whole program for real: Pulumi engine, command provider, sshd, systemd, sudo, Redis, Sidekiq 6.4.1.

The steps run in order on the same three hosts and stack, as a team's stage would live:
first deploy (with a late host), no-op, version bump under load, template change, least
privilege, a failed release, secrets, destroy. Every check reads the hosts themselves.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

import localhosts
from tests.e2e.conftest import PulumiProject, wait_until

pytestmark = pytest.mark.e2e

DISTROS = ("bookworm", "trixie")

PROJECT_DIR = Path(__file__).resolve().parents[2]

GROUP = "sidekiq"
TARGET = "sidekiq.target"
SLOTS = ("sidekiq-default@a.service", "sidekiq-default@b.service")
CONTROL = "/usr/local/sbin/sidekiqctl"
# Every slot and its drain unit (docs/architecture.md), for journalctl.
JOURNAL_UNITS = " ".join(
    f"-u {unit}" for unit in (*SLOTS, "sidekiq-default-drain-a.service", "sidekiq-default-drain-b.service")
)
APP = "/var/www/example/local"
JOBS_LOG = f"{APP}/shared/jobs.log"
STAGING = "/var/lib/sidekiq-fleet/staging/sidekiq"
SECRET_ENV_VALUE = "e2e-secret-token-6a1f0c9d"
FILES = {
    "/etc/systemd/system/sidekiq.target": "root:root 644",
    "/etc/systemd/system/sidekiq-default@.service": "root:root 644",
    "/etc/systemd/system/sidekiq-first-release.path": "root:root 644",
    "/etc/systemd/system/sidekiq-first-release.service": "root:root 644",
    CONTROL: "root:root 755",
    "/etc/sudoers.d/sidekiq-fleet-sidekiq": "root:root 440",
    "/etc/sidekiq-fleet/sidekiq.env": "root:root 600",
}


def sh(host: localhosts.Host, command: str, user: str | None = None) -> str:
    result = host.exec(command, user=user)
    assert result.returncode == 0, f"{host.name}: {command}: {result.stdout}{result.stderr}"
    return result.stdout


def current_slot(host: localhosts.Host) -> str:
    """The one enabled slot (docs/architecture.md's invariant): the one that serves, and a boot starts."""
    enabled = [slot for slot in SLOTS if host.exec(f"systemctl is-enabled --quiet {slot}").returncode == 0]
    assert len(enabled) == 1, f"{host.name}: enabled slots {enabled}"
    return enabled[0]


def main_pid(host: localhosts.Host) -> int:
    return int(sh(host, f"systemctl show -p MainPID --value {current_slot(host)}"))


def is_active(host: localhosts.Host) -> bool:
    return host.exec(f"systemctl is-active --quiet {current_slot(host)}").returncode == 0


@dataclass
class LogLine:
    at: int  # microseconds since the epoch, from journald
    pid: int
    message: str


def journal(host: localhosts.Host) -> list[LogLine]:
    lines = []
    for raw in sh(host, f"journalctl {JOURNAL_UNITS} -o json --no-pager").splitlines():
        entry = json.loads(raw)
        message = entry.get("MESSAGE")
        if isinstance(message, str):
            lines.append(LogLine(int(entry["__REALTIME_TIMESTAMP"]), int(entry.get("_PID", 0)), message))
    return lines


def first(lines: list[LogLine], pid: int, text: str) -> LogLine:
    found = [line for line in lines if line.pid == pid and text in line.message]
    assert found, f"no journal line with {text!r} from PID {pid}"
    return found[0]


def iso_us(text: str) -> int:
    """Microseconds since the epoch of a job's "at" (ISO 8601, UTC), as journald counts them."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


def processed(host: localhosts.Host) -> list[dict]:
    result = host.exec(f"cat {JOBS_LOG}")
    return [json.loads(line) for line in result.stdout.splitlines()] if result.returncode == 0 else []


def push_jobs(host: localhosts.Host, *ids: str) -> None:
    sh(host, f"cd {APP}/current && bin/push-jobs {' '.join(ids)}", user="deploy")


def job_processed(host: localhosts.Host, job_id: str) -> dict | None:
    return next((job for job in processed(host) if job["id"] == job_id), None)


def ssh_sessions(host: localhosts.Host) -> int:
    """How many ssh logins the host has accepted: a command resource that runs logs one."""
    return sh(host, "journalctl -u ssh.service -o cat --no-pager").count("Accepted publickey")


def test_first_deploy_waits_for_a_late_host_and_starts_sidekiq(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    late = hosts[2]
    # Like an instance still booting: sshd answers 20 s after `pulumi up` starts.
    sh(late, "systemctl stop ssh.socket ssh.service 2>/dev/null || systemctl stop ssh.service")
    sh(late, "systemd-run --on-active=20 --unit=e2e-late-sshd systemctl start ssh.service")
    project.config_set("env.SECRET_TOKEN", SECRET_ENV_VALUE, secret=True)
    started = time.monotonic()
    run = project.up()
    assert time.monotonic() - started >= 20, "the late host cannot have been deployed before its sshd ran"
    assert "accepts connections" in run.output

    for host in hosts:
        assert is_active(host), host.name
        show = sh(
            host,
            f"systemctl show -p Type,NotifyAccess,WatchdogUSec,TimeoutStopUSec,User {current_slot(host)}",
        )
        assert "Type=notify\n" in show
        assert "NotifyAccess=all\n" in show
        assert "WatchdogUSec=10s\n" in show
        assert "TimeoutStopUSec=13s\n" in show
        assert "User=deploy\n" in show
        lines = journal(host)
        pid = main_pid(host)
        first(lines, pid, "Enabling systemd notification integration")
        first(lines, pid, "Pinging systemd watchdog")
        for path, owner_mode in FILES.items():
            assert sh(host, f"stat -c '%U:%G %a' {path}").strip() == owner_mode, (host.name, path)
        assert sh(host, f"systemctl is-enabled {TARGET}").strip() == "enabled"
        assert current_slot(host) == SLOTS[0], "a first start takes slot a"
        # The staged copies (the env file among them) are the login user's alone.
        assert sh(host, f"stat -c '%U %a' {STAGING}").strip() == "admin 700"
        environ = sh(host, f"tr '\\0' '\\n' < /proc/{pid}/environ")
        assert f"SECRET_TOKEN={SECRET_ENV_VALUE}\n" in environ
        assert "MALLOC_ARENA_MAX=2\n" in environ

        push_jobs(host, f"first-{host.name}")
        job = wait_until(lambda h=host: job_processed(h, f"first-{h.name}"), 30, f"a job on {host.name}")
        assert job["pid"] == pid

    outputs = project.outputs()
    units = [TARGET, "sidekiq-default@.service"]
    assert outputs["stage"] == "local"
    assert outputs["units"] == units
    assert outputs["appVersion"] == "local-1"
    assert outputs["control"] == CONTROL
    assert [h["name"] for h in outputs["hosts"]] == [h.name for h in hosts]
    for entry, host in zip(outputs["hosts"], hosts, strict=True):
        assert entry["address"] == host.address
        assert entry["port"] == 22
        assert entry["sshUser"] == "admin"
        assert entry["hostKey"] == host.host_key
        assert entry["appVersion"] == "local-1"
        assert entry["units"] == units
        assert entry["control"] == CONTROL
        assert entry["instanceId"] is None


def test_second_up_changes_nothing_and_runs_no_remote_command(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    pids = [main_pid(h) for h in hosts]
    sessions = [ssh_sessions(h) for h in hosts]
    run = project.up("--expect-no-changes")
    assert "sidekiq-fleet: " not in run.output, "a script ran"
    assert [main_pid(h) for h in hosts] == pids
    assert [ssh_sessions(h) for h in hosts] == sessions
    # The count sees a login: one ssh session adds exactly one.
    hosts[0].ssh("true", check=True)
    assert ssh_sessions(hosts[0]) == sessions[0] + 1


def deploy_release(host: localhosts.Host, release: str) -> None:
    """What the team's Capistrano deploy does: a new release directory, then `current` moves."""
    sh(
        host,
        f'cd {APP}/releases && cp -a "$(readlink -f {APP}/current)" {release} '
        f"&& ln -sfn {APP}/releases/{release} {APP}/current.new && mv -T {APP}/current.new {APP}/current",
        user="deploy",
    )


# Pushes jobs until told to stop, each line "ID MICROSECONDS" once Redis has it. Every job takes 4 s
# and a push takes about 1 s (more on a loaded machine), so a worker is busy whenever TSTP comes.
# Alternating 3 s and 0 s jobs left moments with none busy on a loaded CI run.
PUSHER = f"""
cd {APP}/current
i=0
while [ ! -e /tmp/e2e-stop-pushing ]; do
  if bin/push-jobs --sleep 4 "steady-$i" >/dev/null; then
    echo "steady-$i $(date +%s%6N)" >> /tmp/e2e-pushed
  fi
  i=$((i + 1))
done
"""


def test_version_bump_rolls_through_the_hosts_in_order_and_loses_no_job(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    old_pids = [main_pid(h) for h in hosts]
    for host in hosts:
        deploy_release(host, "20260102000000")
        sh(host, "rm -f /tmp/e2e-stop-pushing /tmp/e2e-pushed")
        sh(host, f"systemd-run --unit=e2e-pusher --uid=deploy /bin/bash -c {shlex.quote(PUSHER)}")
    project.config_set("appVersion", "local-2")

    steps = project.preview_steps()
    changed = {step["urn"].rsplit("::", 1)[1]: step["op"] for step in steps if step["op"] != "same"}
    assert {name for name, op in changed.items() if op == "replace"} == {f"{h.name}-restart" for h in hosts}
    assert all(name.endswith("-restart") for name in changed), changed
    assert not [s for s in steps if s["op"] == "delete"], "nothing may be deleted or uninstalled"

    run = project.up()
    assert "uninstalled" not in run.output

    for host in hosts:
        sh(host, "touch /tmp/e2e-stop-pushing")
    switches = []
    for host, old_pid in zip(hosts, old_pids, strict=True):
        new_pid = main_pid(host)
        assert new_pid != old_pid, host.name
        assert is_active(host), host.name
        assert current_slot(host) == SLOTS[1], f"{host.name}: the idle slot b took over"
        lines = journal(host)
        # overlap: the new slot was READY before the old one got TSTP (issue 8).
        ready = [line for line in lines if line.message.startswith(f"Started {SLOTS[1]}")]
        assert ready, f"{host.name}: systemd never reported the new slot READY"
        quiet = first(lines, old_pid, "Received TSTP, no longer accepting new work")
        assert ready[0].at < quiet.at, f"{host.name}: the old slot was quieted before the new one was READY"
        first(lines, new_pid, "Enabling systemd notification integration")
        # The old slot drains in the background and stops at 0 busy or after its drain timeout.
        wait_until(
            lambda h=host: h.exec(f"systemctl is-active --quiet {SLOTS[0]}").returncode != 0,
            60,
            f"the old slot on {host.name} to drain and stop",
        )
        switches.append((quiet.at, ready[0].at))
    for (quiet, _), (_, next_ready) in zip(switches, switches[1:], strict=False):
        assert quiet < next_ready, "a host switched before the previous batch was done"

    for host, old_pid, (quiet_at, _) in zip(hosts, old_pids, switches, strict=True):
        sh(host, "systemctl stop e2e-pusher.service 2>/dev/null || true")
        pushed = dict(line.split() for line in sh(host, "cat /tmp/e2e-pushed").splitlines())

        ids = set(pushed)

        def all_done(h: localhosts.Host = host, wanted: set[str] = ids) -> bool:
            return wanted <= {job["id"] for job in processed(h)}

        wait_until(all_done, 90, f"every steady job on {host.name}")
        jobs = processed(host)
        runs = Counter(job["id"] for job in jobs if job["id"] in pushed)
        assert [job_id for job_id, count in runs.items() if count > 1] == [], f"{host.name}: jobs ran twice"
        # A job the old process was running at TSTP, finished by it before TERM: nothing cut short.
        drained = [job for job in jobs if job["pid"] == old_pid and iso_us(job["at"]) > quiet_at]
        assert drained, f"{host.name}: no job was busy when TSTP came"
        # Stamped once the push returned: a second later it surely reached Redis after the quiet.
        after_quiet = {job_id for job_id, at in pushed.items() if quiet_at + 1_000_000 < int(at)}
        assert not [job for job in jobs if job["id"] in after_quiet and job["pid"] == old_pid], (
            f"{host.name}: the quiet process took new work"
        )
        releases = {job["release"] for job in jobs if job["pid"] == main_pid(host)}
        assert releases == {"20260102000000"}, f"{host.name} runs the old release: {releases}"


def test_template_change_reinstalls_reloads_and_restarts(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    old_pids = [main_pid(h) for h in hosts]
    project.config_set("sidekiq.watchdogSec", "15")
    run = project.up()
    for host in hosts:
        assert f"{GROUP} on host {host.name}: daemon-reload done" in run.output, host.name
    for host, old_pid in zip(hosts, old_pids, strict=True):
        assert "WatchdogSec=15\n" in sh(host, "cat /etc/systemd/system/sidekiq-default@.service")
        assert sh(host, f"systemctl show -p WatchdogUSec --value {current_slot(host)}").strip() == "15s"
        assert main_pid(host) != old_pid
        assert is_active(host)


# The control script's deploy verbs, run for real in this order; `follow` never ends, so sudo -l
# checks it (it exits 0 only for a command the rules allow).
ALLOWED = [
    f"sudo -n {CONTROL} status",
    f"sudo -n {CONTROL} quiet",
    f"sudo -n {CONTROL} restart",
    f"sudo -n {CONTROL} stop",
    f"sudo -n {CONTROL} start",
    f"sudo -n {CONTROL} logs",
    f"sudo -n -l {CONTROL} follow",
    f"sudo -n {CONTROL} sums",
]
REFUSED = [
    # sudo matches the arguments exactly: no version, no second word, no internal verb.
    f"sudo -n {CONTROL} restart v9",
    f"sudo -n {CONTROL} status x",
    f"sudo -n {CONTROL} status ''",
    f"sudo -n {CONTROL} sums /etc/shadow",
    f"sudo -n {CONTROL} drain default a",
    f"sudo -n {CONTROL} first-release",
    f"sudo -n {CONTROL}",
    # The twelve systemctl lines of before issue 8 are gone.
    f"sudo -n systemctl status {SLOTS[0]}",
    "sudo -n systemctl reload sidekiq",
    "sudo -n systemctl restart sidekiq",
    f"sudo -n systemctl kill -s TSTP {SLOTS[0]}",
    "sudo -n systemctl restart ssh.service",
    "sudo -n systemctl stop redis-server",
    "sudo -n systemctl edit sidekiq",
    "sudo -n systemctl link /tmp/evil.service",
    "sudo -n systemctl daemon-reload",
    "sudo -n systemctl set-environment EVIL=1",
    "sudo -n systemctl start 'sidekiq*'",
    "sudo -n -i",
    "sudo -n bash -c id",
    "sudo -n journalctl -n 1",
    "sudo -n cat /etc/sidekiq-fleet/sidekiq.env",
]


def test_deploy_user_gets_exactly_the_service_verbs(hosts: localhosts.Fleet) -> None:
    host = hosts[0]
    for command in ALLOWED:
        result = host.exec(command, user="deploy")
        assert result.returncode == 0, f"refused: {command}: {result.stdout}{result.stderr}"
    wait_until(lambda: is_active(host), 30, "sidekiq after the allowed verbs")
    for command in REFUSED:
        result = host.exec(command, user="deploy")
        assert result.returncode != 0, f"allowed: {command}"
        assert "a password is required" in result.stderr or "not allowed" in result.stderr, command
    assert is_active(host)
    assert host.exec("systemctl is-active --quiet ssh.service").returncode == 0


def test_the_control_script_ignores_deploys_path_where_sudoers_has_no_secure_path(
    hosts: localhosts.Fleet,
) -> None:
    """Issue 15, hole 3: without secure_path sudo hands root deploy's PATH; the script sets its own.

    The positive control runs the installed script less its PATH line as root with deploy's PATH:
    deploy's fake systemctl then runs as root.
    """
    host = hosts[1]
    fake_dir, witness = "/home/deploy/bin-attack", "/var/tmp/fake-systemctl-ran-as"
    sh(host, "cp -a /etc/sudoers /root/sudoers.orig && sed -i '/secure_path/d' /etc/sudoers && visudo -c -q")
    try:
        sh(
            host,
            f"mkdir -p {fake_dir} && printf '#!/bin/sh\\nid -un > {witness}\\n' > {fake_dir}/systemctl"
            f" && chmod 755 {fake_dir}/systemctl",
            user="deploy",
        )
        result = host.exec(f"PATH={fake_dir}:/usr/bin:/bin sudo {CONTROL} status", user="deploy")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "default" in result.stdout, result.stdout
        assert "active" in result.stdout, result.stdout
        assert host.exec(f"test -e {witness}").returncode != 0, "deploy's systemctl ran"

        sh(host, f"grep -v '^PATH=' {CONTROL} > /root/ctl-without-own-path")
        host.exec(f"PATH={fake_dir}:/usr/bin:/bin bash /root/ctl-without-own-path status")
        assert sh(host, f"cat {witness}").strip() == "root", "the control did not show the attack"
    finally:
        sh(host, "mv -f /root/sudoers.orig /etc/sudoers && rm -f /root/ctl-without-own-path")
        sh(host, f"rm -rf {fake_dir} {witness}")


def test_deploy_cannot_hold_the_control_lock(hosts: localhosts.Fleet) -> None:
    """Issue 15, hole 2: a lock deploy could open, deploy could flock, and every restart would wait.

    The positive control shows the attack on a 0644 file in /run, where the lock used to be.
    """
    host = hosts[0]
    held = host.exec("flock -n /run/sidekiq-fleet/sidekiq.lock true", user="deploy")
    assert held.returncode != 0, held.stdout + held.stderr
    assert "Permission denied" in held.stderr, held.stdout + held.stderr
    assert sh(host, "stat -c '%U %a' /run/sidekiq-fleet").split() == ["root", "700"]
    started = time.monotonic()
    sh(host, f"sudo {CONTROL} start", user="deploy")
    assert time.monotonic() - started < 30

    sh(host, "install -m 0644 /dev/null /run/old-style.lock")
    try:
        control = host.exec("flock -n /run/old-style.lock true", user="deploy")
        assert control.returncode == 0, "the control did not show the attack: " + control.stderr
    finally:
        sh(host, "rm -f /run/old-style.lock")


def test_a_release_that_cannot_boot_halts_the_rollout(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    broken, untouched = hosts[1], hosts[2]
    for host in hosts:
        deploy_release(host, "20260103000000")
    sh(broken, f"echo ':concurrency: [unclosed' > {APP}/current/config/sidekiq.yml", user="deploy")
    untouched_pid, broken_pid = main_pid(untouched), main_pid(broken)
    project.config_set("appVersion", "local-3")

    run = project.up(check=False)
    assert run.returncode != 0
    assert f"{GROUP} on host {broken.name}: FAILED" in run.output
    # systemd's own lines of the failed start (the control script reads them by invocation ID).
    assert "sidekiq-default@" in run.output.split(f"{GROUP} on host {broken.name}: FAILED")[1]
    assert main_pid(broken) == broken_pid, "the old slot keeps serving"
    assert is_active(broken), "the old slot keeps serving"
    assert main_pid(untouched) == untouched_pid, "the rollout went on"
    assert is_active(untouched), "the rollout went on"
    # A quieted Sidekiq keeps its PID: only its journal tells it was never sent TSTP.
    assert not [line for line in journal(untouched) if line.pid == untouched_pid and "TSTP" in line.message]
    assert is_active(hosts[0])

    sh(broken, f"cp {APP}/releases/20260102000000/config/sidekiq.yml {APP}/current/config/", user="deploy")
    project.up()
    for host in hosts:
        wait_until(lambda h=host: is_active(h), 30, f"sidekiq on {host.name}")
    assert main_pid(untouched) != untouched_pid
    assert [h["appVersion"] for h in project.outputs()["hosts"]] == ["local-3"] * len(hosts)


def test_secrets_never_reach_the_output_or_the_state(project: PulumiProject, hosts: localhosts.Fleet) -> None:
    private_key = Path(localhosts.hosts()[0].private_key_path).read_text()
    # Each line of the key's body on its own: a leak keeps the PEM's line breaks, or escapes them.
    key_lines = [line for line in private_key.splitlines() if "PRIVATE KEY" not in line and len(line) >= 16]
    assert len(key_lines) >= 3
    state = project.pulumi("stack", "export").output
    assert "ciphertext" in state, "secrets should be stored encrypted"
    backend = Path(project.env["PULUMI_BACKEND_URL"].removeprefix("file://"))
    # Every file of the backend: history, checkpoints and their .json.bak backups, locks.
    files = [path for path in backend.rglob("*") if path.is_file()]
    assert any(path.name.endswith(".json.bak") for path in files), "the scan would miss the backups"
    texts = {"stack export": state, **{" ".join(r.args): r.output for r in project.runs}}
    texts |= {str(path): path.read_text(errors="replace") for path in files}
    for name, text in texts.items():
        assert SECRET_ENV_VALUE not in text, name
        assert not [line for line in key_lines if line in text], name
    # On the hosts the value is in the env file and its staged copy only, neither readable by others.
    for host in hosts:
        found = sh(host, f"grep -rlF -e {SECRET_ENV_VALUE} /etc /var /tmp /run /home /root /srv /opt || true")
        assert sorted(found.split()) == ["/etc/sidekiq-fleet/sidekiq.env", f"{STAGING}/sidekiq.env"], (
            host.name
        )
        modes = sh(host, f"stat -c '%U %a' /etc/sidekiq-fleet/sidekiq.env {STAGING}").split("\n")
        assert modes[:2] == ["root 600", "admin 700"], host.name


def test_the_engine_ran_the_command_plugin_the_toolchain_chose(project: PulumiProject) -> None:
    """command 1.2.1 from the plugin cache toolchain/ensure chose and said it chose; nothing from PATH.

    Ours carries a marker with the hash of its source, so it can never pass for Pulumi's plugin.
    """
    ensure = subprocess.run(
        [str(PROJECT_DIR / "toolchain" / "ensure")], capture_output=True, text=True, check=True, timeout=600
    )
    (said,) = [line for line in ensure.stderr.splitlines() if "pulumi-resource-command:" in line]
    plugin_dir = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi") / "plugins"
    plugin_dir /= "resource-command-v1.2.1"
    own = re.search(r"our own implementation \(toolchain/command-provider, source ([0-9a-f]{12})\)", said)
    if own:
        assert (plugin_dir / ".sidekiq-fleet-own").read_text().strip() == own.group(1)
        assert str(plugin_dir.parent) in said
    else:
        assert not (plugin_dir / ".sidekiq-fleet-own").exists(), said
    plugins = json.loads(project.pulumi("plugin", "ls", "--json").output)
    assert {(p["kind"], p["name"], p["version"]) for p in plugins} >= {("resource", "command", "1.2.1")}
    assert shutil.which("pulumi-resource-command") is None
    ups = [run for run in project.runs if run.args[1] == "up"]
    assert ups, "no `pulumi up` ran before this test"
    for run in ups:
        assert "from $PATH" not in run.output
        assert "pulumi-resource-command" not in run.output


def test_destroy_stops_sidekiq_and_leaves_the_hosts_clean(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    pids = [main_pid(h) for h in hosts]
    run = project.pulumi("destroy", "--yes")
    for host in hosts:
        assert f"{GROUP} on host {host.name}: uninstalled" in run.output, host.name
    for host, pid in zip(hosts, pids, strict=True):
        # A graceful stop: Sidekiq's own shutdown ran to its end.
        first(journal(host), pid, "Bye!")
        gone = [
            *FILES,
            "/etc/systemd/system/sidekiq.target.wants",
            "/var/lib/sidekiq-fleet",
            "/etc/sidekiq-fleet",
        ]
        for path in gone:
            assert host.exec(f"test -e {path}").returncode != 0, f"{host.name} still has {path}"
        units = sh(host, "systemctl list-unit-files 'sidekiq*' --no-legend || true")
        assert units.strip() == "", units
        assert re.search(r"\bsidekiq\b", sh(host, "ps -eo comm")) is None
