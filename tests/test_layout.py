"""The host layout: each name and path written out here by hand, as a host shows it."""

from __future__ import annotations

import subprocess

import pytest

from components import layout
from tests.conftest import stage_from


def test_unit_names_of_a_group() -> None:
    assert layout.group_marker("jobs") == "# sidekiq-fleet group: jobs"
    assert layout.target_unit("jobs") == "jobs.target"
    assert layout.legacy_unit("jobs") == "jobs.service"
    assert layout.template_unit("jobs", "low") == "jobs-low@.service"
    assert layout.slot_unit("jobs", "low", "b") == "jobs-low@b.service"
    assert layout.drain_unit("jobs", "low", "a") == "jobs-low-drain-a.service"
    assert layout.first_release_unit("jobs", "path") == "jobs-first-release.path"
    assert layout.first_release_unit("jobs", "service") == "jobs-first-release.service"
    assert layout.recycle_unit("jobs", "timer") == "jobs-recycle.timer"
    assert layout.recycle_unit("jobs", "service") == "jobs-recycle.service"
    assert layout.ADOPTED_DRAIN_UNIT.format(group="jobs", index=2) == "jobs-adopted-drain-2.service"
    assert layout.SLOTS == ("a", "b")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (layout.SLOT_UNIT, "jobs-low@b.service"),
        (layout.DRAIN_UNIT, "jobs-low-drain-b.service"),
    ],
)
def test_the_shell_formats_print_what_python_names(pattern: str, expected: str) -> None:
    printed = subprocess.run(
        ["bash", "-c", 'printf "$0" low b', layout.printf_format(pattern, "jobs")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == f"{expected}\n"


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("jobs-low@a.service", True),
        ("jobs-x.y@b.service", True),
        ("jobs-low-drain-b.service", True),
        ("jobs-default-drain-legacy.service", True),
        ("jobs-adopted-drain-0.service", True),
        ("jobs-first-release.service", True),
        ("jobs-recycle.service", True),
        # The legacy unit is adopted; the other names are another team's.
        ("jobs.service", False),
        ("jobs-low@c.service", False),
        ("jobs-worker@1.service", False),
        ("jobs-recycle.timer", False),
        ("jobs-recycler.service", False),
        ("jobs-low.service", False),
        ("other-low@a.service", False),
        ("xjobs-low@a.service", False),
        ("jobs-low@a.service.bak", False),
    ],
)
def test_which_services_are_the_groups_own(name: str, ours: bool) -> None:
    assert layout.is_group_service("jobs", name) is ours


def test_every_service_the_layout_names_is_the_groups_own() -> None:
    for name in (
        layout.slot_unit("jobs", "low", "a"),
        layout.drain_unit("jobs", "low", "legacy"),
        layout.ADOPTED_DRAIN_UNIT.format(group="jobs", index=3),
        layout.first_release_unit("jobs", "service"),
        layout.recycle_unit("jobs", "service"),
    ):
        assert layout.is_group_service("jobs", name), name


def test_a_dot_in_a_group_name_matches_only_a_dot() -> None:
    assert layout.is_group_service("a.b", "a.b-low@a.service")
    assert not layout.is_group_service("a.b", "aXb-low@a.service")


def test_a_percent_sign_in_a_group_name_stays_literal_in_the_format() -> None:
    assert layout.printf_format(layout.SLOT_UNIT, "a%b") == "a%%b-%s@%s.service\\n"


def test_template_affixes_surround_the_process_name() -> None:
    assert layout.template_affixes("jobs") == ("jobs-", "@.service")


def test_the_verbs() -> None:
    assert layout.FLEET_VERBS == ("status", "quiet", "stop", "start", "restart")
    assert layout.DEPLOY_VERBS == ("status", "quiet", "stop", "start", "restart", "logs", "follow", "sums")
    assert layout.ROOT_VERBS == ("first-release", "teardown", "foreign", "recycle")


def test_system_scope_paths(existing_values) -> None:
    existing_values["sidekiq"] = {"unitName": "jobs"}
    stage = stage_from(existing_values)
    assert layout.unit_dir(stage) == "/etc/systemd/system"
    assert layout.env_path(stage) == "/etc/sidekiq-fleet/jobs.env"
    assert layout.staging_dir(stage) == "/var/lib/sidekiq-fleet/staging/jobs"
    assert layout.version_dir(stage) == "/var/lib/sidekiq-fleet/jobs"
    assert layout.lock_file(stage) == "/run/sidekiq-fleet/jobs.lock"
    assert layout.sudoers_path(stage) == "/etc/sudoers.d/sidekiq-fleet-jobs"
    assert layout.control_path(stage) == "/usr/local/sbin/jobsctl"
    assert layout.adopted_sudoers_dir(stage) == "/var/lib/sidekiq-fleet/jobs/adopted/sudoers"


def test_user_scope_paths_are_in_the_users_home(existing_values) -> None:
    existing_values["sidekiq"] = {"unitName": "jobs", "scope": "user", "user": "app"}
    stage = stage_from(existing_values)
    assert layout.unit_dir(stage) == "~app/.config/systemd/user"
    assert layout.env_path(stage) == "~app/.config/sidekiq-fleet/jobs.env"
    assert layout.version_dir(stage) == "~app/.local/state/sidekiq-fleet/jobs"
    # Under the user's runtime directory on the host.
    assert layout.lock_file(stage) == "sidekiq-fleet-jobs.lock"
    # Root's, in both scopes.
    assert layout.staging_dir(stage) == "/var/lib/sidekiq-fleet/staging/jobs"
    assert layout.control_path(stage) == "/usr/local/sbin/jobsctl"
    assert layout.adopted_sudoers_dir(stage) == "/var/lib/sidekiq-fleet/jobs/adopted/sudoers"
