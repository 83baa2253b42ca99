"""Issue 15, hole 4: a drop-in that passes `visudo -cf` alone but clashes with the host's other sudoers
files is never installed. Measured on sudo 1.9.13: with an alias defined twice, sudo keeps the first
definition, prints the parse error on every run, and our drop-in's user line grants deploy whatever
the other file's alias holds."""

from __future__ import annotations

from unittest import mock

import pytest

import localhosts
from components import scripts
from components.config import parse_stage, resolve_files, values_from_stack_file
from components.render import render_files, sudoers_alias
from tests.e2e.conftest import PulumiProject

pytestmark = pytest.mark.e2e

DISTROS = ("bookworm", "trixie")

HOST_COUNT = 1
DROP_IN = "/etc/sudoers.d/sidekiq-fleet-sidekiq"
CLASH = "/etc/sudoers.d/other-team"
# How each sudo names an alias defined twice: 1.9.13 (bookworm), 1.9.16 (trixie).
DUPLICATE_ALIAS = {"bookworm": "already defined", "trixie": "duplicate Cmnd_Alias"}


def sudo_works(host: localhosts.Host) -> bool:
    return host.exec("sudo -n true", user="admin").returncode == 0


def deploy_runs_id_as_root(host: localhosts.Host) -> bool:
    result = host.exec("sudo -n /usr/bin/id -u", user="deploy")
    return result.returncode == 0 and result.stdout == "0\n"


def test_a_drop_in_that_clashes_with_the_hosts_sudoers_is_never_installed(
    project: PulumiProject, hosts: localhosts.Fleet
) -> None:
    (host,) = hosts
    # Valid alone; another team's file that happens to define our alias (for its own user line).
    host.exec(f"printf 'Cmnd_Alias {sudoers_alias('sidekiq')} = /usr/bin/id\\n' >{CLASH}", check=True)
    host.exec(f"chmod 0440 {CLASH} && visudo -c", check=True)

    run = project.up(check=False)
    assert run.returncode != 0
    assert "the sudoers configuration with the new drop-in failed visudo -c, nothing installed" in run.output
    assert DUPLICATE_ALIAS[host.distro] in run.output, run.output
    assert host.exec(f"test -e {DROP_IN}").returncode != 0, "the drop-in was installed"
    assert host.exec("test -e /usr/local/sbin/sidekiqctl").returncode != 0, "something was installed"
    assert sudo_works(host)
    assert host.exec("visudo -c").returncode == 0
    assert not deploy_runs_id_as_root(host)

    # Positive control: the same install without the whole-configuration check hands deploy the
    # other file's commands.
    values = values_from_stack_file(project.directory / "Pulumi.local.yaml")
    stage = resolve_files(parse_stage("local", values), project.directory)
    with mock.patch.object(scripts, "_check_whole_sudoers", return_value=[]):
        unchecked = scripts.install(stage, render_files(stage), host.name)
    host.exec(unchecked)
    try:
        assert host.exec(f"test -e {DROP_IN}").returncode == 0
        assert deploy_runs_id_as_root(host), "the control did not show the attack"
        assert DUPLICATE_ALIAS[host.distro] in host.exec("sudo -n true", user="admin").stderr
    finally:
        host.exec(f"rm -f {DROP_IN} {CLASH}", check=True)
    assert sudo_works(host)

    project.up()
    assert host.exec(f"test -e {DROP_IN}").returncode == 0
    assert sudo_works(host)
    assert not deploy_runs_id_as_root(host)
    project.pulumi("destroy", "--yes")
