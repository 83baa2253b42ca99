"""Issue 18: a host that already runs Sidekiq the seed's way moves onto the slots with no gap.

Host 1 runs the seed article's system unit (sidekiq.service, the very name of this group's legacy unit)
plus its sudoers line; host 2 runs capistrano-sidekiq 3.x's default: a user unit of deploy, lingering.
Both serve under load. Without sidekiq.adopt the up refuses by name and leaves them serving; with it,
the slots take over under load, measured as bench/rollout.py measures a version bump.
"""

from __future__ import annotations

import pytest

import localhosts
from tests.e2e.conftest import assert_clean_trial, wait_until
from tests.e2e.test_local_stage import sh
from tests.e2e.test_ops_verbs import fleet
from tests.pulumi_project import PulumiProject, bench_rollout

pytestmark = pytest.mark.e2e

DISTROS = ("bookworm", "trixie")
HOST_COUNT = 2
APP = "/var/www/example/local"
SAVED = "/var/lib/sidekiq-fleet/sidekiq/adopted"
SEED_UNIT = "sidekiq.service"
SEED_SUDOERS = "deploy-systemctl"
CAP_UNIT = "example_sidekiq_local.service"
CAP_UNIT_FILE = f"/home/deploy/.config/systemd/user/{CAP_UNIT}"
REDIS_URL = "redis://127.0.0.1:6379/0"

# The seed article's unit, with its values for this host: system scope, run as deploy.
SEED_UNIT_TEXT = f"""[Unit]
Description=sidekiq
After=syslog.target network.target

[Service]
Type=notify
WatchdogSec=10
User=deploy
WorkingDirectory={APP}/current
ExecStart=/bin/bash -lc 'exec bundle exec sidekiq -e local -C config/sidekiq.yml -t 8'
ExecReload=/bin/kill -TSTP $MAINPID
Environment=MALLOC_ARENA_MAX=2
Environment=REDIS_URL={REDIS_URL}
RestartSec=1
Restart=always

[Install]
WantedBy=multi-user.target
"""

# capistrano-sidekiq 3.2's template (sidekiq.service.capistrano.erb) as it renders for this app in user scope.
CAP_UNIT_TEXT = f"""[Unit]
Description=Sidekiq for example (local)
After=syslog.target network.target

[Service]
Type=notify
WatchdogSec=10
WorkingDirectory={APP}/current
ExecStart=/usr/bin/bundle exec sidekiq -e local -t 8
UMask=0002
Environment="REDIS_URL={REDIS_URL}"
RestartSec=1
Restart=on-failure
StandardOutput=append:{APP}/shared/log/sidekiq.log
StandardError=append:{APP}/shared/log/sidekiq_error.log
SyslogIdentifier=example_sidekiq_local

[Install]
WantedBy=default.target
"""


def as_deploy_user_manager(command: str) -> str:
    return f"XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user {command}"


def sidekiq_count(host: localhosts.Host) -> int:
    return len(sh(host, "pgrep -f '^sidekiq [0-9]' || true").split())


def seed_system_unit(host: localhosts.Host) -> None:
    host.exec(f"cat > /etc/systemd/system/{SEED_UNIT}", input=SEED_UNIT_TEXT, check=True)
    host.exec(
        f"printf 'deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl\\n' >/etc/sudoers.d/{SEED_SUDOERS} "
        f"&& chmod 0440 /etc/sudoers.d/{SEED_SUDOERS} && visudo -c >/dev/null",
        check=True,
    )
    sh(host, f"systemctl daemon-reload && systemctl enable --now {SEED_UNIT}")


def seed_capistrano_user_unit(host: localhosts.Host) -> None:
    # Over ssh, as capistrano-sidekiq does it: logind 257 refuses a caller nsenter put in the host
    # ("Protocol driver not attached").
    host.ssh("sudo -n loginctl enable-linger deploy", user="admin", check=True)
    wait_until(lambda: host.exec("systemctl is-active --quiet user@$(id -u deploy).service").returncode == 0,
               30, "deploy's user manager")  # fmt: skip
    sh(host, f"mkdir -p {APP}/shared/log", user="deploy")
    sh(host, "mkdir -p ~/.config/systemd/user", user="deploy")
    host.exec(f"cat > {CAP_UNIT_FILE}", user="deploy", input=CAP_UNIT_TEXT, check=True)
    sh(host, as_deploy_user_manager(f"daemon-reload && {as_deploy_user_manager(f'enable --now {CAP_UNIT}')}"),
       user="deploy")  # fmt: skip


def test_an_unadopted_sidekiq_unit_stops_the_up_by_name_and_keeps_serving(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    seed_host, cap_host = hosts
    seed_system_unit(seed_host)
    seed_capistrano_user_unit(cap_host)
    wait_until(lambda: all(sidekiq_count(h) == 1 for h in hosts), 60, "the old Sidekiqs to run")
    pids = {h.name: sh(h, "pgrep -f '^sidekiq [0-9]'").strip() for h in hosts}

    run = project.up(check=False)
    assert run.returncode != 0
    assert (
        f"{SEED_UNIT} (system unit, enabled, active, /etc/systemd/system/{SEED_UNIT}) runs Sidekiq for {APP}"
        in run.output
    ), run.output
    assert f"{CAP_UNIT} (user unit, enabled, active, {CAP_UNIT_FILE}) runs Sidekiq for {APP}" in run.output
    assert f"expected sidekiq-fleet:sidekiq.adopt to list {SEED_UNIT}" in run.output
    assert (
        f"/etc/sudoers.d/{SEED_SUDOERS}: deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl gives deploy root"
        in (run.output)
    )
    for host in hosts:
        assert host.exec("test -e /usr/local/sbin/sidekiqctl").returncode != 0, "something was installed"
        assert sh(host, "pgrep -f '^sidekiq [0-9]'").strip() == pids[host.name], "the old Sidekiq was touched"


def test_adopting_moves_both_kinds_of_host_onto_the_slots_with_no_gap(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    seed_host, cap_host = hosts
    project.config_set("sidekiq.adopt[0]", SEED_UNIT)
    project.config_set("sidekiq.adopt[1]", CAP_UNIT)
    project.config_set("sidekiq.adoptSudoers[0]", SEED_SUDOERS)
    bench = bench_rollout().Bench(list(hosts), project, rate=20, job_seconds=0.1)

    def adopt() -> tuple[float, str]:
        run = project.up()
        return run.seconds, run.output

    trial = bench.trial("adopt", 1, adopt)
    assert f"removed /etc/sudoers.d/{SEED_SUDOERS} (sidekiq.adoptSudoers)" in trial.output
    assert f"adopting {SEED_UNIT}: sent TSTP to its main process" in trial.output
    assert f"adopting {CAP_UNIT}: sent TSTP to its main process" in trial.output
    assert_clean_trial(trial)

    # The old units are gone from systemd, their files kept.
    assert seed_host.exec(f"systemctl cat {SEED_UNIT}").returncode != 0
    assert sh(seed_host, f"cat {SAVED}/{SEED_UNIT}") == SEED_UNIT_TEXT
    assert cap_host.exec(as_deploy_user_manager(f"cat {CAP_UNIT}"), user="deploy").returncode != 0
    assert cap_host.exec(f"test -e {CAP_UNIT_FILE}").returncode != 0
    assert sh(cap_host, f"cat {SAVED}/{CAP_UNIT}") == CAP_UNIT_TEXT
    # The broad line is gone, saved; deploy may run the control script's verbs only.
    assert seed_host.exec(f"test -e /etc/sudoers.d/{SEED_SUDOERS}").returncode != 0
    assert "/usr/bin/systemctl" in sh(seed_host, f"cat {SAVED}/sudoers/{SEED_SUDOERS}")
    allowed = sh(seed_host, "sudo -n -l", user="deploy")
    assert "/usr/bin/systemctl" not in allowed
    assert "/usr/local/sbin/sidekiqctl restart" in allowed
    assert sh(seed_host, "sudo -n true", user="admin") == ""

    # Idempotent: nothing is left to adopt, and nothing is said of it.
    project.config_set("appVersion", "local-2")
    again = project.up()
    assert "adopt" not in again.output.replace("sidekiq.adopt", "")


def test_check_warns_of_a_broad_sudoers_line_without_failing(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    """A line someone adds after the migration shows in `sidekiq-fleet check`, as in `up`."""
    seed_host = hosts[0]
    seed_host.exec(
        "printf 'deploy ALL=(root) NOPASSWD: ALL\\n' >/etc/sudoers.d/late && chmod 0440 /etc/sudoers.d/late",
        check=True,
    )
    try:
        result = fleet(project, hosts, "check")
    finally:
        seed_host.exec("rm -f /etc/sudoers.d/late", check=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "warning: /etc/sudoers.d/late: deploy ALL=(root) NOPASSWD: ALL gives deploy root through any unit"
        in result.stdout
    )
    assert "check local: 2 of 2 hosts ok" in result.stdout


def test_after_a_reboot_exactly_one_sidekiq_runs_per_process(hosts: localhosts.Fleet) -> None:
    for index, host in enumerate(hosts):
        after = hosts[index] = host.reboot()  # a fresh boot: a new init PID
        wait_until(lambda h=after: sidekiq_count(h) == 1, 90, f"Sidekiq on {after.name} after the reboot")
        assert (
            sh(after, "systemctl is-active sidekiq-default@a.service sidekiq-default@b.service || true")
            .split("\n")
            .count("active")
            == 1
        )
        assert after.exec(f"systemctl is-enabled --quiet {SEED_UNIT}").returncode != 0


def test_destroy_does_not_bring_the_adopted_units_back(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    project.pulumi("destroy", "--yes")
    for host in hosts:
        assert sidekiq_count(host) == 0, host.name
        assert host.exec(f"test -d {SAVED}").returncode == 0, f"{host.name}: the saved copies went"
        assert host.exec(f"test -e /etc/systemd/system/{SEED_UNIT}").returncode != 0
    # The README's way back: the saved file, enabled again.
    seed_host = hosts[0]
    sh(seed_host, f"cp {SAVED}/{SEED_UNIT} /etc/systemd/system/ && systemctl daemon-reload "
                  f"&& systemctl enable --now {SEED_UNIT}")  # fmt: skip
    wait_until(lambda: sidekiq_count(seed_host) == 1, 60, "the restored unit's Sidekiq")
