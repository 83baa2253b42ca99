"""The hardened unit under the faults it must survive, each checked on the hosts themselves.

Sidekiq runs as an rbenv/chruby user would run it: the Ruby in the deploy user's home (read-only to
the unit), Redis over its unix socket. In order, on one stack: the sandbox (score, what a job may
write), kill -9, SIGSTOP, Redis down across a deploy, and a `pulumi up` interrupted mid-rollout.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

import localhosts
from tests.e2e.conftest import SIDEKIQ_VERSION, PulumiProject, wait_until
from tests.e2e.test_local_stage import (
    APP,
    GROUP,
    JOURNAL_UNITS,
    SLOTS,
    current_slot,
    is_active,
    main_pid,
    processed,
    push_jobs,
    sh,
)

pytestmark = pytest.mark.e2e

DISTROS = ("bookworm", "trixie")

HOST_COUNT = 2
REDIS_SOCKET = "/run/redis/redis-server.sock"
STACK_OVERRIDES = {"env": {"REDIS_URL": f"unix://{REDIS_SOCKET}?db=0"}}
# What Sidekiq's failed boot prints when the socket is gone: 6.4 names the redis gem's error class, 7.x
# (redis-client) prints the message only.
REDIS_DOWN = {
    "bookworm": "Redis::CannotConnectError",
    "trixie": f"No such file or directory - connect(2) for {REDIS_SOCKET}",
}
RUBY_BIN = "/home/deploy/.rubies/ruby-3.1.2/bin"
# What chruby or rbenv leaves in a home: a Ruby, and bundle/sidekiq stubs that run it, first on the PATH
# of login shells (the unit runs Sidekiq through `bash -lc`).
HOME_RUBY = f"""
set -eu
mkdir -p {RUBY_BIN}
cp "$(readlink -f /usr/bin/ruby)" {RUBY_BIN}/ruby
printf '#!{RUBY_BIN}/ruby\\nload Gem.bin_path("bundler", "bundle")\\n' > {RUBY_BIN}/bundle
printf '#!{RUBY_BIN}/ruby\\nload "/usr/bin/sidekiq"\\n' > {RUBY_BIN}/sidekiq
chmod 0755 {RUBY_BIN}/bundle {RUBY_BIN}/sidekiq
echo 'export PATH="{RUBY_BIN}:$PATH"' >> ~/.profile
"""


@pytest.fixture(scope="module", autouse=True)
def home_ruby(hosts: localhosts.Fleet) -> None:
    for host in hosts:
        sh(host, HOME_RUBY, user="deploy")


def sidekiq_processes(host: localhosts.Host) -> list[str]:
    """Every Sidekiq process on the host, by its process title ("sidekiq 6.4.1 current [0 of 5 busy]")."""
    title = re.compile(rf"\bsidekiq {re.escape(SIDEKIQ_VERSION[host.distro])} ")
    return [line for line in sh(host, "ps -eo pid=,args=").splitlines() if title.search(line)]


def push_write(host: localhosts.Host, job_id: str, path: str) -> None:
    sh(host, f"cd {APP}/current && bin/push-jobs --write {path} {job_id}", user="deploy")


def recorded(host: localhosts.Host, job_id: str) -> dict:
    return wait_until(
        lambda: next((job for job in processed(host) if job["id"] == job_id), None), 30, f"job {job_id}"
    )


def runs_jobs(host: localhosts.Host, job_id: str) -> dict:
    push_jobs(host, job_id)
    return recorded(host, job_id)


def restarted(host: localhosts.Host, old_pid: int, timeout: float) -> float:
    """Seconds until the unit is active again with a MainPID other than old_pid."""
    started = time.monotonic()
    wait_until(lambda: is_active(host) and main_pid(host) not in (0, old_pid), timeout, "a new MainPID")
    return time.monotonic() - started


def test_hardened_unit_scores_at_most_2_and_runs_the_home_ruby_over_the_socket(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    project.up()
    for host in hosts:
        assert is_active(host), host.name
        score = sh(host, f"systemd-analyze security {current_slot(host)} --no-pager").splitlines()[-1]
        exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", score).group(1))
        assert exposure <= 2.0, f"{host.name}: {score}"
        pid = main_pid(host)
        assert sh(host, f"readlink /proc/{pid}/exe").strip() == f"{RUBY_BIN}/ruby"
        booted = sh(host, f"journalctl {JOURNAL_UNITS} -o cat --no-pager")
        # "with redis options {:url=>…}" (6.4), "connecting to Redis with options {…, :url=>…}" (7.3)
        assert f':url=>"unix://{REDIS_SOCKET}?db=0"' in booted
        assert "Pinging systemd watchdog" in booted
        assert runs_jobs(host, f"hardened-{host.name}")["pid"] == pid


def test_a_job_writes_shared_and_tmp_but_not_etc_usr_or_the_release(hosts: localhosts.Fleet) -> None:
    host = hosts[0]
    pid = main_pid(host)
    allowed = {"w-shared": f"{APP}/shared/e2e-written", "w-tmp": f"{APP}/current/tmp/e2e-bootsnap-like"}
    refused = {"w-etc": "/etc/x", "w-usr": "/usr/x", "w-release": f"{APP}/current/x"}
    for job_id, path in {**allowed, **refused}.items():
        push_write(host, job_id, path)
    for job_id, path in allowed.items():
        assert recorded(host, job_id)["error"] is None, path
    # current/tmp links into shared/tmp: the unit's ReadWritePaths= resolved the link.
    assert sh(host, f"cat {APP}/shared/tmp/e2e-bootsnap-like").strip() == "w-tmp"
    assert sh(host, f"stat -c %a {APP}/shared/e2e-written").strip() == "640", "UMask=0027"
    for job_id, path in refused.items():
        assert recorded(host, job_id)["error"] == "Errno::EROFS", path
        assert host.exec(f"test -e {path}").returncode != 0, path
    journal = sh(host, f"journalctl {JOURNAL_UNITS} -o cat --no-pager")
    assert "Read-only file system" in journal, "the failed jobs are in the journal"
    assert is_active(host), "Sidekiq kept running"
    assert main_pid(host) == pid, "Sidekiq kept running"
    assert sh(host, f"systemctl show -p NRestarts --value {current_slot(host)}").strip() == "0"
    assert runs_jobs(host, "after-refused-writes")["pid"] == pid


def test_kill_9_restarts_sidekiq_with_a_new_pid(hosts: localhosts.Fleet) -> None:
    host = hosts[0]
    pid = main_pid(host)
    sh(host, f"kill -9 {pid}")
    seconds = restarted(host, pid, 30)
    print(f"kill -9: active with a new MainPID after {seconds:.1f} s")
    assert len(sidekiq_processes(host)) == 1
    assert runs_jobs(host, "after-kill-9")["pid"] == main_pid(host)


def test_a_stopped_sidekiq_is_killed_by_the_watchdog_and_restarted(hosts: localhosts.Fleet) -> None:
    host = hosts[0]
    pid = main_pid(host)
    sh(host, f"kill -STOP {pid}")
    seconds = restarted(host, pid, 40)
    print(f"SIGSTOP: active with a new MainPID after {seconds:.1f} s")
    # The watchdog fires 5 to 10 s after the last ping; a crash would be back in about 2 s.
    assert seconds > 4, "only the watchdog (WatchdogSec=10) can have noticed"
    assert "Watchdog timeout" in sh(host, f"journalctl {JOURNAL_UNITS} -o cat --no-pager")
    assert runs_jobs(host, "after-sigstop")["pid"] == main_pid(host)


def test_redis_down_at_a_restart_fails_the_deploy_by_name_and_loses_no_job(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    down, other = hosts
    other_pid, down_pid = main_pid(other), main_pid(down)
    old_slot = current_slot(down)
    new_slot = next(slot for slot in SLOTS if slot != old_slot)
    # Jobs wait in Redis while Sidekiq is quiet; Redis saves them when it stops.
    sh(down, f"systemctl kill --kill-whom=main -s TSTP {old_slot}")
    waiting = [f"queued-{i}" for i in range(5)]
    push_jobs(down, *waiting)
    sh(down, "systemctl stop redis-server")
    project.config_set("appVersion", "faults-redis-down")

    run = project.up(check=False)
    assert run.returncode != 0
    assert run.seconds < 180, "the deploy must fail, not hang"
    assert f"{GROUP} on host {down.name}: FAILED" in run.output
    assert REDIS_DOWN[down.distro] in run.output, run.output
    assert main_pid(other) == other_pid, "the rollout stopped at the failed host"
    # overlap: the new slot never became READY and was stopped again (else Restart=always would
    # retry it in the background); the old slot is still the enabled, running one.
    assert current_slot(down) == old_slot
    assert main_pid(down) == down_pid
    assert sh(down, f"systemctl show -p ActiveState --value {new_slot}").strip() in ("inactive", "failed")

    sh(down, "systemctl start redis-server")
    project.up()
    assert [h["appVersion"] for h in project.outputs()["hosts"]] == ["faults-redis-down"] * 2
    assert current_slot(down) == new_slot
    wait_until(lambda: set(waiting) <= {job["id"] for job in processed(down)}, 30, "the queued jobs")
    for host in hosts:
        wait_until(lambda h=host: len(sidekiq_processes(h)) == 1, 60, f"the old slot on {host.name} to drain")
        assert runs_jobs(host, f"after-redis-{host.name}")["pid"] == main_pid(host)


def test_an_interrupted_up_converges_on_the_next(project: PulumiProject, hosts: localhosts.Fleet) -> None:
    first = hosts[0]
    old_pids = [main_pid(h) for h in hosts]
    since = sh(first, "date +%s").strip()
    project.config_set("appVersion", "faults-interrupted")
    # Ctrl-C in a terminal: SIGINT to the whole process group, once the rollout is under way.
    up = subprocess.Popen(
        ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive", "--color", "never"],
        cwd=project.directory,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        journal = f"journalctl {JOURNAL_UNITS} --since @{since} -o cat --no-pager"
        wait_until(lambda: "Received TSTP" in sh(first, journal), 120, "the first host's quiet step")
        os.killpg(up.pid, signal.SIGINT)
        output, _ = up.communicate(timeout=180)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    assert up.returncode != 0, f"the interrupted up cannot have finished:\n{output[-2000:]}"
    for host, old_pid in zip(hosts, old_pids, strict=True):
        wait_until(lambda h=host: is_active(h), 30, f"Sidekiq on {host.name}")
        # An old slot drains for at most its drain timeout after an overlap restart.
        wait_until(lambda h=host: len(sidekiq_processes(h)) == 1, 60, f"one Sidekiq on {host.name}")
        print(
            f"after SIGINT: {host.name} MainPID {old_pid} -> {main_pid(host)}: {sidekiq_processes(host)[0]}"
        )

    project.up()
    assert [h["appVersion"] for h in project.outputs()["hosts"]] == ["faults-interrupted"] * 2
    for host, old_pid in zip(hosts, old_pids, strict=True):
        assert is_active(host), host.name
        assert main_pid(host) != old_pid, host.name
        # An old slot drains for at most its drain timeout after an overlap restart.
        wait_until(lambda h=host: len(sidekiq_processes(h)) == 1, 60, f"one Sidekiq on {host.name}")
        assert runs_jobs(host, f"after-interrupt-{host.name}")["pid"] == main_pid(host)
