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
from tests.fakehost import ADMIN_UID, DEPLOY_UID, FakeHost, Run, unit_block

HOSTILE = [
    "two words",
    'it\'s "quoted"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "line1\nline2; touch PWNED",
    "; touch PWNED #",
]

UNIT_NAMES = [
    "sidekiq.target",
    "sidekiq-default@.service",
    "sidekiq-first-release.path",
    "sidekiq-first-release.service",
]
TARGET = "/etc/systemd/system/sidekiq.target"
TEMPLATE = "/etc/systemd/system/sidekiq-default@.service"
CONTROL = "/usr/local/sbin/sidekiqctl"
SUDOERS = "/etc/sudoers.d/sidekiq-fleet-sidekiq"
ENV = "/etc/sidekiq-fleet/sidekiq.env"
# Every file of the default stage with env, in install order, and its mode.
ALL_FILES = {
    **{f"/etc/systemd/system/{name}": "0o644" for name in UNIT_NAMES},
    CONTROL: "0o755",
    SUDOERS: "0o440",
    ENV: "0o600",
}
# Written beside the targets, then renamed over them.
TARGET_NEW = "/etc/systemd/system/.sidekiq.target.sidekiq-fleet-new"
TEMPLATE_NEW = "/etc/systemd/system/.sidekiq-default@.service.sidekiq-fleet-new"
ENV_NEW = "/etc/sidekiq-fleet/.sidekiq.env.sidekiq-fleet-new"
SUDOERS_NEW = "/etc/sudoers.d/.sidekiq-fleet-sidekiq.sidekiq-fleet-new"
STAGED = "/var/lib/sidekiq-fleet/staging/sidekiq"
WORK = "/run/sidekiq-fleet-install.test"  # FakeHost's mktemp -d answer
SAY = "sidekiq-fleet: sidekiq on host web1: "
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
def test_every_script_and_root_body_passes_bash_n(existing_values, scope: str) -> None:
    existing_values["sidekiq"] = {"scope": scope, "processes": [{"name": "default"}, {"name": "low"}]}
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


# --- install -------------------------------------------------------------------------------


def staged(host: FakeHost, stage: Stage) -> dict[str, str]:
    """Put the rendered files where CopyToRemote leaves them; returns {target path: content}."""
    files = render_files(stage)
    for file in files:
        host.seed(file.staged_path, file.content, 0o600)
    return {file.path: file.content for file in files}


def test_install_validates_then_puts_every_file_in_place(host: FakeHost, with_env: Stage) -> None:
    contents = staged(host, with_env)
    # The fake keeps what verify was given: the first-release service's copy is the last argument.
    host.on(
        "systemd-analyze",
        "verify *",
        'cat "${@: -1}" >"$FAKE_DIR/verified"; stat -c %a "${2%/*}/control" >"$FAKE_DIR/control-mode"',
    )
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.changes() == set(ALL_FILES)
    assert {path: host.file(path) for path in ALL_FILES} == contents
    for path, mode in ALL_FILES.items():
        assert host.mode_owner(path) == (mode, 0, 0), path
    assert host.mode_owner("/etc/sidekiq-fleet") == ("0o755", 0, 0)
    assert "install -d -m 0755 -o root -g root /etc/sidekiq-fleet" in run.calls
    # Every unit in one call, from the verify copies, so that PartOf= and Unit= resolve.
    verify = run.position(
        f"systemd-analyze verify {WORK}/verify/sidekiq.target {WORK}/verify/sidekiq-default@.service "
        f"{WORK}/verify/sidekiq-first-release.path {WORK}/verify/sidekiq-first-release.service"
    )
    # The control script is not installed yet: the copy verify sees runs the staged one, already bash -n'd.
    assert (host.fake_dir / "verified").read_text() == with_env_service(f"{WORK}/verify/control")
    assert (host.fake_dir / "control-mode").read_text() == "700\n", "verify checks that ExecStart can run"
    visudo = run.position(f"visudo -cf {WORK}/sidekiq-fleet-sidekiq")
    first_install = run.position(f"install -o root -g root -m 0644 {WORK}/sidekiq.target {TARGET_NEW}")
    first_rename = run.position(f"mv -f {TARGET_NEW} {TARGET}")
    assert max(visudo, verify) < first_install < first_rename
    assert (
        run.position(f"install -m 0600 {STAGED}/sidekiq-fleet-sidekiq {WORK}/sidekiq-fleet-sidekiq") < visudo
    )
    assert run.position(f"install -m 0700 {WORK}/sidekiqctl {WORK}/verify/control") < verify
    last_install = run.position(f"install -o root -g root -m 0600 {WORK}/sidekiq.env {ENV_NEW}")
    assert last_install < first_rename, "every file is staged beside its target before the first rename"
    assert run.systemctl_changes() == ["systemctl daemon-reload", "systemctl enable --quiet sidekiq.target"]
    assert run.calls[-1] == f"rm -rf {WORK}"
    assert run.stdout.splitlines() == [
        *(f"{SAY}installed {path} ({mode[2:].rjust(4, '0')} root:root)" for path, mode in ALL_FILES.items()),
        f"{SAY}daemon-reload done",
    ]


def with_env_service(control: str) -> str:
    return (
        "# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.\n"
        "# sidekiq-fleet group: sidekiq\n"
        "[Unit]\n"
        "Description=First start of Sidekiq of example staging, once the release exists\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={control} first-release\n"
    )


def test_install_of_unchanged_files_writes_nothing_and_keeps_the_target_enabled(
    host: FakeHost, with_env: Stage
) -> None:
    for path, content in staged(host, with_env).items():
        host.seed(path, content)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.changes() == set()
    assert not [c for c in run.calls if c.startswith(("install -o", "mv "))]
    assert run.systemctl_changes() == ["systemctl enable --quiet sidekiq.target"]
    assert run.stdout == f"{SAY}files unchanged\n"


@pytest.mark.parametrize("changed", [SUDOERS, CONTROL, ENV])
def test_install_of_files_other_than_units_does_not_reload_systemd(
    host: FakeHost, with_env: Stage, changed: str
) -> None:
    contents = staged(host, with_env)
    for path, content in contents.items():
        host.seed(path, content if path != changed else "# an older one\n")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.changes() == {changed}
    assert host.file(changed) == contents[changed]
    assert run.systemctl_changes() == ["systemctl enable --quiet sidekiq.target"]
    assert run.stdout == f"{SAY}installed {changed} ({ALL_FILES[changed][2:].rjust(4, '0')} root:root)\n"


def test_a_process_added_to_the_config_installs_its_template_and_reloads(
    host: FakeHost, existing_values
) -> None:
    before = stage_from(existing_values)
    for file in render_files(before):
        host.seed(file.path, file.content)
    existing_values["sidekiq"] = {"processes": [{"name": "default"}, {"name": "low"}]}
    stage = stage_from(existing_values)
    staged(host, stage)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    # The control script lists its processes, so it changes with them.
    assert host.changes() == {"/etc/systemd/system/sidekiq-low@.service", "/usr/local/sbin/sidekiqctl"}
    assert run.systemctl_changes() == ["systemctl daemon-reload", "systemctl enable --quiet sidekiq.target"]
    assert any(c.startswith("systemd-analyze verify ") and "/sidekiq-low@.service " in c for c in run.calls)


def assert_nothing_installed(host: FakeHost, run: Run, old: dict[str, str], staging: bool = False) -> None:
    """Failed, and every target is as it was; ``staging``: some files were staged beside them first."""
    assert run.returncode == 1
    assert host.changes() == set(), "a file was written, renamed or removed"
    assert {path: host.file(path) for path in old} == old
    assert not [c for c in run.calls if c.startswith("mv ")]
    assert run.systemctl_changes() == []
    assert bool([c for c in run.calls if c.startswith("install -o")]) == staging
    assert run.stdout == ""


OLD_FILES = {
    TEMPLATE: "[Service]\nExecStart=/bin/old\n",
    CONTROL: "#!/bin/bash\nexit 0\n",
    SUDOERS: "# old\n",
    ENV: "OLD=1\n",
}


def seed_old(host: FakeHost) -> None:
    for path, content in OLD_FILES.items():
        host.seed(path, content)


def test_a_sudoers_that_fails_visudo_installs_nothing(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    seed_old(host)
    host.on("visudo", "-cf *", "echo 'sidekiq-fleet-sidekiq:4:30: syntax error' >&2; exit 1")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == (
        f"{SAY}FAILED: the sudoers drop-in failed visudo -cf, nothing installed: "
        "sidekiq-fleet-sidekiq:4:30: syntax error\n"
    )
    assert not run.ran("systemd-analyze"), "install stops at the first failed check"


def test_the_whole_sudoers_configuration_is_checked_with_the_new_drop_in_in_place(
    host: FakeHost, with_env: Stage
) -> None:
    """Issue 15, hole 4: on copies, with /etc/sudoers's includedir pointed at them; the old drop-in
    gives way to the new one, the other files stay."""
    contents = staged(host, with_env)
    seed_old(host)
    host.seed("/etc/sudoers", "Defaults env_reset\n@includedir /etc/sudoers.d\n", 0o440)
    host.seed("/etc/sudoers.d/other-team", "Cmnd_Alias X = /bin/true\n", 0o440)
    # The fake shows what it was given, then fails as visudo does on an alias defined twice.
    host.on(
        "visudo",
        "-cf */sudoers",
        'grep include "$2" >&2; for f in other-team sidekiq-fleet-sidekiq; do '
        'echo "$f: $(head -c 30 "${2%/*}/sudoers.d/$f")" >&2; done; exit 1',
    )
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    new = contents[SUDOERS][:30]
    assert run.stderr == (
        f"{SAY}FAILED: the sudoers configuration with the new drop-in failed visudo -c, nothing installed: "
        f"@includedir {WORK}/sudoers.d\nother-team: Cmnd_Alias X = /bin/true\n"
        f"sidekiq-fleet-sidekiq: {new}\n"
    )
    assert not run.ran("systemd-analyze"), "install stops at the first failed check"


def test_a_sudoers_that_does_not_include_the_drop_in_directory_is_named(
    host: FakeHost, with_env: Stage
) -> None:
    staged(host, with_env)
    host.seed("/etc/sudoers", "Defaults env_reset\n", 0o440)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    note = f"{SAY}note: /etc/sudoers does not include /etc/sudoers.d, so sudo will not read the drop-in"
    assert note in run.stdout.splitlines()


# --- another tool's Sidekiq and broad sudoers lines (issue 18) ------------------------------------

NO_USER_MANAGER = ("systemctl", f"is-active --quiet user@{DEPLOY_UID}.service", "exit 3")
# The seed's unit, serving the app of the default stage.
SEED_UNIT = unit_block(
    "sidekiq.service",
    WorkingDirectory="/var/www/example/staging/current",
    ExecStart="{ argv[]=/bin/bash -lc exec bundle exec sidekiq -e staging ; }",
)
BROAD = "/etc/sudoers.d/deploy-systemctl"
ADOPTED_SUDOERS = "/var/lib/sidekiq-fleet/sidekiq/adopted/sudoers"


def test_an_unadopted_sidekiq_of_the_app_stops_the_install_before_anything_changes(
    host: FakeHost, with_env: Stage
) -> None:
    staged(host, with_env)
    seed_old(host)
    host.on(*NO_USER_MANAGER)
    host.lists_units(SEED_UNIT)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == (
        f"{SAY}FAILED: sidekiq.service (system unit, enabled, active, /etc/systemd/system/sidekiq.service) "
        "runs Sidekiq for /var/www/example/staging beside this group's slots, so two Sidekiqs would "
        "fetch and a stop would not stop; expected sidekiq-fleet:sidekiq.adopt to list sidekiq.service "
        "(taken over with no gap), or stop and disable it; nothing installed\n"
    )


def test_the_install_goes_on_past_an_adopted_unit_and_warns_of_a_broad_sudoers_line(
    host: FakeHost, existing_values
) -> None:
    existing_values["sidekiq"] = {"adopt": ["sidekiq.service"]}
    stage = stage_from(existing_values)
    staged(host, stage)
    host.on(*NO_USER_MANAGER)
    host.lists_units(SEED_UNIT)
    host.seed(BROAD, "deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl\n", 0o440)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == (
        f"{SAY}WARNING: {BROAD}: deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl gives deploy root through "
        "any unit; expected sidekiq-fleet:sidekiq.adoptSudoers to name the file, which this group's drop-in "
        "replaces"
    )
    assert host.file(BROAD) is not None, "only sidekiq.adoptSudoers removes it"


def adopting_sudoers(
    existing_values, scope: str = "system", names: tuple[str, ...] = ("deploy-systemctl",)
) -> Stage:
    existing_values["sidekiq"] = {"adoptSudoers": list(names), "scope": scope}
    return stage_from(existing_values)


def test_adopt_sudoers_checks_the_configuration_without_the_file_then_moves_it_away(
    host: FakeHost, existing_values
) -> None:
    stage = adopting_sudoers(existing_values, names=("deploy-systemctl", "deploy-all"))
    staged(host, stage)
    host.on(*NO_USER_MANAGER)
    host.seed(BROAD, "deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl\n", 0o440)
    host.seed("/etc/sudoers.d/deploy-all", "deploy ALL=(ALL) ALL\n", 0o440)
    host.seed("/etc/sudoers.d/other-team", "deploy ALL=(ALL) ALL\n", 0o440)
    host.on("visudo", "-cf */sudoers", 'ls "${2%/*}/sudoers.d" >"$FAKE_DIR/checked"')
    run = host.run(f"export SUDO_USER=admin\n{scripts.install(stage, render_files(stage), 'web1')}")
    assert run.returncode == 0, run.stderr
    warned = [line for line in run.stdout.splitlines() if "WARNING" in line]
    assert warned == [
        f"{SAY}WARNING: /etc/sudoers.d/other-team: deploy ALL=(ALL) ALL gives deploy root through any unit; "
        "expected sidekiq-fleet:sidekiq.adoptSudoers to name the file, which this group's drop-in replaces"
    ], "the file it removes is not warned of, another one is"
    checked = set((host.fake_dir / "checked").read_text().split())
    assert not {"deploy-systemctl", "deploy-all"} & checked
    assert {"other-team", "sidekiq-fleet-sidekiq"} <= checked
    assert host.file("/etc/sudoers.d/deploy-all") is None
    assert host.file(BROAD) is None
    assert (
        host.file(f"{ADOPTED_SUDOERS}/deploy-systemctl") == "deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl\n"
    )
    assert host.mode_owner(ADOPTED_SUDOERS) == ("0o700", 0, 0)
    assert (
        f"{SAY}removed {BROAD} (sidekiq.adoptSudoers); a copy is in {ADOPTED_SUDOERS}"
        in run.stdout.splitlines()
    )
    # The drop-in is in place before the broad line goes: deploy is never left without its verbs.
    assert run.position(f"mv -f {SUDOERS_NEW} {SUDOERS}") < run.position(
        f"mv -f -- {BROAD} {ADOPTED_SUDOERS}/deploy-systemctl"
    )
    assert run.position(f"mv -f -- {BROAD} {ADOPTED_SUDOERS}/deploy-systemctl") < run.position(
        "runuser -u admin -- sudo -n true"
    )


def test_adopt_sudoers_never_moves_a_link(host: FakeHost, existing_values) -> None:
    stage = adopting_sudoers(existing_values)
    staged(host, stage)
    host.on(*NO_USER_MANAGER)
    host.seed("/etc/sudoers.d/real", "alice ALL=(ALL) ALL\n", 0o440)
    host.seed(BROAD, "")
    host.symlink(BROAD, "/etc/sudoers.d/real")
    run = host.run(f"export SUDO_USER=admin\n{scripts.install(stage, render_files(stage), 'web1')}")
    assert run.returncode == 0, run.stderr
    assert not host.removed(BROAD)
    assert host.file(f"{ADOPTED_SUDOERS}/deploy-systemctl") is None
    assert "adoptSudoers" not in run.stdout


def test_adopt_sudoers_in_user_scope_names_what_sudo_would_not_read(host: FakeHost, existing_values) -> None:
    stage = adopting_sudoers(existing_values, scope="user")
    staged(host, stage)
    host.on(*NO_USER_MANAGER)
    host.seed("/etc/sudoers", "Defaults env_reset\n", 0o440)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    assert f"{SAY}note: /etc/sudoers does not include /etc/sudoers.d, so sudo will not read its files" in (
        run.stdout.splitlines()
    )


def test_a_look_for_other_units_that_fails_installs_nothing(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    seed_old(host)
    # A control script that passes bash -n and verify, then fails when it runs.
    host.seed(f"{STAGED}/sidekiqctl", "#!/bin/bash\necho 'cannot read units' >&2\nexit 3\n", 0o600)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == (
        f"{SAY}FAILED: could not look for other Sidekiq units, nothing installed: cannot read units\n"
    )


def test_adopt_sudoers_puts_the_file_back_when_the_login_would_lose_its_sudo(
    host: FakeHost, existing_values
) -> None:
    stage = adopting_sudoers(existing_values)
    staged(host, stage)
    host.on(*NO_USER_MANAGER)
    host.on("sudo", "-n true", "exit 1")
    host.seed(BROAD, "admin ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    run = host.run(f"export SUDO_USER=admin\n{scripts.install(stage, render_files(stage), 'web1')}")
    assert run.returncode == 1
    assert host.file(BROAD) == "admin ALL=(ALL) NOPASSWD: ALL\n"
    assert host.file(f"{ADOPTED_SUDOERS}/deploy-systemctl") is None
    assert run.stderr == (
        f"{SAY}FAILED: sidekiq-fleet:sidekiq.adoptSudoers: without deploy-systemctl, admin has no "
        "passwordless sudo, which pulumi up needs; put them back; expected only files that the "
        "provisioning user does not need\n"
    )


def test_adopt_sudoers_that_fails_visudo_without_the_file_removes_nothing(
    host: FakeHost, existing_values
) -> None:
    """User scope has no drop-in of its own: the configuration is still checked without the file."""
    stage = adopting_sudoers(existing_values, scope="user")
    staged(host, stage)
    host.on(*NO_USER_MANAGER)
    host.seed(BROAD, "deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl\n", 0o440)
    host.on("visudo", "-cf */sudoers", "echo 'parse error' >&2; exit 1")
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 1
    assert host.file(BROAD) is not None
    assert host.changes() == set()
    assert run.stderr == (
        f"{SAY}FAILED: the sudoers configuration with sidekiq.adoptSudoers' files removed failed visudo -c, "
        "nothing installed: parse error\n"
    )


def test_adopt_sudoers_of_a_file_that_is_gone_says_nothing(host: FakeHost, existing_values) -> None:
    stage = adopting_sudoers(existing_values)
    staged(host, stage)
    host.on(*NO_USER_MANAGER)
    run = host.run(f"export SUDO_USER=admin\n{scripts.install(stage, render_files(stage), 'web1')}")
    assert run.returncode == 0, run.stderr
    assert "adoptSudoers" not in run.stdout
    assert "runuser -u admin -- sudo -n true" not in run.calls


def test_a_control_script_that_fails_bash_n_installs_nothing(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    seed_old(host)
    host.seed(f"{STAGED}/sidekiqctl", "#!/bin/bash\nif then\n", 0o600)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == (
        f"{SAY}FAILED: the control script failed bash -n, nothing installed: "
        f"{WORK}/sidekiqctl: line 2: syntax error near unexpected token `then'\n"
        f"{WORK}/sidekiqctl: line 2: `if then'\n"
    )
    assert not run.ran("systemd-analyze")


def test_a_unit_that_fails_systemd_analyze_installs_nothing(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    seed_old(host)
    host.on("systemd-analyze", "verify *", "echo 'sidekiq.target: bad unit file' >&2; exit 1")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == (
        f"{SAY}FAILED: systemd-analyze verify failed, nothing installed: sidekiq.target: bad unit file\n"
    )


@pytest.mark.parametrize(
    "warning",
    [
        f"{WORK}/verify/sidekiq-default@.service:14: Failed to parse service type, ignoring: notfy",
        # How systemd 252 names a template's problems: as its instance @i.
        "sidekiq-default@i.service: Command /nonexistent/bundle is not executable: No such file or directory",
        f"{WORK}/verify/sidekiq-first-release.path:8: Unknown key name 'PathExist' in section 'Path'",
        "sidekiq.target: Unit sidekiq.target has a bad unit file setting.",
        f"{WORK}/verify/sidekiq-first-release.service:7: Unknown key name 'Typ' in section 'Service'",
    ],
    ids=["template-file", "template-instance", "path", "target", "oneshot"],
)
def test_a_systemd_analyze_warning_about_any_of_our_units_installs_nothing(
    host: FakeHost, with_env: Stage, warning: str
) -> None:
    """verify exits 0 on Type=notfy: its warning about one of our units must stop the install."""
    staged(host, with_env)
    seed_old(host)
    host.on("systemd-analyze", "verify *", f"echo {shlex.quote(warning)} >&2")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == f"{SAY}FAILED: systemd-analyze verify warned, nothing installed: {warning}\n"


def test_systemd_analyze_notes_about_other_units_do_not_stop_the_install(
    host: FakeHost, with_env: Stage
) -> None:
    contents = staged(host, with_env)
    # Another stage's units on the same host share the prefix but not the names.
    note = "/etc/systemd/system/sidekiq-critical-default@.service:3: Unknown key name 'Bar'"
    host.on("systemd-analyze", "verify *", f"echo {shlex.quote(note)} >&2")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.file(TEMPLATE) == contents[TEMPLATE]
    assert f"{SAY}note: systemd-analyze verify reported other units: {note}\n" in run.stdout


def test_install_without_the_run_as_user_installs_nothing(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    host.on("getent", "passwd deploy", "exit 2")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, {})
    assert run.stderr == f"{SAY}FAILED: user deploy does not exist\n"
    assert not run.ran("visudo")


def test_install_checks_the_control_scripts_directory_and_each_parent(
    host: FakeHost, with_env: Stage
) -> None:
    staged(host, with_env)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert [c for c in run.ran("stat") if c.startswith("stat -c %u %a")] == [
        "stat -c %u %a /usr/local/sbin",
        "stat -c %u %a /usr/local",
        "stat -c %u %a /usr",
        "stat -c %u %a /",
    ]


@pytest.mark.parametrize(
    ("directory", "answer"),
    [
        ("/usr/local/sbin", f"echo {DEPLOY_UID} 755"),
        ("/usr/local/sbin", "echo 0 775"),
        ("/usr/local/sbin", "echo 0 757"),
        ("/usr/local", "echo 0 2775"),
        ("/usr", f"echo {DEPLOY_UID} 700"),
    ],
    ids=["owned-by-deploy", "group-writable", "other-writable", "parent-staff-writable", "parent-not-root"],
)
def test_install_refuses_a_control_directory_others_could_write(
    host: FakeHost, with_env: Stage, directory: str, answer: str
) -> None:
    staged(host, with_env)
    seed_old(host)
    host.on("stat", f"-c %u %a {directory}", answer)
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr == (
        f"{SAY}FAILED: {directory} is not root-owned or is writable by others, so deploy could replace "
        "/usr/local/sbin/sidekiqctl; expected root-owned directories without group or other write; "
        "nothing installed\n"
    )


def test_a_missing_control_directory_is_made_root_owned(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    host.on("stat", "-c %u %a /usr/local/sbin", "exit 1")  # as stat answers for a missing path
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert "stat -c %u %a /usr/local" in run.calls, "the parents are still checked"
    assert host.mode_owner(CONTROL) == ("0o755", 0, 0)


def test_install_accepts_root_owned_directories_without_group_or_other_write(
    host: FakeHost, with_env: Stage
) -> None:
    staged(host, with_env)
    host.on("stat", "-c %u %a /usr/local/sbin", "echo 0 1755")  # sticky, setgid and the like are fine
    host.on("stat", "-c %u %a /usr/local", "echo 0 2755")
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr


def test_a_failure_while_staging_removes_the_files_staged_so_far(host: FakeHost, with_env: Stage) -> None:
    staged(host, with_env)
    seed_old(host)
    host.on("install", "-o root -g root -m 0755 *", "exit 1")  # the control script, say a full disk
    run = host.run(scripts.install(with_env, render_files(with_env), "web1"))
    assert run.ran("install")[-1].startswith("install -o root -g root -m 0755")
    assert f"rm -f {TARGET_NEW}" in run.calls
    assert f"rm -f {TEMPLATE_NEW}" in run.calls
    assert_nothing_installed(host, run, OLD_FILES, staging=True)


def test_install_removes_an_env_file_no_longer_configured(host: FakeHost, staging: Stage) -> None:
    host.seed(ENV, "OLD=1\n", 0o600)
    contents = staged(host, staging)
    for path, content in contents.items():
        host.seed(path, content)
    run = host.run(scripts.install(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.changes() == {ENV}
    assert host.removed(ENV)
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
    assert host.changes() == set(ALL_FILES)


def test_user_scope_install_writes_into_the_users_home_and_lingers(host: FakeHost, existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user"}
    existing_values["env"] = {"A": "b"}
    stage = stage_from(existing_values)
    contents = staged(host, stage)
    host.seed(SUDOERS, "# left from system scope\n", 0o440)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    home = "/home/deploy/.config/systemd/user"
    units = [f"{home}/{name}" for name in UNIT_NAMES]
    env = "/home/deploy/.config/sidekiq-fleet/sidekiq.env"
    assert host.changes() == {*units, env, CONTROL, SUDOERS}
    assert host.removed(SUDOERS)
    assert (
        host.file(f"{home}/sidekiq-default@.service")
        == contents["~deploy/.config/systemd/user/sidekiq-default@.service"]
    )
    for unit in units:
        assert host.mode_owner(unit) == ("0o644", DEPLOY_UID, DEPLOY_UID), unit
    assert host.mode_owner(env) == ("0o600", DEPLOY_UID, DEPLOY_UID)
    assert host.mode_owner(CONTROL) == ("0o755", 0, 0), "deploy runs it, root owns it"
    # The user creates the directories in their home, so that ~/.config stays theirs.
    for directory in ("/home/deploy/.config", "/home/deploy/.config/systemd", home):
        assert host.mode_owner(directory) == ("0o755", DEPLOY_UID, DEPLOY_UID), directory
    # Root compares, writes and renames nothing there: deploy does, handed each file on stdin.
    in_home = [c for c in run.calls_by(0) if c.split(" ", 1)[0] in ("cmp", "install", "mv", "mkdir", "rm")]
    assert not [c for c in in_home if "/home/" in c], "root acted in deploy's home"
    assert f"mv -f {home}/.sidekiq.target.sidekiq-fleet-new {home}/sidekiq.target" in run.calls_by(DEPLOY_UID)
    assert [c for c in run.calls if c.startswith(("runuser", "loginctl", "systemctl start"))][-4:] == [
        "loginctl enable-linger deploy",
        f"systemctl start user@{DEPLOY_UID}.service",
        f"{USER_SYSTEMCTL} daemon-reload",
        f"{USER_SYSTEMCTL} enable --quiet sidekiq.target",
    ]


# --- restart: the control script's, run as root (or as deploy for user scope) -----------------

# Stands in for the control script: records its user, environment and arguments, and answers
# with the exit status and stderr a test gives it in /etc/ctl-answer.
RECORDING_CONTROL = """\
#!/bin/bash
{ id -u; printf '%s\\n' "${SIDEKIQ_FLEET_HOST-unset}" "${XDG_RUNTIME_DIR-unset}" "$#" "$@"; } \\
  >/var/lib/ctl-args
[ ! -f /etc/ctl-answer ] || . /etc/ctl-answer
"""


def recorded(host: FakeHost) -> list[str]:
    text = host.file("/var/lib/ctl-args")
    assert text is not None, "the control script never ran"
    return text.splitlines()


def test_restart_runs_the_control_scripts_restart_as_root(host: FakeHost, staging: Stage) -> None:
    host.seed(CONTROL, RECORDING_CONTROL, 0o755)
    run = host.run(scripts.restart(staging, "web1", "v2"))
    assert run.returncode == 0, run.stderr
    assert recorded(host) == ["0", "web1", "unset", "2", "restart", "v2"]
    assert run.ran("systemctl") == [], "the rollout is the control script's, not a second copy here"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_restart_passes_hostile_values_as_data(host: FakeHost, staging: Stage, hostile: str) -> None:
    host.seed(CONTROL, RECORDING_CONTROL, 0o755)
    run = host.run(scripts.restart(staging, hostile, hostile))
    assert run.returncode == 0, run.stderr
    assert not any("PWNED" in path for path in host.changes())
    assert not any(c.startswith("touch") for c in run.calls)
    assert host.file("/var/lib/ctl-args") == f"0\n{hostile}\nunset\n2\nrestart\n{hostile}\n"


def test_a_failed_restart_keeps_the_control_scripts_exit_status_and_message(
    host: FakeHost, staging: Stage
) -> None:
    host.seed(CONTROL, RECORDING_CONTROL, 0o755)
    host.seed("/etc/ctl-answer", f"echo '{SAY}FAILED: start failed' >&2\nexit 1\n")
    run = host.run(scripts.restart(staging, "web1", "v2"))
    assert run.returncode == 1
    assert run.stderr == f"{SAY}FAILED: start failed\n"


def test_user_scope_restart_runs_the_control_script_as_deploy(host: FakeHost, existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user"}
    host.seed(CONTROL, RECORDING_CONTROL, 0o755)
    host.seed("/var/lib/ctl-args", "", 0o666)  # deploy records into it
    run = host.run(scripts.restart(stage_from(existing_values), "web1", "v2"))
    assert run.returncode == 0, run.stderr
    assert run.ran("runuser") == [
        f"runuser -u deploy -- env XDG_RUNTIME_DIR=/run/user/{DEPLOY_UID} SIDEKIQ_FLEET_HOST=web1 "
        "/usr/local/sbin/sidekiqctl restart v2"
    ]
    assert recorded(host) == [str(DEPLOY_UID), "web1", f"/run/user/{DEPLOY_UID}", "2", "restart", "v2"]


# --- uninstall -----------------------------------------------------------------------------

NOTE = "# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.\n"
MARKER = NOTE + "# sidekiq-fleet group: sidekiq\n"
OTHER_MARKER = NOTE + "# sidekiq-fleet group: sidekiq-critical\n"
# On the host besides what the config renders now: a process since removed from the config, the
# legacy unit of before issue 8, and what must stay: another stage's units, a unit of the admin's.
LEFT_OVER = {
    "/etc/systemd/system/sidekiq-low@.service": MARKER + "[Service]\n",
    "/etc/systemd/system/sidekiq.service": NOTE + "[Service]\n",
}
OTHERS = {
    "/etc/systemd/system/sidekiq-critical.target": OTHER_MARKER,
    "/etc/systemd/system/sidekiq-critical-default@.service": OTHER_MARKER,
    "/etc/systemd/system/sidekiq-admin.service": "# sidekiq-fleet group: sidekiq, said in a comment\n",
    "/etc/sidekiq-fleet/critical.env": "A=1\n",
    "/var/lib/sidekiq-fleet/staging/critical/critical.target": "[Unit]\n",
    "/var/lib/sidekiq-fleet/critical/app-version": "v1\n",
}
SLOTS = [
    "sidekiq-default@a.service",
    "sidekiq-default@b.service",
    "sidekiq-first-release.path",
    "sidekiq-first-release.service",
    "sidekiq-low@a.service",
    "sidekiq-low@b.service",
    "sidekiq.target",
    "sidekiq.service",  # the legacy unit, found by its managed note: last
]
UNIT_FILES = [
    "sidekiq-default@.service",
    "sidekiq-first-release.path",
    "sidekiq-first-release.service",
    "sidekiq-low@.service",
    "sidekiq.target",
    "sidekiq.service",
]
DRAINS = [
    "sidekiq-default-drain-a.service",
    "sidekiq-default-drain-b.service",
    "sidekiq-low-drain-a.service",
    "sidekiq-low-drain-b.service",
]
VERSION = "/var/lib/sidekiq-fleet/sidekiq/app-version"
USER_VERSION = "~deploy/.local/state/sidekiq-fleet/sidekiq/app-version"


def installed(host: FakeHost, stage: Stage, extra: dict[str, str] = LEFT_OVER) -> dict[str, str]:
    contents = {file.path: file.content for file in render_files(stage)}
    contents |= {VERSION: "v1\n", **extra}
    for path, content in {**contents, **OTHERS}.items():
        host.seed(path, content)
    for slot in ("sidekiq-default@a.service", "sidekiq.service"):
        host.seed(f"/etc/systemd/system/sidekiq.target.wants/{slot}", "")
    return contents


def test_uninstall_stops_every_unit_of_the_group_then_removes_them(host: FakeHost, with_env: Stage) -> None:
    contents = installed(host, with_env)
    host.on("systemctl", "is-active --quiet *-drain-*", "exit 3")
    run = host.run(scripts.uninstall(with_env, render_files(with_env), "web1"))
    assert run.returncode == 0, run.stderr
    assert run.ran("systemctl") == [
        # Disarmed first, or it would start Sidekiq again as soon as it stopped.
        "systemctl disable --now --quiet sidekiq-first-release.path",
        *(f"systemctl is-active --quiet {drain}" for drain in DRAINS),
        f"systemctl stop {' '.join(SLOTS)}",
        f"systemctl disable --quiet {' '.join(SLOTS)}",
        "systemctl daemon-reload",
        f"systemctl reset-failed {' '.join(SLOTS)}",
    ]
    for path in contents:
        assert host.removed(path), path
    # By the teardown alone: uninstall's own removals are the other files.
    for name in UNIT_FILES:
        assert run.calls.count(f"rm -f /etc/systemd/system/{name}") == 1, name
    assert host.removed("/etc/systemd/system/sidekiq.target.wants/sidekiq-default@a.service")
    assert {path: host.file(path) for path in OTHERS} == OTHERS
    assert not host.removed("/etc/sidekiq-fleet")
    assert not host.removed("/var/lib/sidekiq-fleet")
    assert run.stdout == f"{SAY}stopped and removed {' '.join(UNIT_FILES)}\n{SAY}uninstalled\n"


def test_uninstall_runs_its_own_copy_of_the_control_script(host: FakeHost, staging: Stage) -> None:
    """A host whose install stopped before the control script, or lost it, is uninstalled all the same."""
    contents = installed(host, staging, extra={})
    host.seed(CONTROL, "exit 0\n")  # a stale or broken one is never run
    host.on("systemctl", "is-active *", "exit 3")
    run = host.run(scripts.uninstall(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    assert "systemctl stop sidekiq-default@a.service sidekiq-default@b.service" in " ".join(run.calls)
    for path in contents:
        assert host.removed(path), path


def test_uninstall_stops_a_running_drain_before_the_slots(host: FakeHost, staging: Stage) -> None:
    installed(host, staging, extra={})
    host.on("systemctl", "is-active --quiet sidekiq-default-drain-b.service", "exit 0")
    host.on("systemctl", "is-active --quiet *", "exit 3")
    run = host.run(scripts.uninstall(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    stop_drain = run.position("systemctl stop sidekiq-default-drain-b.service")
    assert stop_drain < run.position(
        "systemctl stop sidekiq-default@a.service sidekiq-default@b.service sidekiq-first-release.path "
        "sidekiq-first-release.service sidekiq.target"
    )
    assert [c for c in run.ran("systemctl") if "drain" in c and "stop" in c] == [
        "systemctl stop sidekiq-default-drain-b.service"
    ]


def test_uninstall_with_nothing_of_the_group_left_stops_nothing(host: FakeHost, staging: Stage) -> None:
    run = host.run(scripts.uninstall(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    assert not [c for c in run.ran("systemctl") if c.startswith("systemctl stop")]
    assert run.stdout == f"{SAY}no unit of the group was installed\n{SAY}uninstalled\n"


def test_uninstall_removes_the_staging_and_state_directories_once_empty(
    host: FakeHost, staging: Stage
) -> None:
    host.seed("/var/lib/sidekiq-fleet/staging/sidekiq/sidekiq-default@.service", "staged\n")
    run = host.run(scripts.uninstall(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    for path in [
        "/var/lib/sidekiq-fleet/staging/sidekiq",
        "/var/lib/sidekiq-fleet/staging",
        "/var/lib/sidekiq-fleet",
    ]:
        assert host.removed(path), path


def test_uninstall_removes_empty_directories_of_sudoers_copies(host: FakeHost, staging: Stage) -> None:
    installed(host, staging)
    run = host.run(f"mkdir -p {ADOPTED_SUDOERS}\n{scripts.uninstall(staging, render_files(staging), 'web1')}")
    assert run.returncode == 0, run.stderr
    assert host.removed("/var/lib/sidekiq-fleet/sidekiq")
    assert "kept" not in run.stdout


def test_uninstall_keeps_the_copies_of_what_sidekiq_adopt_took_over(host: FakeHost, staging: Stage) -> None:
    """pulumi destroy does not bring adopted units back; the README restores them from these copies."""
    installed(host, staging)
    host.seed("/var/lib/sidekiq-fleet/sidekiq/adopted/sidekiq.service", "[Service]\n")
    host.seed(f"{ADOPTED_SUDOERS}/deploy-systemctl", "deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl\n")
    run = host.run(scripts.uninstall(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.file(VERSION) is None
    assert host.file("/var/lib/sidekiq-fleet/sidekiq/adopted/sidekiq.service") == "[Service]\n"
    assert host.file(f"{ADOPTED_SUDOERS}/deploy-systemctl") is not None
    assert (
        f"{SAY}kept /var/lib/sidekiq-fleet/sidekiq/adopted: the units sidekiq.adopt took over "
        "(README: Migrating from capistrano-sidekiq)\n"
    ) in run.stdout


def test_a_legacy_unit_that_is_not_ours_is_left_alone(host: FakeHost, staging: Stage) -> None:
    installed(host, staging, extra={"/etc/systemd/system/sidekiq.service": "[Service]\nExecStart=/bin/x\n"})
    host.on("systemctl", "is-active *", "exit 3")
    run = host.run(scripts.uninstall(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.file("/etc/systemd/system/sidekiq.service") == "[Service]\nExecStart=/bin/x\n"
    assert not [c for c in run.calls if "sidekiq.service" in c.split() and not c.startswith("sudo ")]


JOURNAL = "last 40 journal lines of group sidekiq on host web1:\n    fake journal line\n"


def test_uninstall_keeps_every_file_when_the_stop_fails(host: FakeHost, with_env: Stage) -> None:
    contents = installed(host, with_env)
    host.on("systemctl", "is-active *", "exit 3")
    host.on("systemctl", "stop *", "exit 1")
    run = host.run(scripts.uninstall(with_env, render_files(with_env), "web1"))
    assert run.returncode == 1
    assert host.changes() == set()
    assert {path: host.file(path) for path in contents} == contents
    assert run.stderr == (
        f"{JOURNAL}{SAY}FAILED: could not stop {' '.join(SLOTS)}; every file is in place\n"
        f"{SAY}FAILED: teardown failed: nothing else removed\n"
    )
    assert run.ran("journalctl") == [
        "journalctl -q --no-pager -o short-iso -n 40 " + " ".join(f"-u {unit}" for unit in SLOTS)
    ]


def test_user_scope_uninstall_starts_the_users_manager_first(host: FakeHost, existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user"}
    stage = stage_from(existing_values)
    home = "/home/deploy/.config/systemd/user"
    contents = installed(host, stage, extra={USER_VERSION: "v1\n"})
    host.on("systemctl", "--user is-active *", "exit 3")
    host.on("systemctl", "--user stop *", "exit 1")
    run = host.run(scripts.uninstall(stage, render_files(stage), "web1"))
    assert run.returncode == 1
    units = [u for u in SLOTS if "low" not in u and u != "sidekiq.service"]
    assert run.position(f"systemctl start user@{DEPLOY_UID}.service") < run.position(
        f"systemctl --user stop {' '.join(units)}"
    )
    # deploy's own run, and its own journal.
    assert f"systemctl --user stop {' '.join(units)}" in run.calls_by(DEPLOY_UID)
    assert run.ran("journalctl") == [
        "journalctl --user -q --no-pager -o short-iso -n 40 " + " ".join(f"-u {unit}" for unit in units)
    ]
    assert {path: host.file(path) for path in contents} == contents, "a failed stop removes nothing"
    assert host.file(f"{home}/sidekiq.target") is not None


def test_user_scope_uninstall_removes_the_users_units_and_version(host: FakeHost, existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user"}
    stage = stage_from(existing_values)
    contents = installed(host, stage, extra={USER_VERSION: "v1\n"})
    host.on("systemctl", "--user is-active *", "exit 3")
    run = host.run(scripts.uninstall(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    for path in contents:
        if path.startswith(("~", CONTROL)):
            assert host.removed(path), path
    assert {path: host.file(path) for path in OTHERS} == OTHERS
    # Deploy deletes in its home; root never does.
    assert not [c for c in run.calls_by(0) if "/home/" in c and c.split(" ", 1)[0] in ("rm", "rmdir")]
    assert "rm -f /home/deploy/.config/systemd/user/sidekiq.target" in run.calls_by(DEPLOY_UID)


def test_a_file_whose_name_starts_with_a_dash_is_never_a_unit_to_stop(host: FakeHost, staging: Stage) -> None:
    installed(host, staging, extra={"/etc/systemd/system/--now@.service": MARKER})
    host.on("systemctl", "is-active *", "exit 3")
    run = host.run(scripts.uninstall(staging, render_files(staging), "web1"))
    assert run.returncode == 0, run.stderr
    assert not [c for c in run.ran("systemctl") if "--now@" in c or "--now-drain" in c]
    assert host.file("/etc/systemd/system/--now@.service") == MARKER


def test_user_scope_uninstall_cannot_be_pointed_at_roots_files(host: FakeHost, existing_values) -> None:
    """Issue 15, hole 1, attack C: deploy links its state directory to /var/lib."""
    existing_values["sidekiq"] = {"scope": "user"}
    stage = stage_from(existing_values)
    installed(host, stage, extra={})
    host.seed("/var/lib/sidekiq/kept", "root's\n")
    state = "/home/deploy/.local/state/sidekiq-fleet"
    host.seed(state, "")
    host.symlink(state, "/var/lib")
    host.on("systemctl", "--user is-active *", "exit 3")
    run = host.run(scripts.uninstall(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.file("/var/lib/sidekiq/kept") == "root's\n"
    assert f"{SAY}note: {state}/sidekiq was left in place" in run.stdout.splitlines()
    assert host.removed("/home/deploy/.config/systemd/user/sidekiq.target"), "the rest is uninstalled"


def test_user_scope_install_cannot_be_pointed_at_a_root_directory(host: FakeHost, existing_values) -> None:
    """Issue 15, hole 1, attack A: deploy links its unit directory to /etc/profile.d."""
    existing_values["sidekiq"] = {"scope": "user"}
    stage = stage_from(existing_values)
    staged(host, stage)
    host.seed("/etc/profile.d/site.sh", "# root's\n")
    units = "/home/deploy/.config/systemd/user"
    host.seed(units, "")
    host.symlink(units, "/etc/profile.d")
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 1
    assert f"{SAY}FAILED: could not stage {units}/sidekiq.target as deploy, nothing installed" in run.stderr
    assert "Permission denied" in run.stderr
    assert host.changes() == set(), "nothing installed, nothing left behind"
    # Even cleaning up after the failure, root deletes nothing in deploy's home.
    assert not [c for c in run.calls_by(0) if c.startswith("rm ") and "/home/" in c]


# --- prepare_host and wait_for_port -----------------------------------------------------------


def test_prepare_host_waits_for_cloud_init_and_creates_the_private_staging_dirs(
    host: FakeHost, staging: Stage
) -> None:
    host.on("cloud-init", "status --wait", "exit 2")  # finished with recoverable errors
    host.seed("/etc/ssh/ssh_host_ed25519_key.pub", f"{HOST_ED25519} root@web1\n")
    run = host.run(scripts.prepare_host(staging, "web1"))
    assert run.returncode == 0, run.stderr
    assert run.calls[0] == "cloud-init status --wait"
    # The unit's own directory too: CopyToRemote would make it 0755 and the staged env file 0644.
    for directory in ("/var/lib/sidekiq-fleet/staging", STAGED):
        assert host.mode_owner(directory) == ("0o700", ADMIN_UID, ADMIN_UID), directory
    # The host key, without its comment, for the stack outputs (trust on first use).
    assert run.stdout == f"sidekiq-fleet: host key: {HOST_ED25519}\nsidekiq-fleet: host web1 is ready\n"
    assert scripts.host_key_from(run.stdout) == HOST_ED25519


HOST_ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHFRyfMJQgt0Y4TQt5156vbF2nZe1Ymd9V0dDD4+k30j"


@pytest.mark.parametrize(
    ("stdout", "key"),
    [
        (f"sidekiq-fleet: host key: {HOST_ED25519}\nready\n", HOST_ED25519),
        ("sidekiq-fleet: host web1 is ready\n", None),
        (f"note: sidekiq-fleet: host key: {HOST_ED25519}\n", None),
        ("sidekiq-fleet: host key: ssh-rsa AAAAB3NzaC1yc2E=\n", None),
        (f"sidekiq-fleet: host key: {HOST_ED25519} root@web1\n", None),
        ("sidekiq-fleet: host key: ssh-ed25519 AAAA$(id)\n", None),
        ("sidekiq-fleet: host key: ssh-ed25519 AAAA==\n", "ssh-ed25519 AAAA=="),
    ],
)
def test_host_key_from_reads_only_the_labelled_ed25519_line(stdout: str, key: str | None) -> None:
    assert scripts.host_key_from(stdout) == key


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


# --- sidekiq.authorizedKeys ------------------------------------------------------------------------

AUTHORIZED = "/home/deploy/.ssh/authorized_keys"
TEAM_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJec+JKN0+LG/KBxFYTAQ1mEBOapWbz9bRnU09VQJMAa capistrano"
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHFRyfMJQgt0Y4TQt5156vbF2nZe1Ymd9V0dDD4+k30j alice@laptop"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBy2mPFFsFmtRq1+2n9mmqfzPyrwiHQ5CWcV/6bh3IcZ ci"
BEGIN = "# BEGIN sidekiq-fleet sidekiq: sidekiq.authorizedKeys of pulumi up; edits here are overwritten"
END = "# END sidekiq-fleet sidekiq"


def keyed(existing_values, *keys: str) -> Stage:
    existing_values["sidekiq"] = {"authorizedKeys": list(keys)}
    return stage_from(existing_values)


def test_install_adds_the_keys_block_as_the_user_and_keeps_the_teams_keys(
    host: FakeHost, existing_values
) -> None:
    stage = keyed(existing_values, KEY_A, KEY_B)
    staged(host, stage)
    host.seed(AUTHORIZED, TEAM_KEY + "\n", 0o600)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.file(AUTHORIZED) == f"{TEAM_KEY}\n{BEGIN}\n{KEY_A}\n{KEY_B}\n{END}\n"
    assert host.mode_owner(AUTHORIZED)[0] == "0o600"
    assert f"{SAY}authorized keys of deploy: 2 key(s) of sidekiq.authorizedKeys" in run.stdout
    # Written through runuser (the fake runs it in place), after every file was renamed into place.
    (keys_call,) = [c for c in run.calls if c.startswith("runuser -u deploy -- bash -c ")]
    assert run.calls.index(keys_call) > run.position(f"mv -f {TARGET_NEW} {TARGET}")
    # Another install (each run starts from the seeded host): other keys replace the block only.
    host.seed(AUTHORIZED, f"{TEAM_KEY}\n{BEGIN}\n{KEY_A}\n{END}\n# after\n", 0o600)
    stage = keyed(existing_values, KEY_B)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert host.file(AUTHORIZED) == f"{TEAM_KEY}\n# after\n{BEGIN}\n{KEY_B}\n{END}\n"
    # The same keys change nothing.
    host.seed(AUTHORIZED, f"{TEAM_KEY}\n{BEGIN}\n{KEY_B}\n{END}\n", 0o600)
    renames = len([c for c in run.calls if c.startswith("mv -f /home/deploy/.ssh/")])
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert "authorized keys" not in run.stdout
    # The fake's call log spans the runs: no new rename of the file.
    assert len([c for c in run.calls if c.startswith("mv -f /home/deploy/.ssh/")]) == renames
    # No keys configured any more: the block goes, the team's key stays.
    stage = keyed(existing_values)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.file(AUTHORIZED) == f"{TEAM_KEY}\n"


def test_install_without_keys_creates_no_authorized_keys(host: FakeHost, existing_values) -> None:
    stage = keyed(existing_values)
    staged(host, stage)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.file(AUTHORIZED) is None
    assert host.file("/home/deploy/.ssh") is None


def test_a_key_that_fails_ssh_keygen_installs_nothing(host: FakeHost, existing_values) -> None:
    # No valid ed25519 key: the config refuses it, so it is put past the config, as a config check that
    # missed one would. The host's own ssh-keygen is the last check before the file changes.
    broken = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAAQ=="
    # After a good one: ssh-keygen -l on both at once would skip the bad line and exit 0.
    stage = keyed(existing_values, KEY_A)
    sidekiq = stage.config.sidekiq.model_copy(update={"authorized_keys": [KEY_A, broken]})
    stage = stage.model_copy(update={"config": stage.config.model_copy(update={"sidekiq": sidekiq})})
    staged(host, stage)
    seed_old(host)
    run = host.run(scripts.install(stage, render_files(stage), "web1"))
    assert_nothing_installed(host, run, OLD_FILES)
    assert run.stderr.startswith(
        f"{SAY}FAILED: sidekiq-fleet:sidekiq.authorizedKeys[1]: ssh-keygen -l refused it, nothing installed: "
    )
    assert host.file(AUTHORIZED) is None


def test_uninstall_removes_the_keys_block_only(host: FakeHost, existing_values) -> None:
    stage = keyed(existing_values, KEY_A)
    host.seed(AUTHORIZED, f"{TEAM_KEY}\n{BEGIN}\n{KEY_A}\n{END}\n# the team's note\n", 0o600)
    run = host.run(scripts.uninstall(stage, render_files(stage), "web1"))
    assert run.returncode == 0, run.stderr
    assert host.file(AUTHORIZED) == f"{TEAM_KEY}\n# the team's note\n"
