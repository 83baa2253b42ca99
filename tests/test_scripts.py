"""Remote scripts: syntax, quoting of hostile values, and behaviour against recording fakes.

The fakes stand in for sudo/systemctl/journalctl/ps only to observe which commands
a script runs, with which arguments; the real ones run in the end-to-end tests.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from components import scripts
from components.config import Stage
from components.render import render_files
from tests.conftest import stage_from

HOSTILE = [
    "two words",
    'it\'s "quoted"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "line1\nline2; touch PWNED",
    "; touch PWNED #",
]


def bash_syntax_ok(text: str) -> subprocess.CompletedProcess[str]:
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


@pytest.mark.parametrize("scope", ["system", "user"])
@pytest.mark.parametrize("quiet_first", [True, False])
def test_every_script_passes_bash_n(fakes: Path, existing_values, scope: str, quiet_first: bool) -> None:
    existing_values["sidekiq"] = {"scope": scope}
    existing_values["rollout"] = {"quietFirst": quiet_first}
    existing_values["env"] = {"A": "b"}
    for name, text in all_scripts(stage_from(existing_values), "web1", "v1").items():
        result = bash_syntax_ok(text)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        if text.startswith("sudo -n "):
            # The body that sudo runs as root is checked too, not just the wrapper.
            inner = run_with_fakes(fakes, text, SYNTAX_ONLY="1")
            assert inner.returncode == 0, f"{name} body: {inner.stderr}"


def test_the_syntax_check_of_bodies_can_fail(fakes: Path) -> None:
    assert run_with_fakes(fakes, scripts.as_root("if then fi"), SYNTAX_ONLY="1").returncode != 0


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_host_and_version_stay_literal(staging: Stage, hostile: str) -> None:
    for name, text in all_scripts(staging, hostile, hostile).items():
        assert bash_syntax_ok(text).returncode == 0, name


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    """A PATH directory whose sudo/systemctl/journalctl/ps record their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    programs = {
        # With SYNTAX_ONLY, `sudo -n /bin/bash -c BODY` becomes `bash -n -c BODY`.
        "sudo": (
            '[ "$1" = -n ] && shift\n[ -n "${SYNTAX_ONLY:-}" ] && shift && exec /bin/bash -n "$@"\nexec "$@"'
        ),
        # MainPID 4242 is "active" unless FAKE_INACTIVE is set.
        "systemctl": (
            'printf "systemctl %s\\n" "$*" >> "$CALLS"\n'
            'case "$1" in\n'
            '  is-active) [ -z "${FAKE_INACTIVE:-}" ] ;;\n'
            "  show) echo 4242 ;;\n"
            "esac"
        ),
        "journalctl": 'printf "journalctl %s\\n" "$*" >> "$CALLS"; echo "${FAKE_JOURNAL:-fake journal line}"',
        "ps": 'echo "sidekiq 6.4.1 current [0 of 5 busy] stopping"',
        "sleep": ":",
    }
    for name, body in programs.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    os.environ["CALLS"] = str(log)
    return bin_dir


def run_with_fakes(fakes: Path, text: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", text],
        env={**os.environ, "PATH": f"{fakes}:{os.environ['PATH']}", **env},
        cwd=fakes.parent,
        capture_output=True,
        text=True,
    )


def calls(fakes: Path) -> list[str]:
    log = fakes.parent / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_restart_runs_hostile_values_as_data(fakes: Path, staging: Stage, hostile: str) -> None:
    result = run_with_fakes(fakes, scripts.restart(staging, hostile, hostile))
    assert result.returncode == 0, result.stderr
    assert not (fakes.parent / "PWNED").exists()
    assert f"on host {hostile}:" in result.stdout
    assert f"version {hostile}" in result.stdout


def test_restart_quiets_before_restarting(fakes: Path, staging: Stage) -> None:
    result = run_with_fakes(fakes, scripts.restart(staging, "web1", "v2"))
    assert result.returncode == 0, result.stderr
    verbs = [c.split()[1] for c in calls(fakes)]
    assert verbs.index("kill") < verbs.index("restart")
    assert "systemctl kill -s TSTP sidekiq.service" in calls(fakes)
    assert "stop" not in verbs


def test_restart_without_quiet_first_sends_no_tstp(fakes: Path, existing_values) -> None:
    existing_values["rollout"] = {"quietFirst": False}
    result = run_with_fakes(fakes, scripts.restart(stage_from(existing_values), "web1", "v2"))
    assert result.returncode == 0, result.stderr
    assert not any(" kill " in c for c in calls(fakes))
    assert "systemctl restart sidekiq.service" in calls(fakes)


def test_first_deploy_starts_instead_of_quieting(fakes: Path, staging: Stage) -> None:
    """capistrano-sidekiq's first deploy fails on quiet/stop of a missing unit; ours starts it."""
    result = run_with_fakes(fakes, scripts.restart(staging, "web1", "v1"), FAKE_INACTIVE="1")
    # The fake never becomes active, so the final check fails, naming the host with journal lines.
    assert result.returncode == 1
    assert "systemctl start sidekiq.service" in calls(fakes)
    assert not any(" kill " in c or " restart " in c for c in calls(fakes))
    assert "on host web1: FAILED: not active" in result.stderr
    assert "fake journal line" in result.stderr


def test_uninstall_quiets_then_stops_and_removes_every_file(fakes: Path, existing_values) -> None:
    existing_values["env"] = {"A": "b"}
    stage = stage_from(existing_values)
    text = scripts.uninstall(stage, render_files(stage), "web1")
    for path in (
        "/etc/systemd/system/sidekiq.service",
        "/etc/sudoers.d/sidekiq-fleet-sidekiq",
        "/etc/sidekiq-fleet/sidekiq.env",
    ):
        assert f"rm -f {path}" in text
    assert text.index("kill -s TSTP") < text.index('sctl stop "$unit"') < text.index("daemon-reload")


def test_install_validates_everything_before_it_installs_anything(staging: Stage) -> None:
    text = scripts.install(staging, render_files(staging), "web1")
    last_check = max(text.index("visudo -cf"), text.index("systemd-analyze verify"))
    first_install = text.index("install -o root -g root")
    assert last_check < first_install
    assert text.index("mv -f") > first_install
    assert "daemon-reload" in text and 'if [ "$unit_changed" = 1 ]' in text


def test_wait_for_port_gives_up_with_the_address(tmp_path: Path) -> None:
    # Nothing listens on port 9 of loopback; a timeout of 0 gives up at once.
    result = subprocess.run(
        ["bash", "-c", scripts.wait_for_port("127.0.0.1", 9, 0)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "127.0.0.1:9 did not accept connections within 0 s" in result.stderr


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
def test_a_restart_that_fails_on_redis_names_redis(fakes: Path, existing_values, sidekiq, retry) -> None:
    existing_values["sidekiq"] = sidekiq
    text = scripts.restart(stage_from(existing_values), "web1", "v2")
    result = run_with_fakes(fakes, text, FAKE_INACTIVE="1", FAKE_JOURNAL=REDIS_DOWN)
    assert result.returncode == 1
    assert (
        "sidekiq.service on host web1: FAILED: not active after the restart: Sidekiq cannot reach Redis "
        "(Redis::CannotConnectError: Error connecting to Redis on 127.0.0.1:6379 (Errno::ECONNREFUSED)); "
        + retry
    ) in result.stderr
    # Only what the journal said since this restart began counts as the cause.
    assert any(
        c.startswith("journalctl -u sidekiq.service -n 40 --no-pager -o short-iso --since @")
        for c in calls(fakes)
    )


def test_a_restart_that_fails_otherwise_does_not_blame_redis(fakes: Path, staging: Stage) -> None:
    result = run_with_fakes(fakes, scripts.restart(staging, "web1", "v2"), FAKE_INACTIVE="1")
    assert result.returncode == 1 and "Redis" not in result.stderr


def test_install_refuses_a_configured_writable_path_missing_on_the_host(
    fakes: Path, existing_values, tmp_path: Path
) -> None:
    present = tmp_path / "uploads"
    present.mkdir()
    existing_values["sidekiq"] = {"user": "root", "writablePaths": [str(present), "/nonexistent/sfh-shared"]}
    stage = stage_from(existing_values)
    result = run_with_fakes(fakes, scripts.install(stage, render_files(stage), "web1"))
    assert result.returncode == 1
    assert (
        "FAILED: sidekiq-fleet:sidekiq.writablePaths[1]: /nonexistent/sfh-shared does not exist "
        "on this host; "
        "expected an existing path"
    ) in result.stderr
    assert "writablePaths[0]" not in result.stderr


def test_install_does_not_require_the_default_writable_paths(staging: Stage) -> None:
    """The defaults are rendered with "-", so an app without log/ still starts."""
    text = scripts.install(staging, render_files(staging), "web1")
    assert "writablePaths" not in text
