"""The on-host control script (docs/architecture.md), executed: rendered for a stage, then run on a
FakeHost (tests/fakehost.py) whose systemctl, systemd-run, journalctl, ps, date and /proc/meminfo
answer as each test scripts them. The checks are the decisions: which commands ran, in which order,
what was said, the exit status and the files left behind.

Unit names, paths and messages are spelled out here, not computed by the code under test.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.render import control_path, render_control, shell_quote
from tests.conftest import stage_from
from tests.fakehost import DEPLOY_UID, EPOCH, FakeHost, Run, title, unit_block

APP = "/home/deploy/www/current"  # under /home: the sandbox's overlays can hold the release
CONFIG = f"{APP}/config/sidekiq.yml"
A = "sidekiq-default@a.service"
B = "sidekiq-default@b.service"
UNITS = "/etc/systemd/system"
VERSION_FILE = "/var/lib/sidekiq-fleet/sidekiq/app-version"
SAY = "sidekiq-fleet: sidekiq on host web1: "
CTL = "/usr/local/sbin/sidekiqctl"
MANAGED = "# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.\n"
GIB = 1024 * 1024 * 1024
# How the control script, run by root in user scope, runs itself again.
AS_DEPLOY = f"runuser -u deploy -- env XDG_RUNTIME_DIR=/run/user/{DEPLOY_UID} SIDEKIQ_FLEET_HOST=web1"


def stage_values(existing_values: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    existing_values["sidekiq"] = {"appDir": APP, **sections.pop("sidekiq", {})}
    existing_values.update(sections)
    return existing_values


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    fake = FakeHost(tmp_path)
    fake.seed(CONFIG, ":concurrency: 5\n")  # a release is there unless a test removes it
    return fake


def run_ctl(host: FakeHost, values: dict[str, Any], *args: str) -> Run:
    """Run the rendered script as root. In user scope it is installed first: it runs itself again as
    deploy, by its installed path."""
    text = render_control(stage_from(values))
    if values["sidekiq"].get("scope") == "user":
        host.seed(CTL, text, mode=0o755)
        script = CTL
    else:
        script = host.root / "sidekiqctl"
        script.write_text(text)
    words = " ".join(f"'{a}'" for a in args)
    # The deploy user's runtime directory, as logind makes it (by path: the spied programs would log it).
    runtime = f"/bin/install -d -o {DEPLOY_UID} -g {DEPLOY_UID} /run/user/{DEPLOY_UID}"
    return host.run(f"{runtime} && SIDEKIQ_FLEET_HOST=web1 bash {script} {words}")


def slot(host: FakeHost, unit: str, *states: str, enabled: bool = False, prefix: str = "") -> None:
    """The slot's ActiveState, call after call, and whether it is enabled."""
    host.on("systemctl", f"{prefix}show -p ActiveState --value {unit}", *(f"echo {s}" for s in states))
    host.on("systemctl", f"{prefix}is-enabled {unit}", "echo enabled" if enabled else "echo disabled; exit 1")


def serving_a(host: FakeHost, memory: int = 100 * 1024 * 1024) -> None:
    """Slot a enabled and serving, b stopped, plenty of memory."""
    slot(host, A, "active", enabled=True)
    slot(host, B, "inactive")
    host.on("systemctl", f"show -p MemoryCurrent --value {A}", f"echo {memory}")
    host.meminfo(8 * 1024 * 1024)


def before(run: Run, first: str, second: str) -> bool:
    return run.position(first) < run.position(second)


# For the tests of something other than the health window: the old slot quiets at READY.
NO_HEALTH = {"healthySeconds": 0}
NEW_PID = 4343


def clock_moves_with_sleep(host: FakeHost) -> None:
    """date +%s says EPOCH plus the seconds slept so far: time passes only while the script sleeps."""
    slept = '$(cat "$FAKE_DIR/slept" 2>/dev/null || echo 0)'
    host.on("sleep", "*", f'echo $(({slept} + $1)) >"$FAKE_DIR/slept"')
    host.on("date", "+%s", f"echo $(({EPOCH} + {slept}))")


def comes_up_healthy(host: FakeHost, unit: str) -> None:
    """The new slot: stopped until its start, then active as NEW_PID, with no restart and a heartbeat in
    its title; the clock moves as the script sleeps. Call it before serving_a: earlier rules win."""
    slot(host, unit, "inactive", "active")
    host.on("systemctl", f"show -p MainPID --value {unit}", f"echo {NEW_PID}")
    host.on("systemctl", f"show -p NRestarts --value {unit}", "echo 0")
    host.on("systemctl", f"show -p InvocationID --value {unit}", "echo 5eed")
    host.on("ps", f"-o args= -p {NEW_PID}", title(0, stopping=False))
    clock_moves_with_sleep(host)


# --- rendering ------------------------------------------------------------------------------------


SHAPES = [
    {},
    {"sidekiq": {"scope": "user"}},
    {"rollout": {"strategy": "restart", "quietFirst": False}},
    {
        "sidekiq": {
            "unitName": "worker_2",
            "processes": [
                {"name": "default"},
                {"name": "low", "configFile": "/etc/app/low.yml", "drainTimeout": 3600},
            ],
        },
        "rollout": {"drainTimeout": 120, "memoryMargin": 0},
    },
]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_stage_shape_renders_a_script_that_passes_bash_n(existing_values, shape) -> None:
    text = render_control(stage_from(stage_values(existing_values, **shape)))
    assert text.startswith("#!/bin/bash\n")
    assert "\nset -euo pipefail\n" in text
    result = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_values_are_baked_in_shell_quoted(existing_values) -> None:
    values = stage_values(
        existing_values,
        sidekiq={
            "appDir": "/srv/a@b+c/current",
            "unitName": "jobs",
            "timeout": 40,
            "processes": [{"name": "default"}, {"name": "low", "configFile": "config/low.yml"}],
        },
        rollout={"drainTimeout": 90, "memoryMargin": 512, "strategy": "restart", "maxBusyWait": 7},
    )
    text = render_control(stage_from(values))
    for line in [
        "group=jobs",
        "scope=system",
        "run_as=deploy",
        "self=/usr/local/sbin/jobsctl",
        "strategy=restart",
        "memory_margin_mib=512",
        "quiet_first=yes",
        "max_busy_wait=7",
        "sidekiq_timeout=40",
        "processes=( default low )",
        "config_paths=( /srv/a@b+c/current/config/sidekiq.yml /srv/a@b+c/current/config/low.yml )",
        "drain_timeouts=( 90 90 )",
        "# sidekiq-fleet group: jobs",
    ]:
        assert f"\n{line}\n" in text, line


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("it's $(touch x)", "'it'\"'\"'s $(touch x)'"), ("a b", "'a b'"), (25, "25"), ("", "''")],
)
def test_the_shell_quote_filter_quotes_what_a_shell_would_split_or_expand(value, quoted) -> None:
    assert shell_quote(value) == quoted


def test_control_path_is_named_after_the_unit(existing_values) -> None:
    assert control_path(stage_from(stage_values(existing_values))) == "/usr/local/sbin/sidekiqctl"
    values = stage_values(existing_values, sidekiq={"unitName": "jobs-eu"})
    assert control_path(stage_from(values)) == "/usr/local/sbin/jobs-euctl"


# --- usage ----------------------------------------------------------------------------------------


USAGE_ERRORS = [
    "",
    "bogus",
    "status x",
    "teardown now",
    "restart v1 v2",
    "restart 'v1; touch /PWNED'",
    "drain default",
    "drain nope a",
    "drain default c",
]


def test_usage_errors_exit_2_before_touching_systemd(host, existing_values) -> None:
    script = host.root / "sidekiqctl"
    script.write_text(render_control(stage_from(stage_values(existing_values))))
    # One sandbox for every case: each prints its exit status.
    run = host.run("\n".join(f"bash {script} {args} && echo 0 || echo $?" for args in USAGE_ERRORS))
    assert run.stdout.splitlines() == ["2"] * len(USAGE_ERRORS)
    assert run.stderr.count("usage: sidekiqctl status|quiet|stop|start|restart [VERSION]|") == len(
        USAGE_ERRORS
    )
    assert run.calls == []


# --- one changing run at a time -------------------------------------------------------------------


def test_a_changing_verb_takes_the_lock_before_touching_systemd(host, existing_values) -> None:
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    # sidekiq.timeout 25: 3 x 25 + 60 s, more than a restart that waits for a drain, then stops a slot.
    assert run.calls.index("flock -w 135 9") < min(run.calls.index(c) for c in run.ran("systemctl"))


def test_the_system_lock_is_in_a_directory_only_root_can_open(host, existing_values) -> None:
    """flock works on a read-only descriptor: a lock file deploy could open, deploy could hold."""
    serving_a(host)
    script = host.root / "sidekiqctl"
    script.write_text(render_control(stage_from(stage_values(existing_values, rollout=NO_HEALTH))))
    run = host.run(
        f"SIDEKIQ_FLEET_HOST=web1 bash {script} restart >/dev/null; "
        "/usr/bin/stat -c '%a %U %F' /run/sidekiq-fleet /run/sidekiq-fleet/sidekiq.lock"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["700 root directory", "644 root regular empty file"]


def test_a_held_lock_stops_every_changing_verb_before_it_does_anything(host, existing_values) -> None:
    host.on("flock", "*", "exit 1")
    script = host.root / "sidekiqctl"
    script.write_text(render_control(stage_from(stage_values(existing_values))))
    verbs = ["quiet", "stop", "start", "first-release", "restart"]
    # One sandbox for every verb: each prints its exit status.
    run = host.run(
        "\n".join(f"SIDEKIQ_FLEET_HOST=web1 bash {script} {verb} && echo 0 || echo $?" for verb in verbs)
    )
    assert run.stdout.splitlines() == ["1"] * len(verbs)
    lock = "/run/sidekiq-fleet/sidekiq.lock"
    failure = f"{SAY}FAILED: another run of sidekiqctl held {lock} for 135 s; nothing done\n"
    assert run.stderr == failure * len(verbs)
    assert run.ran("flock") == ["flock -w 135 9"] * len(verbs)
    assert run.ran("systemctl") == []


def test_status_logs_and_drain_take_no_lock(host, existing_values) -> None:
    slot(host, A, "inactive")
    script = host.root / "sidekiqctl"
    script.write_text(render_control(stage_from(stage_values(existing_values))))
    run = host.run(f"for v in status logs 'drain default a'; do bash {script} $v; done")
    assert run.returncode == 0, run.stderr
    assert run.ran("journalctl") != []
    assert run.ran("flock") == []


# --- restart, overlap -----------------------------------------------------------------------------


def test_overlap_starts_new_at_ready_then_quiets_old_and_leaves_the_drain_to_systemd(
    host, existing_values
) -> None:
    comes_up_healthy(host, B)
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values), "restart", "v2")  # rollout.healthySeconds: 2
    assert run.returncode == 0, run.stderr
    assert before(run, f"systemctl reset-failed {B}", f"systemctl start {B}")
    assert before(run, f"systemctl start {B}", f"systemctl kill --kill-whom=main -s TSTP {A}")
    # The health window, between READY (the start job's end) and anything done to the old slot: B's
    # state, restarts, main PID and title, for 2 s of sleep.
    health = [
        f"systemctl show -p NRestarts --value {B}",
        f"systemctl show -p MainPID --value {B}",
        f"ps -o args= -p {NEW_PID}",
        f"systemctl show -p ActiveState --value {B}",
        "sleep 1",
    ]
    started = run.position(f"systemctl start {B}")
    for call in health:
        assert call in run.calls[started:], call
    last_health_call = max(i for i, call in enumerate(run.calls) if call in health)
    assert last_health_call < run.position(f"systemctl enable --quiet {B}")
    assert last_health_call < run.position(f"systemctl disable --quiet {A}")
    assert last_health_call < run.position(f"systemctl kill --kill-whom=main -s TSTP {A}")
    assert run.ran("sleep") == ["sleep 1", "sleep 1"]
    said = [
        f"{SAY}process default: {B} is ready\n",
        f"{SAY}process default: {B} stayed up 2 s after READY, with a heartbeat\n",
        f"{SAY}sent TSTP to the main process of {A}\n",
    ]
    assert [run.stdout.find(line) for line in said] == sorted(run.stdout.find(line) for line in said)
    assert -1 not in [run.stdout.find(line) for line in said]
    # Never a moment with no slot enabled.
    assert before(run, f"systemctl enable --quiet {B}", f"systemctl disable --quiet {A}")
    assert before(run, f"systemctl disable --quiet {A}", f"systemctl kill --kill-whom=main -s TSTP {A}")
    assert run.ran("systemd-run") == [
        "systemd-run --unit=sidekiq-default-drain-a.service --collect --quiet "
        f"--description=drain {A} -E SIDEKIQ_FLEET_HOST=web1 {CTL} drain default a"
    ]
    assert f"systemctl stop {A}" not in run.calls  # the drain unit stops it, not the deploy
    assert f"systemctl restart {A}" not in run.calls
    assert f"{SAY}restarted for version v2\n" in run.stdout
    assert host.file(VERSION_FILE) == "v2\n"


def test_overlap_from_slot_b_goes_back_to_a(host, existing_values) -> None:
    comes_up_healthy(host, A)
    slot(host, B, "active", enabled=True)
    run = run_ctl(host, stage_values(existing_values), "restart")
    assert run.returncode == 0, run.stderr
    assert before(run, f"systemctl start {A}", f"systemctl kill --kill-whom=main -s TSTP {B}")
    assert before(run, f"systemctl start {A}", f"systemctl show -p NRestarts --value {A}")
    assert before(run, f"systemctl show -p NRestarts --value {A}", f"systemctl enable --quiet {A}")
    assert f"{SAY}process default: {A} stayed up 2 s after READY, with a heartbeat\n" in run.stdout
    assert before(run, f"systemctl enable --quiet {A}", f"systemctl disable --quiet {B}")
    assert run.ran("systemd-run")[0].endswith(f"{CTL} drain default b")
    assert host.file(VERSION_FILE) is None  # no VERSION, no version file
    assert run.stdout.endswith(f"{SAY}restarted\n")


def test_a_new_slot_that_fails_is_stopped_with_its_journal_and_the_old_one_keeps_serving(
    host, existing_values
) -> None:
    serving_a(host)
    host.seed(VERSION_FILE, "v1\n")
    host.on("systemctl", f"start {B}", "echo 'Job for sidekiq-default@b.service failed.' >&2; exit 1")
    host.on("systemctl", f"show -p InvocationID --value {B}", "echo 0f1e2d")
    invocation = "_SYSTEMD_INVOCATION_ID=0f1e2d + INVOCATION_ID=0f1e2d + USER_INVOCATION_ID=0f1e2d"
    host.on(
        "journalctl",
        f"-q --no-pager -o short-iso {invocation}",
        "echo 'systemd[1]: sidekiq-default@b.service: Changing to the requested working directory failed'",
    )
    run = run_ctl(host, stage_values(existing_values), "restart", "v2")
    assert run.returncode == 1
    assert (
        f"{SAY}FAILED: process default: {B} did not start; stopped it again, {A} keeps serving\n"
        in run.stderr
    )
    assert (
        "    systemd[1]: sidekiq-default@b.service: Changing to the requested working directory failed\n"
        in run.stderr
    )
    assert f"journal of {B} on host web1 (invocation 0f1e2d):" in run.stderr
    # Stopped, else Restart=always retries it in the background; the journal is synced before reading.
    assert before(run, f"systemctl stop {B}", "journalctl --sync")
    assert before(
        run,
        "journalctl --sync",
        f"journalctl -q --no-pager -o short-iso {invocation}",
    )
    for untouched in [
        f"systemctl kill --kill-whom=main -s TSTP {A}",
        f"systemctl disable --quiet {A}",
        f"systemctl enable --quiet {B}",
        f"systemctl stop {A}",
    ]:
        assert untouched not in run.calls
    assert run.ran("systemd-run") == []
    assert host.file(VERSION_FILE) == "v1\n"


def test_a_failed_start_without_invocation_lines_shows_the_units_last_lines(host, existing_values) -> None:
    serving_a(host)
    host.on("systemctl", f"start {B}", "exit 1")
    host.on("systemctl", f"show -p InvocationID --value {B}", "echo 0f1e2d")
    host.on("journalctl", "*INVOCATION_ID=0f1e2d*", "true")  # -q: no "-- No entries --"
    host.on(
        "journalctl", f"-q --no-pager -o short-iso -n 40 -u {B}", "echo 'Redis::CannotConnectError: refused'"
    )
    run = run_ctl(host, stage_values(existing_values), "restart")
    assert run.returncode == 1
    assert "    Redis::CannotConnectError: refused\n" in run.stderr
    assert f"{SAY}Sidekiq cannot reach Redis (Redis::CannotConnectError: refused)\n" in run.stderr


def test_a_slot_still_draining_is_waited_for_then_started(host, existing_values) -> None:
    slot(host, A, "active", enabled=True)
    slot(host, B, "active", "active", "inactive")
    slot(host, "sidekiq-default-drain-b.service", "active")
    host.on("date", "+%s", f"echo {EPOCH}", f"echo {EPOCH + 1}", f"echo {EPOCH + 3}")
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    assert (
        f"{SAY}process default: {B} was still draining from a previous deploy; waited 3 s for it to end\n"
        in (run.stdout)
    )
    assert before(run, "sleep 1", f"systemctl start {B}")
    assert f"systemctl stop {B}" not in run.calls
    assert before(run, f"systemctl start {B}", f"systemctl kill --kill-whom=main -s TSTP {A}")


def test_a_slot_draining_past_the_timeout_is_stopped_before_it_starts_again(host, existing_values) -> None:
    slot(host, A, "active", enabled=True)
    slot(host, B, "active")
    slot(host, "sidekiq-default-drain-b.service", "active")
    # began, then one check before the deadline, then one at it (sidekiq.timeout, 25 s).
    host.on("date", "+%s", f"echo {EPOCH}", f"echo {EPOCH + 24}", f"echo {EPOCH + 25}")
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    assert (
        f"{SAY}process default: {B} still drains from a previous deploy after 25 s; stopping it now, "
        "Sidekiq pushes its unfinished jobs back to Redis\n" in run.stdout
    )
    assert run.ran("sleep") == ["sleep 1"]
    assert before(run, "sleep 1", "systemctl stop sidekiq-default-drain-b.service")
    assert before(run, "systemctl stop sidekiq-default-drain-b.service", f"systemctl stop {B}")
    assert before(run, f"systemctl stop {B}", f"systemctl start {B}")


def test_a_running_slot_that_is_neither_enabled_nor_draining_is_stopped_at_once(
    host, existing_values
) -> None:
    slot(host, A, "active", enabled=True)
    slot(host, B, "active")
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    assert f"{SAY}process default: {B} runs but is neither enabled nor draining; stopping it\n" in run.stdout
    assert before(run, f"systemctl stop {B}", f"systemctl start {B}")
    assert run.ran("sleep") == []


@pytest.mark.parametrize(
    ("memory_current", "rss_kib", "available_kib", "fits"),
    [
        (str(GIB), "", 1024 * 1024 + 256 * 1024, True),  # exactly old + margin
        (str(GIB), "", 1024 * 1024 + 256 * 1024 - 1, False),
        ("[not set]", str(1024 * 1024), 1024 * 1024 + 255 * 1024, False),  # RSS instead
        ("[not set]", str(512 * 1024), 1024 * 1024 + 255 * 1024, True),
    ],
)
def test_memory_guard_falls_back_to_restart_and_says_so(
    host, existing_values, memory_current, rss_kib, available_kib, fits
) -> None:
    slot(host, A, "active", enabled=True)
    slot(host, B, "inactive")
    host.on("systemctl", f"show -p MemoryCurrent --value {A}", f"echo '{memory_current}'")
    host.on("ps", "-o rss= -p 4242", f"echo '  {rss_kib}'")
    host.meminfo(available_kib)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    if fits:
        assert f"systemctl start {B}" in run.calls
        assert f"systemctl restart {A}" not in run.calls
        assert "memory guard" not in run.stdout
    else:
        assert f"systemctl start {B}" not in run.calls
        assert before(run, f"systemctl kill --kill-whom=main -s TSTP {A}", f"systemctl restart {A}")
        assert (
            f"{SAY}process default: memory guard: MemAvailable {available_kib // 1024} MiB is below {A}'s "
            "1024 MiB + the margin of 256 MiB; falling back to restart\n" in run.stdout
        )


def test_memory_unknown_overlaps_and_says_so(host, existing_values) -> None:
    slot(host, A, "active", enabled=True)
    slot(host, B, "inactive")
    host.on("systemctl", f"show -p MemoryCurrent --value {A}", "echo '[not set]'")
    host.on("ps", "-o rss= -p 4242", "exit 1")
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    assert f"{SAY}process default: the memory of {A} is unknown; overlapping without the memory guard\n" in (
        run.stdout
    )
    assert f"systemctl start {B}" in run.calls


@pytest.mark.parametrize("state", ["failed", "activating"])  # activating: Restart=always retrying it
def test_nothing_running_starts_the_enabled_slot(host, existing_values, state) -> None:
    slot(host, A, "inactive")
    slot(host, B, state, enabled=True)
    run = run_ctl(host, stage_values(existing_values), "restart", "v3")
    assert run.returncode == 0, run.stderr
    assert before(run, f"systemctl enable --quiet {B}", f"systemctl reset-failed {B}")
    assert before(run, f"systemctl reset-failed {B}", f"systemctl start {B}")
    assert f"{SAY}process default: nothing was running; started {B}\n" in run.stdout
    assert run.ran("systemd-run") == []
    assert host.file(VERSION_FILE) == "v3\n"


def test_a_failed_first_start_is_left_to_systemd_and_named(host, existing_values) -> None:
    slot(host, A, "inactive")
    slot(host, B, "inactive")
    host.on("systemctl", f"start {A}", "exit 1")
    run = run_ctl(host, stage_values(existing_values), "restart", "v3")
    assert run.returncode == 1
    assert f"{SAY}FAILED: process default: {A} did not start; systemd retries it every 1 s\n" in run.stderr
    assert f"systemctl stop {A}" not in run.calls  # nothing else serves: let Restart=always retry
    assert host.file(VERSION_FILE) is None


# --- restart, restart strategy --------------------------------------------------------------------


def test_restart_strategy_quiets_and_restarts_without_a_heartbeat_wait(host, existing_values) -> None:
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values, rollout={"strategy": "restart"}), "restart")
    assert run.returncode == 0, run.stderr
    assert before(run, f"systemctl kill --kill-whom=main -s TSTP {A}", f"systemctl restart {A}")
    assert run.ran("sleep") == []
    assert run.ran("ps") == []
    assert f"systemctl start {B}" not in run.calls


def test_restart_strategy_without_quiet_first_only_restarts(host, existing_values) -> None:
    serving_a(host)
    values = stage_values(existing_values, rollout={"strategy": "restart", "quietFirst": False})
    run = run_ctl(host, values, "restart")
    assert f"systemctl restart {A}" in run.calls
    assert [c for c in run.calls if " kill " in c] == []


def test_restart_strategy_busy_wait_ends_at_zero_busy_once_the_title_shows_the_quiet(
    host, existing_values
) -> None:
    # The title is the last heartbeat's (up to 10 s old in 7.x): 0 busy before "stopping" is not final.
    serving_a(host)
    host.on("ps", "-o args= -p 4242", title(2, stopping=False), title(0, stopping=False), title(0))
    values = stage_values(existing_values, rollout={"strategy": "restart", "maxBusyWait": 5})
    run = run_ctl(host, values, "restart")
    assert run.ran("sleep") == ["sleep 1", "sleep 1"]
    assert before(run, "sleep 1", f"systemctl restart {A}")


def test_restart_strategy_busy_wait_ends_at_once_for_a_title_with_no_busy_count(
    host, existing_values
) -> None:
    serving_a(host)
    host.on("ps", "-o args= -p 4242", "echo ruby")
    values = stage_values(existing_values, rollout={"strategy": "restart", "maxBusyWait": 5})
    run = run_ctl(host, values, "restart")
    assert run.ran("sleep") == []
    assert f"systemctl restart {A}" in run.calls


def test_restart_strategy_busy_wait_ends_at_its_deadline(host, existing_values) -> None:
    serving_a(host)
    host.on("ps", "-o args= -p 4242", title(3))
    host.on("date", "+%s", f"echo {EPOCH}", f"echo {EPOCH + 4}", f"echo {EPOCH + 5}")
    values = stage_values(existing_values, rollout={"strategy": "restart", "maxBusyWait": 5})
    run = run_ctl(host, values, "restart")
    assert run.ran("sleep") == ["sleep 1"]
    assert (
        f"{SAY}process default: still 3 busy after 5 s; restarting, Sidekiq pushes unfinished jobs back "
        "to Redis\n" in run.stdout
    )
    assert f"systemctl restart {A}" in run.calls


def test_restart_strategy_busy_wait_says_when_no_heartbeat_came_after_quiet(host, existing_values) -> None:
    serving_a(host)
    host.on("ps", "-o args= -p 4242", title(0, stopping=False))
    host.on("date", "+%s", f"echo {EPOCH}", f"echo {EPOCH + 4}", f"echo {EPOCH + 5}")
    values = stage_values(existing_values, rollout={"strategy": "restart", "maxBusyWait": 5})
    run = run_ctl(host, values, "restart")
    assert run.ran("sleep") == ["sleep 1"]
    assert (
        f"{SAY}process default: no heartbeat since quiet, last 0 busy, after 5 s; restarting, Sidekiq pushes "
        "unfinished jobs back to Redis\n" in run.stdout
    )
    assert f"systemctl restart {A}" in run.calls


# --- no release, first release --------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["restart", "start"])
def test_no_release_arms_the_path_unit_and_succeeds(tmp_path, existing_values, verb) -> None:
    host = FakeHost(tmp_path)  # no config file under appDir
    run = run_ctl(host, stage_values(existing_values), verb)
    assert run.returncode == 0, run.stderr
    assert run.ran("systemctl") == ["systemctl enable --now --quiet sidekiq-first-release.path"]
    assert run.stdout == (f"{SAY}waiting for the first release: Sidekiq starts when {CONFIG} appears\n")
    assert host.file(VERSION_FILE) is None


def test_first_release_disarms_the_path_unit_then_starts(host, existing_values) -> None:
    slot(host, A, "inactive")
    slot(host, B, "inactive")
    run = run_ctl(host, stage_values(existing_values), "first-release")
    assert run.returncode == 0, run.stderr
    assert before(run, "systemctl disable --now --quiet sidekiq-first-release.path", f"systemctl start {A}")
    assert before(run, f"systemctl enable --quiet {A}", f"systemctl start {A}")
    assert before(run, f"systemctl start {A}", "systemctl start sidekiq.target")


# --- migration and pruning ------------------------------------------------------------------------


def test_migration_starts_slot_a_before_quieting_the_legacy_unit(host, existing_values) -> None:
    host.seed(f"{UNITS}/sidekiq.service", MANAGED + "[Service]\n")
    slot(host, A, "inactive")
    slot(host, B, "inactive")
    slot(host, "sidekiq.service", "active", enabled=True)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart", "v2")
    assert run.returncode == 0, run.stderr
    assert before(run, f"systemctl start {A}", f"systemctl enable --quiet {A}")
    assert before(run, f"systemctl enable --quiet {A}", "systemctl disable --quiet sidekiq.service")
    assert before(
        run,
        "systemctl disable --quiet sidekiq.service",
        "systemctl kill --kill-whom=main -s TSTP sidekiq.service",
    )
    assert run.ran("systemd-run")[0].endswith(f"{CTL} drain default legacy")
    assert host.file(f"{UNITS}/sidekiq.service") is not None  # the drain unit removes it
    assert f"{SAY}process default: migrating sidekiq.service to {A}\n" in run.stdout


def test_no_second_migration_while_the_legacy_unit_drains(host, existing_values) -> None:
    host.seed(f"{UNITS}/sidekiq.service", MANAGED)
    slot(host, "sidekiq-default-drain-legacy.service", "active")
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    assert "migrating" not in run.stdout
    assert before(run, f"systemctl start {B}", f"systemctl kill --kill-whom=main -s TSTP {A}")


def test_a_stopped_legacy_unit_is_removed_then_slot_a_started(host, existing_values) -> None:
    host.seed(f"{UNITS}/sidekiq.service", "# sidekiq-fleet group: sidekiq\n")
    slot(host, "sidekiq.service", "inactive")
    slot(host, A, "inactive")
    slot(host, B, "inactive")
    run = run_ctl(host, stage_values(existing_values), "restart")
    assert run.returncode == 0, run.stderr
    assert host.file(f"{UNITS}/sidekiq.service") is None
    assert before(run, f"rm -f {UNITS}/sidekiq.service", "systemctl daemon-reload")
    assert before(run, "systemctl daemon-reload", f"systemctl start {A}")


def test_a_sidekiq_service_that_is_not_ours_is_left_alone(host, existing_values) -> None:
    host.seed(f"{UNITS}/sidekiq.service", "# the team's own unit\n")
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    assert "migrating" not in run.stdout
    assert host.file(f"{UNITS}/sidekiq.service") == "# the team's own unit\n"


def test_drain_of_the_legacy_unit_removes_it_once_stopped(host, existing_values) -> None:
    host.seed(f"{UNITS}/sidekiq.service", MANAGED)
    slot(host, "sidekiq.service", "active")
    run = run_ctl(host, stage_values(existing_values), "drain", "default", "legacy")
    assert run.returncode == 0, run.stderr
    assert before(run, "systemctl stop sidekiq.service", f"rm -f {UNITS}/sidekiq.service")
    assert before(run, f"rm -f {UNITS}/sidekiq.service", "systemctl daemon-reload")
    assert host.file(f"{UNITS}/sidekiq.service") is None


def test_prune_removes_only_this_groups_undeclared_processes(host, existing_values) -> None:
    marker = "# sidekiq-fleet group: sidekiq\n"
    host.seed(f"{UNITS}/sidekiq-default@.service", MANAGED + marker)
    host.seed(f"{UNITS}/sidekiq-low@.service", MANAGED + marker)
    # Another stage's group whose name starts like ours.
    host.seed(f"{UNITS}/sidekiq-eu-default@.service", MANAGED + "# sidekiq-fleet group: sidekiq-eu\n")
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    low = ["sidekiq-low@a.service", "sidekiq-low@b.service"]
    for drain in ("sidekiq-low-drain-a.service", "sidekiq-low-drain-b.service"):
        assert before(run, f"systemctl stop {drain}", f"systemctl stop {' '.join(low)}")
    assert before(run, f"systemctl stop {' '.join(low)}", f"systemctl disable --quiet {' '.join(low)}")
    assert before(run, f"rm -f {UNITS}/sidekiq-low@.service", "systemctl daemon-reload")
    assert host.file(f"{UNITS}/sidekiq-low@.service") is None
    assert host.file(f"{UNITS}/sidekiq-default@.service") is not None
    assert host.file(f"{UNITS}/sidekiq-eu-default@.service") is not None
    assert (
        f"{SAY}process low is no longer configured: stopped and removed sidekiq-low@.service\n" in run.stdout
    )
    assert [c for c in run.calls if "eu" in c] == []


def test_nothing_to_prune_means_no_daemon_reload(host, existing_values) -> None:
    host.seed(f"{UNITS}/sidekiq-default@.service", MANAGED + "# sidekiq-fleet group: sidekiq\n")
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    assert "systemctl daemon-reload" not in run.calls


# --- drain ----------------------------------------------------------------------------------------


def test_drain_stops_the_slot_at_zero_busy_once_quiet(host, existing_values) -> None:
    slot(host, A, "active", enabled=False)
    # A stale title of 0 busy from before TSTP does not count: only one with "stopping".
    host.on("ps", "-o args= -p 4242", title(0, stopping=False), title(2), title(0))
    run = run_ctl(host, stage_values(existing_values), "drain", "default", "a")
    assert run.returncode == 0, run.stderr
    assert run.ran("sleep") == ["sleep 1", "sleep 1"]
    assert before(run, "sleep 1", f"systemctl stop {A}")
    assert f"{SAY}process default: {A} is quiet with 0 busy; stopping it\n" in run.stdout


def test_drain_stops_the_slot_at_its_deadline(host, existing_values) -> None:
    slot(host, A, "active")
    host.on("ps", "-o args= -p 4242", title(3))
    host.on("date", "+%s", f"echo {EPOCH}", f"echo {EPOCH + 39}", f"echo {EPOCH + 40}")
    values = stage_values(existing_values, sidekiq={"processes": [{"name": "default", "drainTimeout": 40}]})
    run = run_ctl(host, values, "drain", "default", "a")
    assert run.returncode == 0, run.stderr
    assert run.ran("sleep") == ["sleep 1"]
    assert (
        f"{SAY}process default: {A} still has 3 busy after its drain timeout of 40 s; stopping it, "
        "Sidekiq pushes unfinished jobs back to Redis\n" in run.stdout
    )
    assert run.calls[-1] == f"systemctl stop {A}"


def test_drain_at_its_deadline_says_when_no_heartbeat_came_since_quiet(host, existing_values) -> None:
    # Sidekiq 7 writes its title every 10 s: a drain timeout shorter than that may end before "stopping".
    slot(host, A, "active")
    host.on("ps", "-o args= -p 4242", title(0, stopping=False))
    host.on("date", "+%s", f"echo {EPOCH}", f"echo {EPOCH + 8}")
    values = stage_values(existing_values, sidekiq={"processes": [{"name": "default", "drainTimeout": 8}]})
    run = run_ctl(host, values, "drain", "default", "a")
    assert run.returncode == 0, run.stderr
    assert run.ran("sleep") == []
    assert (
        f"{SAY}process default: {A} showed no heartbeat since quiet, last 0 busy, after its drain timeout of "
        "8 s; stopping it, Sidekiq pushes unfinished jobs back to Redis\n" in run.stdout
    )
    assert run.calls[-1] == f"systemctl stop {A}"


def test_drain_of_a_slot_without_a_main_process_stops_it_at_once(host, existing_values) -> None:
    slot(host, A, "activating")
    host.on("systemctl", f"show -p MainPID --value {A}", "echo 0")
    run = run_ctl(host, stage_values(existing_values), "drain", "default", "a")
    assert run.returncode == 0, run.stderr
    assert run.ran("sleep") == []
    assert f"{SAY}process default: {A} has no main process; stopping it\n" in run.stdout
    assert run.calls[-1] == f"systemctl stop {A}"


def test_drain_refuses_the_enabled_slot(host, existing_values) -> None:
    slot(host, A, "active", enabled=True)
    run = run_ctl(host, stage_values(existing_values), "drain", "default", "a")
    assert run.returncode == 1
    assert f"{SAY}FAILED: {A} is the enabled slot of process default; not draining it\n" in run.stderr
    assert f"systemctl stop {A}" not in run.calls


# --- the other verbs ------------------------------------------------------------------------------


def test_status_prints_one_logfmt_line_per_enabled_or_running_slot(host, existing_values) -> None:
    values = stage_values(existing_values, sidekiq={"processes": [{"name": "default"}, {"name": "low"}]})
    host.seed(VERSION_FILE, "v7\n")
    slot(host, A, "active", enabled=True)
    slot(host, B, "deactivating")
    slot(host, "sidekiq-low@a.service", "inactive")
    slot(host, "sidekiq-low@b.service", "activating", enabled=True)
    host.on(
        "systemctl", "show -p ActiveEnterTimestamp --value --timestamp=unix sidekiq-low@b.service", "echo @1"
    )
    host.on("systemctl", "show -p MainPID --value sidekiq-default@b.service", "echo 4343")
    host.on("systemctl", "show -p MainPID --value sidekiq-low@b.service", "echo 0")
    host.on("systemctl", f"show -p ActiveEnterTimestamp --value --timestamp=unix {A}", "echo @1764324000")
    host.on("systemctl", f"show -p ActiveEnterTimestamp --value --timestamp=unix {B}", "echo @1764320461")
    host.on("systemctl", f"show -p MemoryCurrent --value {A}", "echo 123456789")
    host.on("systemctl", f"show -p MemoryCurrent --value {B}", "echo '[not set]'")
    host.on("ps", "-o rss= -p 4343", "echo ' 2048'")
    host.on("ps", "-o args= -p 4242", title(3, stopping=False))
    host.on("ps", "-o args= -p 4343", title(1, version="7.3.2", tag="", concurrency=6))
    host.on("readlink", "/proc/4242/cwd", "echo /home/deploy/www/releases/2")
    host.on("readlink", "/proc/4343/cwd", "echo '/home/deploy/www/releases/old one'")
    run = run_ctl(host, values, "status")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "process=default slot=a enabled=yes state=active pid=4242 since=2025-11-28T10:00:00+00:00 busy=3 "
        "concurrency=5 quiet=no release=/home/deploy/www/releases/2 memory=123456789 version=v7 "
        "sidekiq=6.4.1 limit=- recycle=- recycled=-",
        "process=default slot=b enabled=no state=deactivating pid=4343 since=2025-11-28T09:01:01+00:00 "
        'busy=1 concurrency=6 quiet=yes release="/home/deploy/www/releases/old one" memory=2097152 version=- '
        "sidekiq=7.3.2 limit=- recycle=- recycled=-",
        "process=low slot=b enabled=yes state=activating pid=- since=- busy=- concurrency=- quiet=- "
        "release=- memory=- version=v7 sidekiq=- limit=- recycle=- recycled=-",
    ]


@pytest.mark.parametrize(
    "process_title",
    [
        'sidekiq 7.3.2"$(id) [0 of 5 busy]',
        "sidekiq 7.3 [0 of 5 busy]",
        "sidekiq v7.3.2 [0 of 5 busy]",
        "sidekiq 7.3.2.pre000000000000000000000 [0 of 5 busy]",
        "ruby 7.3.2 [0 of 5 busy]",
    ],
)
def test_status_prints_no_sidekiq_version_that_is_not_one(host, existing_values, process_title) -> None:
    slot(host, A, "active", enabled=True)
    slot(host, B, "inactive")
    host.on("ps", "-o args= -p 4242", f"echo {shlex.quote(process_title)}")
    run = run_ctl(host, stage_values(existing_values), "status")
    assert run.stdout.rstrip().endswith(" sidekiq=- limit=- recycle=- recycled=-"), run.stdout


def test_status_does_not_print_a_version_file_that_is_not_a_version(host, existing_values) -> None:
    host.seed(VERSION_FILE, "$(touch /PWNED) two words\n")
    slot(host, A, "active", enabled=True)
    slot(host, B, "inactive")
    run = run_ctl(host, stage_values(existing_values), "status")
    assert " version=- " in run.stdout


def test_quiet_sends_tstp_to_every_running_slot_only(host, existing_values) -> None:
    slot(host, A, "active", enabled=True)
    slot(host, B, "inactive")
    run = run_ctl(host, stage_values(existing_values), "quiet")
    assert run.returncode == 0, run.stderr
    assert [c for c in run.calls if " kill " in c] == [f"systemctl kill --kill-whom=main -s TSTP {A}"]


def test_stop_disarms_the_path_unit_then_stops_the_target_and_every_slot(host, existing_values) -> None:
    run = run_ctl(host, stage_values(existing_values), "stop")
    assert run.returncode == 0, run.stderr
    assert run.ran("systemctl") == [
        "systemctl disable --now --quiet sidekiq-first-release.path",
        f"systemctl stop sidekiq.target {A} {B}",
    ]


def test_start_starts_each_processs_enabled_slot(host, existing_values) -> None:
    values = stage_values(existing_values, sidekiq={"processes": [{"name": "default"}, {"name": "low"}]})
    slot(host, A, "inactive")
    slot(host, B, "inactive", enabled=True)
    slot(host, "sidekiq-low@a.service", "inactive")
    slot(host, "sidekiq-low@b.service", "inactive")
    run = run_ctl(host, values, "start")
    assert run.returncode == 0, run.stderr
    assert [c for c in run.calls if c.startswith("systemctl start")] == [
        f"systemctl start {B}",
        "systemctl start sidekiq-low@a.service",
        "systemctl start sidekiq.target",
    ]
    assert before(
        run, "systemctl enable --quiet sidekiq-low@a.service", "systemctl start sidekiq-low@a.service"
    )


@pytest.mark.parametrize(("verb", "follow"), [("logs", []), ("follow", ["-f"])])
def test_logs_read_every_slot_and_drain_unit(host, existing_values, verb, follow) -> None:
    run = run_ctl(host, stage_values(existing_values), verb)
    assert run.returncode == 0, run.stderr
    units = [A, B, "sidekiq-default-drain-a.service", "sidekiq-default-drain-b.service"]
    units.append("sidekiq-first-release.service")
    assert run.ran("journalctl") == [
        " ".join(["journalctl -q --no-pager -o short-iso -n 200", *follow, *(f"-u {u}" for u in units)])
    ]


def test_logs_read_the_recycle_service_when_a_process_recycles(host, existing_values) -> None:
    run = run_ctl(host, stage_values(existing_values, sidekiq={"recycleAboveMiB": 512}), "logs")
    assert run.returncode == 0, run.stderr
    units = [A, B, "sidekiq-default-drain-a.service", "sidekiq-default-drain-b.service"]
    units += ["sidekiq-first-release.service", "sidekiq-recycle.service"]
    assert run.ran("journalctl") == [
        " ".join(["journalctl -q --no-pager -o short-iso -n 200", *(f"-u {u}" for u in units)])
    ]


# --- user scope -----------------------------------------------------------------------------------


def test_user_scope_run_as_root_runs_itself_again_as_deploy(host, existing_values) -> None:
    """Issue 15, hole 1: root never acts in deploy's home; the whole run is deploy's."""
    slot(host, A, "active", enabled=True, prefix="--user ")
    slot(host, B, "inactive", prefix="--user ")
    host.meminfo(8 * 1024 * 1024)
    run = run_ctl(
        host, stage_values(existing_values, rollout=NO_HEALTH, sidekiq={"scope": "user"}), "restart", "v2"
    )
    assert run.returncode == 0, run.stderr
    assert run.ran("runuser") == [f"{AS_DEPLOY} {CTL} restart v2"]
    # Before it, root looked up deploy's uid and nothing else.
    assert run.calls[: run.position(run.ran("runuser")[0])] == ["id -u deploy"]
    assert before(run, f"systemctl --user start {B}", f"systemctl --user kill --kill-whom=main -s TSTP {A}")
    assert run.ran("systemd-run") == [
        "systemd-run --user --unit=sidekiq-default-drain-a.service --collect --quiet "
        f"--description=drain {A} -E SIDEKIQ_FLEET_HOST=web1 {CTL} drain default a"
    ]
    assert [c for c in run.ran("systemctl") if not c.startswith("systemctl --user ")] == []
    # The version file and the lock are deploy's: written by deploy, never by root.
    state = "/home/deploy/.local/state/sidekiq-fleet/sidekiq"
    assert host.file(f"{state}/app-version") == "v2\n"
    assert host.mode_owner(f"{state}/app-version")[1:] == (DEPLOY_UID, DEPLOY_UID)
    assert host.mode_owner(state)[1:] == (DEPLOY_UID, DEPLOY_UID)
    assert "flock -w 135 9" in run.calls


def test_user_scope_logs_as_root_read_deploys_own_journal(host, existing_values) -> None:
    run = run_ctl(host, stage_values(existing_values, sidekiq={"scope": "user"}), "logs")
    assert run.returncode == 0, run.stderr
    units = [A, B, "sidekiq-default-drain-a.service", "sidekiq-default-drain-b.service"]
    units.append("sidekiq-first-release.service")
    assert run.ran("journalctl") == [
        " ".join(["journalctl --user -q --no-pager -o short-iso -n 200", *(f"-u {u}" for u in units)])
    ]


def test_user_scope_run_by_another_user_is_refused(host, existing_values) -> None:
    values = stage_values(existing_values, sidekiq={"scope": "user"})
    host.seed(CTL, render_control(stage_from(values)), mode=0o755)
    run = host.run(f"SIDEKIQ_FLEET_HOST=web1 setpriv --reuid=admin --regid=admin --init-groups {CTL} status")
    assert run.returncode == 1
    assert run.stderr == f"{SAY}FAILED: run it as deploy or root\n"


def test_user_scope_drain_removes_the_legacy_unit_as_the_deploy_user(host, existing_values) -> None:
    legacy = "/home/deploy/.config/systemd/user/sidekiq.service"
    host.seed(legacy, MANAGED)
    slot(host, "sidekiq.service", "active", prefix="--user ")
    host.on("systemctl", "--user show -p MainPID --value sidekiq.service", "echo 4242")
    run = run_ctl(
        host, stage_values(existing_values, sidekiq={"scope": "user"}), "drain", "default", "legacy"
    )
    assert run.returncode == 0, run.stderr
    assert f"rm -f {legacy}" in run.calls
    assert host.file(legacy) is None


def test_user_scope_status_as_root_cannot_read_through_deploys_link(host, existing_values) -> None:
    """deploy links its version file to a root-only file: run by root, status would print its first
    line as the version. Run as deploy, it reads nothing."""
    host.seed("/etc/root-only/token", "s3cret-token\n", mode=0o600)
    state = "/home/deploy/.local/state/sidekiq-fleet/sidekiq"
    host.seed(f"{state}/app-version", "")
    host.symlink(f"{state}/app-version", "/etc/root-only/token")
    slot(host, A, "active", enabled=True, prefix="--user ")
    slot(host, B, "inactive", prefix="--user ")
    run = run_ctl(host, stage_values(existing_values, sidekiq={"scope": "user"}), "status")
    assert run.returncode == 0, run.stderr
    assert "process=default slot=a enabled=yes state=active" in run.stdout
    assert "version=-" in run.stdout
    assert "s3cret" not in run.stdout


# --- sums: the drift check's read-only view -------------------------------------------------------


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def test_sums_prints_the_sha256_of_every_file_of_the_group_and_changes_nothing(host, existing_values) -> None:
    ours = MANAGED + "# sidekiq-fleet group: sidekiq\n[Unit]\n"
    edited = ours + "Description=edited by hand\n"
    other_group = MANAGED + "# sidekiq-fleet group: sidekiq2\n[Unit]\n"
    host.seed(f"{UNITS}/sidekiq.target", ours)
    host.seed(f"{UNITS}/sidekiq-default@.service", edited)
    host.seed(f"{UNITS}/sidekiq2-default@.service", other_group)  # another group's: not listed
    host.seed(f"{UNITS}/cron.service", "[Unit]\n")
    host.seed(CTL, "#!/bin/bash\n", mode=0o755)
    host.seed("/etc/sudoers.d/sidekiq-fleet-sidekiq", "deploy ALL=...\n", mode=0o440)
    host.seed("/etc/sidekiq-fleet/sidekiq.env", "A=1\n", mode=0o600)
    run = run_ctl(host, stage_values(existing_values), "sums")
    assert run.returncode == 0, run.stderr
    assert sorted(run.stdout.splitlines()) == sorted(
        [
            f"{_sha(ours)} {UNITS}/sidekiq.target",
            f"{_sha(edited)} {UNITS}/sidekiq-default@.service",
            f"{_sha('#!/bin/bash' + chr(10))} {CTL}",
            f"{_sha('deploy ALL=...' + chr(10))} /etc/sudoers.d/sidekiq-fleet-sidekiq",
            f"{_sha('A=1' + chr(10))} /etc/sidekiq-fleet/sidekiq.env",
        ]
    )
    assert run.systemctl_changes() == []
    assert run.ran("flock") == []
    assert host.changes() == set()


def test_sums_in_user_scope_names_home_files_as_the_render_does(host, existing_values) -> None:
    units = "/home/deploy/.config/systemd/user"
    unit = MANAGED + "# sidekiq-fleet group: sidekiq\n"
    host.seed(f"{units}/sidekiq.target", unit)
    host.seed("/home/deploy/.config/sidekiq-fleet/sidekiq.env", "B=2\n", mode=0o600)
    run = run_ctl(host, stage_values(existing_values, sidekiq={"scope": "user"}), "sums")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        f"{_sha(unit)} ~deploy/.config/systemd/user/sidekiq.target",
        f"{_sha(render_control(stage_from(existing_values)))} {CTL}",
        f"{_sha('B=2' + chr(10))} ~deploy/.config/sidekiq-fleet/sidekiq.env",
    ]
    # Read by deploy: root ran it, and it ran itself again as deploy.
    assert run.ran("runuser") == [f"{AS_DEPLOY} {CTL} sums"]


# --- another tool's units: foreign and sidekiq.adopt (issue 18) -----------------------------------

SEED = f"{UNITS}/sidekiq.service"
SAVED = "/var/lib/sidekiq-fleet/sidekiq/adopted"
USER_UNITS = "/home/deploy/.config/systemd/user"
# How root runs a command as deploy, against deploy's manager.
RUNUSER = f"runuser -u deploy -- env XDG_RUNTIME_DIR=/run/user/{DEPLOY_UID}"
NO_USER_MANAGER = ("systemctl", f"is-active --quiet user@{DEPLOY_UID}.service", "exit 3")


SEED_RUNNING = unit_block(
    "sidekiq.service",
    WorkingDirectory=APP,
    ExecStart="{ path=/bin/bash ; argv[]=/bin/bash -lc exec bundle exec sidekiq -e staging ; }",
)
REFUSAL = (
    f"refuse sidekiq.service (system unit, enabled, active, {SEED}) runs Sidekiq for /home/deploy/www "
    "beside this group's slots, so two Sidekiqs would fetch and a stop would not stop; expected "
    "sidekiq-fleet:sidekiq.adopt to list sidekiq.service (taken over with no gap), or stop and disable it"
)


def test_foreign_names_a_sidekiq_of_this_app_that_nobody_adopted(host, existing_values) -> None:
    host.on(*NO_USER_MANAGER)
    host.seed(SEED, "[Service]\n")
    host.lists_units(SEED_RUNNING, unit_block("cron.service", ExecStart="{ path=/usr/sbin/cron ; }"))
    run = run_ctl(host, stage_values(existing_values), "foreign")
    assert run.returncode == 0, run.stderr
    assert run.stdout == REFUSAL + "\n"
    assert run.systemctl_changes() == []
    assert host.changes() == set()


@pytest.mark.parametrize(
    ("case", "properties"),
    [
        ("another app", {"WorkingDirectory": "/srv/other/current"}),
        ("not Sidekiq", {"ExecStart": "{ path=/bin/bash ; argv[]=bundle exec puma ; }"}),
        ("sidekiqctl", {"ExecStart": f"{{ argv[]={CTL} drain default a ; }}"}),
        ("disabled and stopped", {"UnitFileState": "disabled", "ActiveState": "inactive"}),
    ],
)
def test_foreign_leaves_out_what_is_not_a_sidekiq_of_this_app(
    host, existing_values, case, properties
) -> None:
    host.on(*NO_USER_MANAGER)
    host.lists_units({**SEED_RUNNING, **properties})
    run = run_ctl(host, stage_values(existing_values), "foreign")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "", case


def test_foreign_finds_a_sidekiq_by_its_process_title_and_working_directory(host, existing_values) -> None:
    """A unit whose ExecStart hides Sidekiq in a script: its main process's title and cwd tell."""
    host.on(*NO_USER_MANAGER)
    host.on("ps", "-o args= -p 777", "echo 'sidekiq 6.4.1 current [0 of 5 busy]'")
    host.on("readlink", "/proc/777/cwd", f"echo {APP}")
    host.lists_units(unit_block("jobs.service", MainPID="777", ExecStart="{ argv[]=/usr/local/bin/run ; }"))
    run = run_ctl(host, stage_values(existing_values), "foreign")
    assert run.stdout.startswith("refuse jobs.service (system unit, enabled, active, "), run.stdout


def test_foreign_names_an_enabled_unit_that_is_stopped_today(host, existing_values) -> None:
    """It starts at the next boot, beside the slots."""
    host.on(*NO_USER_MANAGER)
    host.lists_units({**SEED_RUNNING, "ActiveState": "inactive"})
    run = run_ctl(host, stage_values(existing_values), "foreign")
    assert run.stdout.startswith(f"refuse sidekiq.service (system unit, enabled, inactive, {SEED}) runs")


def test_foreign_leaves_out_adopted_units_and_sidekiq_fleets_own(host, existing_values) -> None:
    host.on(*NO_USER_MANAGER)
    host.seed(f"{UNITS}/other.service", "# sidekiq-fleet group: sidekiq-eu\n[Service]\n")
    host.seed(SEED, MANAGED + "[Service]\n")  # this group's legacy unit
    host.lists_units(
        {**SEED_RUNNING, "Id": "adopted.service", "FragmentPath": f"{UNITS}/adopted.service"},
        {**SEED_RUNNING, "Id": "other.service", "FragmentPath": f"{UNITS}/other.service"},
        SEED_RUNNING,
    )
    values = stage_values(existing_values, sidekiq={"adopt": ["adopted.service"]})
    run = run_ctl(host, values, "foreign")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""


def test_foreign_asks_deploys_manager_as_deploy_and_reads_its_files_as_deploy(host, existing_values) -> None:
    unit = f"{USER_UNITS}/example_sidekiq_staging.service"
    host.seed(unit, "[Service]\n")
    host.lists_units()
    host.lists_units(
        unit_block("example_sidekiq_staging.service", FragmentPath=unit, WorkingDirectory=APP,
                   ExecStart="{ argv[]=bundle exec sidekiq ; }"),
        prefix="--user ",
    )  # fmt: skip
    run = run_ctl(host, stage_values(existing_values), "foreign")
    assert run.stdout.startswith(
        f"refuse example_sidekiq_staging.service (user unit, enabled, active, {unit})"
    )
    by = {uid for call, uid in zip(run.calls, run.uids, strict=True) if call.startswith("systemctl --user")}
    assert by == {DEPLOY_UID}
    assert f"runuser -u deploy -- env XDG_RUNTIME_DIR=/run/user/{DEPLOY_UID} grep -qE -e " in " ".join(
        run.calls
    )


def test_foreign_warns_of_sudoers_lines_that_give_deploy_root(host, existing_values) -> None:
    host.on(*NO_USER_MANAGER)
    host.lists_units()
    host.seed(
        "/etc/sudoers.d/deploy-systemctl",
        "# the seed's line\ndeploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl\n",
    )
    host.seed("/etc/sudoers.d/deploy-status", "deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl status x\n")
    host.seed("/etc/sudoers.d/deploy-all", "alice, bob ALL=(ALL) ALL\nalice,deploy ALL = (root) \\\n  ALL\n")
    host.seed("/etc/sudoers.d/skipped.bak", "deploy ALL=(ALL) ALL\n")  # sudo skips names with a dot
    host.seed(
        "/etc/sudoers.d/sidekiq-fleet-sidekiq", "deploy ALL=(root) NOPASSWD: ALL\n"
    )  # ours: checked apart
    run = run_ctl(host, stage_values(existing_values), "foreign")
    tail = (
        "gives deploy root through any unit; expected sidekiq-fleet:sidekiq.adoptSudoers to name the file, "
    )
    tail += "which this group's drop-in replaces"
    assert sorted(run.stdout.splitlines()) == [
        f"warning /etc/sudoers.d/deploy-all: alice,deploy ALL = (root)   ALL {tail}",
        f"warning /etc/sudoers.d/deploy-systemctl: deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl {tail}",
    ]


def test_foreign_refuses_a_system_unit_to_adopt_in_user_scope(host, existing_values) -> None:
    values = stage_values(existing_values, sidekiq={"scope": "user", "adopt": ["sidekiq.service"]})
    host.on("systemctl", "show -p LoadState --value sidekiq.service", "echo loaded")
    host.lists_units()
    host.lists_units(prefix="--user ")
    run = run_ctl(host, values, "foreign")
    assert run.stdout.splitlines() == [
        "refuse sidekiq-fleet:sidekiq.adopt: sidekiq.service is a system unit, which a group with scope: "
        "user "
        "cannot stop (it runs as deploy); expected scope: system, or stop and disable sidekiq.service by hand"
    ]


def test_sums_reports_what_foreign_finds_as_warnings(host, existing_values) -> None:
    host.on(*NO_USER_MANAGER)
    host.lists_units(SEED_RUNNING)
    run = run_ctl(host, stage_values(existing_values), "sums")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == REFUSAL.replace("refuse ", "warning ", 1)


def adopting(host: FakeHost, name: str, *states: str, prefix: str = "") -> None:
    """Where a unit of sidekiq.adopt lives (system, or deploy's manager with prefix "--user ")."""
    if prefix:
        host.on("systemctl", f"show -p LoadState --value {name}", "echo not-found")
    host.on("systemctl", f"{prefix}show -p LoadState --value {name}", "echo loaded")
    host.on("systemctl", f"{prefix}show -p ActiveState --value {name}", *(f"echo {s}" for s in states))


def test_restart_adopts_a_running_unit_after_the_slot_is_ready(host, existing_values) -> None:
    slot(host, A, "inactive")
    slot(host, B, "inactive")
    adopting(host, "sidekiq.service", "active")
    run = run_ctl(
        host, stage_values(existing_values, sidekiq={"adopt": ["sidekiq.service"]}), "restart", "v2"
    )
    assert run.returncode == 0, run.stderr
    assert before(run, f"systemctl start {A}", "systemctl disable --quiet sidekiq.service")
    assert before(
        run,
        "systemctl disable --quiet sidekiq.service",
        "systemctl kill --kill-whom=main -s TSTP sidekiq.service",
    )
    assert run.ran("systemd-run") == [
        "systemd-run --unit=sidekiq-adopted-drain-0.service --collect --quiet "
        "--description=drain sidekiq.service "
        f"-E SIDEKIQ_FLEET_HOST=web1 {CTL} drain-adopted sidekiq.service"
    ]
    assert "systemctl stop sidekiq.service" not in run.calls, "the drain unit stops it, not the deploy"
    assert f"{SAY}adopting sidekiq.service: sent TSTP to its main process\n" in run.stdout
    assert (
        f"{SAY}adopting sidekiq.service: it quiets and drains for up to 25 s in "
        "sidekiq-adopted-drain-0.service\n" in run.stdout
    )


def test_a_slot_that_fails_to_start_leaves_the_adopted_unit_serving(host, existing_values) -> None:
    slot(host, A, "inactive")
    slot(host, B, "inactive")
    adopting(host, "sidekiq.service", "active")
    host.on("systemctl", f"start {A}", "exit 1")
    run = run_ctl(host, stage_values(existing_values, sidekiq={"adopt": ["sidekiq.service"]}), "restart")
    assert run.returncode == 1
    assert not [c for c in run.calls if "sidekiq.service" in c and "LoadState" not in c]


def test_a_stopped_unit_to_adopt_is_disabled_and_its_files_kept(host, existing_values) -> None:
    serving_a(host)
    host.seed(SEED, "[Service]\nExecStart=/bin/seed\n")
    host.seed(f"{SEED}.d/override.conf", "[Service]\nRestart=no\n")
    adopting(host, "sidekiq.service", "inactive")
    host.on("systemctl", "show -p FragmentPath --value sidekiq.service", f"echo {SEED}")
    host.on("systemctl", "show -p DropInPaths --value sidekiq.service", f"echo {SEED}.d/override.conf")
    run = run_ctl(
        host,
        stage_values(existing_values, rollout=NO_HEALTH, sidekiq={"adopt": ["sidekiq.service"]}),
        "restart",
    )
    assert run.returncode == 0, run.stderr
    assert host.file(f"{SAVED}/sidekiq.service") == "[Service]\nExecStart=/bin/seed\n"
    assert host.file(f"{SAVED}/sidekiq.service.d/override.conf") == "[Service]\nRestart=no\n"
    assert host.file(SEED) is None
    assert host.file(f"{SEED}.d/override.conf") is None
    assert before(run, "systemctl disable --quiet sidekiq.service", f"rm -f -- {SEED}")
    assert before(run, f"rm -f -- {SEED}", "systemctl daemon-reload")
    assert run.ran("systemd-run")[0].endswith(f"{CTL} drain default a"), "only the slot drains"
    assert f"{SAY}adopted sidekiq.service: disabled, its files moved to {SAVED}\n" in run.stdout


def test_an_adopted_unit_file_that_is_a_link_is_removed_never_read(host, existing_values) -> None:
    serving_a(host)
    host.seed("/home/deploy/evil.service", "[Service]\n")
    host.seed(SEED, "")
    host.symlink(SEED, "/home/deploy/evil.service")
    adopting(host, "sidekiq.service", "inactive")
    host.on("systemctl", "show -p FragmentPath --value sidekiq.service", f"echo {SEED}")
    run = run_ctl(
        host,
        stage_values(existing_values, rollout=NO_HEALTH, sidekiq={"adopt": ["sidekiq.service"]}),
        "restart",
    )
    assert run.returncode == 0, run.stderr
    assert host.removed(SEED)
    assert host.file(f"{SAVED}/sidekiq.service") is None
    assert host.file("/home/deploy/evil.service") == "[Service]\n"


def test_a_package_unit_to_adopt_is_disabled_and_left_in_place(host, existing_values) -> None:
    serving_a(host)
    adopting(host, "sidekiq.service", "inactive")
    host.on(
        "systemctl",
        "show -p FragmentPath --value sidekiq.service",
        "echo /usr/lib/systemd/system/sidekiq.service",
    )
    run = run_ctl(
        host,
        stage_values(existing_values, rollout=NO_HEALTH, sidekiq={"adopt": ["sidekiq.service"]}),
        "restart",
    )
    assert run.returncode == 0, run.stderr
    assert "systemctl disable --quiet sidekiq.service" in run.calls
    assert not [c for c in run.calls if c.startswith("rm ") and "sidekiq.service" in c]
    assert (
        f"{SAY}adopted sidekiq.service: /usr/lib/systemd/system/sidekiq.service is not in {UNITS}; "
        "left in place\n" in run.stdout
    )


def test_nothing_left_to_adopt_says_nothing(host, existing_values) -> None:
    serving_a(host)
    host.on("systemctl", "show -p LoadState --value sidekiq.service", "echo not-found")
    host.on("systemctl", "--user show -p LoadState --value sidekiq.service", "echo not-found")
    run = run_ctl(
        host,
        stage_values(existing_values, rollout=NO_HEALTH, sidekiq={"adopt": ["sidekiq.service"]}),
        "restart",
    )
    assert run.returncode == 0, run.stderr
    assert "adopt" not in run.stdout
    assert not [c for c in run.systemctl_changes() if "sidekiq.service" in c]


def test_no_second_adoption_while_the_first_drains(host, existing_values) -> None:
    serving_a(host)
    adopting(host, "sidekiq.service", "active")
    slot(host, "sidekiq-adopted-drain-0.service", "active")
    run = run_ctl(
        host,
        stage_values(existing_values, rollout=NO_HEALTH, sidekiq={"adopt": ["sidekiq.service"]}),
        "restart",
    )
    assert run.returncode == 0, run.stderr
    assert "systemctl kill --kill-whom=main -s TSTP sidekiq.service" not in run.calls


def test_a_user_unit_is_adopted_through_deploys_manager_as_deploy(host, existing_values) -> None:
    name = "example_sidekiq_staging.service"
    unit = f"{USER_UNITS}/{name}"
    serving_a(host)
    host.seed(unit, "[Service]\nExecStart=bundle exec sidekiq\n")
    adopting(host, name, "inactive", prefix="--user ")
    host.on("systemctl", f"--user show -p FragmentPath --value {name}", f"echo {unit}")
    run = run_ctl(
        host, stage_values(existing_values, rollout=NO_HEALTH, sidekiq={"adopt": [name]}), "restart"
    )
    assert run.returncode == 0, run.stderr
    assert host.file(f"{SAVED}/{name}") == "[Service]\nExecStart=bundle exec sidekiq\n"
    assert host.file(unit) is None
    assert f"{RUNUSER} systemctl --user disable --quiet {name}" in run.calls
    assert f"{RUNUSER} cat -- {unit}" in run.calls
    assert f"{RUNUSER} rm -f -- {unit}" in run.calls
    # Root never touched the file in deploy's home: only deploy's own processes did.
    touching = [
        uid
        for call, uid in zip(run.calls, run.uids, strict=True)
        if unit in call and not call.startswith("runuser")
    ]
    assert set(touching) == {DEPLOY_UID}


def test_drain_adopted_waits_for_the_quiet_then_stops_and_puts_the_unit_away(host, existing_values) -> None:
    host.seed(SEED, "[Service]\n")
    adopting(host, "sidekiq.service", "active", "active", "inactive")
    host.on("systemctl", "show -p MainPID --value sidekiq.service", "echo 97")
    host.on("ps", "-o args= -p 97", title(2), title(0))
    host.on("systemctl", "show -p FragmentPath --value sidekiq.service", f"echo {SEED}")
    run = run_ctl(
        host,
        stage_values(existing_values, sidekiq={"adopt": ["sidekiq.service"]}),
        "drain-adopted",
        "sidekiq.service",
    )
    assert run.returncode == 0, run.stderr
    assert f"{SAY}adopted sidekiq.service: sidekiq.service is quiet with 0 busy; stopping it\n" in run.stdout
    assert before(run, "systemctl stop sidekiq.service", f"rm -f -- {SEED}")
    assert host.file(f"{SAVED}/sidekiq.service") == "[Service]\n"
    assert run.ran("flock") == []


def test_drain_adopted_takes_only_a_unit_of_sidekiq_adopt(host, existing_values) -> None:
    run = run_ctl(
        host,
        stage_values(existing_values, sidekiq={"adopt": ["sidekiq.service"]}),
        "drain-adopted",
        "ssh.service",
    )
    assert run.returncode == 2
    assert "drain-adopted: ssh.service is not in sidekiq.adopt" in run.stderr
    assert run.calls == []


CAP_NAME = "example_sidekiq_staging.service"
CAP_FILE = f"{USER_UNITS}/{CAP_NAME}"
CAP_TEXT = (
    f"[Service]\nType=notify\nWorkingDirectory={APP}\nExecStart=/usr/bin/bundle exec sidekiq -e staging\n"
)


def resting_manager_with(host: FakeHost, name: str, text: str) -> None:
    """deploy's manager does not run (no lingering, no session); its unit file is enabled there."""
    host.on(*NO_USER_MANAGER)
    host.lists_units()
    host.seed(f"{USER_UNITS}/{name}", text)
    link = f"{USER_UNITS}/default.target.wants/{name}"
    host.seed(link, "")
    host.symlink(link, f"{USER_UNITS}/{name}")


def test_foreign_reads_the_enabled_units_of_a_resting_user_manager_as_deploy(host, existing_values) -> None:
    """They start with deploy's manager, at its next login: a double all the same."""
    resting_manager_with(host, CAP_NAME, CAP_TEXT)
    resting_manager_with(host, "sidekiq-low@a.service", "# sidekiq-fleet group: sidekiq\n" + CAP_TEXT)
    resting_manager_with(
        host, "puma.service", f"[Service]\nWorkingDirectory={APP}\nExecStart=/usr/bin/puma\n"
    )
    run = run_ctl(host, stage_values(existing_values), "foreign")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        f"refuse {CAP_NAME} (user unit, enabled, starts with deploy's manager at its next login, {CAP_FILE}) "
        "runs Sidekiq for /home/deploy/www beside this group's slots, so two Sidekiqs would fetch and a stop "
        f"would not stop; expected sidekiq-fleet:sidekiq.adopt to list {CAP_NAME} (taken over with no gap), "
        "or stop and disable it"
    ]
    assert not [c for c in run.ran("systemctl") if "--user" in c], "no manager to ask"
    # Root only ever hands deploy's files to deploy's own processes.
    touching = [call for call in run.calls if USER_UNITS in call]
    assert touching, run.calls
    assert all(call.startswith(f"{RUNUSER} ") for call in touching), touching


def test_a_unit_of_a_resting_user_manager_is_put_away_as_deploy(host, existing_values) -> None:
    serving_a(host)
    resting_manager_with(host, CAP_NAME, CAP_TEXT)
    host.seed(f"{CAP_FILE}.d/env.conf", "[Service]\nEnvironment=A=1\n")
    host.on("systemctl", f"show -p LoadState --value {CAP_NAME}", "echo not-found")
    run = run_ctl(
        host, stage_values(existing_values, rollout=NO_HEALTH, sidekiq={"adopt": [CAP_NAME]}), "restart"
    )
    assert run.returncode == 0, run.stderr
    assert host.file(f"{SAVED}/{CAP_NAME}") == CAP_TEXT
    assert host.file(f"{SAVED}/{CAP_NAME}.d/env.conf") == "[Service]\nEnvironment=A=1\n"
    assert host.file(CAP_FILE) is None
    assert host.removed(f"{USER_UNITS}/default.target.wants/{CAP_NAME}"), "still enabled"
    assert not [c for c in run.ran("systemctl") if "--user" in c]
    assert not run.ran("systemd-run")[1:], "nothing runs, so nothing drains"
    assert f"{SAY}adopted {CAP_NAME}: disabled, its files moved to {SAVED}\n" in run.stdout


def test_foreign_never_names_this_groups_slots_whatever_their_file_says(host, existing_values) -> None:
    """A slot keeps running after its file went (deploy moved its unit directory away in user scope)."""
    host.on(*NO_USER_MANAGER)
    host.lists_units(
        {**SEED_RUNNING, "Id": A, "FragmentPath": f"{UNITS}/sidekiq-default@.service"},
        {**SEED_RUNNING, "Id": "sidekiq-low@b.service", "FragmentPath": f"{UNITS}/sidekiq-low@.service"},
        {**SEED_RUNNING, "Id": "sidekiq-default@c.service", "FragmentPath": f"{UNITS}/gone.service"},
    )
    run = run_ctl(host, stage_values(existing_values), "foreign")
    assert run.returncode == 0, run.stderr
    assert [line.split()[1] for line in run.stdout.splitlines()] == ["sidekiq-default@c.service"]


# --- memory recycling and the health window (issue 19) --------------------------------------------

MIB = 1024 * 1024
RECORD = "/var/lib/sidekiq-fleet/sidekiq/recycled-default"
RECORD_LOW = "/var/lib/sidekiq-fleet/sidekiq/recycled-low"
CHECKED = "/run/sidekiq-fleet/sidekiq-checked-default"
CHECKED_LOW = "/run/sidekiq-fleet/sidekiq-checked-low"
LOCK = "/run/sidekiq-fleet/sidekiq.lock"
ABOVE = f"{SAY}process default: {A} uses 600 MiB (MemoryCurrent), above recycleAboveMiB 512 MiB"


def recycling(existing_values: dict[str, Any], **sidekiq: Any) -> dict[str, Any]:
    """A stage that recycles above 512 MiB (checks every 30 s, at most once per 300 s, by default)."""
    return stage_values(existing_values, sidekiq={"recycleAboveMiB": 512, **sidekiq})


def run_ctl_in(host: FakeHost, values: dict[str, Any], *args: str, before: str = "", after: str = "") -> Run:
    """run_ctl in system scope, with the test's own shell lines before and after the script; they call
    programs by path, so that the fakes do not log them."""
    script = host.root / "sidekiqctl"
    script.write_text(render_control(stage_from(values)))
    words = " ".join(shlex.quote(a) for a in args)
    return host.run(
        f"{before}\nrc=0\nSIDEKIQ_FLEET_HOST=web1 bash {script} {words} || rc=$?\n{after}\nexit $rc"
    )


def serving_a_at(host: FakeHost, memory_current: str, available_kib: int = 8 * 1024 * 1024) -> None:
    """Slot a enabled, active and fetching (its title does not end in "stopping") at this MemoryCurrent;
    slot b comes up healthy when started."""
    comes_up_healthy(host, B)
    slot(host, A, "active", enabled=True)
    host.on("systemctl", f"show -p MemoryCurrent --value {A}", f"echo '{memory_current}'")
    host.on("ps", "-o args= -p 4242", title(1, stopping=False))
    host.meminfo(available_kib)


def assert_nothing_started(run: Run) -> None:
    assert run.returncode == 0, run.stderr
    assert run.systemctl_changes() == []
    assert run.ran("systemd-run") == []


def test_recycle_replaces_a_slot_above_the_limit_like_a_deploy_and_records_it(host, existing_values) -> None:
    serving_a_at(host, str(600 * MIB))
    host.seed(VERSION_FILE, "v1\n")
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no check file and no record yet: nothing to complain of
    assert run.ran("flock") == ["flock -n 9"]
    assert run.stdout.splitlines()[0] == f"{ABOVE}; recycling it"
    # The overlap of a deploy: b starts, proves healthy for 2 s, then a quiets and drains.
    assert before(run, f"systemctl start {B}", f"systemctl show -p NRestarts --value {B}")
    assert before(run, f"systemctl show -p NRestarts --value {B}", f"systemctl enable --quiet {B}")
    assert run.ran("sleep") == ["sleep 1", "sleep 1"]
    assert before(run, "sleep 1", f"systemctl enable --quiet {B}")
    assert before(run, f"systemctl enable --quiet {B}", f"systemctl disable --quiet {A}")
    assert before(run, f"systemctl disable --quiet {A}", f"systemctl kill --kill-whom=main -s TSTP {A}")
    assert run.ran("systemd-run") == [
        "systemd-run --unit=sidekiq-default-drain-a.service --collect --quiet "
        f"--description=drain {A} -E SIDEKIQ_FLEET_HOST=web1 {CTL} drain default a"
    ]
    assert f"systemctl stop {A}" not in run.calls
    assert run.stdout.splitlines()[-1] == f"{SAY}process default: recycled {A} at 600 MiB"
    # When (the clock before any sleep) and how much, written before b started.
    assert host.file(RECORD) == f"{EPOCH} 629145600\n"
    assert host.mode_owner(RECORD)[1:] == (0, 0)
    # No deploy: no version change, the target and the path unit untouched.
    assert host.file(VERSION_FILE) == "v1\n"
    assert not [c for c in run.calls if "sidekiq.target" in c or "first-release" in c]


@pytest.mark.parametrize(
    ("memory_current", "recycles"),
    [
        (str(500 * MIB), False),
        (str(512 * MIB), False),  # exactly at the limit: only above it
        (str(512 * MIB + 1), True),
    ],
)
def test_recycle_only_above_the_limit(host, existing_values, memory_current, recycles) -> None:
    serving_a_at(host, memory_current)
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert run.returncode == 0, run.stderr
    if recycles:
        assert f"systemctl start {B}" in run.calls
        assert run.stdout.splitlines()[0] == (
            f"{SAY}process default: {A} uses 512 MiB (MemoryCurrent), above recycleAboveMiB 512 MiB; "
            "recycling it"
        )
        assert host.file(RECORD) == f"{EPOCH} 536870913\n"
    else:
        assert_nothing_started(run)
        assert run.stdout == ""
        assert host.file(RECORD) is None
        assert f"systemctl show -p MemoryCurrent --value {A}" in run.calls  # it did look


def test_recycle_reads_the_rss_of_the_main_pid_where_cgroups_give_no_memory(host, existing_values) -> None:
    serving_a_at(host, "[not set]")
    host.on("ps", "-o rss= -p 4242", "echo ' 614400'")  # KiB: 600 MiB
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == (
        f"{SAY}process default: {A} uses 600 MiB (RSS of PID 4242), above recycleAboveMiB 512 MiB; "
        "recycling it"
    )
    assert f"systemctl start {B}" in run.calls
    assert host.file(RECORD) == f"{EPOCH} 629145600\n"


def test_recycle_takes_the_cgroups_memory_over_the_rss(host, existing_values) -> None:
    serving_a_at(host, str(600 * MIB))
    host.on("ps", "-o rss= -p 4242", "echo ' 1024'")  # 1 MiB: would be below
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert run.stdout.splitlines()[0] == f"{ABOVE}; recycling it"
    assert "ps -o rss= -p 4242" not in run.calls


def test_recycle_of_a_slot_whose_memory_is_unknown_says_so(host, existing_values) -> None:
    serving_a_at(host, "[not set]")
    host.on("ps", "-o rss= -p 4242", "exit 1")
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert_nothing_started(run)
    assert run.stdout == f"{SAY}process default: the memory of {A} is unknown; not recycling\n"


@pytest.mark.parametrize(
    ("ago", "interval", "recycles"),
    [(100, None, False), (299, None, False), (300, None, True), (100, 60, True), (100, 3600, False)],
)
def test_recycle_comes_at_most_once_per_min_interval(host, existing_values, ago, interval, recycles) -> None:
    serving_a_at(host, str(600 * MIB))
    host.seed(RECORD, f"{EPOCH - ago} 700000000\n")
    extra = {} if interval is None else {"recycleMinIntervalSeconds": interval}
    run = run_ctl(host, recycling(existing_values, **extra), "recycle")
    assert run.returncode == 0, run.stderr
    if recycles:
        assert f"systemctl start {B}" in run.calls
        assert host.file(RECORD) == f"{EPOCH} 629145600\n"
    else:
        assert_nothing_started(run)
        assert run.stdout == (
            f"{ABOVE}; not recycling: the last recycle was {ago} s ago, recycleMinIntervalSeconds is "
            f"{interval or 300}\n"
        )
        assert host.file(RECORD) == f"{EPOCH - ago} 700000000\n"


def test_recycle_ignores_a_record_that_is_not_one(host, existing_values) -> None:
    serving_a_at(host, str(600 * MIB))
    host.seed(RECORD, f"{EPOCH - 10}\n")  # no bytes: not "EPOCH BYTES"
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert run.returncode == 0, run.stderr
    assert f"systemctl start {B}" in run.calls


def test_no_recycle_during_a_deploy_or_another_recycle(host, existing_values) -> None:
    serving_a_at(host, str(600 * MIB))
    # Another run of the control script holds the lock for as long as this one runs.
    hold = f"/usr/bin/mkdir -p -m 0700 /run/sidekiq-fleet\nexec 8>>{LOCK}\n/usr/bin/flock -n 8"
    run = run_ctl_in(host, recycling(existing_values), "recycle", before=hold)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{SAY}another run of sidekiqctl holds {LOCK}; not recycling now\n"
    assert run.ran("flock") == ["flock -n 9"]  # never waits for it
    assert run.ran("systemctl") == []
    assert host.file(RECORD) is None


def test_no_recycle_without_memory_for_two_processes(host, existing_values) -> None:
    # 600 MiB + the margin of 256 MiB do not fit in 700 MiB.
    serving_a_at(host, str(600 * MIB), available_kib=700 * 1024)
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert_nothing_started(run)
    assert run.stdout == (
        f"{SAY}process default: memory guard: MemAvailable 700 MiB is below {A}'s 600 MiB + the margin of "
        "256 MiB; not recycling\n"
    )
    assert host.file(RECORD) is None
    assert f"systemctl restart {A}" not in run.calls  # no fallback to a restart with a gap


def test_no_recycle_of_a_slot_an_operator_quieted(host, existing_values) -> None:
    host.on("ps", "-o args= -p 4242", title(1, stopping=True))  # the first rule wins over serving_a_at's
    serving_a_at(host, str(600 * MIB))
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert_nothing_started(run)
    assert run.stdout == ""
    assert host.file(RECORD) is None


def test_no_recycle_of_a_slot_that_is_not_active(host, existing_values) -> None:
    slot(host, A, "activating", enabled=True)  # systemd restarting it: not serving
    slot(host, B, "inactive")
    host.on("systemctl", f"show -p MemoryCurrent --value {A}", f"echo {600 * MIB}")
    host.on("ps", "-o args= -p 4242", title(1, stopping=False))
    host.meminfo(8 * 1024 * 1024)
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert_nothing_started(run)
    assert run.stdout == ""


def test_no_recycle_while_the_other_slot_still_drains(host, existing_values) -> None:
    slot(host, B, "active")
    slot(host, "sidekiq-default-drain-b.service", "active")
    serving_a_at(host, str(600 * MIB))
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert_nothing_started(run)
    assert run.stdout == f"{ABOVE}; not recycling: {B} still drains\n"
    assert host.file(RECORD) is None


def test_recycle_never_looks_at_a_process_without_recycle_above_mib(host, existing_values) -> None:
    low_a = "sidekiq-low@a.service"
    values = stage_values(
        existing_values, sidekiq={"processes": [{"name": "default"}, {"name": "low", "recycleAboveMiB": 512}]}
    )
    serving_a_at(host, str(600 * MIB))
    slot(host, low_a, "active", enabled=True)
    slot(host, "sidekiq-low@b.service", "inactive")
    host.on("systemctl", f"show -p MemoryCurrent --value {low_a}", f"echo {100 * MIB}")
    run = run_ctl_in(host, values, "recycle", after="/usr/bin/ls /run/sidekiq-fleet")
    assert_nothing_started(run)
    assert f"systemctl show -p MemoryCurrent --value {low_a}" in run.calls
    assert not [c for c in run.calls if "sidekiq-default" in c]
    assert run.stdout.split() == ["sidekiq-checked-low", "sidekiq.lock"]


@pytest.mark.parametrize(
    ("checked", "due"),
    [(None, True), (f"{EPOCH - 60}", False), (f"{EPOCH - 120}", True), ("garbage", True)],
)
def test_a_process_with_a_longer_check_period_is_checked_only_when_its_own_period_passed(
    host, existing_values, checked, due
) -> None:
    """The timer runs every 30 s, the shortest recycleCheckSeconds; low's is 120."""
    low_a = "sidekiq-low@a.service"
    values = recycling(
        existing_values, processes=[{"name": "default"}, {"name": "low", "recycleCheckSeconds": 120}]
    )
    serving_a_at(host, str(100 * MIB))
    slot(host, low_a, "active", enabled=True)
    slot(host, "sidekiq-low@b.service", "inactive")
    host.on("systemctl", f"show -p MemoryCurrent --value {low_a}", f"echo {100 * MIB}")
    seed = "" if checked is None else f"/usr/bin/mkdir -p /run/sidekiq-fleet\necho {checked} >{CHECKED_LOW}"
    show = f"/usr/bin/cat {CHECKED} {CHECKED_LOW}"
    run = run_ctl_in(host, values, "recycle", before=seed, after=show)
    assert_nothing_started(run)
    assert f"systemctl show -p MemoryCurrent --value {A}" in run.calls  # default's 30 s: every run
    looked_at_low = [c for c in run.calls if "sidekiq-low" in c]
    if due:
        assert f"systemctl show -p MemoryCurrent --value {low_a}" in looked_at_low
        assert run.stdout.split() == [str(EPOCH), str(EPOCH)]
    else:
        assert looked_at_low == []
        assert run.stdout.split() == [str(EPOCH), checked]


def test_a_recycle_whose_new_slot_fails_its_health_check_keeps_the_old_slot_and_the_record(
    host, existing_values
) -> None:
    host.on("systemctl", f"show -p NRestarts --value {B}", "echo 0", "echo 0", "echo 1")
    serving_a_at(host, str(600 * MIB))
    run = run_ctl(host, recycling(existing_values), "recycle")
    assert run.returncode == 1
    assert (
        f"{SAY}FAILED: process default: {B} exited or restarted 1 s after READY (rollout.healthySeconds: 2); "
        f"stopped it, {A} keeps serving\n" in run.stderr
    )
    assert before(run, f"systemctl start {B}", f"systemctl stop {B}")
    assert f"systemctl kill --kill-whom=main -s TSTP {A}" not in run.calls
    assert f"systemctl disable --quiet {A}" not in run.calls
    # The next check does not try again before recycleMinIntervalSeconds.
    assert host.file(RECORD) == f"{EPOCH} 629145600\n"


# The health window after READY: a new slot that does not stay up is stopped, and the old one serves on.
INVOCATION = "_SYSTEMD_INVOCATION_ID=5eed + INVOCATION_ID=5eed + USER_INVOCATION_ID=5eed"


@pytest.mark.parametrize(
    "failure",
    [
        ("ActiveState", "echo inactive", "echo active", "echo activating"),  # Restart=always after an exit
        ("NRestarts", "echo 0", "echo 0", "echo 1"),
        ("MainPID", f"echo {NEW_PID}", f"echo {NEW_PID}", "echo 4444"),
    ],
)
def test_a_new_slot_that_exits_within_the_health_window_is_stopped_and_the_old_one_keeps_serving(
    host, existing_values, failure
) -> None:
    prop, *replies = failure
    host.on("systemctl", f"show -p {prop} --value {B}", *replies)
    # The invocation that sent READY, not a later one after a restart.
    host.on("systemctl", f"show -p InvocationID --value {B}", "echo 5eed", "echo 6f00")
    host.on(
        "journalctl", f"-q --no-pager -o short-iso {INVOCATION}", "echo 'sidekiq[4343]: NoMethodError: boom'"
    )
    comes_up_healthy(host, B)
    serving_a(host)
    host.seed(VERSION_FILE, "v1\n")
    run = run_ctl(host, stage_values(existing_values), "restart", "v2")
    assert run.returncode == 1
    assert (
        f"{SAY}FAILED: process default: {B} exited or restarted 1 s after READY (rollout.healthySeconds: 2); "
        f"stopped it, {A} keeps serving\n" in run.stderr
    )
    assert f"journal of {B} on host web1 (invocation 5eed):\n    sidekiq[4343]: NoMethodError: boom\n" in (
        run.stderr
    )
    assert run.ran("sleep") == ["sleep 1"]
    assert before(run, f"systemctl start {B}", f"systemctl stop {B}")
    assert before(run, f"systemctl stop {B}", "journalctl --sync")
    assert before(run, "journalctl --sync", f"journalctl -q --no-pager -o short-iso {INVOCATION}")
    for untouched in [
        f"systemctl kill --kill-whom=main -s TSTP {A}",
        f"systemctl disable --quiet {A}",
        f"systemctl enable --quiet {B}",
        f"systemctl stop {A}",
    ]:
        assert untouched not in run.calls
    assert run.ran("systemd-run") == []
    assert host.file(VERSION_FILE) == "v1\n"


def test_a_new_slot_with_no_heartbeat_fails_ten_seconds_after_the_health_window(
    host, existing_values
) -> None:
    host.on("ps", f"-o args= -p {NEW_PID}", "echo 'ruby /home/deploy/www/current/bin/sidekiq'")
    comes_up_healthy(host, B)
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values), "restart")
    assert run.returncode == 1
    assert (
        f"{SAY}FAILED: process default: {B} showed no heartbeat (no busy count in its process title) 12 s "
        f"after READY (rollout.healthySeconds: 2); stopped it, {A} keeps serving\n" in run.stderr
    )
    assert run.ran("sleep") == ["sleep 1"] * 12
    assert before(run, f"systemctl start {B}", f"systemctl stop {B}")
    assert f"systemctl kill --kill-whom=main -s TSTP {A}" not in run.calls
    assert f"systemctl enable --quiet {B}" not in run.calls


def test_a_new_slot_with_no_main_process_at_ready_fails_at_once(host, existing_values) -> None:
    host.on("systemctl", f"show -p MainPID --value {B}", "echo 0")
    comes_up_healthy(host, B)
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values), "restart")
    assert run.returncode == 1
    assert (
        f"{SAY}FAILED: process default: {B} had no main process at READY (rollout.healthySeconds: 2); "
        f"stopped it, {A} keeps serving\n" in run.stderr
    )
    assert run.ran("sleep") == []
    assert f"systemctl kill --kill-whom=main -s TSTP {A}" not in run.calls
    assert f"systemctl enable --quiet {B}" not in run.calls


def test_a_heartbeat_that_comes_after_the_window_but_within_ten_seconds_passes(host, existing_values) -> None:
    # Sidekiq 7 writes its title every 10 s: the first may come after healthySeconds.
    no_busy_count = "echo 'ruby /home/deploy/www/current/bin/sidekiq'"
    host.on("ps", f"-o args= -p {NEW_PID}", *[no_busy_count] * 4, title(0, stopping=False, version="7.3.2"))
    comes_up_healthy(host, B)
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values), "restart")
    assert run.returncode == 0, run.stderr
    assert run.ran("sleep") == ["sleep 1"] * 4
    assert before(run, "sleep 1", f"systemctl kill --kill-whom=main -s TSTP {A}")
    assert f"systemctl stop {B}" not in run.calls


def test_healthy_seconds_0_quiets_the_old_slot_at_ready(host, existing_values) -> None:
    # b never even shows as active: no health check looks.
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    assert f"systemctl show -p NRestarts --value {B}" not in run.calls
    assert f"systemctl show -p InvocationID --value {B}" not in run.calls
    assert run.ran("ps") == []
    assert run.ran("sleep") == []
    assert "stayed up" not in run.stdout
    started = run.position(f"systemctl start {B}")
    assert run.systemctl_changes()[run.systemctl_changes().index(f"systemctl start {B}") + 1 :][:3] == [
        f"systemctl enable --quiet {B}",
        f"systemctl disable --quiet {A}",
        f"systemctl kill --kill-whom=main -s TSTP {A}",
    ]
    assert not [c for c in run.calls[started:] if c.startswith(f"systemctl show -p ActiveState --value {B}")]


def test_migration_checks_the_health_of_slot_a_before_quieting_the_legacy_unit(host, existing_values) -> None:
    host.seed(f"{UNITS}/sidekiq.service", MANAGED + "[Service]\n")
    host.on("systemctl", f"show -p NRestarts --value {A}", "echo 0", "echo 0", "echo 1")
    slot(host, A, "active")  # nothing asks before its start
    comes_up_healthy(host, A)
    slot(host, B, "inactive")
    slot(host, "sidekiq.service", "active", enabled=True)
    run = run_ctl(host, stage_values(existing_values), "restart", "v2")
    assert run.returncode == 1
    assert (
        f"{SAY}FAILED: process default: {A} exited or restarted 1 s after READY (rollout.healthySeconds: 2); "
        "stopped it, sidekiq.service keeps serving\n" in run.stderr
    )
    assert before(run, f"systemctl start {A}", f"systemctl stop {A}")
    for untouched in [
        "systemctl kill --kill-whom=main -s TSTP sidekiq.service",
        "systemctl disable --quiet sidekiq.service",
        f"systemctl enable --quiet {A}",
    ]:
        assert untouched not in run.calls
    assert run.ran("systemd-run") == []
    assert host.file(f"{UNITS}/sidekiq.service") == MANAGED + "[Service]\n"


def test_migration_that_passes_the_health_check_goes_on(host, existing_values) -> None:
    host.seed(f"{UNITS}/sidekiq.service", MANAGED + "[Service]\n")
    slot(host, A, "active")  # nothing asks before its start
    comes_up_healthy(host, A)
    slot(host, B, "inactive")
    slot(host, "sidekiq.service", "active", enabled=True)
    run = run_ctl(host, stage_values(existing_values), "restart", "v2")
    assert run.returncode == 0, run.stderr
    assert before(run, f"systemctl start {A}", f"systemctl show -p NRestarts --value {A}")
    assert before(run, "sleep 1", f"systemctl enable --quiet {A}")
    assert before(run, "sleep 1", "systemctl kill --kill-whom=main -s TSTP sidekiq.service")


# --- status, prune, start and restart with recycling ----------------------------------------------


@pytest.mark.parametrize(
    ("record", "recycled"),
    [
        (None, "-"),
        (f"{EPOCH} 629145600\n", "2025-11-28T03:20:00+00:00"),
        ("yesterday 600MiB\n", "-"),
        (f"{EPOCH} 600MiB\n", "-"),
        ("$(touch /PWNED) 1\n", "-"),
    ],
)
def test_status_shows_the_limit_the_recycle_threshold_and_the_last_recycle(
    host, existing_values, record, recycled
) -> None:
    values = stage_values(
        existing_values,
        sidekiq={
            "processes": [
                {"name": "default", "memoryMax": 1024, "recycleAboveMiB": 512},
                {"name": "low", "memoryMax": 2048},
            ]
        },
    )
    if record is not None:
        host.seed(RECORD, record)
    host.seed(RECORD_LOW, f"{EPOCH} 629145600\n")  # low does not recycle: never read
    slot(host, A, "active", enabled=True)
    slot(host, B, "inactive")
    slot(host, "sidekiq-low@a.service", "active", enabled=True)
    slot(host, "sidekiq-low@b.service", "inactive")
    run = run_ctl(host, values, "status")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no version file, perhaps no record: not an error
    lines = run.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("process=default slot=a ")
    assert lines[0].endswith(f" limit=1073741824 recycle=536870912 recycled={recycled}")
    assert lines[1].startswith("process=low slot=a ")
    assert lines[1].endswith(" limit=2147483648 recycle=- recycled=-")


def test_status_of_a_stage_limit_applies_to_every_process(host, existing_values) -> None:
    values = recycling(existing_values, memoryMax=4096, processes=[{"name": "default"}, {"name": "low"}])
    slot(host, A, "active", enabled=True)
    slot(host, B, "inactive")
    slot(host, "sidekiq-low@a.service", "inactive")
    slot(host, "sidekiq-low@b.service", "active", enabled=True)
    run = run_ctl(host, values, "status")
    assert [line.split(" limit=")[1] for line in run.stdout.splitlines()] == [
        "4294967296 recycle=536870912 recycled=-",
        "4294967296 recycle=536870912 recycled=-",
    ]


RECYCLE_TIMER = f"{UNITS}/sidekiq-recycle.timer"
RECYCLE_SERVICE = f"{UNITS}/sidekiq-recycle.service"
OUR_MARKER = "# sidekiq-fleet group: sidekiq\n"


def test_prune_removes_the_recycle_timer_once_no_process_recycles(host, existing_values) -> None:
    host.seed(RECYCLE_TIMER, MANAGED + OUR_MARKER + "[Timer]\n")
    host.seed(RECYCLE_SERVICE, MANAGED + OUR_MARKER + "[Service]\n")
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    both = "sidekiq-recycle.timer sidekiq-recycle.service"
    assert before(run, f"systemctl stop {both}", f"systemctl disable --quiet {both}")
    assert before(run, f"systemctl disable --quiet {both}", f"rm -f {RECYCLE_TIMER}")
    assert before(run, f"rm -f {RECYCLE_SERVICE}", "systemctl daemon-reload")
    assert host.file(RECYCLE_TIMER) is None
    assert host.file(RECYCLE_SERVICE) is None
    assert (
        f"{SAY}no process has recycleAboveMiB any more: stopped and removed sidekiq-recycle.timer\n"
        in run.stdout
    )
    assert "systemctl enable --quiet sidekiq-recycle.timer" not in run.calls


def test_prune_leaves_a_recycle_timer_that_is_not_this_groups(host, existing_values) -> None:
    host.seed(RECYCLE_TIMER, "[Timer]\n")  # made by hand
    serving_a(host)
    run = run_ctl(host, stage_values(existing_values, rollout=NO_HEALTH), "restart")
    assert run.returncode == 0, run.stderr
    assert host.file(RECYCLE_TIMER) == "[Timer]\n"
    assert not [c for c in run.calls if "sidekiq-recycle" in c]


def test_restart_with_recycling_keeps_and_enables_the_recycle_timer(host, existing_values) -> None:
    host.seed(RECYCLE_TIMER, MANAGED + OUR_MARKER + "[Timer]\n")
    host.seed(RECYCLE_SERVICE, MANAGED + OUR_MARKER + "[Service]\n")
    serving_a(host)
    values = recycling(existing_values)
    values["rollout"] = NO_HEALTH
    run = run_ctl(host, values, "restart")
    assert run.returncode == 0, run.stderr
    assert host.file(RECYCLE_TIMER) is not None
    assert host.file(RECYCLE_SERVICE) is not None
    assert [c for c in run.calls if "sidekiq-recycle" in c] == [
        "systemctl enable --quiet sidekiq-recycle.timer"
    ]
    assert before(run, "systemctl enable --quiet sidekiq-recycle.timer", "systemctl start sidekiq.target")


@pytest.mark.parametrize("recycles", [True, False])
def test_start_enables_the_recycle_timer_only_when_a_process_recycles(
    host, existing_values, recycles
) -> None:
    slot(host, A, "inactive", enabled=True)
    slot(host, B, "inactive")
    values = recycling(existing_values) if recycles else stage_values(existing_values)
    run = run_ctl(host, values, "start")
    assert run.returncode == 0, run.stderr
    timer = "systemctl enable --quiet sidekiq-recycle.timer"
    if recycles:
        assert before(run, f"systemctl start {A}", timer)
        assert before(run, timer, "systemctl start sidekiq.target")
    else:
        assert timer not in run.calls


def test_recycle_is_roots_and_takes_no_argument(host, existing_values) -> None:
    run = run_ctl(host, recycling(existing_values), "recycle", "now")
    assert run.returncode == 2
    assert "recycle takes no argument" in run.stderr
    assert run.calls == []
