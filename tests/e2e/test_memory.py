"""Issue 19: memory recycling with no gap, and a new slot that must prove healthy before the old one quiets.

One stage with recycling on (recycleAboveMiB, a check every 5 s, at most one recycle a minute) and memory
limits (rendered and verified: the local hosts' cgroup v1 hierarchy has no memory controller, so the
kernel does not enforce them there and the check reads the main process's RSS). A release whose
RecordingJob keeps memory grows past the limit under steady load; the timer recycles it, measured as
bench/rollout.py measures a version bump. Then a release whose Sidekiq exits 1 s after READY: with the
default rollout.healthySeconds the up fails on the first host and the old slot serves on; with 0 the host
is left with no working Sidekiq.
"""

from __future__ import annotations

import re
import time

import pytest

import localhosts
from tests.e2e.conftest import assert_clean_trial, wait_until
from tests.e2e.test_local_stage import APP, deploy_release, job_processed, main_pid, push_jobs, sh
from tests.e2e.test_rollout import enabled_slots, serving_pid, slot_unit
from tests.pulumi_project import PulumiProject, bench_rollout

pytestmark = pytest.mark.e2e

DISTROS = ("bookworm", "trixie")
HOST_COUNT = 2
CONTROL = "/usr/local/sbin/sidekiqctl"
RECYCLE_ABOVE_MIB = 160
MIN_INTERVAL = 60
STACK_OVERRIDES = {
    "sidekiq": {
        "memoryHigh": 900,
        "memoryMax": 1024,
        "recycleAboveMiB": RECYCLE_ABOVE_MIB,
        "recycleCheckSeconds": 5,
        "recycleMinIntervalSeconds": MIN_INTERVAL,
    }
}

# Appended to a release's app/jobs.rb: each RecordingJob keeps 256 KiB (written, so resident), up to
# 512 MiB, as a leak would. At 20 jobs a second a process grows 5 MiB a second: past the limit again well
# within the minimum interval.
GROWING = """
class RecordingJob
  KEPT = []
  alias_method :perform_without_growth, :perform
  def perform(*args)
    KEPT << ("x" * 262_144) if KEPT.size < 2048
    perform_without_growth(*args)
  end
end
"""
# Appended to a release's app/jobs.rb: Sidekiq sends READY on startup, then this process dies a second
# later, as a bad initializer on the first job or a Redis auth error would make it.
DIES_AFTER_READY = """
Sidekiq.configure_server do |config|
  config.on(:startup) { Thread.new { sleep 1; Process.exit!(1) } }
end
"""


def release_with(host: localhosts.Host, release: str, ruby: str) -> None:
    """A new release (Capistrano's way), its jobs file with ``ruby`` appended."""
    deploy_release(host, release)
    host.exec(f"cat >> {APP}/releases/{release}/app/jobs.rb", user="deploy", input=ruby, check=True)


def recycle_lines(host: localhosts.Host, since: float) -> list[str]:
    return sh(
        host, f"journalctl -u sidekiq-recycle.service -o cat --no-pager --since @{int(since)}"
    ).splitlines()


def recycled_at(host: localhosts.Host, since: float) -> list[float]:
    """When each recycle since ``since`` began, from the journal: the "recycling it" line."""
    out = sh(
        host,
        f"journalctl -u sidekiq-recycle.service -o short-unix --no-pager --since @{int(since)} "
        "--grep 'recycling it' || true",
    )
    return [float(line.split()[0]) for line in out.splitlines() if "recycling it" in line]


def test_limits_are_rendered_and_the_timer_runs_with_the_target(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    started = time.time()
    project.up()
    for host in hosts:
        unit = sh(host, "systemctl cat sidekiq-default@.service")
        for line in ("MemoryHigh=900M", "MemoryMax=1024M", "OOMPolicy=continue", "MemorySwapMax=0"):
            assert f"\n{line}\n" in unit, line
        assert sh(host, "systemctl is-enabled sidekiq-recycle.timer").strip() == "enabled"
        assert sh(host, "systemctl is-active sidekiq-recycle.timer").strip() == "active"
        # No memory controller on the local hosts: systemd has no MemoryCurrent, the check reads RSS.
        serving = slot_unit("default", enabled_slots(host)[0])
        assert sh(host, f"systemctl show -p MemoryCurrent --value {serving}").strip() == "[not set]"
        # Below the limit, a check runs and says nothing.
        wait_until(lambda h=host: "Finished" in "".join(recycle_lines(h, started)), 30, "a first check")
        assert sh(host, "systemctl show -p Result --value sidekiq-recycle.service").strip() == "success"
        assert not [line for line in recycle_lines(host, started) if "process default" in line]
    # stop stops the timer with the slots; start brings both back.
    host = hosts[0]
    sh(host, f"{CONTROL} stop")
    assert host.exec("systemctl is-active --quiet sidekiq-recycle.timer").returncode != 0
    sh(host, f"{CONTROL} start")
    assert sh(host, "systemctl is-active sidekiq-recycle.timer").strip() == "active"


def test_a_growing_process_is_recycled_with_no_gap_and_not_again_within_the_interval(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    for host in hosts:
        release_with(host, "20260105000000", GROWING)
    project.config_set("appVersion", "local-grow")
    project.up()
    bench = bench_rollout().Bench(list(hosts), project, rate=20, job_seconds=0.1)
    began = time.time()

    def wait_for_recycle(count: int) -> float:
        """Until each host recycled ``count`` times since the start; returns the wall time."""
        start = time.monotonic()
        wait_until(lambda: all(len(recycled_at(h, began)) >= count for h in hosts), 240, f"recycle {count}",
                   interval=1)  # fmt: skip
        return time.monotonic() - start

    first = bench.trial("recycle", None, lambda: (wait_for_recycle(1), ""))
    second = bench.trial("recycle", None, lambda: (wait_for_recycle(2), ""))
    assert_clean_trial(first)
    assert_clean_trial(second)
    for host in hosts:
        times = recycled_at(host, began)
        assert times[1] - times[0] >= MIN_INTERVAL, times
        lines = recycle_lines(host, began)
        recycling = [line for line in lines if "recycling it" in line]
        assert re.search(
            rf"process default: sidekiq-default@[ab]\.service uses \d+ MiB \(RSS of PID \d+\), above "
            rf"recycleAboveMiB {RECYCLE_ABOVE_MIB} MiB; recycling it",
            recycling[0],
        ), recycling
        # Above the limit again before the interval passed: the checks said why they waited.
        assert any(f"recycleMinIntervalSeconds is {MIN_INTERVAL}" in line for line in lines), lines
        status = sh(host, f"{CONTROL} status")
        assert f"limit={1024 * 1048576} recycle={RECYCLE_ABOVE_MIB * 1048576} recycled=20" in status, status
        # The version did not change: a recycle is not a deploy.
        assert "version=local-grow" in status, status


def test_a_release_that_dies_after_ready_fails_the_up_and_the_old_slot_serves_on(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    first, later = hosts
    for host in hosts:
        release_with(host, "20260106000000", DIES_AFTER_READY)
    pids = {host.name: serving_pid(host) for host in hosts}
    later_slot = enabled_slots(later)
    project.config_set("appVersion", "local-dies")

    run = project.up(check=False)
    assert run.returncode != 0
    failure = run.output.split(f"sidekiq on host {first.name}: FAILED: ")[1]
    assert re.match(
        r"process default: sidekiq-default@[ab]\.service exited or restarted [0-9]+ s after READY "
        r"\(rollout\.healthySeconds: 2\); stopped it, sidekiq-default@[ab]\.service keeps serving",
        failure,
    ), failure
    assert serving_pid(first) == pids[first.name], "the old slot was replaced"
    assert "stopping" not in sh(first, f"ps -o args= -p {pids[first.name]}"), "the old slot was quieted"
    # It still takes work.
    push_jobs(first, "after-dies")
    wait_until(lambda: job_processed(first, "after-dies"), 30, "a job on the old slot")
    assert job_processed(first, "after-dies")["pid"] == pids[first.name]
    # The rollout halted: the later host was not touched.
    assert serving_pid(later) == pids[later.name]
    assert enabled_slots(later) == later_slot
    assert "stopping" not in sh(later, f"ps -o args= -p {pids[later.name]}")


def test_without_the_health_window_the_same_release_leaves_no_working_sidekiq(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    first = hosts[0]
    old_pid = serving_pid(first)
    project.config_set("rollout.healthySeconds", "0")
    project.config_set("rollout.batchSize", "2")
    project.up()  # READY is all a restart waits for: the up succeeds

    # The old process quiets and drains away; the new slot dies a second after each READY.
    wait_until(lambda: first.exec(f"kill -0 {old_pid}").returncode != 0, 60, "the old Sidekiq to stop")
    (slot,) = enabled_slots(first)
    restarts = int(sh(first, f"systemctl show -p NRestarts --value {slot_unit('default', slot)}"))
    # Longer than the 1 s a new process lives: taken, and killed with it (Sidekiq's basic fetch loses it).
    sh(first, f"cd {APP}/current && bin/push-jobs --sleep 3 no-one-works", user="deploy")
    time.sleep(15)
    assert int(sh(first, f"systemctl show -p NRestarts --value {slot_unit('default', slot)}")) >= restarts + 2
    assert job_processed(first, "no-one-works") is None, "a Sidekiq finished a job"

    # A good release, the default window again: every host serves.
    for host in hosts:
        first_release = sh(host, f"ls {APP}/releases | head -n 1").strip()
        deploy_release(host, "20260107000000")
        sh(host, f"cp {APP}/releases/{first_release}/app/jobs.rb {APP}/current/app/jobs.rb", user="deploy")
    project.config_set("rollout.healthySeconds", "2")
    project.config_set("rollout.batchSize", "1")
    project.config_set("appVersion", "local-fixed")
    project.up()
    for host in hosts:
        pid = main_pid(host)
        push_jobs(host, f"fixed-{host.name}")
        wait_until(lambda h=host: job_processed(h, f"fixed-{h.name}"), 30, f"a job on {host.name}")
        assert job_processed(host, f"fixed-{host.name}")["pid"] == pid
        assert job_processed(host, f"fixed-{host.name}")["release"] == "20260107000000"
