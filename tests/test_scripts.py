"""Remote scripts, executed: each runs on a FakeHost (tests/fakehost.py) whose systemctl, ps,
visudo, systemd-analyze, journalctl and sudo answer as the test scripts them, while install,
mv, cmp and rm act on real files in an overlay. The checks are what happened: which commands
ran in which order, which files changed, the exit status and the message.

The real programs run in the end-to-end tests; expected paths and commands here are spelled
out, not computed by the code under test.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from pathlib import Path

import pytest

from components import scripts
from components.config import Stage
from components.render import render_files
from tests.conftest import stage_from
from tests.fakehost import ADMIN_UID, DEPLOY_UID, EPOCH, FakeHost, Run, title

HOSTILE = [
    "two words",
    'it\'s "quoted"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "line1\nline2; touch PWNED",
    "; touch PWNED #",
]

UNIT = "/etc/systemd/system/sidekiq.service"
SUDOERS = "/etc/sudoers.d/sidekiq-fleet-sidekiq"
ENV = "/etc/sidekiq-fleet/sidekiq.env"
# Written beside the targets, then renamed over them.
UNIT_NEW = "/etc/systemd/system/.sidekiq.service.sidekiq-fleet-new"
ENV_NEW = "/etc/sidekiq-fleet/.sidekiq.env.sidekiq-fleet-new"
STAGED = "/var/lib/sidekiq-fleet/staging/sidekiq"
WORK = "/run/sidekiq-fleet-install.test"  # FakeHost's mktemp -d answer
SAY = "sidekiq-fleet: sidekiq.service on host web1: "
USER_SYSTEMCTL = f"runuser -u deploy -- env XDG_RUNTIME_DIR=/run/user/{DEPLOY_UID} systemctl --user"


def bash_n(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)


def all_scripts(stage: Stage, host: str, version: str) -> dict[str, str]:
    files = render_files(stage)
    return {
        "wait_for_port": scripts.wait_for_port(host, 22, 5),
        "prepare_host": scripts.prepare_host(stage, host),
        "install": scripts.install(stage, files, host),
        "restart": scripts.restart(stage, host, version),
        "uninstall": scripts.uninstall(stage, files, host),
    }


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


@pytest.fixture
def with_env(existing_values) -> Stage:
    existing_values["env"] = {"REDIS_URL": "redis://localhost/1"}
    return stage_from(existing_values)


# --- syntax and quoting --------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["system", "user"])
@pytest.mark.parametrize("quiet_first", [True, False])
def test_every_script_and_root_body_passes_bash_n(existing_values, scope: str, quiet_first: bool) -> None:
    existing_values["sidekiq"] = {"scope": scope}
    existing_values["rollout"] = {"quietFirst": quiet_first}
    existing_values["env"] = {"A": "b"}
    for name, text in all_scripts(stage_from(existing_values), "web1", "v1").items():
        assert bash_n(text).returncode == 0, f"{name}: {bash_n(text).stderr}"
        words = shlex.split(text)
        if words[:4] == ["sudo", "-n", "/bin/bash", "-c"]:
            # The body that sudo runs as root is checked too, not just the wrapper.
            assert bash_n(words[4]).returncode == 0, f"{name} body: {bash_n(words[4]).stderr}"


def test_as_root_runs_the_body_in_strict_mode() -> None:
    assert shlex.split(scripts.as_root("echo hi")) == [
        "sudo",
        "-n",
        "/bin/bash",
        "-c",
        "set -euo pipefail\necho hi",
    ]
    assert bash_n(shlex.split(scripts.as_root("if then fi"))[4]).returncode != 0


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_host_and_version_stay_literal(staging: Stage, hostile: str) -> None:
    for name, text in all_scripts(staging, hostile, hostile).items():
        assert bash_n(text).returncode == 0, name


@pytest.mark.parametrize("hostile", HOSTILE)
def test_restart_runs_hostile_values_as_data(host: FakeHost, staging: Stage, hostile: str) -> None:
    run = host.run(scripts.restart(staging, hostile, hostile))
    assert run.returncode == 0, run.stderr
    assert not any("PWNED" in path for path in host.changes())
    assert not any(c.startswith("touch") for c in run.calls)
    assert f"on host {hostile}: active, MainPID 4242 -> 4242, version {hostile}\n" in run.stdout


# --- install -------------------------------------------------------------------------------


def staged(host: FakeHost, stage: Stage) -> dict[str, str]:
    """Put the rendered files where CopyToRemote leaves them; returns {target path: content}."""
    files = render_files(stage)
    for file in files:
        host.seed(file.staged_path, file.content, 0o600)
    return {file.path: file.content for file in files}


def test_install_validates_then_puts_every_file_in_place(host: FakeHost, with_env: Stage) -> None:
    contents = staged(host, with_env)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.changes() == {UNIT, SUDOERS, ENV}
    assert {path: host.file(path) for path in (UNIT, SUDOERS, ENV)} == contents
    assert host.mode_owner(UNIT) == ("0o644", 0, 0)
    assert host.mode_owner(SUDOERS) == ("0o440", 0, 0)
    assert host.mode_owner(ENV) == ("0o600", 0, 0)
    assert host.mode_owner("/etc/sidekiq-fleet") == ("0o755", 0, 0)
    assert "install -d -m 0755 -o root -g root /etc/sidekiq-fleet" in run.calls
    # Both checks run on root's private copies before anything is written beside a target.
    visudo = run.position(f"visudo -cf {WORK}/sidekiq-fleet-sidekiq")
    verify = run.position(f"systemd-analyze verify {WORK}/sidekiq.service")
    first_install = run.position(f"install -o root -g root -m 0644 {WORK}/sidekiq.service {UNIT_NEW}")
    first_rename = run.position(f"mv -f {UNIT_NEW} {UNIT}")
    assert max(visudo, verify) < first_install < first_rename
    assert (
        run.position(f"install -m 0600 {STAGED}/sidekiq-fleet-sidekiq {WORK}/sidekiq-fleet-sidekiq") < visudo
    )
    last_install = run.position(f"install -o root -g root -m 0600 {WORK}/sidekiq.env {ENV_NEW}")
    assert last_install < first_rename, "every file is staged beside its target before the first rename"
    assert run.ran("systemctl") == ["systemctl daemon-reload", "systemctl enable --quiet sidekiq.service"]
    assert run.calls[-1] == f"rm -rf {WORK}"
    assert run.stdout.splitlines() == [
        f"{SAY}installed {UNIT} (0644 root:root)",
        f"{SAY}installed {SUDOERS} (0440 root:root)",
        f"{SAY}installed {ENV} (0600 root:root)",
        f"{SAY}daemon-reload done",
    ]


def test_install_of_unchanged_files_writes_nothing_and_keeps_the_unit_enabled(
    host: FakeHost, with_env: Stage
) -> None:
    for path, content in staged(host, with_env).items():
        host.seed(path, content)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.changes() == set()
    assert not [c for c in run.calls if c.startswith(("install -o", "mv "))]
    assert run.ran("systemctl") == ["systemctl enable --quiet sidekiq.service"]
    assert run.stdout == f"{SAY}files unchanged\n"


def test_install_of_a_new_sudoers_alone_does_not_reload_systemd(host: FakeHost, with_env: Stage) -> None:
    contents = staged(host, with_env)
    host.seed(UNIT, contents[UNIT])
    host.seed(ENV, contents[ENV])
    host.seed(SUDOERS, "# an older drop-in\n", 0o440)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.changes() == {SUDOERS} and host.file(SUDOERS) == contents[SUDOERS]
    assert run.ran("systemctl") == ["systemctl enable --quiet sidekiq.service"]
    assert run.stdout == f"{SAY}installed {SUDOERS} (0440 root:root)\n"


def assert_nothing_installed(host: FakeHost, run: Run, old: dict[str, str], staging: bool = False) -> None:
    """Failed, and every target is as it was; ``staging``: some files were staged beside them first."""
    assert run.returncode == 1
    assert host.changes() == set(), "a file was written, renamed or removed"
    assert {path: host.file(path) for path in old} == old
    assert not [c for c in run.calls if c.startswith(("mv ", "systemctl"))]
    assert bool([c for c in run.calls if c.startswith("install -o")]) == staging
    assert run.stdout == ""


OLD_FILES = {UNIT: "[Service]\nExecStart=/bin/old\n", SUDOERS: "# old\n", ENV: "OLD=1\n"}


def test_a_sudoers_that_fails_visudo_installs_nothing(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    for path, content in OLD_FILES.items():
        host.seed(path, content)
    host.on("visudo", "-cf *", "echo 'sidekiq-fleet-sidekiq:4:30: syntax error' >&2; exit 1")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == (
        f"{SAY}FAILED: the sudoers drop-in failed visudo -cf, nothing installed: "
        "sidekiq-fleet-sidekiq:4:30: syntax error\n"
    )
    assert not run.ran("systemd-analyze"), "install stops at the first failed check"


def test_a_unit_that_fails_systemd_analyze_installs_nothing(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    for path, content in OLD_FILES.items():
        host.seed(path, content)
    host.on("systemd-analyze", "verify *", "echo 'sidekiq.service: bad unit file' >&2; exit 1")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == (
        f"{SAY}FAILED: systemd-analyze verify failed, nothing installed: sidekiq.service: bad unit file\n"
    )


def test_a_systemd_analyze_warning_about_the_unit_installs_nothing(host: FakeHost, with_env: Stage) -> None:
    """verify exits 0 on Type=notfy: its warning about our unit must stop the install."""
    staged(host, with_env)
    for path, content in OLD_FILES.items():
        host.seed(path, content)
    warning = f"{WORK}/sidekiq.service:8: Failed to parse service type, ignoring: notfy"
    host.on("systemd-analyze", "verify *", f"echo {shlex.quote(warning)} >&2")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == f"{SAY}FAILED: systemd-analyze verify warned, nothing installed: {warning}\n"


def test_systemd_analyze_notes_about_other_units_do_not_stop_the_install(
    host: FakeHost, with_env: Stage
) -> None:
    contents = staged(host, with_env)
    note = "/usr/lib/systemd/system/foo.service:3: Unknown key name 'Bar'"
    host.on("systemd-analyze", "verify *", f"echo {shlex.quote(note)} >&2")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.file(UNIT) == contents[UNIT]
    assert f"{SAY}note: systemd-analyze verify reported other units: {note}\n" in run.stdout


def test_install_without_the_run_as_user_installs_nothing(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    host.on("getent", "passwd deploy", "exit 2")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, {})
    assert run.stderr == f"{SAY}FAILED: user deploy does not exist\n"
    assert not run.ran("visudo")


def test_a_failure_while_staging_removes_the_files_staged_so_far(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    for path, content in OLD_FILES.items():
        host.seed(path, content)
    host.on("install", "-o root -g root -m 0440 *", "exit 1")  # the second file, say a full disk
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.ran("install")[-1].startswith("install -o root -g root -m 0440")
    assert f"rm -f {UNIT_NEW}" in run.calls
    assert_nothing_installed(host, run, OLD_FILES, staging=True)


def test_install_removes_an_env_file_no_longer_configured(host: FakeHost, staging: Stage) -> None:
    host.seed(ENV, "OLD=1\n", 0o600)
    contents = staged(host, staging)
    for path, content in contents.items():
        host.seed(path, content)
    run = host.run(scripts.install(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.changes() == {ENV} and host.removed(ENV)
    assert run.stdout == f"{SAY}removed {ENV}, no longer configured\n"


def test_install_refuses_a_configured_writable_path_missing_on_the_host(
    host: FakeHost, existing_values
) -> None:
    existing_values["sidekiq"] = {"writablePaths": ["/var/lib/example/uploads", "/nonexistent/sfh-shared"]}
    stage = stage_from(existing_values)
    staged(host, stage)
    host.seed("/var/lib/example/uploads/.keep", "")
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert_nothing_installed(host, run, {})
    assert run.stderr == (
        f"{SAY}FAILED: sidekiq-fleet:sidekiq.writablePaths[1]: /nonexistent/sfh-shared does not exist on "
        "this host; expected an existing path, as systemd refuses to start a unit with a missing one; "
        "nothing installed\n"
    )


def test_install_does_not_require_the_default_writable_paths(host: FakeHost, with_env: Stage) -> None:
    """The defaults are rendered with "-", so an app without log/ still starts."""
    staged(host, with_env)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.changes() == {UNIT, SUDOERS, ENV}


def test_user_scope_install_writes_into_the_users_home_and_lingers(host: FakeHost, existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user"}
    existing_values["env"] = {"A": "b"}
    stage = stage_from(existing_values)
    contents = staged(host, stage)
    host.seed(SUDOERS, "# left from system scope\n", 0o440)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    unit = "/home/deploy/.config/systemd/user/sidekiq.service"
    env = "/home/deploy/.config/sidekiq-fleet/sidekiq.env"
    assert host.changes() == {unit, env, SUDOERS} and host.removed(SUDOERS)
    assert host.file(unit) == contents["~deploy/.config/systemd/user/sidekiq.service"]
    assert host.mode_owner(unit) == ("0o644", DEPLOY_UID, DEPLOY_UID)
    assert host.mode_owner(env) == ("0o600", DEPLOY_UID, DEPLOY_UID)
    # The user creates the directories in their home, so that ~/.config stays theirs.
    assert "runuser -u deploy -- mkdir -p -m 0755 /home/deploy/.config/systemd/user" in run.calls
    assert [c for c in run.calls if c.startswith(("runuser", "loginctl", "systemctl start"))][-4:] == [
        "loginctl enable-linger deploy",
        f"systemctl start user@{DEPLOY_UID}.service",
        f"{USER_SYSTEMCTL} daemon-reload",
        f"{USER_SYSTEMCTL} enable --quiet sidekiq.service",
    ]


# --- restart -------------------------------------------------------------------------------

QUIET = [
    "systemctl is-active --quiet sidekiq.service",
    "systemctl show -p MainPID --value sidekiq.service",
    "systemctl show -p MainPID --value sidekiq.service",
    "systemctl kill -s TSTP sidekiq.service",
]


def test_restart_waits_for_the_quiet_flag_and_the_busy_workers(host: FakeHost, staging: Stage) -> None:
    # Sidekiq shows "stopping" on its next heartbeat, then its two busy jobs finish one by one.
    host.on("ps", "-o args= -p 4242", title(0, stopping=False), title(2), title(1), title(0))
    host.on("systemctl", "show -p MainPID --value *", "echo 4242", "echo 4242", "echo 5151")
    run = host.run(scripts.restart(staging, "web1", "v2"))
    assert run.returncode == 0, run.stderr
    assert [c for c in run.calls if c.startswith(("systemctl", "ps"))] == [
        *QUIET,
        *["ps -o args= -p 4242"] * 4,
        "systemctl restart sidekiq.service",
        "systemctl is-active --quiet sidekiq.service",
        "systemctl show -p MainPID --value sidekiq.service",
    ]
    assert run.stdout.splitlines() == [
        f"{SAY}sent TSTP to MainPID 4242; waiting for the quiet flag",
        f"{SAY}quiet: 0 busy",
        f"{SAY}restarting for v2",
        f"{SAY}active, MainPID 4242 -> 5151, version v2",
    ]


def test_restart_goes_on_when_workers_stay_busy_past_max_busy_wait(host: FakeHost, existing_values) -> None:
    existing_values["rollout"] = {"maxBusyWait": 0}
    host.on("ps", "*", title(3))
    run = host.run(scripts.restart(stage_from(existing_values), "web1", "v2"))
    assert run.returncode == 0, run.stderr
    assert run.position("systemctl restart sidekiq.service") > run.position("ps -o args= -p 4242")
    assert (
        f"{SAY}still 3 busy after 0 s; going on: Sidekiq pushes unfinished jobs back to Redis "
        "within its -t timeout\n" in run.stdout
    )
    assert f"{SAY}quiet: 3 busy\n" in run.stdout


def test_restart_without_quiet_first_sends_no_tstp(host: FakeHost, existing_values) -> None:
    existing_values["rollout"] = {"quietFirst": False}
    run = host.run(scripts.restart(stage_from(existing_values), "web1", "v2"))
    assert run.returncode == 0, run.stderr
    assert run.ran("systemctl") == [
        "systemctl is-active --quiet sidekiq.service",
        "systemctl show -p MainPID --value sidekiq.service",
        "systemctl restart sidekiq.service",
        "systemctl is-active --quiet sidekiq.service",
        "systemctl show -p MainPID --value sidekiq.service",
    ]
    assert not run.ran("ps")


def test_first_deploy_starts_instead_of_quieting(host: FakeHost, staging: Stage) -> None:
    """capistrano-sidekiq's first deploy fails on quiet/stop of a missing unit; ours starts it."""
    host.on("systemctl", "is-active *", "exit 3", "exit 0")
    run = host.run(scripts.restart(staging, "web1", "v1"))
    assert run.returncode == 0, run.stderr
    assert run.ran("systemctl") == [
        "systemctl is-active --quiet sidekiq.service",
        "systemctl reset-failed sidekiq.service",
        "systemctl start sidekiq.service",
        "systemctl is-active --quiet sidekiq.service",
        "systemctl show -p MainPID --value sidekiq.service",
    ]
    assert run.stdout.splitlines() == [
        f"{SAY}not running; starting it for v1",
        f"{SAY}active, MainPID none -> 4242, version v1",
    ]


JOURNAL = "last 40 journal lines of sidekiq.service on host web1:\n    fake journal line\n"
JOURNAL_CALLS = [
    "journalctl -u sidekiq.service -n 40 --no-pager -o short-iso",
    # What the journal said since the script began (FakeHost's date +%s), for the cause.
    f"journalctl -u sidekiq.service -n 40 --no-pager -o short-iso --since @{EPOCH}",
]


def test_a_unit_that_fails_to_start_fails_with_its_journal(host: FakeHost, staging: Stage) -> None:
    host.on("systemctl", "is-active *", "exit 3")
    host.on("systemctl", "start *", "exit 1")
    run = host.run(scripts.restart(staging, "web1", "v1"))
    assert run.returncode == 1
    assert run.stderr == f"{JOURNAL}{SAY}FAILED: start failed\n"
    assert run.ran("journalctl") == JOURNAL_CALLS
    assert run.ran("systemctl")[-1] == "systemctl start sidekiq.service"


def test_a_failed_restart_fails_with_its_journal(host: FakeHost, staging: Stage) -> None:
    host.on("systemctl", "restart *", "exit 1")
    run = host.run(scripts.restart(staging, "web1", "v2"))
    assert run.returncode == 1
    assert run.stderr == f"{JOURNAL}{SAY}FAILED: restart failed\n"
    assert run.ran("systemctl")[-1] == "systemctl restart sidekiq.service"


def test_a_unit_that_dies_after_the_restart_fails(host: FakeHost, staging: Stage) -> None:
    host.on("systemctl", "is-active *", "exit 0", "exit 3")
    run = host.run(scripts.restart(staging, "web1", "v2"))
    assert run.returncode == 1
    assert run.stderr == f"{JOURNAL}{SAY}FAILED: not active after the restart\n"
    assert run.position("sleep 1") < run.position(JOURNAL_CALLS[0])


def test_user_scope_restart_reads_the_user_units_journal(host: FakeHost, existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user"}
    host.on("runuser", "* is-active *", "exit 3")
    run = host.run(scripts.restart(stage_from(existing_values), "web1", "v1"))
    assert run.returncode == 1
    user_journal = (
        f"journalctl _SYSTEMD_USER_UNIT=sidekiq.service _UID={DEPLOY_UID} -n 40 --no-pager -o short-iso"
    )
    assert run.ran("journalctl") == [user_journal, f"{user_journal} --since @{EPOCH}"]
    assert f"{USER_SYSTEMCTL} start sidekiq.service" in run.calls


REDIS_DOWN = (
    "sidekiq[812]: WARN: Redis::CannotConnectError: Error connecting to Redis on 127.0.0.1:6379 "
    "(Errno::ECONNREFUSED)"
)


@pytest.mark.parametrize(
    ("sidekiq", "retry"),
    [
        ({}, "systemd starts it again every 1 s, and it runs once Redis is back"),
        (
            {"hardening": "off", "restartSec": 3},
            "systemd starts it again every 3 s, and it runs once Redis is back",
        ),
    ],
)
def test_a_restart_that_fails_on_redis_names_redis(host: FakeHost, existing_values, sidekiq, retry) -> None:
    existing_values["sidekiq"] = sidekiq
    host.on("systemctl", "is-active *", "exit 0", "exit 3")
    # Only what the journal said since this restart began counts as the cause.
    host.on("journalctl", f"* --since @{EPOCH}", f"echo {shlex.quote(REDIS_DOWN)}")
    host.on("journalctl", "*", "echo 'an older line'")
    run = host.run(scripts.restart(stage_from(existing_values), "web1", "v2"))
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        f"{SAY}FAILED: not active after the restart: Sidekiq cannot reach Redis "
        "(Redis::CannotConnectError: Error connecting to Redis on 127.0.0.1:6379 (Errno::ECONNREFUSED)); "
        + retry
    )
    assert run.ran("journalctl") == JOURNAL_CALLS


def test_a_restart_that_fails_otherwise_does_not_blame_redis(host: FakeHost, staging: Stage) -> None:
    host.on("systemctl", "is-active *", "exit 0", "exit 3")
    host.on("journalctl", f"* --since @{EPOCH}", "echo 'sidekiq[812]: NameError: uninitialized constant Foo'")
    run = host.run(scripts.restart(staging, "web1", "v2"))
    assert run.returncode == 1
    assert run.stderr == f"{JOURNAL}{SAY}FAILED: not active after the restart\n"


# --- uninstall -----------------------------------------------------------------------------


def installed(host: FakeHost, stage: Stage) -> dict[str, str]:
    contents = staged(host, stage)
    for path, content in contents.items():
        host.seed(path, content)
    return contents


def test_uninstall_quiets_stops_and_removes_every_file(host: FakeHost, with_env: Stage) -> None:
    installed(host, with_env)
    host.on("ps", "*", title(1), title(0))
    run = host.run(scripts.uninstall(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    for path in (
        UNIT,
        SUDOERS,
        ENV,
        *(f"{STAGED}/{name}" for name in ("sidekiq.service", "sidekiq-fleet-sidekiq", "sidekiq.env")),
    ):
        assert host.removed(path), path
    for directory in ("/etc/sidekiq-fleet", "/var/lib/sidekiq-fleet"):
        assert host.removed(directory), directory
    assert [c for c in run.calls if c.startswith(("systemctl", "ps", "rm "))] == [
        "systemctl is-active --quiet sidekiq.service",
        "systemctl show -p MainPID --value sidekiq.service",
        "systemctl kill -s TSTP sidekiq.service",
        "ps -o args= -p 4242",
        "ps -o args= -p 4242",
        "systemctl stop sidekiq.service",
        "systemctl disable --quiet sidekiq.service",
        f"rm -f {ENV}",
        f"rm -f {SUDOERS}",
        f"rm -f {UNIT}",
        "systemctl daemon-reload",
        "systemctl reset-failed sidekiq.service",
        f"rm -rf {STAGED}",
    ]
    assert run.stdout.splitlines()[-1] == f"{SAY}uninstalled"


def test_uninstall_of_a_stopped_unit_sends_nothing_to_it(host: FakeHost, staging: Stage) -> None:
    installed(host, staging)
    host.on("systemctl", "is-active *", "exit 3")
    run = host.run(scripts.uninstall(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.removed(UNIT) and host.removed(SUDOERS)
    assert not [c for c in run.ran("systemctl") if c.split()[1] in ("kill", "stop", "show")]


def test_uninstall_without_quiet_first_stops_at_once(host: FakeHost, existing_values) -> None:
    existing_values["rollout"] = {"quietFirst": False}
    stage = stage_from(existing_values)
    installed(host, stage)
    run = host.run(scripts.uninstall(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    assert run.ran("systemctl")[:3] == [
        "systemctl is-active --quiet sidekiq.service",
        "systemctl stop sidekiq.service",
        "systemctl disable --quiet sidekiq.service",
    ]
    assert not run.ran("ps") and host.removed(UNIT)


def test_uninstall_keeps_every_file_when_the_stop_fails(host: FakeHost, with_env: Stage) -> None:
    contents = installed(host, with_env)
    host.on("systemctl", "stop *", "exit 1")
    run = host.run(scripts.uninstall(with_env, render_files(with_env), "web1"))
    assert run.returncode == 1
    assert host.changes() == set()
    assert {path: host.file(path) for path in contents} == contents
    assert run.stderr == f"{JOURNAL}{SAY}FAILED: stop failed\n"


def test_uninstall_leaves_other_units_files_and_their_directories(host: FakeHost, with_env: Stage) -> None:
    installed(host, with_env)
    others = {
        "/etc/sidekiq-fleet/critical.env": "A=1\n",
        "/var/lib/sidekiq-fleet/staging/critical/critical.service": "[Service]\n",
    }
    for path, content in others.items():
        host.seed(path, content)
    run = host.run(scripts.uninstall(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.removed(ENV) and host.removed(UNIT)
    assert {path: host.file(path) for path in others} == others
    assert not host.removed("/etc/sidekiq-fleet") and not host.removed("/var/lib/sidekiq-fleet")


def test_user_scope_uninstall_starts_the_users_manager_first(host: FakeHost, existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user"}
    stage = stage_from(existing_values)
    installed(host, stage)
    run = host.run(scripts.uninstall(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.removed("/home/deploy/.config/systemd/user/sidekiq.service")
    assert run.position(f"systemctl start user@{DEPLOY_UID}.service") < run.position(
        f"{USER_SYSTEMCTL} stop sidekiq.service"
    )


# --- prepare_host and wait_for_port -----------------------------------------------------------


def test_prepare_host_waits_for_cloud_init_and_creates_the_private_staging_dirs(
    host: FakeHost, staging: Stage
) -> None:
    host.on("cloud-init", "status --wait", "exit 2")  # finished with recoverable errors
    run = host.run(scripts.prepare_host(staging, "web1"))
    assert run.returncode == 0, run.stderr
    assert run.calls[0] == "cloud-init status --wait"
    # The unit's own directory too: CopyToRemote would make it 0755 and the staged env file 0644.
    for directory in ("/var/lib/sidekiq-fleet/staging", STAGED):
        assert host.mode_owner(directory) == ("0o700", ADMIN_UID, ADMIN_UID), directory
    assert run.stdout == "sidekiq-fleet: host web1 is ready\n"


def test_prepare_host_fails_when_cloud_init_failed(host: FakeHost, staging: Stage) -> None:
    host.on("cloud-init", "status --wait", "exit 1")
    host.on("cloud-init", "status --long", "echo 'status: error'")
    run = host.run(scripts.prepare_host(staging, "web1"))
    assert run.returncode == 1
    assert run.stderr == "sidekiq-fleet: cloud-init failed on host web1 (exit 1)\nstatus: error\n"
    assert host.changes() == set()


def test_prepare_host_fails_without_passwordless_sudo(host: FakeHost, staging: Stage) -> None:
    host.on("sudo", "-n true", "echo 'sudo: a password is required' >&2; exit 1")
    run = host.run(scripts.prepare_host(staging, "web1"))
    assert run.returncode == 1
    assert run.stderr == "sidekiq-fleet: user admin has no passwordless sudo on host web1\n"
    assert host.changes() == set()


def test_wait_for_port_returns_once_the_port_accepts() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = subprocess.run(
            ["bash", "-c", scripts.wait_for_port("127.0.0.1", port, 0)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sidekiq-fleet: 127.0.0.1:{port} accepts connections\n"


def test_wait_for_port_tries_every_2_s_until_its_deadline() -> None:
    # `sleep` as an exported shell function that moves bash's clock instead of waiting;
    # past 10 pauses the loop is not ending: stop it.
    fake_sleep = '() { ((++pauses <= 10)) || exit 99; echo "sleep $*" >&2; SECONDS=$((SECONDS + $1)); }'
    result = subprocess.run(
        ["bash", "-c", scripts.wait_for_port("127.0.0.1", 9, 5)],
        env={**os.environ, "BASH_FUNC_sleep%%": fake_sleep},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "sleep 2\nsleep 2\nsleep 2\nsidekiq-fleet: 127.0.0.1:9 did not accept connections within 5 s\n"
    )


def test_wait_for_port_gives_up_with_the_address() -> None:
    # Nothing listens on port 9 of loopback; a timeout of 0 gives up at once.
    result = subprocess.run(
        ["bash", "-c", scripts.wait_for_port("127.0.0.1", 9, 0)], capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 1
    assert result.stderr == "sidekiq-fleet: 127.0.0.1:9 did not accept connections within 0 s\n"
