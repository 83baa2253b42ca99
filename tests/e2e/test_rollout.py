"""Slots and zero-gap restarts for real (docs/architecture.md), on one stage that lives through it all:

migration from the single-unit release, a host added before its first release, a long job across a
restart, a second deploy while the old slot drains, a process added, a reboot, the process removed,
the memory guard and the restart strategy. Every check reads the hosts themselves.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections import Counter

import pytest
import yaml

import localhosts
from tests.e2e.conftest import wait_until
from tests.e2e.test_local_stage import APP, PUSHER, processed, push_jobs, sh
from tests.pulumi_project import PROJECT_DIR, STACK, PulumiProject

pytestmark = pytest.mark.e2e

DISTROS = ("bookworm", "trixie")

HOST_COUNT = 3
# The last sidekiq-fleet commit that ran one plain sidekiq.service per host.
SINGLE_UNIT_RELEASE = "6a757c9"
TARGET = "sidekiq.target"
CONTROL = "/usr/local/sbin/sidekiqctl"
LEGACY_UNIT = "sidekiq.service"
SLOTS = ("a", "b")


def slot_unit(process: str, slot: str) -> str:
    return f"sidekiq-{process}@{slot}.service"


def active_slots(host: localhosts.Host, process: str = "default") -> list[str]:
    return [
        s for s in SLOTS if host.exec(f"systemctl is-active --quiet {slot_unit(process, s)}").returncode == 0
    ]


def enabled_slots(host: localhosts.Host, process: str = "default") -> list[str]:
    return [
        s for s in SLOTS if host.exec(f"systemctl is-enabled --quiet {slot_unit(process, s)}").returncode == 0
    ]


def serving_pid(host: localhosts.Host, process: str = "default") -> int:
    """The main PID of the enabled slot: the one that takes new work."""
    (slot,) = enabled_slots(host, process)
    return int(sh(host, f"systemctl show -p MainPID --value {slot_unit(process, slot)}"))


def journal(host: localhosts.Host, *units: str) -> list[dict]:
    args = " ".join(f"-u {shlex.quote(u)}" for u in units)
    lines = sh(host, f"journalctl {args} -o json --no-pager").splitlines()
    return [entry for entry in map(json.loads, lines) if isinstance(entry.get("MESSAGE"), str)]


def at(entries: list[dict], text: str, pid: int | None = None, unit: str | None = None) -> int:
    """Microseconds of the first journal line with ``text``, from ``pid`` or about ``unit``."""
    for entry in entries:
        if (
            text in entry["MESSAGE"]
            and (pid is None or int(entry.get("_PID", 0)) == pid)
            and (unit is None or entry.get("UNIT") == unit)
        ):
            return int(entry["__REALTIME_TIMESTAMP"])
    raise AssertionError(f"no journal line with {text!r} (pid {pid}, unit {unit})")


def set_stack_value(project: PulumiProject, section: str, key: str, value: object) -> None:
    """Write a structured value into the stack file, as a team edits Pulumi.<stage>.yaml."""
    path = project.directory / f"Pulumi.{STACK}.yaml"
    stack = yaml.safe_load(path.read_text())
    stack["config"].setdefault(f"sidekiq-fleet:{section}", {})[key] = value
    path.write_text(yaml.safe_dump(stack, sort_keys=False))


def set_stack_hosts(project: PulumiProject, hosts: list[localhosts.Host]) -> None:
    set_stack_value(project, "hosts", "existing", [{"name": h.name, "address": h.address} for h in hosts])


def use_program(project: PulumiProject, commit: str | None) -> None:
    """Put this checkout's program (None) or an earlier commit's into the project."""
    shutil.rmtree(project.directory / "components")
    if commit is None:
        shutil.copytree(
            PROJECT_DIR / "components",
            project.directory / "components",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        shutil.copy2(PROJECT_DIR / "__main__.py", project.directory / "__main__.py")
        return
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "archive", commit, "components", "__main__.py"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(project.directory)], input=archive, check=True)


def start_pushers(hosts: list[localhosts.Host]) -> None:
    for host in hosts:
        sh(host, "rm -f /tmp/e2e-stop-pushing /tmp/e2e-pushed")
        sh(host, f"systemd-run --unit=e2e-pusher --uid=deploy /bin/bash -c {shlex.quote(PUSHER)}")


def stop_pushers_and_check_every_job_ran_once(hosts: list[localhosts.Host]) -> None:
    for host in hosts:
        sh(host, "touch /tmp/e2e-stop-pushing")
    for host in hosts:
        wait_until(
            lambda h=host: h.exec("systemctl is-active --quiet e2e-pusher.service").returncode != 0,
            30,
            f"the pusher on {host.name} to stop",
        )
        pushed = [line.split()[0] for line in sh(host, "cat /tmp/e2e-pushed").splitlines()]
        assert len(pushed) >= 20, f"{host.name}: only {len(pushed)} jobs pushed"
        wait_until(
            lambda h=host, ids=set(pushed): ids <= {job["id"] for job in processed(h)},
            90,
            f"every pushed job on {host.name}",
        )
        runs = Counter(job["id"] for job in processed(host) if job["id"] in set(pushed))
        assert [job_id for job_id, count in runs.items() if count != 1] == [], f"{host.name}: jobs ran twice"


def test_a_host_running_the_single_unit_release_migrates_without_a_gap(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    first_two = list(hosts)[:2]
    set_stack_hosts(project, first_two)
    use_program(project, SINGLE_UNIT_RELEASE)
    # That release knows no ops key: its stage file had none.
    project.pulumi("config", "rm", "sidekiq-fleet:ops")
    project.up()
    legacy_pids = {h.name: int(sh(h, f"systemctl show -p MainPID --value {LEGACY_UNIT}")) for h in first_two}
    assert all(legacy_pids.values())

    use_program(project, None)
    project.config_set("ops.identityFile", str(hosts[0].private_key_path))
    start_pushers(first_two)
    time.sleep(2)
    project.config_set("appVersion", "local-2")
    run = project.up()
    assert "FAILED" not in run.output

    for host in first_two:
        assert active_slots(host) == ["a"], host.name
        assert enabled_slots(host) == ["a"], host.name
        assert sh(host, f"systemctl is-enabled {TARGET}").strip() == "enabled"
        # The old unit drains in the background, then its file goes.
        wait_until(
            lambda h=host: (
                h.exec(f"test -e /etc/systemd/system/{LEGACY_UNIT}").returncode != 0
                and h.exec(f"systemctl is-active --quiet {LEGACY_UNIT}").returncode != 0
            ),
            60,
            f"{LEGACY_UNIT} to drain and go on {host.name}",
        )
        entries = journal(host, LEGACY_UNIT, slot_unit("default", "a"))
        ready = at(entries, "Started", pid=1, unit=slot_unit("default", "a"))
        quiet = at(entries, "Received TSTP", pid=legacy_pids[host.name])
        assert ready < quiet, f"{host.name}: the old process was quieted before the new one was READY"
    stop_pushers_and_check_every_job_ran_once(first_two)


def test_a_host_added_before_its_first_release_serves_after_the_deploy(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    new_host = hosts[2]
    release = sh(new_host, f"readlink -f {APP}/current").strip()
    sh(new_host, f"rm {APP}/current", user="deploy")
    pids = {h.name: serving_pid(h) for h in hosts[:2]}
    set_stack_hosts(project, list(hosts))

    run = project.up()
    assert f"host {new_host.name}: waiting for the first release" in run.output
    assert active_slots(new_host) == []
    assert sh(new_host, "systemctl is-active sidekiq-first-release.path").strip() == "active"
    assert {h.name: serving_pid(h) for h in hosts[:2]} == pids, "the running hosts were restarted"

    # Capistrano's first deploy: `current` appears by a rename.
    sh(new_host, f"ln -s {release} {APP}/current.new && mv -T {APP}/current.new {APP}/current", user="deploy")
    wait_until(lambda: active_slots(new_host) == ["a"], 30, "Sidekiq to start by itself")
    push_jobs(new_host, "after-first-release")
    wait_until(
        lambda: any(job["id"] == "after-first-release" for job in processed(new_host)),
        30,
        "a job on the new host",
    )
    # The path unit disarmed itself: a stop stays a stop.
    assert new_host.exec("systemctl is-enabled --quiet sidekiq-first-release.path").returncode != 0
    sh(new_host, f"sudo -n {CONTROL} stop", user="deploy")
    time.sleep(3)
    assert active_slots(new_host) == []
    sh(new_host, f"sudo -n {CONTROL} start", user="deploy")
    assert active_slots(new_host) == ["a"]


def test_a_job_longer_than_the_timeout_finishes_once_on_the_draining_slot(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    host = hosts[0]
    project.config_set("rollout.drainTimeout", "90")
    project.up()
    old_slot = enabled_slots(host)[0]
    old_pid = serving_pid(host)
    # 25 s: three times sidekiq.timeout (8 s) of the local stage.
    sh(host, f"cd {APP}/current && bin/push-jobs --sleep 25 long-1", user="deploy")
    wait_until(lambda: "busy=1" in sh(host, f"sudo -n {CONTROL} status", user="deploy"), 15, "the long job")

    project.config_set("appVersion", "local-3")
    run = project.up()
    assert not [job for job in processed(host) if job["id"] == "long-1"], "the deploy waited for the drain"
    new_slot = enabled_slots(host)[0]
    assert new_slot != old_slot
    assert active_slots(host) == sorted({old_slot, new_slot})
    assert "FAILED" not in run.output
    push_jobs(host, "during-drain")
    wait_until(lambda: any(j["id"] == "during-drain" for j in processed(host)), 30, "a job on the new slot")

    long_runs = wait_until(
        lambda: [j for j in processed(host) if j["id"] == "long-1"], 60, "the long job to finish"
    )
    assert [j["pid"] for j in long_runs] == [old_pid], "the long job ran elsewhere or more than once"
    assert next(j for j in processed(host) if j["id"] == "during-drain")["pid"] == serving_pid(host)
    wait_until(lambda: active_slots(host) == [new_slot], 30, "the drained slot to stop")


def test_a_second_deploy_while_the_old_slot_drains_stops_it_and_says_so(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    host = hosts[0]
    first_slot = enabled_slots(host)[0]
    sh(host, f"cd {APP}/current && bin/push-jobs --sleep 40 long-2", user="deploy")
    wait_until(lambda: "busy=1" in sh(host, f"sudo -n {CONTROL} status", user="deploy"), 15, "the long job")
    project.config_set("appVersion", "local-4")
    project.up()
    assert active_slots(host) == sorted(SLOTS), "the first slot should be draining long-2"

    project.config_set("appVersion", "local-5")
    run = project.up()
    assert (
        f"{slot_unit('default', first_slot)} still drains from a previous deploy after 8 s; stopping it"
        in (run.output)
    )
    assert enabled_slots(host) == [first_slot]
    # Stopped within its -t, the first slot pushed long-2 back to Redis; the slot serving until then took
    # it, and now drains it to the end: long-2 runs to completion once, then that slot stops too.
    runs = wait_until(lambda: [j for j in processed(host) if j["id"] == "long-2"], 90, "long-2 to finish")
    wait_until(lambda: active_slots(host) == [first_slot], 30, "the second slot's drain")
    time.sleep(1)
    assert [j["id"] for j in processed(host)].count("long-2") == 1
    assert runs[0]["pid"] != serving_pid(host)


def test_a_process_is_added_survives_a_reboot_and_is_removed(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    host = hosts[1]
    processes = [{"name": "default"}, {"name": "low", "configFile": "config/sidekiq.yml"}]
    set_stack_value(project, "sidekiq", "processes", processes)
    project.up()
    for h in hosts:
        assert len(enabled_slots(h, "low")) == 1, h.name
        assert active_slots(h, "low") == enabled_slots(h, "low"), h.name
        assert len(active_slots(h, "default")) >= 1

    enabled = {p: enabled_slots(host, p) for p in ("default", "low")}
    host = hosts[1] = host.reboot()  # a fresh boot: a new init PID
    wait_until(lambda: active_slots(host, "low") == enabled["low"], 60, "low after the reboot")
    wait_until(lambda: active_slots(host, "default") == enabled["default"], 60, "default after the reboot")
    assert sh(host, "pgrep -c -u deploy -f '^sidekiq '").strip() == "2", "one Sidekiq per process"

    set_stack_value(project, "sidekiq", "processes", processes[:1])
    project.up()
    for h in hosts:
        assert active_slots(h, "low") == [], h.name
        assert h.exec("test -e '/etc/systemd/system/sidekiq-low@.service'").returncode != 0, h.name
        assert len(enabled_slots(h, "default")) == 1


def test_a_host_short_of_memory_falls_back_to_restart(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    project.config_set("rollout.memoryMargin", "1048576")
    before = {h.name: (enabled_slots(h), serving_pid(h)) for h in hosts}
    project.config_set("appVersion", "local-6")
    run = project.up()
    for host in hosts:
        assert f"on host {host.name}: process default: memory guard: MemAvailable" in run.output, host.name
        slots, pid = before[host.name]
        assert enabled_slots(host) == slots, host.name
        assert serving_pid(host) != pid, host.name


def test_the_restart_strategy_restarts_the_serving_slot(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    project.config_set("rollout.memoryMargin", "256")
    project.config_set("rollout.strategy", "restart")
    before = {h.name: (enabled_slots(h), serving_pid(h)) for h in hosts}
    project.config_set("appVersion", "local-7")
    project.up()
    for host in hosts:
        slots, pid = before[host.name]
        assert enabled_slots(host) == slots, host.name
        assert active_slots(host) == slots, host.name
        assert serving_pid(host) != pid, host.name
    project.pulumi("destroy", "--yes")
    for host in hosts:
        assert host.exec("pgrep -u deploy -f '^sidekiq '").returncode == 1, (
            f"Sidekiq still runs on {host.name}"
        )
        units = sh(host, "systemctl list-unit-files 'sidekiq*' --no-legend || true")
        assert units.strip() == "", f"{host.name} keeps {units}"
        assert host.exec(f"test -e {CONTROL}").returncode != 0, host.name
