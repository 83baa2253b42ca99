"""Renderers: the seed's unit and more, sudoers, env files, user data; checked by the real tools."""

from __future__ import annotations

import subprocess
from email import message_from_string
from pathlib import Path

import pytest

from components.config import Stage
from components.render import (
    exec_start,
    files_digest,
    recycle_period,
    render_control,
    render_env_file,
    render_files,
    render_first_release_path,
    render_first_release_service,
    render_recycle_service,
    render_recycle_timer,
    render_sudoers,
    render_target,
    render_unit,
    render_user_data,
)
from tests.conftest import EXISTING_STAGE, stage_from

HEADER = (
    "# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.\n# sidekiq-fleet group: sidekiq\n"
)


def unit_of(stage: Stage, project_dir: Path | None = None, process: int = 0) -> str:
    """The slot template of one process (the first by default)."""
    return render_unit(stage, stage.processes[process], project_dir)


def directives(unit: str) -> dict[tuple[str, str], list[str]]:
    """Parse a unit file into {(section, key): [values]} (systemd allows repeated keys)."""
    found: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in unit.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault((section, key), []).append(value)
    return found


SEED_STAGING = {
    ("Unit", "Description"): "sidekiq-default slot %i",
    ("Unit", "After"): "syslog.target network.target",
    ("Service", "Type"): "notify",
    ("Service", "WatchdogSec"): "10",
    ("Service", "WorkingDirectory"): "/var/www/example/staging/current",
    ("Service", "ExecReload"): "/bin/kill -TSTP $MAINPID",
    ("Service", "Environment"): "MALLOC_ARENA_MAX=2",
    ("Service", "RestartSec"): "1",
    ("Service", "Restart"): "always",
    ("Install", "WantedBy"): "sidekiq.target",
}


def test_unit_has_every_seed_directive_with_the_seed_values(staging: Stage) -> None:
    found = directives(unit_of(staging))
    for key, value in SEED_STAGING.items():
        assert found.get(key) == [value], key
    # The seed's ExecStart, with -t added inside the login shell's command.
    seed_exec = (
        "/bin/bash -lc 'exec /home/deploy/.rbenv/shims/bundle exec sidekiq -e staging -C config/sidekiq.yml"
    )
    assert found[("Service", "ExecStart")] == [seed_exec + " -t 25'"]


def test_stop_timeout_follows_the_sidekiq_timeout(existing_values) -> None:
    existing_values["sidekiq"] = {"timeout": 60}
    found = directives(unit_of(stage_from(existing_values)))
    assert found[("Service", "TimeoutStopSec")] == ["65"]
    assert found[("Service", "ExecStart")][0].endswith(" -t 60'")


def test_watchdog_zero_leaves_the_directive_out(existing_values) -> None:
    existing_values["sidekiq"] = {"watchdogSec": 0}
    assert ("Service", "WatchdogSec") not in directives(unit_of(stage_from(existing_values)))


def test_exec_start_without_login_shell_is_a_plain_command(existing_values) -> None:
    existing_values["sidekiq"] = {"loginShell": False, "command": "/usr/bin/bundle exec sidekiq"}
    stage = stage_from(existing_values)
    assert exec_start(stage, stage.processes[0]) == (
        "/usr/bin/bundle exec sidekiq -e staging -C config/sidekiq.yml -t 25"
    )


def test_user_scope_unit_has_no_user_and_wants_default_target(existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user"}
    existing_values["env"] = {"REDIS_URL": "redis://localhost/1"}
    stage = stage_from(existing_values)
    found = directives(unit_of(stage))
    assert ("Service", "User") not in found
    assert ("Service", "Group") not in found
    assert found[("Install", "WantedBy")] == ["sidekiq.target"]
    assert directives(render_target(stage))[("Install", "WantedBy")] == ["default.target"]
    assert directives(render_first_release_path(stage))[("Install", "WantedBy")] == ["default.target"]
    assert found[("Service", "EnvironmentFile")] == ["%h/.config/sidekiq-fleet/sidekiq.env"]
    files = [(f.role, f.path, f.mode, f.owner, f.group) for f in render_files(stage)]
    assert files == [
        ("unit", "~deploy/.config/systemd/user/sidekiq.target", "0644", "deploy", "deploy"),
        ("unit", "~deploy/.config/systemd/user/sidekiq-default@.service", "0644", "deploy", "deploy"),
        ("unit", "~deploy/.config/systemd/user/sidekiq-first-release.path", "0644", "deploy", "deploy"),
        ("unit", "~deploy/.config/systemd/user/sidekiq-first-release.service", "0644", "deploy", "deploy"),
        # Still root's: deploy runs it and must not be able to change it.
        ("control", "/usr/local/sbin/sidekiqctl", "0755", "root", "root"),
        ("env", "~deploy/.config/sidekiq-fleet/sidekiq.env", "0600", "deploy", "deploy"),
    ], "a user unit needs no sudoers drop-in"


def test_files_for_system_scope_have_root_owners_and_modes(existing_values) -> None:
    existing_values["env"] = {"REDIS_URL": "redis://localhost/1"}
    rendered = render_files(stage_from(existing_values))
    staging = "/var/lib/sidekiq-fleet/staging/sidekiq"
    assert [(f.role, f.path, f.mode, f.owner, f.group, f.staged_path, f.secret) for f in rendered] == [
        ("unit", "/etc/systemd/system/sidekiq.target", "0644", "root", "root",
         f"{staging}/sidekiq.target", False),
        ("unit", "/etc/systemd/system/sidekiq-default@.service", "0644", "root", "root",
         f"{staging}/sidekiq-default@.service", False),
        ("unit", "/etc/systemd/system/sidekiq-first-release.path", "0644", "root", "root",
         f"{staging}/sidekiq-first-release.path", False),
        ("unit", "/etc/systemd/system/sidekiq-first-release.service", "0644", "root", "root",
         f"{staging}/sidekiq-first-release.service", False),
        ("control", "/usr/local/sbin/sidekiqctl", "0755", "root", "root", f"{staging}/sidekiqctl", False),
        ("sudoers", "/etc/sudoers.d/sidekiq-fleet-sidekiq", "0440", "root", "root",
         f"{staging}/sidekiq-fleet-sidekiq", False),
        ("env", "/etc/sidekiq-fleet/sidekiq.env", "0600", "root", "root", f"{staging}/sidekiq.env", True),
    ]  # fmt: skip
    assert "." not in Path(rendered[5].path).name, "sudo skips sudoers.d files with a dot"
    assert directives(rendered[1].content)[("Service", "EnvironmentFile")] == [
        "/etc/sidekiq-fleet/sidekiq.env"
    ]
    by_path = {f.path: f.content for f in rendered}
    assert by_path["/usr/local/sbin/sidekiqctl"] == render_control(stage_from(existing_values))


def test_the_control_script_knows_the_units_to_adopt_and_where_the_app_lives(existing_values) -> None:
    existing_values["sidekiq"] = {
        "unitName": "jobs",
        "appDir": "/srv/shop/current",
        "adopt": ["sidekiq.service", "shop_sidekiq_staging.low.service"],
    }
    lines = render_control(stage_from(existing_values)).splitlines()
    assert "adopt=( sidekiq.service shop_sidekiq_staging.low.service )" in lines
    assert "app_root=/srv/shop" in lines
    assert 'adopted_drain_unit() { printf jobs-adopted-drain-%s.service "$1"; }' in lines
    assert "adopt=( )" in render_control(stage_from({**existing_values, "sidekiq": {}})).splitlines()


def test_env_file_quotes_values_for_systemd() -> None:
    text = render_env_file({"B": 'say "hi" \\ $(id) `x`', "A": "plain value"})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ['A="plain value"', 'B="say \\"hi\\" \\\\ $(id) `x`"']


# sudo matches the arguments exactly: `status` allows `sidekiqctl status` and refuses
# `sidekiqctl status x` (checked with sudo 1.9.13, where `status ""` would demand a literal "").
STAGING_SUDOERS = """\
# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.
# deploy may run /usr/local/sbin/sidekiqctl with these verbs and no other argument, nothing else.
# Not `NOPASSWD: /usr/bin/systemctl`: that lets deploy start any unit, which is root.
Cmnd_Alias SIDEKIQ_FLEET_SIDEKIQ_F52E4CD0B298 = \\
    /usr/local/sbin/sidekiqctl status, \\
    /usr/local/sbin/sidekiqctl quiet, \\
    /usr/local/sbin/sidekiqctl stop, \\
    /usr/local/sbin/sidekiqctl start, \\
    /usr/local/sbin/sidekiqctl restart, \\
    /usr/local/sbin/sidekiqctl logs, \\
    /usr/local/sbin/sidekiqctl follow, \\
    /usr/local/sbin/sidekiqctl sums
deploy ALL=(root) NOPASSWD: SIDEKIQ_FLEET_SIDEKIQ_F52E4CD0B298
"""


def test_sudoers_is_exactly_the_drop_in_we_mean(staging: Stage) -> None:
    """Written out here, not derived from sudo_commands(): a broader grant anywhere fails."""
    assert render_sudoers(staging) == STAGING_SUDOERS


def test_sudoers_names_the_configured_user_and_unit(existing_values) -> None:
    existing_values["sidekiq"] = {"unitName": "sidekiq-critical", "user": "app_runner"}
    text = render_sudoers(stage_from(existing_values))
    rules = [line for line in text.splitlines() if not line.startswith("#")]
    assert rules[0] == "Cmnd_Alias SIDEKIQ_FLEET_SIDEKIQ_CRITICAL_84CB65B67956 = \\"
    assert rules[-1] == "app_runner ALL=(root) NOPASSWD: SIDEKIQ_FLEET_SIDEKIQ_CRITICAL_84CB65B67956"
    commands = [line.strip().removesuffix(", \\") for line in rules[1:-1]]
    assert commands == [
        f"/usr/local/sbin/sidekiq-criticalctl {verb}"
        for verb in ("status", "quiet", "stop", "start", "restart", "logs", "follow", "sums")
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"sidekiq": {"unitName": "sidekiq-critical", "user": "app_runner"}},
        {"sidekiq": {"unitName": "worker_2"}},
    ],
    ids=["default", "dashed-unit", "underscored-unit"],
)
def test_every_rendered_sudoers_passes_visudo(existing_values, tmp_path: Path, changes) -> None:
    existing_values.update(changes)
    path = tmp_path / "sudoers"
    path.write_text(render_sudoers(stage_from(existing_values)))
    result = subprocess.run(["visudo", "-cf", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_drop_ins_of_unit_names_that_differ_only_in_case_or_dash_pass_visudo_together(
    existing_values, tmp_path: Path
) -> None:
    """Issue 15, hole 4: all three mapped to SIDEKIQ_FLEET_SIDEKIQ_A, and sudo refuses an alias twice."""
    includes = []
    for name in ("sidekiq-a", "sidekiq_a", "SIDEKIQ-A"):
        existing_values["sidekiq"] = {"unitName": name}
        path = tmp_path / f"sidekiq-fleet-{name}"
        path.write_text(render_sudoers(stage_from(existing_values)))
        includes.append(f"@include {path}\n")
    main = tmp_path / "sudoers"
    main.write_text("".join(includes))
    result = subprocess.run(["visudo", "-cf", str(main)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check is real: the same alias in two of them fails.
    (tmp_path / "sidekiq-fleet-SIDEKIQ-A").write_text((tmp_path / "sidekiq-fleet-sidekiq-a").read_text())
    assert subprocess.run(["visudo", "-cf", str(main)], capture_output=True).returncode != 0


def test_visudo_rejects_a_broken_file(tmp_path: Path) -> None:
    """The checker the install relies on really fails on bad input."""
    path = tmp_path / "sudoers"
    path.write_text("deploy ALL=(root) NOPASSWD /usr/bin/systemctl\n")
    assert subprocess.run(["visudo", "-cf", str(path)], capture_output=True).returncode != 0


def _verify(tmp_path: Path, unit_text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "sidekiq.service"
    path.write_text(unit_text)
    return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)


def test_rendered_unit_passes_systemd_analyze_verify(staging: Stage, tmp_path: Path) -> None:
    result = _verify(tmp_path, unit_of(staging).replace("/home/deploy/.rbenv/shims/", ""))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_systemd_analyze_warns_on_a_bad_value(staging: Stage, tmp_path: Path) -> None:
    """verify exits 0 on Type=notfy; only stderr tells, which is why install reads it."""
    result = _verify(tmp_path, unit_of(staging).replace("Type=notify", "Type=notfy"))
    assert "notfy" in result.stderr


def test_a_stage_can_use_its_own_unit_template(existing_values, tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "mine.service.j2").write_text(
        "[Service]\nExecStart={{ exec_start }}\nTimeoutStopSec={{ timeout_stop_sec }}\n"
    )
    existing_values["sidekiq"] = {"unitTemplate": "templates/mine.service.j2"}
    text = unit_of(stage_from(existing_values), project_dir=tmp_path)
    assert text.startswith(HEADER + "[Service]\nExecStart=/bin/bash -lc 'exec bundle exec sidekiq")
    assert "TimeoutStopSec=30" in text


def test_a_template_with_an_unknown_variable_fails(existing_values, tmp_path: Path) -> None:
    import jinja2

    (tmp_path / "bad.j2").write_text("ExecStart={{ no_such_value }}\n")
    existing_values["sidekiq"] = {"unitTemplate": "bad.j2"}
    with pytest.raises(jinja2.UndefinedError):
        unit_of(stage_from(existing_values), project_dir=tmp_path)


def test_digest_changes_with_content_and_is_stable(existing_values) -> None:
    first = files_digest(render_files(stage_from(existing_values)))
    assert first == files_digest(render_files(stage_from(existing_values)))
    existing_values["sidekiq"] = {"watchdogSec": 20}
    assert files_digest(render_files(stage_from(existing_values))) != first
    existing_values["appVersion"] = "other"
    existing_values["sidekiq"] = {}
    assert files_digest(render_files(stage_from(existing_values))) == first, (
        "a version bump alone must not re-install files"
    )


def _ec2_values(existing_values, **hosts_extra) -> dict:
    existing_values["hosts"] = {
        "provider": "ec2",
        "count": 1,
        "subnetIds": ["subnet-0a1b2c3d"],
        "sshIngressCidrs": ["203.0.113.0/24"],
        "keyName": "k",
        **hosts_extra,
    }
    return existing_values


def test_user_data_creates_the_deploy_user(existing_values) -> None:
    text = render_user_data(stage_from(_ec2_values(existing_values)))
    assert text.startswith("#cloud-config\n")
    assert "  - default\n  - name: deploy\n" in text


def test_user_data_merges_the_teams_cloud_init_stably(existing_values) -> None:
    values = _ec2_values(existing_values, cloudInit="#!/bin/sh\necho hello\n")
    text = render_user_data(stage_from(values))
    assert text == render_user_data(stage_from(values)), "user data must not change between runs"
    parts = [p for p in message_from_string(text).walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/cloud-config", "text/x-shellscript"]
    assert 'Content-Type: text/x-shellscript; charset="us-ascii"\n' in text
    assert "echo hello" in parts[1].get_payload()


USER_DATA_BOUNDARY = "sidekiq-fleet-d919a4606056f39c903f02ced95d5390"
OUR_CLOUD_CONFIG = """\
#cloud-config
# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.
users:
  - default
  - name: deploy
    shell: /bin/bash
    lock_passwd: true
"""


def test_user_data_with_the_teams_cloud_config_reads_exactly(existing_values) -> None:
    """A fixed boundary from the content, our part first, theirs appended to our lists."""
    values = _ec2_values(existing_values, cloudInit="#cloud-config\npackages: [git]\n")
    part = (
        'Content-Type: text/cloud-config; charset="us-ascii"\nMIME-Version: 1.0\n'
        "Content-Transfer-Encoding: 7bit\n"
    )
    assert render_user_data(stage_from(values)) == (
        f'Content-Type: multipart/mixed; boundary="{USER_DATA_BOUNDARY}"\nMIME-Version: 1.0\n\n'
        f"--{USER_DATA_BOUNDARY}\n{part}\n{OUR_CLOUD_CONFIG}\n"
        f"--{USER_DATA_BOUNDARY}\n{part}Merge-Type: list(append)+dict(no_replace,recurse_list)+str()\n\n"
        "#cloud-config\npackages: [git]\n\n"
        f"--{USER_DATA_BOUNDARY}--\n"
    )


def test_user_data_without_cloud_init_is_ours_alone(existing_values) -> None:
    assert render_user_data(stage_from(_ec2_values(existing_values))) == OUR_CLOUD_CONFIG
    # Existing hosts take no user data; asked anyway, ours is all there is.
    assert render_user_data(stage_from(EXISTING_STAGE)) == OUR_CLOUD_CONFIG


def test_env_file_reads_exactly() -> None:
    assert render_env_file({"B": "x", "A": "y"}) == (
        '# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.\nA="y"\nB="x"\n'
    )


EVERY_VARIABLE = (
    "{{ managed_note }}|{{ app }}|{{ stage }}|{{ environment }}|{{ unit_name }}|{{ unit }}|{{ app_dir }}|"
    "{{ scope }}|{{ user }}|{{ group }}|{{ exec_start }}|{{ env_file }}|{{ watchdog_sec }}|"
    "{{ restart_sec }}|{{ timeout }}|{{ timeout_stop_sec }}|{{ wanted_by }}|{{ process }}|{{ config_file }}|"
    "{{ target }}\n"
)


def test_a_unit_template_gets_every_documented_variable(existing_values, tmp_path: Path) -> None:
    (tmp_path / "all.j2").write_text(EVERY_VARIABLE)
    existing_values["sidekiq"] = {
        "unitTemplate": "all.j2",
        "unitName": "worker",
        "group": "www",
        "processes": [{"name": "default"}, {"name": "low", "configFile": "config/low.yml"}],
    }
    existing_values["env"] = {"A": "b"}
    files = render_files(stage_from(existing_values, name="prod"), project_dir=tmp_path)
    header = HEADER.replace("group: sidekiq", "group: worker")
    assert files[2].path == "/etc/systemd/system/worker-low@.service"
    assert files[2].content.startswith(header)
    assert files[2].content.removeprefix(header).split("|") == [
        "Managed by sidekiq-fleet (pulumi up); local edits are overwritten.",
        "example",
        "prod",
        "prod",
        "worker",
        "worker-low@.service",
        "/var/www/example/prod/current",
        "system",
        "deploy",
        "www",
        "/bin/bash -lc 'exec bundle exec sidekiq -e prod -C config/low.yml -t 25'",
        "/etc/sidekiq-fleet/worker.env",
        "10",
        "1",
        "25",
        "30",
        "worker.target",
        "low",
        "config/low.yml",
        "worker.target\n",
    ]


def test_a_unit_template_without_env_gets_none_for_the_env_file(existing_values, tmp_path: Path) -> None:
    (tmp_path / "env.j2").write_text("{{ env_file }}\n")
    existing_values["sidekiq"] = {"unitTemplate": "env.j2"}
    assert unit_of(stage_from(existing_values), project_dir=tmp_path) == HEADER + "None\n"


def test_block_tags_in_a_unit_template_leave_no_blank_or_indent(existing_values, tmp_path: Path) -> None:
    (tmp_path / "tags.j2").write_text(
        "[Service]\n    {% if watchdog_sec %}\nWatchdogSec={{ watchdog_sec }}\n"
        "    {% endif %}\nRestart=always\n"
    )
    existing_values["sidekiq"] = {"unitTemplate": "tags.j2"}
    text = unit_of(stage_from(existing_values), project_dir=tmp_path)
    assert text == HEADER + "[Service]\nWatchdogSec=10\nRestart=always\n"


def test_the_projects_template_wins_over_a_built_in_one_of_the_same_name(
    existing_values, tmp_path: Path
) -> None:
    (tmp_path / "sidekiq.service.j2").write_text("[Service]\nExecStart=/bin/true\n")
    existing_values["sidekiq"] = {"unitTemplate": "sidekiq.service.j2"}
    assert (
        unit_of(stage_from(existing_values), project_dir=tmp_path)
        == HEADER + "[Service]\nExecStart=/bin/true\n"
    )


# --- hardening ----------------------------------------------------------------------------------

# The unit as it was before sidekiq.hardening existed, for the seed's staging setup.
# ExecStart is one line; the backslash-newline in this literal only keeps it readable.
UNIT_WITHOUT_SANDBOX = """\
# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.
# sidekiq-fleet group: sidekiq
# Sidekiq staging worker default for example; see Sidekiq's examples/systemd/sidekiq.service.
# A template: its instances sidekiq-default@a and @b are the two slots of the process.
[Unit]
Description=sidekiq-default slot %i
After=syslog.target network.target
# Stopping or restarting sidekiq.target stops or restarts this slot too.
PartOf=sidekiq.target
# Retry for as long as Redis is down at start instead of giving up after 5 starts in 10 s.
StartLimitIntervalSec=0

[Service]
Type=notify
# Let sidekiqswarm children notify too, as upstream does.
NotifyAccess=all
WatchdogSec=10
WorkingDirectory=/var/www/example/staging/current
User=deploy
Group=deploy
ExecStart=/bin/bash -lc 'exec /home/deploy/.rbenv/shims/bundle exec sidekiq -e staging -C config/sidekiq.yml \
-t 25'
# `systemctl reload` quiets Sidekiq, as capistrano-sidekiq's quiet step expects.
ExecReload=/bin/kill -TSTP $MAINPID
Environment=MALLOC_ARENA_MAX=2
# Sidekiq needs its -t timeout (25 s) plus 5 s to push unfinished jobs back to Redis.
TimeoutStopSec=30
SyslogIdentifier=sidekiq-default@%i
RestartSec=1
Restart=always

[Install]
# Enabling a slot links it into sidekiq.target.wants: the one enabled slot is the one a boot starts.
WantedBy=sidekiq.target
"""

# Every sandbox directive of `strict` in system scope, as measured on a host (docs/hosts.md, "What the
# unit may do").
STRICT_SYSTEM = {
    "NoNewPrivileges": ["yes"],
    "CapabilityBoundingSet": [""],
    "PrivateUsers": ["yes"],
    "PrivateTmp": ["yes"],
    "PrivateDevices": ["yes"],
    "ProtectSystem": ["strict"],
    "ReadWritePaths": [
        "-/var/www/example/staging/current/tmp -/var/www/example/staging/current/log "
        "-/var/www/example/staging/shared"
    ],
    "ProtectHome": ["read-only"],
    "ProtectKernelTunables": ["yes"],
    "ProtectKernelModules": ["yes"],
    "ProtectKernelLogs": ["yes"],
    "ProtectControlGroups": ["yes"],
    "ProtectClock": ["yes"],
    "ProtectHostname": ["yes"],
    "ProtectProc": ["invisible"],
    "RestrictNamespaces": ["yes"],
    "RestrictRealtime": ["yes"],
    "RestrictSUIDSGID": ["yes"],
    "LockPersonality": ["yes"],
    "RemoveIPC": ["yes"],
    "UMask": ["0027"],
    "SystemCallArchitectures": ["native"],
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    "SystemCallErrorNumber": ["EPERM"],
    "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
}
# What a user manager cannot apply (measured: the first stops the unit, the others do nothing).
SYSTEM_ONLY = {"ProtectKernelLogs", "ProtectProc", "RemoveIPC"}


def test_hardening_off_renders_the_unit_without_a_sandbox_byte_for_byte(existing_values) -> None:
    existing_values["sidekiq"] = {
        "command": "/home/deploy/.rbenv/shims/bundle exec sidekiq",
        "hardening": "off",
    }
    assert unit_of(stage_from(existing_values)) == UNIT_WITHOUT_SANDBOX


def test_strict_is_the_default_and_adds_every_sandbox_directive(staging: Stage) -> None:
    unit = unit_of(staging)
    found = directives(unit)
    for key, values in STRICT_SYSTEM.items():
        assert found.get(("Service", key)) == values, key
    # Nothing of the unit without a sandbox is lost, the start limit among it.
    before = directives(UNIT_WITHOUT_SANDBOX)
    assert {key: found[key] for key in before} == before


def test_the_default_unit_has_exactly_these_directives(staging: Stage) -> None:
    """Nothing more, nothing less: an extra User=root or a dropped Restart= fails here."""
    sandbox = {("Service", key): values for key, values in STRICT_SYSTEM.items()}
    assert directives(unit_of(staging)) == {**directives(UNIT_WITHOUT_SANDBOX), **sandbox}


def test_each_sandbox_directive_has_a_comment_saying_what_it_blocks(staging: Stage) -> None:
    lines = unit_of(staging).splitlines()
    pairs = zip(lines, lines[1:], strict=False)
    commented = [line.partition("=")[0] for prev, line in pairs if prev.startswith("# ")]
    for key in STRICT_SYSTEM:
        assert key in commented, key


def test_user_scope_leaves_out_what_a_user_manager_cannot_apply(existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user"}
    unit = unit_of(stage_from(existing_values))
    found = directives(unit)
    for key, values in STRICT_SYSTEM.items():
        assert found.get(("Service", key)) == (None if key in SYSTEM_ONLY else values), key
    assert "ProtectKernelLogs=, ProtectProc= and RemoveIPC= are left out" in unit
    # A user manager's services inherit its keyring unless told otherwise (systemd.exec(5)).
    assert found[("Service", "KeyringMode")] == ["private"]
    assert set(found) - {("Service", key) for key in STRICT_SYSTEM} - set(
        directives(UNIT_WITHOUT_SANDBOX)
    ) == {("Service", "KeyringMode")}


def test_configured_writable_paths_replace_the_defaults_and_must_exist(existing_values) -> None:
    existing_values["sidekiq"] = {"writablePaths": ["/srv/uploads", "/var/www/example/staging/shared"]}
    found = directives(unit_of(stage_from(existing_values)))
    assert found[("Service", "ReadWritePaths")] == ["/srv/uploads /var/www/example/staging/shared"]


def test_defaults_without_capistrano_layout_have_no_shared(existing_values) -> None:
    existing_values["sidekiq"] = {"appDir": "/srv/app"}
    found = directives(unit_of(stage_from(existing_values)))
    assert found[("Service", "ReadWritePaths")] == ["-/srv/app/tmp -/srv/app/log"]


@pytest.mark.parametrize("scope", ["system", "user"])
def test_strict_unit_passes_systemd_analyze_verify(existing_values, tmp_path: Path, scope: str) -> None:
    existing_values["sidekiq"] = {"scope": scope, "writablePaths": ["/srv/uploads"]}
    result = _verify(tmp_path, unit_of(stage_from(existing_values)))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


# --- the stage's target, the first-release units, several processes ----------------------------

TARGET = """\
# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.
# sidekiq-fleet group: sidekiq
[Unit]
Description=Sidekiq of example staging: every process, one slot each
# The slots are linked in with WantedBy=; PartOf= makes stopping this target stop each one.

[Install]
WantedBy=multi-user.target
"""

FIRST_RELEASE_PATH = """\
# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.
# sidekiq-fleet group: sidekiq
[Unit]
Description=Start Sidekiq of example staging when its first release lands

[Path]
# Enabled only while the host has no release; the service disarms it, so that stop stays stop.
PathExists=/var/www/example/staging/current/config/sidekiq.yml
Unit=sidekiq-first-release.service

[Install]
WantedBy=multi-user.target
"""

FIRST_RELEASE_SERVICE = """\
# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.
# sidekiq-fleet group: sidekiq
[Unit]
Description=First start of Sidekiq of example staging, once the release exists

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/sidekiqctl first-release
"""


def test_target_reads_exactly(staging: Stage) -> None:
    assert render_target(staging) == TARGET


def test_first_release_units_read_exactly(staging: Stage) -> None:
    assert render_first_release_path(staging) == FIRST_RELEASE_PATH
    assert render_first_release_service(staging) == FIRST_RELEASE_SERVICE


def test_first_release_path_watches_the_first_process_file_and_the_group_names_follow(
    existing_values,
) -> None:
    existing_values["sidekiq"] = {
        "unitName": "worker",
        "appDir": "/srv/app/current",
        "processes": [{"name": "mail", "configFile": "config/mail.yml"}, {"name": "default"}],
    }
    stage = stage_from(existing_values)
    path = directives(render_first_release_path(stage))
    assert path[("Path", "PathExists")] == ["/srv/app/current/config/mail.yml"]
    assert path[("Path", "Unit")] == ["worker-first-release.service"]
    service = directives(render_first_release_service(stage))
    assert service[("Service", "ExecStart")] == ["/usr/local/sbin/workerctl first-release"]
    existing_values["sidekiq"]["processes"][0]["configFile"] = "/etc/sidekiq/mail.yml"
    path = directives(render_first_release_path(stage_from(existing_values)))
    assert path[("Path", "PathExists")] == ["/etc/sidekiq/mail.yml"], "an absolute file is taken as is"


def test_each_process_gets_its_own_template_with_its_config_file(existing_values) -> None:
    existing_values["sidekiq"] = {
        "unitName": "worker",
        "configFile": "config/main.yml",
        "processes": [{"name": "default"}, {"name": "low", "configFile": "/etc/sidekiq/low.yml"}],
    }
    files = render_files(stage_from(existing_values))
    units = {f.path.rsplit("/", 1)[1]: f.content for f in files if f.role == "unit"}
    assert list(units) == [
        "worker.target",
        "worker-default@.service",
        "worker-low@.service",
        "worker-first-release.path",
        "worker-first-release.service",
    ]
    for name, process, config in (
        ("default", "default", "config/main.yml"),
        ("low", "low", "/etc/sidekiq/low.yml"),
    ):
        found = directives(units[f"worker-{name}@.service"])
        assert found[("Service", "ExecStart")] == [
            f"/bin/bash -lc 'exec bundle exec sidekiq -e staging -C {config} -t 25'"
        ]
        assert found[("Unit", "Description")] == [f"worker-{process} slot %i"]
        assert found[("Service", "SyslogIdentifier")] == [f"worker-{process}@%i"]
        assert found[("Unit", "PartOf")] == ["worker.target"]
        assert found[("Install", "WantedBy")] == ["worker.target"]
    for name, text in units.items():
        assert text.splitlines()[:2] == [
            "# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.",
            "# sidekiq-fleet group: worker",
        ], name


@pytest.mark.parametrize("scope", ["system", "user"])
def test_every_unit_passes_systemd_analyze_verify_together(
    existing_values, tmp_path: Path, scope: str
) -> None:
    """As install does it: all units in one call, the control script's path pointed at a stand-in."""
    existing_values["sidekiq"] = {"scope": scope, "processes": [{"name": "default"}, {"name": "low"}]}
    control = tmp_path / "control"
    control.write_text("#!/bin/sh\n")
    control.chmod(0o700)
    paths = []
    for file in render_files(stage_from(existing_values)):
        if file.role == "unit":
            path = tmp_path / file.path.rsplit("/", 1)[1]
            path.write_text(file.content.replace("/usr/local/sbin/sidekiqctl ", f"{control} "))
            paths.append(str(path))
    assert [p.rsplit("/", 1)[1] for p in paths][1:3] == ["sidekiq-default@.service", "sidekiq-low@.service"]
    result = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_systemd_analyze_checks_a_template_as_its_instance(staging: Stage, tmp_path: Path) -> None:
    """systemd 252 instantiates G-P@.service as G-P@i.service, so install must look for that name too."""
    path = tmp_path / "sidekiq-default@.service"
    path.write_text(unit_of(staging).replace("ExecStart=/bin/bash", "ExecStart=/nonexistent/bash"))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert "sidekiq-default@i.service: Command /nonexistent/bash is not executable" in result.stderr


# --- memory limits and recycling (issue 19) ------------------------------------------------------

MEMORY_COMMENT = "# Memory limits per slot (MiB); no swap, so a limit is the process's real memory.\n"
OOM_COMMENT = (
    "# A kill by the kernel's OOM killer restarts Sidekiq (Restart=always), not a stop of the unit.\n"
)


def unit_with_limits(existing_values, **limits: int) -> str:
    """The unit without a sandbox (as UNIT_WITHOUT_SANDBOX) with the given sidekiq memory keys."""
    existing_values["sidekiq"] = {
        "command": "/home/deploy/.rbenv/shims/bundle exec sidekiq",
        "hardening": "off",
        **limits,
    }
    return unit_of(stage_from(existing_values))


def with_block(block: str) -> str:
    """UNIT_WITHOUT_SANDBOX with BLOCK right after SyslogIdentifier=."""
    anchor = "SyslogIdentifier=sidekiq-default@%i\n"
    assert UNIT_WITHOUT_SANDBOX.count(anchor) == 1
    return UNIT_WITHOUT_SANDBOX.replace(anchor, anchor + block)


@pytest.mark.parametrize(
    ("limits", "block"),
    [
        pytest.param(
            {"memoryHigh": 768, "memoryMax": 1024},
            f"{MEMORY_COMMENT}MemoryHigh=768M\nMemoryMax=1024M\n{OOM_COMMENT}OOMPolicy=continue\nMemorySwapMax=0\n",
            id="both",
        ),
        pytest.param(
            {"memoryHigh": 768}, f"{MEMORY_COMMENT}MemoryHigh=768M\nMemorySwapMax=0\n", id="high-only"
        ),
        pytest.param(
            {"memoryMax": 64},
            f"{MEMORY_COMMENT}MemoryMax=64M\n{OOM_COMMENT}OOMPolicy=continue\nMemorySwapMax=0\n",
            id="max-only",
        ),
        pytest.param({}, "", id="none"),
        # Recycling alone sets no limit in the unit: the control script watches the memory.
        pytest.param({"recycleAboveMiB": 512, "recycleCheckSeconds": 10}, "", id="recycling-only"),
    ],
)
def test_memory_lines_read_exactly_and_only_those_set(existing_values, limits, block) -> None:
    assert unit_with_limits(existing_values, **limits) == with_block(block)


def test_memory_directives_of_the_sandboxed_unit(existing_values) -> None:
    existing_values["sidekiq"] = {"memoryHigh": 1000, "memoryMax": 1500}
    found = directives(unit_of(stage_from(existing_values)))
    memory = {key: values for key, values in found.items() if key[1].startswith(("Memory", "OOM"))}
    assert memory == {
        ("Service", "MemoryHigh"): ["1000M"],
        ("Service", "MemoryMax"): ["1500M"],
        ("Service", "OOMPolicy"): ["continue"],
        ("Service", "MemorySwapMax"): ["0"],
    }


def test_each_process_template_carries_its_own_limits(existing_values) -> None:
    existing_values["sidekiq"] = {
        "memoryHigh": 768,
        "memoryMax": 1024,
        "processes": [
            {"name": "default"},
            {"name": "low", "memoryHigh": 256, "memoryMax": 512},
            {"name": "mail", "memoryMax": 4096},
        ],
    }
    units = {
        f.path.rsplit("/", 1)[1]: directives(f.content)
        for f in render_files(stage_from(existing_values))
        if f.path.endswith("@.service")
    }
    found = {
        name: (unit[("Service", "MemoryHigh")], unit[("Service", "MemoryMax")])
        for name, unit in units.items()
    }
    assert found == {
        "sidekiq-default@.service": (["768M"], ["1024M"]),
        "sidekiq-low@.service": (["256M"], ["512M"]),
        "sidekiq-mail@.service": (["768M"], ["4096M"]),
    }


def test_a_process_limit_alone_leaves_the_other_processes_unlimited(existing_values) -> None:
    existing_values["sidekiq"] = {"processes": [{"name": "default"}, {"name": "low", "memoryHigh": 300}]}
    stage = stage_from(existing_values)
    default, low = (directives(unit_of(stage, process=index)) for index in (0, 1))
    assert not [key for key in default if key[1].startswith(("Memory", "OOM"))]
    assert (low[("Service", "MemoryHigh")], low[("Service", "MemorySwapMax")]) == (["300M"], ["0"])
    assert ("Service", "MemoryMax") not in low
    assert ("Service", "OOMPolicy") not in low


def test_a_unit_template_gets_the_memory_limits(existing_values, tmp_path: Path) -> None:
    (tmp_path / "memory.j2").write_text("{{ memory_high }}|{{ memory_max }}\n")
    existing_values["sidekiq"] = {
        "unitTemplate": "memory.j2",
        "memoryMax": 900,
        "processes": [{"name": "default"}, {"name": "low", "memoryHigh": 400}],
    }
    stage = stage_from(existing_values)
    assert unit_of(stage, project_dir=tmp_path, process=0) == HEADER + "None|900\n"
    assert unit_of(stage, project_dir=tmp_path, process=1) == HEADER + "400|900\n"


RECYCLE_TIMER = """\
# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.
# sidekiq-fleet group: sidekiq
[Unit]
Description=Memory check of Sidekiq of example staging: recycles a slot above recycleAboveMiB
# Started and stopped with sidekiq.target: a stopped group is never recycled.
PartOf=sidekiq.target

[Timer]
OnActiveSec=30
OnUnitActiveSec=30
# systemd's default of 1 min would stretch a check of 30 s.
AccuracySec=1s
Unit=sidekiq-recycle.service

[Install]
WantedBy=sidekiq.target
"""

RECYCLE_SERVICE = """\
# Managed by sidekiq-fleet (pulumi up); local edits are overwritten.
# sidekiq-fleet group: sidekiq
[Unit]
Description=Recycle Sidekiq of example staging where a slot is above recycleAboveMiB

[Service]
Type=oneshot
# A recycle starts a slot and waits for READY: no start timeout for a oneshot, as systemd's default.
ExecStart=/usr/local/sbin/sidekiqctl recycle
"""


def recycling_stage(existing_values, **sidekiq) -> Stage:
    existing_values["sidekiq"] = {"recycleAboveMiB": 512, **sidekiq}
    return stage_from(existing_values)


def test_recycle_units_read_exactly(existing_values) -> None:
    stage = recycling_stage(existing_values)
    assert render_recycle_timer(stage) == RECYCLE_TIMER
    assert render_recycle_service(stage) == RECYCLE_SERVICE


def test_the_timer_runs_at_the_shortest_check_of_the_processes_that_recycle(existing_values) -> None:
    existing_values["sidekiq"] = {
        # The stage's 20 s reaches mail too, which does not recycle: it does not count.
        "recycleCheckSeconds": 20,
        "processes": [
            {"name": "default", "recycleAboveMiB": 512, "recycleCheckSeconds": 60},
            {"name": "low", "recycleAboveMiB": 400, "recycleCheckSeconds": 45},
            {"name": "mail"},
            {"name": "bulk", "recycleAboveMiB": 900, "recycleCheckSeconds": 3600},
        ],
    }
    stage = stage_from(existing_values)
    assert recycle_period(stage) == 45
    found = directives(render_recycle_timer(stage))
    assert (found[("Timer", "OnActiveSec")], found[("Timer", "OnUnitActiveSec")]) == (["45"], ["45"])
    assert "# systemd's default of 1 min would stretch a check of 45 s.\n" in render_recycle_timer(stage)


def test_the_timer_period_is_the_default_30_s_or_the_stages_check(existing_values) -> None:
    assert recycle_period(recycling_stage(existing_values)) == 30
    assert recycle_period(recycling_stage(existing_values, recycleCheckSeconds=5)) == 5


def test_the_recycle_units_follow_the_group_name(existing_values) -> None:
    stage = recycling_stage(existing_values, unitName="worker", scope="user")
    timer = directives(render_recycle_timer(stage))
    assert timer[("Unit", "PartOf")] == ["worker.target"]
    assert timer[("Install", "WantedBy")] == ["worker.target"]
    assert timer[("Timer", "Unit")] == ["worker-recycle.service"]
    assert timer[("Timer", "AccuracySec")] == ["1s"]
    service = directives(render_recycle_service(stage))
    assert service[("Service", "ExecStart")] == ["/usr/local/sbin/workerctl recycle"]
    assert service[("Service", "Type")] == ["oneshot"]
    for text in (render_recycle_timer(stage), render_recycle_service(stage)):
        assert text.startswith(HEADER.replace("group: sidekiq", "group: worker"))
        assert "example staging" in text


def test_files_without_recycling_have_no_recycle_units(existing_values) -> None:
    existing_values["sidekiq"] = {"memoryHigh": 512, "memoryMax": 1024}
    names = [f.path.rsplit("/", 1)[1] for f in render_files(stage_from(existing_values))]
    assert names == [
        "sidekiq.target",
        "sidekiq-default@.service",
        "sidekiq-first-release.path",
        "sidekiq-first-release.service",
        "sidekiqctl",
        "sidekiq-fleet-sidekiq",
    ]


def test_files_with_recycling_add_the_timer_and_its_service_after_the_other_units(existing_values) -> None:
    existing_values["sidekiq"] = {"processes": [{"name": "default"}, {"name": "low", "recycleAboveMiB": 300}]}
    stage = stage_from(existing_values)
    files = render_files(stage)
    staging = "/var/lib/sidekiq-fleet/staging/sidekiq"
    assert [(f.role, f.path, f.mode, f.owner, f.group, f.staged_path, f.secret) for f in files] == [
        ("unit", "/etc/systemd/system/sidekiq.target", "0644", "root", "root",
         f"{staging}/sidekiq.target", False),
        ("unit", "/etc/systemd/system/sidekiq-default@.service", "0644", "root", "root",
         f"{staging}/sidekiq-default@.service", False),
        ("unit", "/etc/systemd/system/sidekiq-low@.service", "0644", "root", "root",
         f"{staging}/sidekiq-low@.service", False),
        ("unit", "/etc/systemd/system/sidekiq-first-release.path", "0644", "root", "root",
         f"{staging}/sidekiq-first-release.path", False),
        ("unit", "/etc/systemd/system/sidekiq-first-release.service", "0644", "root", "root",
         f"{staging}/sidekiq-first-release.service", False),
        ("unit", "/etc/systemd/system/sidekiq-recycle.timer", "0644", "root", "root",
         f"{staging}/sidekiq-recycle.timer", False),
        ("unit", "/etc/systemd/system/sidekiq-recycle.service", "0644", "root", "root",
         f"{staging}/sidekiq-recycle.service", False),
        ("control", "/usr/local/sbin/sidekiqctl", "0755", "root", "root", f"{staging}/sidekiqctl", False),
        ("sudoers", "/etc/sudoers.d/sidekiq-fleet-sidekiq", "0440", "root", "root",
         f"{staging}/sidekiq-fleet-sidekiq", False),
    ]  # fmt: skip
    by_name = {f.path.rsplit("/", 1)[1]: f.content for f in files}
    assert by_name["sidekiq-recycle.timer"] == render_recycle_timer(stage)
    assert by_name["sidekiq-recycle.service"] == render_recycle_service(stage)


def test_recycle_units_in_user_scope_are_the_users(existing_values) -> None:
    existing_values["sidekiq"] = {"scope": "user", "user": "app", "recycleAboveMiB": 512}
    files = [(f.role, f.path, f.mode, f.owner, f.group) for f in render_files(stage_from(existing_values))]
    assert files == [
        ("unit", "~app/.config/systemd/user/sidekiq.target", "0644", "app", "app"),
        ("unit", "~app/.config/systemd/user/sidekiq-default@.service", "0644", "app", "app"),
        ("unit", "~app/.config/systemd/user/sidekiq-first-release.path", "0644", "app", "app"),
        ("unit", "~app/.config/systemd/user/sidekiq-first-release.service", "0644", "app", "app"),
        ("unit", "~app/.config/systemd/user/sidekiq-recycle.timer", "0644", "app", "app"),
        ("unit", "~app/.config/systemd/user/sidekiq-recycle.service", "0644", "app", "app"),
        ("control", "/usr/local/sbin/sidekiqctl", "0755", "root", "root"),
    ]


def test_turning_recycling_on_changes_the_digest(existing_values) -> None:
    before = files_digest(render_files(stage_from(existing_values)))
    assert files_digest(render_files(recycling_stage(existing_values))) != before


def control_lines(stage: Stage) -> list[str]:
    return render_control(stage).splitlines()


def test_the_control_script_knows_each_processes_memory_settings(existing_values) -> None:
    existing_values["sidekiq"] = {
        "unitName": "jobs",
        "memoryMax": 2048,
        "processes": [
            {"name": "default", "recycleAboveMiB": 1500, "recycleCheckSeconds": 45},
            {"name": "low", "memoryMax": 512, "recycleAboveMiB": 400, "recycleMinIntervalSeconds": 600},
            {"name": "mail", "memoryHigh": 100},
        ],
    }
    existing_values["rollout"] = {"healthySeconds": 7}
    lines = control_lines(stage_from(existing_values))
    # MiB and seconds, one per process in order; 0 where a limit is unset.
    for line in [
        "memory_max_mib=( 2048 512 2048 )",
        "recycle_above_mib=( 1500 400 0 )",
        "recycle_check=( 45 30 30 )",
        "recycle_interval=( 300 600 300 )",
        "recycle_timer=jobs-recycle.timer",
        "recycle_service=jobs-recycle.service",
        "healthy_seconds=7",
    ]:
        assert line in lines, line


def test_a_process_with_recycling_off_has_0_beside_the_stages_limit(existing_values) -> None:
    existing_values["sidekiq"] = {
        "recycleAboveMiB": 900,
        "recycleCheckSeconds": 15,
        "processes": [{"name": "default"}, {"name": "cron", "recycleAboveMiB": 0}],
    }
    stage = stage_from(existing_values)
    assert "recycle_above_mib=( 900 0 )" in control_lines(stage)
    assert "OnUnitActiveSec=15\n" in render_recycle_timer(stage)


def test_the_control_script_without_memory_settings(existing_values) -> None:
    lines = control_lines(stage_from(existing_values))
    for line in [
        "memory_max_mib=( 0 )",
        "recycle_above_mib=( 0 )",
        "recycle_check=( 30 )",
        "recycle_interval=( 300 )",
        "recycle_timer=sidekiq-recycle.timer",
        "recycle_service=sidekiq-recycle.service",
        "healthy_seconds=2",
    ]:
        assert line in lines, line
    existing_values["rollout"] = {"healthySeconds": 0}
    assert "healthy_seconds=0" in control_lines(stage_from(existing_values))


@pytest.mark.parametrize("scope", ["system", "user"])
def test_recycle_units_and_memory_limits_pass_systemd_analyze_verify_together(
    existing_values, tmp_path: Path, scope: str
) -> None:
    """As install does it, with both limits and a recycling process in each scope."""
    existing_values["sidekiq"] = {
        "scope": scope,
        "memoryHigh": 768,
        "memoryMax": 1024,
        "processes": [{"name": "default", "recycleAboveMiB": 512}, {"name": "low"}],
    }
    control = tmp_path / "control"
    control.write_text("#!/bin/sh\n")
    control.chmod(0o700)
    paths = []
    for file in render_files(stage_from(existing_values)):
        if file.role == "unit":
            path = tmp_path / file.path.rsplit("/", 1)[1]
            path.write_text(file.content.replace("/usr/local/sbin/sidekiqctl ", f"{control} "))
            paths.append(str(path))
    assert [p.rsplit("/", 1)[1] for p in paths][-2:] == ["sidekiq-recycle.timer", "sidekiq-recycle.service"]
    result = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_systemd_analyze_reads_the_timer_and_warns_on_a_bad_value(existing_values, tmp_path: Path) -> None:
    """The check is real for a timer too: a bad period is reported, naming the timer."""
    stage = recycling_stage(existing_values)
    timer = tmp_path / "sidekiq-recycle.timer"
    timer.write_text(render_recycle_timer(stage).replace("OnActiveSec=30", "OnActiveSec=thirty"))
    service = tmp_path / "sidekiq-recycle.service"
    service.write_text(render_recycle_service(stage).replace("/usr/local/sbin/sidekiqctl", "/bin/true"))
    target = tmp_path / "sidekiq.target"
    target.write_text(render_target(stage))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(target), str(timer), str(service)], capture_output=True, text=True
    )
    assert "sidekiq-recycle.timer" in result.stderr
    assert "thirty" in result.stderr
