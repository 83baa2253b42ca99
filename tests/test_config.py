"""Stage config: valid stages, derived values, and every problem naming its key and expected form."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Tag

from components.__main__ import render_stage
from components.config import (
    SECRET_PLACEHOLDER,
    Stage,
    StageConfig,
    StageConfigError,
    parse_stage,
    values_from_stack_file,
)
from components.config.errors import _descriptions, _message
from components.config.keys import AUTHORIZED_KEY_TYPES
from components.config.model import (
    AmiById,
    AmiLookup,
    Ec2Hosts,
    ResolvedProcess,
    instance_architecture,
    models_in,
)
from components.config.sources import _decode
from tests.conftest import FAKE_KEY, HOST_KEY
from tests.test_config_files import public_key

PROJECT_DIR = Path(__file__).resolve().parent.parent
NS = "sidekiq-fleet"

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJd7bNxYf0nB0g3qX6m4v8Jc1Q2w3e4r5t6y7u8i9o0p ops@example"

# Minimal valid stages: only the required keys.
EC2_BASE: dict[str, Any] = {
    "app": "example",
    "appVersion": "3f2c1e9",
    "hosts": {
        "provider": "ec2",
        "count": 2,
        "subnetIds": ["subnet-0a1b2c3d4e5f60718"],
        "sshIngressCidrs": ["203.0.113.0/24"],
        "keyName": "example-staging",
    },
    "ssh": {"privateKey": FAKE_KEY},
}

EXISTING_BASE: dict[str, Any] = {
    "app": "example",
    "appVersion": "v1.4.2",
    "hosts": {
        "provider": "existing",
        "existing": [{"address": "192.0.2.11", "hostKey": HOST_KEY}],
    },
    "ssh": {"user": "admin", "privateKey": FAKE_KEY},
}

BASES = {"ec2": EC2_BASE, "existing": EXISTING_BASE}


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()
"""Sentinel for with_change: remove the key instead of setting it."""

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    """Split "hosts.existing[0].port" into ["hosts", "existing", 0, "port"]."""
    steps: list[str | int] = []
    for name, index in _STEP.findall(path):
        steps.append(int(index) if index else name)
    return steps


def with_change(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of base with the dotted path set to value (or removed with DELETE).

    Missing intermediate mappings are created, so with_change(b, "sidekiq.timeout", 0)
    works on a stage without a sidekiq section.
    """
    result = copy.deepcopy(base)
    *parents, last = _steps(path)
    node: Any = result
    for step in parents:
        node = node.setdefault(step, {}) if isinstance(step, str) else node[step]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return result


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = base
    for path, value in changes.items():
        result = with_change(result, path, value)
    return result


def problems_of(values: dict[str, Any], stage: str = "staging") -> list[str]:
    with pytest.raises(StageConfigError) as caught:
        parse_stage(stage, values)
    assert caught.value.problems, "a StageConfigError must list at least one problem"
    return caught.value.problems


def assert_problem(problems: list[str], key: str, fragment: str) -> None:
    """One problem line starts with the exact config key and carries the fragment."""
    prefix = f"{NS}:{key}: "
    lines = [p for p in problems if p.startswith(prefix)]
    assert lines, f"no problem starts with {prefix!r}; got {problems}"
    assert any(fragment in line for line in lines), (
        f"no problem for {prefix!r} contains {fragment!r}; got {lines}"
    )


# --- valid stages and derived values ---------------------------------------------------------


def test_helpers_set_and_delete_dotted_paths():
    changed = with_change(EXISTING_BASE, "hosts.existing[0].port", 2222)
    assert changed["hosts"]["existing"][0]["port"] == 2222
    assert "port" not in EXISTING_BASE["hosts"]["existing"][0], "the base must not be mutated"
    removed = with_change(EC2_BASE, "hosts.keyName", DELETE)
    assert "keyName" not in removed["hosts"]
    assert "keyName" in EC2_BASE["hosts"]
    created = with_change(EC2_BASE, "sidekiq.timeout", 7)
    assert created["sidekiq"] == {"timeout": 7}


def test_minimal_ec2_stage_parses_with_defaults():
    stage = parse_stage("staging", EC2_BASE)
    assert isinstance(stage, Stage)
    assert stage.name == "staging"
    assert stage.app_dir == "/var/www/example/staging/current"
    assert stage.environment == "staging"
    assert stage.timeout_stop_sec == 25 + 5
    assert stage.ssh_user == "admin"  # default Debian AMI lookup
    hosts = stage.config.hosts
    assert hosts.provider == "ec2"
    assert hosts.count == 2
    assert hosts.instance_type == "t3.small"
    assert hosts.ami.owner == "136693071363"
    assert hosts.ami.name_filter == "debian-12-amd64-*"
    assert hosts.ssh_address == "public"
    assert stage.config.sidekiq.user == "deploy"
    assert stage.config.sidekiq.command == "bundle exec sidekiq"
    assert stage.config.rollout.batch_size == 1


def test_rollout_defaults_overlap_without_a_busy_wait():
    rollout = parse_stage("staging", EC2_BASE).config.rollout
    assert (rollout.strategy, rollout.drain_timeout, rollout.memory_margin) == ("overlap", None, 256)
    assert (rollout.quiet_first, rollout.max_busy_wait) == (True, 0)


def test_one_default_process_when_none_is_declared():
    stage = parse_stage("staging", with_change(EC2_BASE, "sidekiq.timeout", 40))
    assert stage.config.sidekiq.processes is None
    assert [(p.name, p.config_file, p.drain_timeout) for p in stage.processes] == [
        ("default", "config/sidekiq.yml", 40)
    ]


def test_processes_fill_in_config_file_and_drain_timeout_in_order():
    values = with_changes(
        EC2_BASE,
        {
            "sidekiq.configFile": "config/main.yml",
            "sidekiq.timeout": 20,
            "rollout.drainTimeout": 3600,
            "sidekiq.processes": [
                {"name": "default"},
                {"name": "low", "configFile": "/etc/sidekiq/low.yml", "drainTimeout": 7200},
                {"name": "mail-2", "configFile": "config/mail.yml"},
            ],
        },
    )
    stage = parse_stage("staging", values)
    assert [(p.name, p.config_file, p.drain_timeout) for p in stage.processes] == [
        ("default", "config/main.yml", 3600),
        ("low", "/etc/sidekiq/low.yml", 7200),
        ("mail-2", "config/mail.yml", 3600),
    ]
    # The declared values stay as written: `render` and the docs show what the user set.
    assert stage.config.sidekiq.processes[0].config_file is None


@pytest.mark.parametrize(
    "changes",
    [
        ({"sidekiq.processes": [{"name": f"p{i}"} for i in range(16)]}),
        ({"sidekiq.processes": [{"name": "a" * 32}]}),
        ({"sidekiq.processes": [{"name": "0"}]}),
        ({"rollout.drainTimeout": 86400, "rollout.memoryMargin": 1048576}),
        ({"rollout.drainTimeout": 1, "rollout.memoryMargin": 0, "rollout.maxBusyWait": 3600}),
        ({"sidekiq.processes": [{"name": "p", "drainTimeout": 86400}]}),
        ({"sidekiq.processes": [{"name": "p", "drainTimeout": 1}]}),
        ({"sidekiq.configFile": "/srv/app/config/sidekiq.yml"}),
        ({"sidekiq.configFile": "sidekiq.yml"}),
        ({"sidekiq.unitName": "systemd"}),
        ({"sidekiq.unitName": "stagings"}),
        ({"rollout.quietFirst": False}),
    ],
)
def test_rollout_and_process_bounds_that_are_accepted(changes):
    assert parse_stage("staging", with_changes(EC2_BASE, changes)).name == "staging"


# The control script is /usr/local/sbin/<unitName>ctl: these would shadow a Debian host's own tools.
SHADOWING = ["system", "journal", "login", "network", "hostname", "timedate", "locale", "machine", "bus"]
SHADOWING += ["resolve", "coredump", "boot", "oom", "portable", "userdb", "home", "sys"]


@pytest.mark.parametrize("name", SHADOWING)
def test_a_unit_name_whose_control_script_would_shadow_a_host_tool_is_refused(name):
    problems = problems_of(with_change(EC2_BASE, "sidekiq.unitName", name))
    assert problems == [
        f"{NS}:sidekiq.unitName: {name} would install the control script as /usr/local/sbin/{name}ctl, "
        f"ahead of the host's own {name}ctl in root's PATH; expected another name, such as sidekiq"
    ]


def test_minimal_existing_stage_parses():
    stage = parse_stage("production", EXISTING_BASE)
    hosts = stage.config.hosts
    assert hosts.provider == "existing"
    assert [(h.address, h.port, h.host_key) for h in hosts.existing] == [("192.0.2.11", 22, HOST_KEY)]
    assert stage.ssh_user == "admin"
    assert stage.app_dir == "/var/www/example/production/current"
    assert stage.environment == "production"
    assert stage.config.default_ssh_user is None  # no AMI, so no default user


def test_derived_values_follow_overrides():
    values = with_changes(
        EC2_BASE,
        {
            "sidekiq.appDir": "/srv/app/current",
            "sidekiq.environment": "production",
            "sidekiq.unitName": "sidekiq-critical",
            "sidekiq.timeout": 40,
        },
    )
    stage = parse_stage("staging", values)
    assert stage.app_dir == "/srv/app/current"
    assert stage.environment == "production"
    assert stage.timeout_stop_sec == 45
    explicit = parse_stage("staging", with_change(values, "sidekiq.timeoutStopSec", 90))
    assert explicit.timeout_stop_sec == 90


def test_hardening_is_strict_by_default_and_writable_paths_follow_app_dir():
    stage = parse_stage("staging", EC2_BASE)
    assert stage.config.sidekiq.hardening == "strict"
    assert stage.config.sidekiq.writable_paths is None
    assert stage.default_writable_paths == [
        "/var/www/example/staging/current/tmp",
        "/var/www/example/staging/current/log",
        "/var/www/example/staging/shared",
    ]
    # Without Capistrano's `current` there is no shared/ to guess.
    plain = parse_stage("staging", with_change(EC2_BASE, "sidekiq.appDir", "/srv/app"))
    assert plain.default_writable_paths == ["/srv/app/tmp", "/srv/app/log"]
    top = parse_stage("staging", with_change(EC2_BASE, "sidekiq.appDir", "/current"))
    assert top.default_writable_paths == ["/current/tmp", "/current/log", "/shared"]


def test_the_app_root_holds_every_release():
    """Where another tool's Sidekiq of this app runs from (issue 18): deploy_to above `current`."""
    assert parse_stage("staging", EC2_BASE).app_root == "/var/www/example/staging"
    assert parse_stage("staging", with_change(EC2_BASE, "sidekiq.appDir", "/srv/app")).app_root == "/srv/app"
    assert parse_stage("staging", with_change(EC2_BASE, "sidekiq.appDir", "/current")).app_root == "/"


def test_units_and_sudoers_files_to_adopt_are_kept_as_given():
    values = with_changes(
        EC2_BASE,
        {
            "sidekiq.adopt": ["sidekiq.service", "example_sidekiq_staging.low.service", "worker@2.service"],
            "sidekiq.adoptSudoers": ["deploy-systemctl", "90_deploy"],
        },
    )
    sidekiq = parse_stage("staging", values).config.sidekiq
    assert sidekiq.adopt == ["sidekiq.service", "example_sidekiq_staging.low.service", "worker@2.service"]
    assert sidekiq.adopt_sudoers == ["deploy-systemctl", "90_deploy"]
    assert parse_stage("staging", EC2_BASE).config.sidekiq.adopt == []


def test_writable_paths_are_kept_as_given():
    values = with_change(EC2_BASE, "sidekiq.writablePaths", ["/srv/uploads", "/var/www/example/shared"])
    stage = parse_stage("staging", values)
    assert stage.config.sidekiq.writable_paths == ["/srv/uploads", "/var/www/example/shared"]
    assert (
        parse_stage(
            "staging", with_change(EC2_BASE, "sidekiq.writablePaths", [])
        ).config.sidekiq.writable_paths
        == []
    )


@pytest.mark.parametrize(
    ("ami", "ssh_user", "expected"),
    [
        pytest.param({}, None, "admin", id="default-debian-lookup"),
        pytest.param({"owner": "136693071363", "name": "debian-12-arm64-*"}, None, "admin", id="debian"),
        pytest.param({"owner": "099720109477", "name": "ubuntu/*24.04*"}, None, "ubuntu", id="ubuntu"),
        pytest.param({"debian": 13}, None, "admin", id="debian-13"),
        pytest.param(
            {"owner": "099720109477", "name": "ubuntu/*24.04*"},
            "deployer",
            "deployer",
            id="explicit-user-wins",
        ),
        pytest.param({"id": "ami-0123456789abcdef0"}, "ec2-user", "ec2-user", id="ami-id-with-user"),
    ],
)
def test_ssh_user_defaults_by_ami_owner(ami, ssh_user, expected):
    values = with_change(EC2_BASE, "hosts.ami", ami)
    if ssh_user is not None:
        values = with_change(values, "ssh.user", ssh_user)
    assert parse_stage("staging", values).ssh_user == expected


@pytest.mark.parametrize("cidr", [pytest.param("0.0.0.0/0", id="ipv4"), pytest.param("::/0", id="ipv6")])
def test_open_cidr_is_accepted_with_allow_ssh_from_anywhere(cidr):
    values = with_changes(EC2_BASE, {"hosts.sshIngressCidrs": [cidr], "hosts.allowSshFromAnywhere": True})
    stage = parse_stage("staging", values)
    assert stage.config.hosts.ssh_ingress_cidrs == [cidr]
    assert stage.config.hosts.allow_ssh_from_anywhere is True


def test_cidrs_are_normalized():
    values = with_change(EC2_BASE, "hosts.sshIngressCidrs", ["2001:DB8:100::/48", "192.0.2.7"])
    stage = parse_stage("staging", values)
    assert stage.config.hosts.ssh_ingress_cidrs == ["2001:db8:100::/48", "192.0.2.7/32"]


# --- one bad input, one problem line naming the key and the expected form --------------------

BAD_INPUTS = [
    # required keys
    pytest.param(
        "ec2", {"app": DELETE}, "app", "is required; expected the application name", id="missing-app"
    ),
    pytest.param("ec2", {"appVersion": DELETE}, "appVersion", "is required", id="missing-appVersion"),
    pytest.param("ec2", {"hosts": DELETE}, "hosts", "is required", id="missing-hosts"),
    pytest.param("ec2", {"ssh": DELETE}, "ssh", "is required", id="missing-ssh"),
    pytest.param(
        "ec2",
        {"ops.identityFile": "keys/deploy key"},
        "ops.identityFile",
        "expected a private key file that sidekiq-fleet offers as the deploy user when no -i is given",
        id="ops-identityFile-with-a-space",
    ),
    pytest.param(
        "ec2",
        {"ssh.privateKey": DELETE},
        "ssh.privateKey",
        "set exactly one of privateKey or privateKeyFile",
        id="missing-ssh-privateKey",
    ),
    pytest.param(
        "ec2",
        {"ssh.privateKeyFile": "keys/id_ed25519"},
        "ssh.privateKey",
        "set exactly one of privateKey or privateKeyFile",
        id="both-privateKey-and-privateKeyFile",
    ),
    pytest.param(
        "ec2",
        {"ssh.privateKey": "hunter2"},
        "ssh.privateKey",
        "not an unencrypted OpenSSH or PEM private key (Invalid private key); "
        "expected an OpenSSH private key",
        id="privateKey-not-a-key",
    ),
    # types and ranges
    pytest.param(
        "ec2",
        {"hosts.count": "three"},
        "hosts.count",
        "valid integer, unable to parse string as an integer; expected an integer from 1 to 100",
        id="count-not-an-integer",
    ),
    pytest.param("ec2", {"hosts.count": 0}, "hosts.count", "expected an integer from 1 to 100", id="count-0"),
    pytest.param(
        "ec2", {"hosts.count": 101}, "hosts.count", "expected an integer from 1 to 100", id="count-101"
    ),
    pytest.param(
        "ec2",
        {"rollout.batchSize": 0},
        "rollout.batchSize",
        "greater than or equal to 1; expected an integer from 1 to 100",
        id="batchSize-0",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.timeout": 0},
        "sidekiq.timeout",
        "expected Sidekiq's -t shutdown timeout in seconds, 1 to 3600",
        id="timeout-0",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.timeout": -5},
        "sidekiq.timeout",
        "greater than or equal to 1; expected Sidekiq's -t shutdown timeout",
        id="timeout-negative",
    ),
    pytest.param(
        "ec2",
        {"hosts.rootVolumeSize": 4},
        "hosts.rootVolumeSize",
        "expected root volume size in GiB, 8 to 16384",
        id="rootVolumeSize-too-small",
    ),
    # unknown keys
    pytest.param("ec2", {"bogus": 1}, "bogus", "unknown key", id="unknown-top-level-key"),
    pytest.param("ec2", {"hosts.bogus": 1}, "hosts.bogus", "unknown key", id="unknown-hosts-key"),
    pytest.param("ec2", {"sidekiq.bogus": 1}, "sidekiq.bogus", "unknown key", id="unknown-sidekiq-key"),
    pytest.param(
        "existing",
        {"hosts.existing[0].bogus": 1},
        "hosts.existing[0].bogus",
        "unknown key",
        id="unknown-existing-host-key",
    ),
    pytest.param(
        "existing", {"hosts.count": 2}, "hosts.count", "unknown key", id="ec2-key-on-existing-hosts"
    ),
    # ssh ingress
    pytest.param(
        "ec2",
        {"hosts.sshIngressCidrs": []},
        "hosts.sshIngressCidrs",
        "at least 1 item after validation, not 0; expected a non-empty list of CIDRs",
        id="empty-sshIngressCidrs",
    ),
    pytest.param(
        "ec2",
        {"hosts.sshIngressCidrs": ["203.0.113.0/24", "0.0.0.0/0"]},
        "hosts.sshIngressCidrs",
        "0.0.0.0/0 opens ssh to the internet at large; expected your office, VPN or bastion CIDRs, "
        "or allowSshFromAnywhere: true",
        id="ipv4-anywhere-not-allowed",
    ),
    pytest.param(
        "ec2",
        {"hosts.sshIngressCidrs": ["::/0"]},
        "hosts.sshIngressCidrs",
        "::/0 opens ssh to the internet at large; expected",
        id="ipv6-anywhere-not-allowed",
    ),
    pytest.param(
        "ec2",
        {"hosts.sshIngressCidrs": ["203.0.113.0/24", "10.0.0.1/8"]},
        "hosts.sshIngressCidrs[1]",
        "'10.0.0.1/8' has host bits set; 10.0.0.0/8 is the network; expected a non-empty list of CIDRs",
        id="cidr-host-bits-set",
    ),
    pytest.param(
        "ec2",
        {"hosts.sshIngressCidrs": ["2001:db8::1/32"]},
        "hosts.sshIngressCidrs[0]",
        "'2001:db8::1/32' has host bits set",
        id="ipv6-cidr-host-bits-set",
    ),
    pytest.param(
        "ec2",
        {"hosts.sshIngressCidrs": ["0.0.0.0/1", "128.0.0.0/1"]},
        "hosts.sshIngressCidrs",
        "0.0.0.0/1, 128.0.0.0/1 opens ssh to the internet at large",
        id="ipv4-anywhere-in-two-halves",
    ),
    pytest.param(
        "ec2",
        {"hosts.sshIngressCidrs": ["office"]},
        "hosts.sshIngressCidrs[0]",
        "'office' is not a CIDR",
        id="cidr-garbage",
    ),
    # appVersion ends up in shell text
    *[
        pytest.param(
            "ec2",
            {"appVersion": version},
            "appVersion",
            "expected a git SHA or tag such as v1.4.2",
            id=f"appVersion-{name}",
        )
        for name, version in [
            ("semicolon", "v1;reboot"),
            ("command-substitution", "$(id)"),
            ("space", "v1 2"),
            ("newline", "v1\nid"),
            ("trailing-newline", "v1.4.2\n"),
            ("backtick", "`id`"),
            ("leading-dash", "-rf"),
            ("129-chars", "a" * 129),
            ("empty", ""),
        ]
    ],
    pytest.param("ec2", {"appVersion": 1.4}, "appVersion", "valid string", id="appVersion-not-a-string"),
    # sidekiq paths and command
    pytest.param(
        "ec2",
        {"sidekiq.appDir": "var/www/example/current"},
        "sidekiq.appDir",
        "expected an absolute path such as /var/www/<app>/<stage>/current",
        id="appDir-relative",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.appDir": "/var/www/example/../../etc"},
        "sidekiq.appDir",
        "must be a normalized absolute path without ..",
        id="appDir-dotdot",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.hardening": "on"},
        "sidekiq.hardening",
        "Input should be 'strict' or 'off'; expected strict or off",
        id="hardening-unknown",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.writablePaths": "/var/www/example/shared"},
        "sidekiq.writablePaths",
        "expected absolute, normalized paths such as /var/www/<app>/<stage>/shared",
        id="writablePaths-not-a-list",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.writablePaths": ["/srv/a", "srv/b"]},
        "sidekiq.writablePaths[1]",
        "expected absolute, normalized paths such as /var/www/<app>/<stage>/shared",
        id="writablePaths-relative",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.writablePaths": ["/srv/a/../../etc"]},
        "sidekiq.writablePaths[0]",
        "must be a normalized absolute path without .., // or a trailing /; expected absolute",
        id="writablePaths-dotdot",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.writablePaths": ["/srv/a", "/srv/b", "/srv/shared/"]},
        "sidekiq.writablePaths[2]",
        "must be a normalized absolute path without .., // or a trailing /",
        id="writablePaths-trailing-slash",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.writablePaths": ["/"]},
        "sidekiq.writablePaths[0]",
        "/ would make the whole file system writable again; expected absolute",
        id="writablePaths-root",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.writablePaths": ["/srv/with space"]},
        "sidekiq.writablePaths[0]",
        "String should match pattern",
        id="writablePaths-space",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.adopt": ["sidekiq"]},
        "sidekiq.adopt[0]",
        "String should match pattern",
        id="adopt-not-a-service",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.adopt": ["sidekiq.service", "-x.service"]},
        "sidekiq.adopt[1]",
        "expected service names such as sidekiq.service",
        id="adopt-option",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.adopt": ["worker@.service"]},
        "sidekiq.adopt[0]",
        "worker@.service is a template, which does not run; expected an instance such as sidekiq@1.service",
        id="adopt-template",
    ),
    *(
        pytest.param(
            "ec2",
            {"sidekiq.adopt": ["sidekiq.service", own]},
            "sidekiq.adopt[1]",
            f"{own} is a unit of this group (sidekiq) itself; expected another team's",
            id=f"adopt-own-{own}",
        )
        for own in [
            "sidekiq-default@a.service",
            "sidekiq-low@b.service",
            "sidekiq-first-release.service",
            "sidekiq-recycle.service",
            "sidekiq-default-drain-legacy.service",
        ]
    ),
    pytest.param(
        "ec2",
        {"sidekiq.adopt": ["a.service", "a.service"]},
        "sidekiq.adopt",
        "names repeat; expected each unit once",
        id="adopt-repeats",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.adopt": [f"{'a' * 202}.service"]},
        "sidekiq.adopt[0]",
        "String should match pattern",
        id="adopt-too-long",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.adoptSudoers": ["../sudoers"]},
        "sidekiq.adoptSudoers[0]",
        "expected file names directly under /etc/sudoers.d, such as deploy-systemctl",
        id="adoptSudoers-path",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.adoptSudoers": [".hidden"]},
        "sidekiq.adoptSudoers[0]",
        "String should match pattern",
        id="adoptSudoers-dot-file",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.adoptSudoers": ["sidekiq-fleet-sidekiq"]},
        "sidekiq.adoptSudoers",
        "sidekiq-fleet-sidekiq is this group's own drop-in; expected the file that holds the broad line",
        id="adoptSudoers-own",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.adoptSudoers": ["a", "a"]},
        "sidekiq.adoptSudoers",
        "names repeat; expected each file once",
        id="adoptSudoers-repeats",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.hardening": "off", "sidekiq.writablePaths": ["/srv/a"]},
        "sidekiq.writablePaths",
        "has no effect with hardening: off, where Sidekiq may write anywhere its user may; "
        "expected hardening: strict, or no writablePaths",
        id="writablePaths-with-hardening-off",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.appDir": "/var/www/example/"},
        "sidekiq.appDir",
        "without .., // or a trailing /",
        id="appDir-trailing-slash",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.appDir": "/var/www//example"},
        "sidekiq.appDir",
        "without .., // or a trailing /",
        id="appDir-inner-double-slash",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.appDir": "//var/www/example"},
        "sidekiq.appDir",
        "without .., // or a trailing /",
        id="appDir-leading-double-slash",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.appDir": "/"},
        "sidekiq.appDir",
        "must be a normalized absolute path",
        id="appDir-root",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.command": "bundle exec sidekiq $(id)"},
        "sidekiq.command",
        "word '$(id)' has characters outside A-Z a-z 0-9",
        id="command-substitution",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.command": "bin/bundle exec sidekiq"},
        "sidekiq.command",
        "'bin/bundle' must be a bare command or an absolute path",
        id="command-relative-path",
    ),
    pytest.param(
        "ec2", {"sidekiq.command": "   "}, "sidekiq.command", "must not be empty", id="command-blank"
    ),
    pytest.param(
        "ec2",
        {"sidekiq.unitName": "sidekiq.service"},
        "sidekiq.unitName",
        "expected a letter or digit, then letters, digits, - and _ such as sidekiq",
        id="unitName-with-dot",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.unitName": "-sidekiq"},
        "sidekiq.unitName",
        "expected a letter or digit, then letters, digits, - and _ such as sidekiq",
        id="unitName-option-to-systemctl",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.unitName": "_sidekiq"},
        "sidekiq.unitName",
        "expected a letter or digit, then letters, digits, - and _ such as sidekiq",
        id="unitName-underscore-first",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.unitName": "../sidekiq"},
        "sidekiq.unitName",
        "expected a letter or digit, then letters, digits, - and _ such as sidekiq",
        id="unitName-with-slash",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.scope": "global"},
        "sidekiq.scope",
        "'system' or 'user'; expected system or user",
        id="scope-global",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.user": "Deploy User"},
        "sidekiq.user",
        "expected a POSIX user name such as deploy",
        id="sidekiq-user-not-posix",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.timeoutStopSec": 29},
        "sidekiq.timeoutStopSec",
        "29 is below timeout + 5 = 30, so systemd would SIGKILL Sidekiq",
        id="timeoutStopSec-below-timeout-plus-5",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.timeout": 60, "sidekiq.timeoutStopSec": 64},
        "sidekiq.timeoutStopSec",
        "expected at least 65, or leave it unset",
        id="timeoutStopSec-below-custom-timeout",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.watchdogSec": 1},
        "sidekiq.watchdogSec",
        "1 is too short, Sidekiq pings at half of it; expected 0 (off) or 2+",
        id="watchdogSec-1",
    ),
    # provider
    pytest.param(
        "ec2",
        {"hosts.provider": "gcp"},
        "hosts.provider",
        "got 'gcp'; expected ec2 or existing",
        id="provider-unknown",
    ),
    pytest.param(
        "ec2",
        {"hosts.provider": DELETE},
        "hosts.provider",
        "is required; expected ec2 or existing",
        id="provider-missing",
    ),
    # existing hosts
    pytest.param(
        "existing",
        {"hosts.existing": []},
        "hosts.existing",
        "expected a non-empty list of {address, port, hostKey}",
        id="existing-empty",
    ),
    pytest.param(
        "existing",
        {"hosts.existing[0].hostKey": "AAAAC3NzaC1lZDI1NTE5AAAAIOZ7"},
        "hosts.existing[0].hostKey",
        'expected an ssh public host key such as "ssh-ed25519 AAAAC3Nza..."',
        id="existing-bad-hostKey",
    ),
    pytest.param(
        "existing",
        {"hosts.existing[0].hostKey": DELETE},
        "hosts.existing[0].hostKey",
        "is required unless ssh.knownHostsFile is set; expected an ssh public host key",
        id="existing-hostKey-missing-without-knownHostsFile",
    ),
    pytest.param(
        "existing",
        {"hosts.existing": [{"address": "192.0.2.11", "hostKey": HOST_KEY}] * 2},
        "hosts.existing",
        "192.0.2.11:22 is listed twice; expected each host once",
        id="existing-duplicate-host",
    ),
    pytest.param(
        "existing",
        {
            "hosts.existing": [
                {"name": "web1", "address": "192.0.2.11", "hostKey": HOST_KEY},
                {"name": "web1", "address": "192.0.2.12", "hostKey": HOST_KEY},
            ]
        },
        "hosts.existing",
        "host names repeat; expected unique names",
        id="existing-duplicate-name",
    ),
    pytest.param(
        "existing",
        {"hosts.existing[0].port": 0},
        "hosts.existing[0].port",
        "expected a TCP port from 1 to 65535",
        id="existing-port-0",
    ),
    pytest.param(
        "existing",
        {"hosts.existing[0].port": 70000},
        "hosts.existing[0].port",
        "less than or equal to 65535; expected a TCP port from 1 to 65535",
        id="existing-port-70000",
    ),
    pytest.param(
        "existing",
        {"hosts.existing[0].address": "-oProxyCommand=id"},
        "hosts.existing[0].address",
        "expected an IP address or DNS name",
        id="existing-address-option-injection",
    ),
    # processes and rollout
    pytest.param(
        "ec2",
        {"sidekiq.processes": []},
        "sidekiq.processes",
        "List should have at least 1 item after validation, not 0; expected a list of 1 to 16 {name, "
        "configFile, drainTimeout, memoryHigh, memoryMax, recycleAboveMiB, recycleCheckSeconds, "
        "recycleMinIntervalSeconds}; defaults to one process, default",
        id="processes-empty",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": f"p{i}"} for i in range(17)]},
        "sidekiq.processes",
        "at most 16 items",
        id="processes-17",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "low"}, {"name": "high"}, {"name": "low"}]},
        "sidekiq.processes",
        "names repeat; expected each process name once",
        id="processes-duplicate-name",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "default"}, {"name": "Low"}]},
        "sidekiq.processes[1].name",
        "expected lowercase letters, digits and -, at most 32, such as default or low",
        id="process-name-uppercase",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "a" * 33}]},
        "sidekiq.processes[0].name",
        "at most 32",
        id="process-name-33",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "-low"}]},
        "sidekiq.processes[0].name",
        "expected lowercase letters, digits and -",
        id="process-name-leading-dash",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "low@a"}]},
        "sidekiq.processes[0].name",
        "expected lowercase letters, digits and -",
        id="process-name-with-at",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"configFile": "config/low.yml"}]},
        "sidekiq.processes[0].name",
        "is required; expected lowercase letters",
        id="process-name-missing",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "low", "queues": ["low"]}]},
        "sidekiq.processes[0].queues",
        "unknown key",
        id="process-unknown-key",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "low", "drainTimeout": 0}]},
        "sidekiq.processes[0].drainTimeout",
        "expected seconds the old slot may drain after a restart, 1 to 86400",
        id="process-drainTimeout-0",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "low", "drainTimeout": 86401}]},
        "sidekiq.processes[0].drainTimeout",
        "1 to 86400",
        id="process-drainTimeout-86401",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "low", "configFile": "config/../low.yml"}]},
        "sidekiq.processes[0].configFile",
        "must be a normalized path without .., //, ./ or a trailing /; "
        "expected a normalized path relative to appDir, or absolute",
        id="process-configFile-dotdot",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.processes": [{"name": "low", "configFile": "config/low yml"}]},
        "sidekiq.processes[0].configFile",
        "expected a normalized path relative to appDir",
        id="process-configFile-space",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.configFile": "../shared/sidekiq.yml"},
        "sidekiq.configFile",
        "must be a normalized path without ..",
        id="configFile-leading-dotdot",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.configFile": ".."},
        "sidekiq.configFile",
        "must be a normalized path without ..",
        id="configFile-dotdot",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.configFile": "./config/sidekiq.yml"},
        "sidekiq.configFile",
        "must be a normalized path",
        id="configFile-dot-slash",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.configFile": "config//sidekiq.yml"},
        "sidekiq.configFile",
        "must be a normalized path",
        id="configFile-double-slash",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.configFile": "/srv/app/../sidekiq.yml"},
        "sidekiq.configFile",
        "must be a normalized absolute path without .., // or a trailing /",
        id="configFile-absolute-dotdot",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.unitName": "system"},
        "sidekiq.unitName",
        "system would install the control script as /usr/local/sbin/systemctl, ahead of the host's own "
        "systemctl in root's PATH; expected another name, such as sidekiq",
        id="unitName-shadows-systemctl",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.unitName": "sys"},
        "sidekiq.unitName",
        "/usr/local/sbin/sysctl, ahead of the host's own sysctl",
        id="unitName-shadows-sysctl",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.unitName": "journal"},
        "sidekiq.unitName",
        "/usr/local/sbin/journalctl",
        id="unitName-shadows-journalctl",
    ),
    pytest.param(
        "ec2",
        {"sidekiq.unitName": "staging"},
        "sidekiq.unitName",
        "staging is the name of sidekiq-fleet's upload directory on the hosts; expected another name",
        id="unitName-staging",
    ),
    pytest.param(
        "ec2",
        {"rollout.strategy": "rolling"},
        "rollout.strategy",
        "expected overlap (start the new process, then quiet the old one) or restart (stop, then start)",
        id="strategy-unknown",
    ),
    pytest.param(
        "ec2",
        {"rollout.drainTimeout": 0},
        "rollout.drainTimeout",
        "expected seconds the old slot may drain after an overlap restart, 1 to 86400; "
        "defaults to sidekiq.timeout",
        id="drainTimeout-0",
    ),
    pytest.param(
        "ec2",
        {"rollout.drainTimeout": 86401},
        "rollout.drainTimeout",
        "less than or equal to 86400",
        id="drainTimeout-86401",
    ),
    pytest.param(
        "ec2",
        {"rollout.memoryMargin": -1},
        "rollout.memoryMargin",
        "expected MiB that must stay free with both slots running, 0 to 1048576",
        id="memoryMargin-negative",
    ),
    pytest.param(
        "ec2",
        {"rollout.memoryMargin": 1048577},
        "rollout.memoryMargin",
        "less than or equal to 1048576",
        id="memoryMargin-too-big",
    ),
    pytest.param(
        "ec2",
        {"rollout.maxBusyWait": 3601},
        "rollout.maxBusyWait",
        "expected seconds a restart-strategy stop waits for busy workers, 0 to 3600",
        id="maxBusyWait-3601",
    ),
    pytest.param(
        "ec2",
        {"rollout.maxBusyWait": -1},
        "rollout.maxBusyWait",
        "greater than or equal to 0",
        id="maxBusyWait-negative",
    ),
    pytest.param(
        "ec2",
        {"rollout.maxBusyWait": 30, "rollout.quietFirst": False},
        "rollout.maxBusyWait",
        "30 has no effect with quietFirst: false, as only a quiet process stops taking jobs; "
        "expected 0, or quietFirst: true",
        id="maxBusyWait-without-quietFirst",
    ),
    # env
    pytest.param(
        "ec2",
        {"env": {"1FOO": "x"}},
        "env.1FOO",
        "the name is invalid; expected letters, digits and _, not starting with a digit",
        id="env-name-leading-digit",
    ),
    pytest.param(
        "ec2",
        {"env": {"FOO-BAR": "x"}},
        "env.FOO-BAR",
        "the name is invalid",
        id="env-name-with-dash",
    ),
    pytest.param(
        "ec2",
        {"env": {"FOO": "a\nb"}},
        "env.FOO",
        "contains a newline, carriage return or NUL; expected a single line",
        id="env-value-newline",
    ),
    pytest.param(
        "ec2",
        {"env": {"FOO": "a\x00b"}},
        "env.FOO",
        "expected a single line",
        id="env-value-nul",
    ),
    pytest.param(
        "ec2",
        {"env": {"RAILS_MAX_THREADS": 10}},
        "env.RAILS_MAX_THREADS",
        "expected a map of environment variable names to single-line strings",
        id="env-value-not-a-string",
    ),
    pytest.param(
        "ec2",
        {"env": {"MALLOC_ARENA_MAX": "4"}},
        "env.MALLOC_ARENA_MAX",
        "the unit sets it to 2; expected other names",
        id="env-MALLOC_ARENA_MAX",
    ),
    # ec2 key pair, subnets, ami
    pytest.param(
        "ec2",
        {"hosts.publicKey": PUBLIC_KEY},
        "hosts.keyName",
        "set exactly one of keyName or publicKey",
        id="keyName-and-publicKey",
    ),
    pytest.param(
        "ec2",
        {"hosts.keyName": DELETE},
        "hosts.keyName",
        "set exactly one of keyName or publicKey; expected the name of an existing EC2 key pair",
        id="neither-keyName-nor-publicKey",
    ),
    pytest.param(
        "ec2",
        {"hosts.keyName": DELETE, "hosts.publicKey": "ssh-dss AAAAB3NzaC1kc3M="},
        "hosts.publicKey",
        "expected an OpenSSH public key line",
        id="publicKey-unsupported-type",
    ),
    pytest.param(
        "ec2",
        {"hosts.subnetIds": ["subnet-0a1b2c3d4e5f60718", "sg-0a1b2c3d4e5f60718"]},
        "hosts.subnetIds[1]",
        "subnet-",
        id="subnetIds-non-subnet",
    ),
    pytest.param(
        "ec2",
        {"hosts.subnetIds": []},
        "hosts.subnetIds",
        "expected a non-empty list of subnet ids",
        id="subnetIds-empty",
    ),
    pytest.param(
        "ec2",
        {"hosts.ami": {"id": "ami-0123456789abcdef0"}},
        "ssh.user",
        "is required unless hosts use the default Debian or Ubuntu AMI lookup",
        id="ssh-user-missing-with-ami-id",
    ),
    pytest.param(
        "ec2",
        {"hosts.ami": {"owner": "amazon", "name": "al2023-ami-*"}},
        "ssh.user",
        "is required unless hosts use the default Debian or Ubuntu AMI lookup",
        id="ssh-user-missing-with-other-ami-owner",
    ),
    pytest.param(
        "ec2",
        {"hosts.ami": {"owner": "13669307136"}},
        "hosts.ami.owner",
        "expected an AWS account id (12 digits), amazon, self or aws-marketplace",
        id="ami-owner-11-digits",
    ),
    pytest.param(
        "ec2",
        {"hosts.ami": {"id": "ami-xyz"}, "ssh.user": "admin"},
        "hosts.ami.id",
        "expected an AMI id such as ami-0123456789abcdef0",
        id="ami-id-malformed",
    ),
    pytest.param(
        "ec2",
        {"hosts.ami": {"debian": 11}},
        "hosts.ami.debian",
        "Input should be greater than or equal to 12; expected 12 (Debian 12, bookworm) or 13 (Debian 13, "
        "trixie)",
        id="ami-debian-11",
    ),
    pytest.param(
        "ec2",
        {"hosts.ami": {"debian": "14"}},
        "hosts.ami.debian",
        "Input should be less than or equal to 13; expected 12 (Debian 12, bookworm) or 13",
        id="ami-debian-14",
    ),
    pytest.param(
        "ec2",
        {"hosts.ami": {"debian": "trixie"}},
        "hosts.ami.debian",
        "Input should be a valid integer",
        id="ami-debian-codename",
    ),
    pytest.param(
        "ec2",
        {"hosts.ami": {"debian": 13, "name": "debian-13-amd64-*"}},
        "hosts.ami.debian",
        "is set together with name; expected one of them",
        id="ami-debian-and-name",
    ),
    pytest.param(
        "ec2",
        {"hosts.ami": {"owner": "099720109477"}, "ssh.user": "ubuntu"},
        "hosts.ami.name",
        "is required when owner is not Debian's (136693071363); expected an AMI name filter",
        id="ami-name-missing-for-another-owner",
    ),
    pytest.param(
        "ec2",
        {"hosts.sshAddress": "elastic"},
        "hosts.sshAddress",
        "expected public or private",
        id="sshAddress-unknown",
    ),
]


@pytest.mark.parametrize(("base", "changes", "key", "fragment"), BAD_INPUTS)
def test_bad_input_names_key_and_expected_form(base, changes, key, fragment):
    values = with_changes(BASES[base], changes)
    assert_problem(problems_of(values), key, fragment)


def test_bad_inputs_are_distinct_and_many():
    seen = {(p.values[0], repr(p.values[1])) for p in BAD_INPUTS}
    assert len(seen) == len(BAD_INPUTS) >= 25


def test_every_problem_line_starts_with_the_namespace():
    values = with_changes(
        EC2_BASE, {"hosts.count": 0, "bogus": 1, "env": {"1X": "y"}, "hosts.provider": DELETE}
    )
    with pytest.raises(StageConfigError) as caught:
        parse_stage("staging", values)
    for line in caught.value.problems:
        assert line.startswith(f"{NS}:"), line
        assert "\n" not in line, line


# --- many problems at once -------------------------------------------------------------------


def test_independent_problems_are_reported_together():
    values = with_changes(
        EC2_BASE,
        {
            "appVersion": "v1;id",
            "hosts.count": "three",
            "sidekiq.timeout": 0,
            "rollout.batchSize": 0,
            "env": {"1FOO": "x"},
        },
    )
    with pytest.raises(StageConfigError) as caught:
        parse_stage("staging", values)
    error = caught.value
    assert len(error.problems) >= 4
    assert_problem(error.problems, "appVersion", "expected a git SHA or tag")
    assert_problem(error.problems, "hosts.count", "expected an integer from 1 to 100")
    assert_problem(error.problems, "sidekiq.timeout", "expected Sidekiq's -t shutdown timeout")
    assert_problem(error.problems, "rollout.batchSize", "expected an integer from 1 to 100")
    assert_problem(error.problems, "env.1FOO", "the name is invalid")
    text = str(error)
    assert text.startswith(f"stage 'staging' has {len(error.problems)} configuration problem(s):")
    for problem in error.problems:
        assert f"\n  - {problem}" in text


def test_bad_stage_name_is_a_problem_too():
    with pytest.raises(StageConfigError) as caught:
        parse_stage("stag ing", EC2_BASE)
    assert str(caught.value) == (
        "stage 'stag ing' has 1 configuration problem(s):\n"
        "  - stage name 'stag ing': expected letters, digits, . _ -"
    )
    problems = problems_of(with_change(EC2_BASE, "hosts.count", 0), stage="a/b")
    assert problems[0] == "stage name 'a/b': expected letters, digits, . _ -"
    assert_problem(problems, "hosts.count", "expected an integer from 1 to 100")


# --- secrets ---------------------------------------------------------------------------------

REDIS_SECRET = "redis://:s3cr3t-Pa55word@redis.internal:6379/0"


SECRET_KEY = FAKE_KEY
KEY_BODY = SECRET_KEY.splitlines()[1]


def test_secrets_never_appear_in_repr_or_str():
    values = with_changes(
        EC2_BASE,
        {"env": {"REDIS_URL": REDIS_SECRET, "RAILS_MAX_THREADS": "10"}, "ssh.privateKey": SECRET_KEY},
    )
    stage = parse_stage("staging", values)
    config = stage.config
    # The values are kept, only hidden.
    assert config.ssh.private_key.get_secret_value() == SECRET_KEY
    assert config.env["REDIS_URL"].get_secret_value() == REDIS_SECRET
    shown = [
        repr(stage),
        str(stage),
        repr(config),
        str(config),
        repr(config.ssh),
        str(config.env),
        config.model_dump_json(),
        str(config.model_dump()),
    ]
    for text in shown:
        assert "s3cr3t-Pa55word" not in text
        assert KEY_BODY not in text
        assert "PRIVATE KEY" not in text
        assert "**********" in text


def test_secrets_never_appear_in_problem_messages():
    values = with_changes(
        EC2_BASE,
        {
            "env": {"REDIS_URL": REDIS_SECRET + "\nX"},
            "ssh.privateKey": "s3cr3t-not-a-key",
        },
    )
    with pytest.raises(StageConfigError) as caught:
        parse_stage("staging", values)
    text = str(caught.value)
    assert_problem(caught.value.problems, "env.REDIS_URL", "expected a single line")
    assert_problem(caught.value.problems, "ssh.privateKey", "not an unencrypted OpenSSH or PEM private key")
    assert "s3cr3t" not in text


# --- stack files -----------------------------------------------------------------------------


def test_values_from_stack_file(tmp_path):
    stack = tmp_path / "Pulumi.x.yaml"
    stack.write_text(
        "config:\n"
        "  aws:region: eu-west-1\n"
        "  other-project:app: not-ours\n"
        "  app: example\n"
        "  sidekiq-fleet:appVersion: v1.4.2\n"
        "  sidekiq-fleet:ssh:\n"
        "    user: admin\n"
        "    privateKey:\n"
        "      secure: v1:AAABAHhdTYoGyAAAAA==\n"
        "  sidekiq-fleet:env:\n"
        "    REDIS_URL:\n"
        "      secure: v1:BBBBAHhdTYoGyBBBBB==\n"
        "    RAILS_MAX_THREADS: '10'\n"
        "  sidekiq-fleet:hosts:\n"
        "    provider: existing\n"
        "    existing:\n"
        "      - address: 192.0.2.11\n"
        "        hostKey: {secure: v1:CCCC}\n"
    )
    values = values_from_stack_file(stack)
    assert values == {
        "app": "example",
        "appVersion": "v1.4.2",
        "ssh": {"user": "admin", "privateKey": SECRET_PLACEHOLDER},
        "env": {"REDIS_URL": SECRET_PLACEHOLDER, "RAILS_MAX_THREADS": "10"},
        "hosts": {
            "provider": "existing",
            "existing": [{"address": "192.0.2.11", "hostKey": SECRET_PLACEHOLDER}],
        },
    }


def test_values_from_empty_stack_file(tmp_path):
    stack = tmp_path / "Pulumi.empty.yaml"
    stack.write_text("# nothing yet\n")
    assert values_from_stack_file(stack) == {}
    stack.write_text("config:\n  aws:region: eu-west-1\n")
    assert values_from_stack_file(stack) == {}


def test_secret_placeholder_passes_the_private_key_check():
    stage = parse_stage("staging", with_change(EC2_BASE, "ssh.privateKey", SECRET_PLACEHOLDER))
    assert stage.config.ssh.private_key.get_secret_value() == SECRET_PLACEHOLDER


@pytest.mark.parametrize("stage_name", ["staging", "production"])
def test_committed_stack_files_parse(stage_name):
    values = values_from_stack_file(PROJECT_DIR / f"Pulumi.{stage_name}.yaml")
    assert "privateKey" not in values.get("ssh", {}), "secrets must not be committed in clear"
    values = with_change(values, "ssh.privateKey", SECRET_PLACEHOLDER)
    stage = parse_stage(stage_name, values)
    assert stage.config.app == "example"
    assert stage.ssh_user == "admin"
    assert [p.name for p in stage.processes] == ["default"]
    assert stage.app_dir == f"/var/www/example/{stage_name}/current"
    assert stage.config.sidekiq.command == "/home/deploy/.rbenv/shims/bundle exec sidekiq"


def test_committed_stack_values():
    staging = parse_stage(
        "staging",
        with_change(values_from_stack_file(PROJECT_DIR / "Pulumi.staging.yaml"), "ssh.privateKey", FAKE_KEY),
    )
    assert staging.config.hosts.count == 2
    assert staging.config.hosts.key_name == "example-staging"
    assert staging.timeout_stop_sec == 30
    assert staging.config.env["RAILS_MAX_THREADS"].get_secret_value() == "10"
    production = parse_stage(
        "production",
        with_change(
            values_from_stack_file(PROJECT_DIR / "Pulumi.production.yaml"), "ssh.privateKey", FAKE_KEY
        ),
    )
    assert production.config.hosts.count == 4
    assert production.config.hosts.ssh_address == "private"
    assert production.config.hosts.ssh_ingress_cidrs == ["198.51.100.0/24", "2001:db8:100::/48"]
    assert production.config.rollout.batch_size == 2
    assert production.timeout_stop_sec == 35


@pytest.mark.parametrize("stage_name", ["staging", "production"])
def test_render_stage_of_committed_stacks(stage_name):
    text = render_stage(stage_name)
    headers = [line for line in text.splitlines() if line.startswith("# ==> ")]
    assert headers == [
        "# ==> /etc/systemd/system/sidekiq.target  (mode 0644, owner root:root)",
        "# ==> /etc/systemd/system/sidekiq-default@.service  (mode 0644, owner root:root)",
        "# ==> /etc/systemd/system/sidekiq-first-release.path  (mode 0644, owner root:root)",
        "# ==> /etc/systemd/system/sidekiq-first-release.service  (mode 0644, owner root:root)",
        "# ==> /usr/local/sbin/sidekiqctl  (mode 0755, owner root:root)",
        "# ==> /etc/sudoers.d/sidekiq-fleet-sidekiq  (mode 0440, owner root:root)",
        # Only staging sets env.
        *(["# ==> /etc/sidekiq-fleet/sidekiq.env  (mode 0600, owner root:root)"] * (stage_name == "staging")),
    ]
    assert f"WorkingDirectory=/var/www/example/{stage_name}/current\n" in text


def test_render_stage_reports_config_problems(tmp_path):
    staging = (PROJECT_DIR / "Pulumi.staging.yaml").read_text()
    assert "    count: 2\n" in staging
    (tmp_path / "Pulumi.broken.yaml").write_text(staging.replace("    count: 2\n", "    count: 0\n"))
    with pytest.raises(StageConfigError) as caught:
        render_stage("broken", project_dir=tmp_path)
    assert_problem(caught.value.problems, "hosts.count", "expected an integer from 1 to 100")
    assert "'broken'" in str(caught.value)


def test_render_stage_without_stack_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Pulumi.nope.yaml"):
        render_stage("nope", project_dir=tmp_path)


# --- exact messages and the helpers behind them ----------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            ("ssh.privateKey", "nope"),
            "ssh.privateKey: not an unencrypted OpenSSH or PEM private key (Invalid private key); "
            "expected an OpenSSH private key, "
            "set with pulumi config set --secret --path ssh.privateKey",
            id="value-error-without-key",
        ),
        pytest.param(
            ("hosts.tags", {"team": 5}),
            "hosts.tags.team: Input should be a valid string; expected a map of tag names to strings",
            id="map-entry-takes-the-maps-form",
        ),
        pytest.param(("ssh", DELETE), "ssh: is required", id="no-description-no-expected"),
        pytest.param(
            ("env", {"A": "one\rtwo"}),
            "env.A: contains a newline, carriage return or NUL; expected a single line",
            id="expected-only-once",
        ),
    ],
)
def test_problem_lines_read_exactly(change, message):
    assert problems_of(with_change(EC2_BASE, *change)) == [f"{NS}:{message}"]


@pytest.mark.parametrize("value", ["X", "Xx-1", "tab\there", "spaces and 'quotes'"])
def test_single_line_env_values_are_kept(value):
    stage = parse_stage("staging", with_change(EC2_BASE, "env", {"A": value}))
    assert stage.config.env["A"].get_secret_value() == value


def test_a_problem_without_a_location_is_named_top_level():
    assert (
        _message({"loc": (), "type": "missing", "msg": "Field required"}) == f"{NS} (top level): is required"
    )


@pytest.mark.parametrize(
    ("cidr", "open_to_all"),
    [
        ("8.0.0.0/7", True),
        ("10.0.0.0/8", False),
        ("2000::/15", True),
        ("2001::/16", False),
    ],
)
def test_internet_wide_means_shorter_than_8_or_16_bits(cidr, open_to_all):
    values = with_change(EC2_BASE, "hosts.sshIngressCidrs", [cidr])
    if open_to_all:
        assert_problem(problems_of(values), "hosts.sshIngressCidrs", "opens ssh to the internet at large")
    else:
        assert parse_stage("staging", values).config.hosts.ssh_ingress_cidrs == [cidr]


def test_every_config_key_has_its_expected_form():
    """The expected forms come from the model, by key path (docs/configuration.md lists them too)."""
    forms = _descriptions(StageConfig)
    assert forms["hosts.existing.port"] == "a TCP port from 1 to 65535"
    assert forms["hosts.ami.owner"] == "an AWS account id (12 digits), amazon, self or aws-marketplace"
    assert forms["sidekiq.timeout"] == "Sidekiq's -t shutdown timeout in seconds, 1 to 3600"
    # By the key as written: camelCase.
    assert forms["hosts.instanceType"] == "an EC2 instance type such as t3.small"
    for key, form in forms.items():
        assert form, key
        assert isinstance(form, str), key


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ('{"a": 1}', {"a": 1}),
        ("[1, 2]", [1, 2]),
        ("[not json", "[not json"),
        ("plain", "plain"),
        (5, 5),
        (True, True),
    ],
)
def test_pulumi_config_values_are_decoded_only_when_json(raw, decoded):
    assert _decode(raw) == decoded


# --- sidekiq.authorizedKeys -----------------------------------------------------------------------

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHFRyfMJQgt0Y4TQt5156vbF2nZe1Ymd9V0dDD4+k30j"
EXPECTED_KEYS = '; expected OpenSSH public key lines such as "ssh-ed25519 AAAAC3Nza... alice@laptop"'


def test_authorized_keys_default_to_none_and_are_normalized(existing_values) -> None:
    assert parse_stage("staging", existing_values).config.sidekiq.authorized_keys == []
    existing_values["sidekiq"] = {"authorizedKeys": [f"  {ED25519}   alice  at  laptop "]}
    keys = parse_stage("staging", existing_values).config.sidekiq.authorized_keys
    assert keys == [f"{ED25519} alice at laptop"]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "'' is not one line of printable text"),
        (
            f"{ED25519}\nssh-rsa AAAA",
            f"{(ED25519 + chr(10) + 'ssh-rsa AAAA')[:37] + '...'!r} is not one line",
        ),
        (
            f'from="10.0.0.1" {ED25519}',
            "'from=\"10.0.0.1\" ssh-ed25519 AAAAC3Nza...' starts with 'from=\"10.0.0.1\"', "
            "not a key type such as ssh-ed25519",
        ),
        ("ssh-dss AAAAB3NzaC1kc3M=", "'ssh-dss AAAAB3NzaC1kc3M=' starts with 'ssh-dss', not a key type"),
        ("ssh-ed25519", "'ssh-ed25519' has no ssh-ed25519 key data after its type"),
        ("ssh-ed25519 not*base64", "'ssh-ed25519 not*base64' has no ssh-ed25519 key data after its type"),
        # An RSA type over ed25519 key data: the blob names its own type.
        (
            f"ssh-rsa {ED25519.split()[1]}",
            "'ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHFRy...' has no ssh-rsa key data",
        ),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE4AAAAIA==", "has no ssh-ed25519 key data after its type"),
    ],
)
def test_a_bad_authorized_key_is_named_with_the_expected_form(existing_values, key, reason) -> None:
    existing_values["sidekiq"] = {"authorizedKeys": [ED25519, key]}
    (problem,) = problems_of(existing_values)
    assert problem.startswith("sidekiq-fleet:sidekiq.authorizedKeys[1]: ")
    assert reason in problem
    assert problem.endswith(EXPECTED_KEYS)


def test_a_bad_authorized_key_is_shown_whole_up_to_40_characters(existing_values) -> None:
    for key, shown in [
        ("ssh-ed25519 " + "A" * 28, "ssh-ed25519 " + "A" * 28),
        ("ssh-ed25519 " + "A" * 29, "ssh-ed25519 " + "A" * 25 + "..."),
    ]:
        existing_values["sidekiq"] = {"authorizedKeys": [key]}
        (problem,) = problems_of(existing_values)
        assert f"{shown!r} has no ssh-ed25519 key data after its type" in problem, problem


def test_an_authorized_key_with_characters_outside_base64_is_refused(existing_values) -> None:
    # A lax decoder would skip the "*" and accept the key.
    key = ED25519.replace("AAAAIHF", "AAAA*IHF")
    existing_values["sidekiq"] = {"authorizedKeys": [key]}
    (problem,) = problems_of(existing_values)
    assert "has no ssh-ed25519 key data after its type" in problem


def test_authorized_keys_accept_every_openssh_type(existing_values) -> None:
    keys = [public_key(kind) for kind in AUTHORIZED_KEY_TYPES]
    existing_values["sidekiq"] = {"authorizedKeys": keys}
    assert parse_stage("staging", existing_values).config.sidekiq.authorized_keys == keys
    existing_values["sidekiq"] = {"authorizedKeys": [ED25519] * 101}
    (problem,) = problems_of(existing_values)
    assert problem.startswith("sidekiq-fleet:sidekiq.authorizedKeys: List should have at most 100 items")


def test_values_from_config_keeps_the_namespace_and_decodes_objects_and_lists() -> None:
    from components.config import values_from_config

    config = {
        "sidekiq-fleet:app": "example",
        "sidekiq-fleet:env": '{"REDIS_URL": "redis://x"}',
        "sidekiq-fleet:hosts": '[{"address": "a"}]',
        "sidekiq-fleet:appVersion": "{not json",
        "aws:region": "eu-west-1",
        "other-sidekiq-fleet:app": "no",
    }
    assert values_from_config(config) == {
        "app": "example",
        "env": {"REDIS_URL": "redis://x"},
        "hosts": [{"address": "a"}],
        "appVersion": "{not json",
    }
    assert values_from_config(config, project="aws") == {"region": "eu-west-1"}


def test_models_in_finds_each_model_with_what_picks_it() -> None:
    assert models_in(Annotated[AmiById | None, Tag("outer")]) == [(AmiById, "outer")]
    assert models_in(Annotated[AmiById, Tag("by-id")] | Annotated[AmiLookup, Tag("lookup")]) == [
        (AmiById, "by-id"),
        (AmiLookup, "lookup"),
    ]
    assert models_in(list[Ec2Hosts] | None) == [(Ec2Hosts, "provider: ec2")]
    assert models_in(int | None) == []


def test_a_host_key_keeps_its_type_and_data_and_drops_a_comment(existing_values) -> None:
    """As /etc/ssh/ssh_host_ed25519_key.pub has it: the comment is not part of what is pinned."""
    existing_values["hosts"]["existing"][0]["hostKey"] = f"{HOST_KEY} root@web1 (made at install)"
    stage = parse_stage("staging", existing_values)
    assert stage.config.hosts.existing[0].host_key == HOST_KEY


@pytest.mark.parametrize(
    ("ami", "instance_type", "name_filter"),
    [
        pytest.param({}, "t3.small", "debian-12-amd64-*", id="default"),
        pytest.param({"debian": 12}, "t3.small", "debian-12-amd64-*", id="12"),
        pytest.param({"debian": 13}, "m6i.large", "debian-13-amd64-*", id="13"),
        pytest.param({"debian": "13"}, "t3.small", "debian-13-amd64-*", id="13-as-the-cli-sets-it"),
        pytest.param(
            {"debian": 13, "architecture": "arm64"}, "t4g.small", "debian-13-arm64-*", id="13-arm64"
        ),
        pytest.param({"architecture": "arm64"}, "m7gd.large", "debian-12-arm64-*", id="default-arm64"),
        pytest.param(
            {"name": "debian-13-amd64-daily-*"}, "t3.small", "debian-13-amd64-daily-*", id="own-filter"
        ),
        pytest.param(
            {"owner": "amazon", "name": "al2023-ami-*"}, "c7a.large", "al2023-ami-*", id="other-owner"
        ),
    ],
)
def test_the_ami_lookup_names_debians_official_image_of_the_release(ami, instance_type, name_filter):
    values = with_changes(
        EC2_BASE, {"hosts.ami": ami, "hosts.instanceType": instance_type, "ssh.user": "admin"}
    )
    assert parse_stage("staging", values).config.hosts.ami.name_filter == name_filter


# By AWS's naming: a "g" after the generation is Graviton (arm64); a1 was the first.
@pytest.mark.parametrize(
    ("instance_type", "architecture"),
    [
        ("t3.small", "x86_64"),
        ("m6i.large", "x86_64"),
        ("c7a.large", "x86_64"),
        ("m7i-flex.large", "x86_64"),
        ("g5.xlarge", "x86_64"),
        ("g4ad.xlarge", "x86_64"),
        ("x2iedn.xlarge", "x86_64"),
        ("u-6tb1.metal", "x86_64"),
        ("t4g.small", "arm64"),
        ("a1.large", "arm64"),
        ("m7gd.xlarge", "arm64"),
        ("c6gn.large", "arm64"),
        ("x2gd.large", "arm64"),
        ("im4gn.large", "arm64"),
        ("g5g.xlarge", "arm64"),
        ("r8g.large", "arm64"),
        ("mac2.metal", None),
    ],
)
def test_the_architecture_of_an_instance_type(instance_type, architecture):
    assert instance_architecture(instance_type) == architecture


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"hosts.instanceType": "t4g.small"},
            "t4g.small is an arm64 type, but the image is x86_64 (ami.architecture), so EC2 would refuse to "
            "launch it; expected an x86_64 type such as t3.small, or ami.architecture: arm64",
            id="graviton-type-default-image",
        ),
        pytest.param(
            {"hosts.ami": {"debian": 13, "architecture": "arm64"}},
            "t3.small is an x86_64 type, but the image is arm64 (ami.architecture), so EC2 would refuse to "
            "launch it; expected an arm64 type such as t4g.small, or ami.architecture: x86_64",
            id="arm64-image-default-type",
        ),
    ],
)
def test_an_instance_type_of_the_other_architecture_is_refused(changes, message):
    assert problems_of(with_changes(EC2_BASE, changes)) == [f"{NS}:hosts.instanceType: {message}"]


def test_an_ami_by_id_or_a_mac_type_is_not_checked_for_its_architecture():
    by_id = with_changes(
        EC2_BASE,
        {
            "hosts.ami": {"id": "ami-0123456789abcdef0"},
            "hosts.instanceType": "t4g.small",
            "ssh.user": "admin",
        },
    )
    assert parse_stage("staging", by_id).config.hosts.instance_type == "t4g.small"
    mac = with_changes(EC2_BASE, {"hosts.ami": {"architecture": "arm64"}, "hosts.instanceType": "mac2.metal"})
    assert parse_stage("staging", mac).config.hosts.instance_type == "mac2.metal"


# --- memory limits, recycling and health before quiet (issue 19) ---------------------------------

# The expected form of each key, written out: (smallest, largest, form).
MEMORY_KEYS = {
    "memoryHigh": (
        64,
        1048576,
        "MiB, 64 to 1048576: systemd's MemoryHigh= for each slot, where the kernel throttles and reclaims; "
        "below memoryMax",
    ),
    "memoryMax": (
        64,
        1048576,
        "MiB, 64 to 1048576: systemd's MemoryMax= for each slot, where the kernel kills the process "
        "(OOMPolicy=continue, no swap)",
    ),
    "recycleAboveMiB": (
        64,
        1048576,
        "MiB, 64 to 1048576: a serving slot above it is replaced with no gap; below memoryHigh and "
        "memoryMax; recycling is off without it",
    ),
    "recycleCheckSeconds": (5, 3600, "seconds between memory checks, 5 to 3600; 30 when unset"),
    "recycleMinIntervalSeconds": (
        30,
        86400,
        "seconds, 30 to 86400: at most one recycle per process in that time; 300 when unset",
    ),
}
# Where a process's key reads otherwise: its recycleAboveMiB also takes 0, to turn the stage's off.
PROCESS_RECYCLE_ABOVE_FORM = (
    "MiB, 64 to 1048576: a serving slot above it is replaced with no gap; below memoryHigh and memoryMax; "
    "0 turns off sidekiq.recycleAboveMiB for this process"
)
# The ResolvedProcess attribute of each key.
MEMORY_ATTRIBUTES = {
    "memoryHigh": "memory_high",
    "memoryMax": "memory_max",
    "recycleAboveMiB": "recycle_above_mib",
    "recycleCheckSeconds": "recycle_check_seconds",
    "recycleMinIntervalSeconds": "recycle_min_interval_seconds",
}
TWO_PROCESSES = [{"name": "default"}, {"name": "low"}]


def with_memory_key(place: str, key: str, value: Any) -> dict[str, Any]:
    """EC2_BASE with KEY set under sidekiq (place "stage") or on the second of two processes; the check
    keys get a recycleAboveMiB beside them, which they need."""
    values = with_change(EC2_BASE, "sidekiq.processes", TWO_PROCESSES)
    prefix = "sidekiq." if place == "stage" else "sidekiq.processes[1]."
    values = with_change(values, prefix + key, value)
    if key in ("recycleCheckSeconds", "recycleMinIntervalSeconds"):
        values = with_change(values, prefix + "recycleAboveMiB", 512)
    return values


@pytest.mark.parametrize("place", ["stage", "process"])
@pytest.mark.parametrize("key", list(MEMORY_KEYS))
@pytest.mark.parametrize("end", [0, 1], ids=["smallest", "largest"])
def test_memory_and_recycle_keys_accept_their_bounds(place, key, end) -> None:
    value = MEMORY_KEYS[key][end]
    processes = parse_stage("staging", with_memory_key(place, key, value)).processes
    attribute = MEMORY_ATTRIBUTES[key]
    assert getattr(processes[1], attribute) == value
    # A stage value reaches every process; a process's own only that process.
    defaults = {"recycleCheckSeconds": 30, "recycleMinIntervalSeconds": 300}
    assert getattr(processes[0], attribute) == (value if place == "stage" else defaults.get(key))


@pytest.mark.parametrize("place", ["stage", "process"])
@pytest.mark.parametrize("key", list(MEMORY_KEYS))
@pytest.mark.parametrize("side", ["below", "above"])
def test_memory_and_recycle_keys_refuse_one_past_their_bounds(place, key, side) -> None:
    smallest, largest, form = MEMORY_KEYS[key]
    value, reason = (
        (smallest - 1, f"greater than or equal to {smallest}")
        if side == "below"
        else (largest + 1, f"less than or equal to {largest}")
    )
    full_key = f"sidekiq.{key}" if place == "stage" else f"sidekiq.processes[1].{key}"
    if place == "process" and key == "recycleAboveMiB":
        form = PROCESS_RECYCLE_ABOVE_FORM
        reason = "0 or greater than or equal to 64" if side == "below" else reason
    assert problems_of(with_memory_key(place, key, value)) == [
        f"{NS}:{full_key}: Input should be {reason}; expected {form}"
    ]


@pytest.mark.parametrize(
    ("value", "reason"), [(-1, "greater than or equal to 0"), (1, "0 or greater than or equal to 64")]
)
def test_a_process_recycle_above_mib_between_off_and_a_limit_is_refused(value, reason) -> None:
    values = with_change(with_memory_key("process", "recycleAboveMiB", value), "sidekiq.recycleAboveMiB", 512)
    assert problems_of(values) == [
        f"{NS}:sidekiq.processes[1].recycleAboveMiB: Input should be {reason}; "
        f"expected {PROCESS_RECYCLE_ABOVE_FORM}"
    ]


def test_a_process_turns_off_the_stages_recycling_with_0() -> None:
    values = with_change(
        EC2_BASE,
        "sidekiq",
        {
            "recycleAboveMiB": 700,
            "recycleCheckSeconds": 20,
            "processes": [{"name": "default"}, {"name": "cron", "recycleAboveMiB": 0}, {"name": "low"}],
        },
    )
    stage = parse_stage("staging", values)
    assert [(p.name, p.recycle_above_mib) for p in stage.processes] == [
        ("default", 700),
        ("cron", None),
        ("low", 700),
    ]
    assert [p.name for p in stage.recycling] == ["default", "low"]
    assert stage.config.sidekiq.processes[1].recycle_above_mib == 0


def test_0_in_the_stages_recycle_above_mib_is_refused() -> None:
    assert problems_of(with_change(EC2_BASE, "sidekiq.recycleAboveMiB", 0)) == [
        f"{NS}:sidekiq.recycleAboveMiB: Input should be greater than or equal to 64; expected "
        f"{MEMORY_KEYS['recycleAboveMiB'][2]}"
    ]


def test_a_memory_key_that_is_not_an_integer_names_the_key_and_the_form() -> None:
    assert problems_of(with_memory_key("process", "memoryMax", "lots")) == [
        f"{NS}:sidekiq.processes[1].memoryMax: Input should be a valid integer, unable to parse string as an "
        f"integer; expected {MEMORY_KEYS['memoryMax'][2]}"
    ]
    # As `pulumi config set --path` stores a number given on the command line.
    assert parse_stage("staging", with_memory_key("stage", "memoryMax", "512")).processes[0].memory_max == 512


def test_recycle_above_mib_is_spelled_with_mib_and_nothing_else() -> None:
    """The explicit alias: the camelCase of recycle_above_mib would be recycleAboveMib."""
    assert problems_of(with_change(EC2_BASE, "sidekiq.recycleAboveMib", 512)) == [
        f"{NS}:sidekiq.recycleAboveMib: unknown key; see docs/configuration.md"
    ]
    values = with_change(EC2_BASE, "sidekiq.processes", [{"name": "low", "recycleAboveMib": 512}])
    assert problems_of(values) == [
        f"{NS}:sidekiq.processes[0].recycleAboveMib: unknown key; see docs/configuration.md"
    ]


HIGH_NOT_BELOW_MAX = (
    "so the kernel would kill the process before it throttles it; expected memoryHigh below memoryMax"
)
ABOVE_NOT_BELOW = (
    "so the process would be throttled or killed before it is recycled; expected recycleAboveMiB below "
    "memoryHigh and memoryMax"
)


@pytest.mark.parametrize(
    ("sidekiq", "problem"),
    [
        pytest.param(
            {"memoryHigh": 512, "memoryMax": 512},
            f"sidekiq.memoryHigh: 512 MiB is not below sidekiq.memoryMax 512 MiB, {HIGH_NOT_BELOW_MAX}",
            id="high-equal-max",
        ),
        pytest.param(
            {"memoryHigh": 1024, "memoryMax": 512},
            f"sidekiq.memoryHigh: 1024 MiB is not below sidekiq.memoryMax 512 MiB, {HIGH_NOT_BELOW_MAX}",
            id="high-above-max",
        ),
        pytest.param(
            {"processes": [{"name": "default"}, {"name": "low", "memoryHigh": 600, "memoryMax": 600}]},
            f"sidekiq.processes[1].memoryHigh: 600 MiB is not below sidekiq.processes[1].memoryMax 600 MiB, "
            f"{HIGH_NOT_BELOW_MAX}",
            id="process-high-process-max",
        ),
        pytest.param(
            {"memoryMax": 512, "processes": [{"name": "default"}, {"name": "low", "memoryHigh": 600}]},
            f"sidekiq.processes[1].memoryHigh: 600 MiB is not below sidekiq.memoryMax 512 MiB, "
            f"{HIGH_NOT_BELOW_MAX}",
            id="process-high-stage-max",
        ),
        pytest.param(
            {
                "memoryHigh": 768,
                "processes": [{"name": "default", "memoryMax": 1024}, {"name": "low", "memoryMax": 512}],
            },
            f"sidekiq.memoryHigh: 768 MiB is not below sidekiq.processes[1].memoryMax 512 MiB, "
            f"{HIGH_NOT_BELOW_MAX}",
            id="stage-high-process-max",
        ),
        pytest.param(
            {"memoryHigh": 512, "recycleAboveMiB": 512},
            f"sidekiq.recycleAboveMiB: 512 MiB is not below sidekiq.memoryHigh 512 MiB, {ABOVE_NOT_BELOW}",
            id="above-equal-high",
        ),
        pytest.param(
            {"memoryMax": 512, "recycleAboveMiB": 600},
            f"sidekiq.recycleAboveMiB: 600 MiB is not below sidekiq.memoryMax 512 MiB, {ABOVE_NOT_BELOW}",
            id="above-over-max-without-high",
        ),
        pytest.param(
            {"memoryMax": 512, "recycleAboveMiB": 512},
            f"sidekiq.recycleAboveMiB: 512 MiB is not below sidekiq.memoryMax 512 MiB, {ABOVE_NOT_BELOW}",
            id="above-equal-max-without-high",
        ),
        pytest.param(
            # Between memoryHigh and memoryMax: the kernel throttles it first, so memoryHigh is named.
            {"memoryHigh": 512, "memoryMax": 1024, "recycleAboveMiB": 768},
            f"sidekiq.recycleAboveMiB: 768 MiB is not below sidekiq.memoryHigh 512 MiB, {ABOVE_NOT_BELOW}",
            id="above-between-high-and-max",
        ),
        pytest.param(
            {"memoryHigh": 512, "processes": [{"name": "default", "recycleAboveMiB": 600}]},
            f"sidekiq.processes[0].recycleAboveMiB: 600 MiB is not below sidekiq.memoryHigh 512 MiB, "
            f"{ABOVE_NOT_BELOW}",
            id="process-above-stage-high",
        ),
        pytest.param(
            {"recycleAboveMiB": 512, "processes": [{"name": "default"}, {"name": "low", "memoryMax": 512}]},
            f"sidekiq.recycleAboveMiB: 512 MiB is not below sidekiq.processes[1].memoryMax 512 MiB, "
            f"{ABOVE_NOT_BELOW}",
            id="stage-above-process-max",
        ),
        pytest.param(
            {
                "memoryMax": 2048,
                "processes": [
                    {"name": "default"},
                    {"name": "low", "memoryHigh": 256, "recycleAboveMiB": 300},
                ],
            },
            f"sidekiq.processes[1].recycleAboveMiB: 300 MiB is not below sidekiq.processes[1].memoryHigh "
            f"256 MiB, {ABOVE_NOT_BELOW}",
            id="process-above-process-high",
        ),
        pytest.param(
            {"recycleCheckSeconds": 60},
            "sidekiq.recycleCheckSeconds: has no effect without recycleAboveMiB; expected recycleAboveMiB "
            "under sidekiq or a process, or no recycleCheckSeconds",
            id="stage-check-without-above",
        ),
        pytest.param(
            {"recycleMinIntervalSeconds": 600, "processes": TWO_PROCESSES},
            "sidekiq.recycleMinIntervalSeconds: has no effect without recycleAboveMiB; expected "
            "recycleAboveMiB under sidekiq or a process, or no recycleMinIntervalSeconds",
            id="stage-interval-without-above",
        ),
        pytest.param(
            {
                "processes": [
                    {"name": "default", "recycleAboveMiB": 512},
                    {"name": "low", "recycleCheckSeconds": 60},
                ]
            },
            "sidekiq.processes[1].recycleCheckSeconds: has no effect without recycleAboveMiB for process "
            "low; expected recycleAboveMiB there or under sidekiq, or no recycleCheckSeconds",
            id="process-check-without-above",
        ),
        pytest.param(
            {"processes": [{"name": "mail", "recycleMinIntervalSeconds": 600}]},
            "sidekiq.processes[0].recycleMinIntervalSeconds: has no effect without recycleAboveMiB for "
            "process mail; expected recycleAboveMiB there or under sidekiq, or no recycleMinIntervalSeconds",
            id="process-interval-without-above",
        ),
        pytest.param(
            {
                "processes": [
                    {"name": "default", "recycleAboveMiB": 512},
                    {"name": "cron", "recycleAboveMiB": 0},
                ]
            },
            "sidekiq.processes[1].recycleAboveMiB: 0 turns off sidekiq.recycleAboveMiB for process cron, "
            "which is not set; expected 64 to 1048576 to recycle this process, or no recycleAboveMiB",
            id="process-off-without-the-stages",
        ),
        pytest.param(
            {"recycleAboveMiB": 512, "processes": [{"name": "cron", "recycleAboveMiB": 0}]},
            "sidekiq.recycleAboveMiB: has no effect, as every process turns it off with recycleAboveMiB: 0; "
            "expected a process without recycleAboveMiB: 0, or no recycleAboveMiB",
            id="stage-above-every-process-off",
        ),
        pytest.param(
            {
                "recycleAboveMiB": 512,
                "processes": [
                    {"name": "default"},
                    {"name": "cron", "recycleAboveMiB": 0, "recycleCheckSeconds": 5},
                ],
            },
            "sidekiq.processes[1].recycleCheckSeconds: has no effect without recycleAboveMiB for process "
            "cron; expected recycleAboveMiB there or under sidekiq, or no recycleCheckSeconds",
            id="process-check-with-recycling-off",
        ),
    ],
)
def test_memory_settings_that_contradict_each_other_are_refused_naming_the_key(sidekiq, problem) -> None:
    assert problems_of(with_change(EC2_BASE, "sidekiq", sidekiq)) == [f"{NS}:{problem}"]


@pytest.mark.parametrize(
    ("sidekiq", "key"),
    [
        pytest.param({"recycleAboveMiB": 512}, "sidekiq.recycleAboveMiB", id="stage"),
        pytest.param(
            {
                "processes": [
                    {"name": "a"},
                    {"name": "b", "recycleAboveMiB": 512},
                    {"name": "c", "recycleAboveMiB": 600},
                ]
            },
            "sidekiq.processes[1].recycleAboveMiB",
            id="first-recycling-process",
        ),
        pytest.param(
            {"recycleAboveMiB": 512, "processes": [{"name": "a"}, {"name": "b", "recycleAboveMiB": 600}]},
            "sidekiq.recycleAboveMiB",
            id="stage-of-the-first-process",
        ),
        pytest.param(
            # The stage's value is not the first process's: that one's own is named.
            {"recycleAboveMiB": 512, "processes": [{"name": "a", "recycleAboveMiB": 600}, {"name": "b"}]},
            "sidekiq.processes[0].recycleAboveMiB",
            id="process-own-before-the-stages",
        ),
        pytest.param(
            {"recycleAboveMiB": 512, "processes": [{"name": "a", "recycleAboveMiB": 0}, {"name": "b"}]},
            "sidekiq.recycleAboveMiB",
            id="first-process-off",
        ),
    ],
)
def test_recycling_is_refused_with_the_restart_strategy(sidekiq, key) -> None:
    values = with_change(with_change(EC2_BASE, "sidekiq", sidekiq), "rollout", {"strategy": "restart"})
    assert problems_of(values) == [
        f"{NS}:{key}: recycling starts a second process beside the one it replaces, which rollout.strategy: "
        "restart says the host cannot hold; expected rollout.strategy: overlap, or no recycleAboveMiB"
    ]
    overlap = with_change(with_change(EC2_BASE, "sidekiq", sidekiq), "rollout", {"strategy": "overlap"})
    assert parse_stage("staging", overlap).recycling


@pytest.mark.parametrize(
    "sidekiq",
    [
        pytest.param({"memoryHigh": 511, "memoryMax": 512}, id="high-just-below-max"),
        pytest.param(
            {"memoryHigh": 512, "memoryMax": 1024, "recycleAboveMiB": 511}, id="above-just-below-high"
        ),
        pytest.param({"memoryMax": 512, "recycleAboveMiB": 511}, id="above-just-below-max"),
        pytest.param({"memoryHigh": 512}, id="high-alone"),
        pytest.param({"memoryMax": 512}, id="max-alone"),
        pytest.param({"recycleAboveMiB": 2048}, id="above-without-limits"),
        pytest.param(
            # The stage's pair applies to no process: each one's own memoryMax wins.
            {"memoryHigh": 768, "memoryMax": 512, "processes": [{"name": "a", "memoryMax": 1024}]},
            id="stage-pair-overridden-by-every-process",
        ),
        pytest.param(
            {
                "memoryHigh": 768,
                "processes": [
                    {"name": "a", "memoryMax": 1024},
                    {"name": "b", "memoryHigh": 256, "memoryMax": 512},
                ],
            },
            id="process-high-below-its-own-max",
        ),
        pytest.param(
            {"recycleCheckSeconds": 10, "processes": [{"name": "a"}, {"name": "b", "recycleAboveMiB": 512}]},
            id="stage-check-with-a-process-recycling",
        ),
        pytest.param(
            {
                "recycleMinIntervalSeconds": 60,
                "processes": [{"name": "a"}, {"name": "b", "recycleAboveMiB": 512}],
            },
            id="stage-interval-with-a-process-recycling",
        ),
        pytest.param(
            # Only the first recycles: the last one's lack of recycleAboveMiB does not undo it.
            {"recycleCheckSeconds": 10, "processes": [{"name": "a", "recycleAboveMiB": 512}, {"name": "b"}]},
            id="stage-check-with-the-first-process-recycling",
        ),
        pytest.param(
            {
                "recycleAboveMiB": 512,
                "processes": [{"name": "a", "recycleCheckSeconds": 10, "recycleMinIntervalSeconds": 60}],
            },
            id="process-check-with-the-stages-above",
        ),
    ],
)
def test_memory_settings_that_agree_are_accepted(sidekiq) -> None:
    assert parse_stage("staging", with_change(EC2_BASE, "sidekiq", sidekiq)).name == "staging"


def test_without_memory_keys_nothing_is_limited_or_recycled() -> None:
    stage = parse_stage("staging", with_change(EC2_BASE, "sidekiq.processes", TWO_PROCESSES))
    assert [
        (
            p.memory_high,
            p.memory_max,
            p.recycle_above_mib,
            p.recycle_check_seconds,
            p.recycle_min_interval_seconds,
        )
        for p in stage.processes
    ] == [(None, None, None, 30, 300)] * 2
    assert stage.recycling == []
    assert parse_stage("staging", EC2_BASE).recycling == []


def test_memory_keys_of_the_stage_reach_every_process_and_a_process_value_wins() -> None:
    values = with_change(
        EC2_BASE,
        "sidekiq",
        {
            "memoryHigh": 768,
            "memoryMax": 1024,
            "recycleAboveMiB": 700,
            "recycleCheckSeconds": 20,
            "recycleMinIntervalSeconds": 900,
            "processes": [
                {"name": "default"},
                {
                    "name": "low",
                    "memoryHigh": 256,
                    "memoryMax": 512,
                    "recycleAboveMiB": 200,
                    "recycleCheckSeconds": 45,
                    "recycleMinIntervalSeconds": 120,
                },
                {"name": "mail", "memoryMax": 2048, "recycleCheckSeconds": 5},
            ],
        },
    )
    stage = parse_stage("staging", values)
    assert [
        (p.name, p.memory_high, p.memory_max, p.recycle_above_mib, p.recycle_check_seconds,
         p.recycle_min_interval_seconds)
        for p in stage.processes
    ] == [
        ("default", 768, 1024, 700, 20, 900),
        ("low", 256, 512, 200, 45, 120),
        ("mail", 768, 2048, 700, 5, 900),
    ]  # fmt: skip
    assert [p.name for p in stage.recycling] == ["default", "low", "mail"]
    # The declared values stay as written.
    assert stage.config.sidekiq.processes[0].memory_max is None


def test_check_and_interval_default_to_30_and_300_seconds() -> None:
    values = with_change(
        EC2_BASE,
        "sidekiq.processes",
        [
            {"name": "default", "recycleAboveMiB": 512},
            {"name": "low", "recycleAboveMiB": 256, "recycleCheckSeconds": 10},
        ],
    )
    stage = parse_stage("staging", values)
    assert [(p.recycle_check_seconds, p.recycle_min_interval_seconds) for p in stage.processes] == [
        (30, 300),
        (10, 300),
    ]


def test_recycling_lists_only_the_processes_with_recycle_above_mib_in_order() -> None:
    values = with_change(
        EC2_BASE,
        "sidekiq.processes",
        [
            {"name": "default", "memoryMax": 1024},
            {"name": "low", "recycleAboveMiB": 256},
            {"name": "mail"},
            {"name": "bulk", "recycleAboveMiB": 2048},
        ],
    )
    stage = parse_stage("staging", values)
    assert [(p.name, p.recycle_above_mib) for p in stage.recycling] == [("low", 256), ("bulk", 2048)]
    assert all(isinstance(p, ResolvedProcess) for p in stage.recycling)


def test_a_stage_recycle_above_mib_recycles_the_default_process() -> None:
    stage = parse_stage("staging", with_change(EC2_BASE, "sidekiq.recycleAboveMiB", 512))
    assert [(p.name, p.recycle_above_mib, p.recycle_check_seconds) for p in stage.recycling] == [
        ("default", 512, 30)
    ]


HEALTHY_FORM = (
    "seconds, 0 to 600, that a new slot must stay up after READY, with its first heartbeat, before the old "
    "slot quiets; 0 quiets the old slot at READY"
)


def test_healthy_seconds_defaults_to_2_and_takes_0_to_600() -> None:
    assert parse_stage("staging", EC2_BASE).config.rollout.healthy_seconds == 2
    for value in (0, 600):
        stage = parse_stage("staging", with_change(EC2_BASE, "rollout.healthySeconds", value))
        assert stage.config.rollout.healthy_seconds == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "Input should be greater than or equal to 0"),
        (601, "Input should be less than or equal to 600"),
        ("soon", "Input should be a valid integer, unable to parse string as an integer"),
    ],
)
def test_healthy_seconds_out_of_range_names_the_key_and_the_form(value, reason) -> None:
    assert problems_of(with_change(EC2_BASE, "rollout.healthySeconds", value)) == [
        f"{NS}:rollout.healthySeconds: {reason}; expected {HEALTHY_FORM}"
    ]


def test_the_recycle_units_cannot_be_adopted_but_a_similar_name_can() -> None:
    assert problems_of(with_change(EC2_BASE, "sidekiq.adopt", ["sidekiq-recycle.service"])) == [
        f"{NS}:sidekiq.adopt[0]: sidekiq-recycle.service is a unit of this group (sidekiq) itself; expected "
        "another team's or capistrano-sidekiq's unit, such as sidekiq.service"
    ]
    for other in ("sidekiq-recycler.service", "jobs-recycle.service", "recycle.service"):
        assert parse_stage(
            "staging", with_change(EC2_BASE, "sidekiq.adopt", [other])
        ).config.sidekiq.adopt == [other]
