"""The component graph under pulumi.runtime mocks: triggers, dependencies, secrets, outputs.

Only the engine's resource monitor is mocked; the program, components and SDKs are real.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import runpy
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks

from components.config import values_from_stack_file
from tests.conftest import EXISTING_STAGE, FAKE_KEY, HOST_KEY

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET_SIG = "4dabf18193072939515e22adb298388d"
ENV_SECRET = "redis://:s3cr3t-env-value@redis.internal:6379/0"


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    inputs: dict[str, Any]  # raw wire form: secrets keep their signature wrapper
    additional_secret_outputs: list[str]
    replace_on_changes: list[str]


def learned_key(host: str) -> str:
    """A distinct ed25519 key per host, as the mocked prepare command reports it."""
    blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + hashlib.sha256(host.encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}"


# What the mocked getAmi answers, by the name filter it was asked for.
IMAGES = {
    "debian-12-amd64-*": "ami-0123456789abcdef0",
    "debian-13-amd64-*": "ami-0d13a0000000000a1",
    "debian-13-arm64-*": "ami-0d13b0000000000b1",
    "debian-12-arm64-*": "ami-0d12b0000000000b1",
}


class Mocks(pulumi_mocks.Mocks):
    def __init__(self) -> None:
        self.calls: list[pulumi_mocks.MockCallArgs] = []

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if args.typ == "aws:ec2/instance:Instance":
            number = args.name.rsplit("-", 1)[1]
            state |= {
                "publicIp": f"198.51.100.{number}",
                "privateIp": f"10.0.0.{number}",
                "publicDns": f"ec2-{number}.example.test",
                "privateDns": f"ip-{number}.internal",
            }
        if args.typ == "aws:ec2/keyPair:KeyPair":
            state["keyName"] = args.name
        if args.typ == "command:remote:Command" and args.name.endswith("-prepare"):
            # What prepare_host prints on a host: its ed25519 key, then the ready line.
            host = args.name.removesuffix("-prepare")
            state["stdout"] = (
                f"sidekiq-fleet: host key: {learned_key(host)}\nsidekiq-fleet: host {host} is ready\n"
            )
        return f"{args.name}-id", state

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict:
        self.calls.append(args)
        if args.token == "aws:ec2/getAmi:getAmi":
            (name,) = next(f["values"] for f in args.args["filters"] if f["name"] == "name")
            return {"id": IMAGES[name]}
        if args.token == "aws:ec2/getSubnet:getSubnet":
            return {"id": args.args["id"], "vpcId": "vpc-0123abcd"}
        raise AssertionError(f"unexpected invoke {args.token}")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps what MockResourceArgs drops: dependencies, parents, secret markers, options."""

    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}
        self.stack_outputs: dict[str, Any] = {}

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        self.registrations[request.name] = Registration(
            type=request.type,
            name=request.name,
            urn=response.urn,
            parent=request.parent,
            dependencies=list(request.dependencies),
            inputs=json_format.MessageToDict(request.object),
            additional_secret_outputs=list(request.additionalSecretOutputs),
            replace_on_changes=list(request.replaceOnChanges),
        )
        return response

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations.values() if r.type == type_]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def without_secrets(value: Any) -> Any:
    if is_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def configure(stack: str, values: dict[str, Any], secret_keys: tuple[str, ...] = ()) -> RecordingMonitor:
    """Mocks first, then config: resources created before set_mocks would check nothing."""
    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    # Pulumi's runtime needs a current event loop; an earlier test's asyncio.run() may have closed it.
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.settings.ROOT.set(None)  # a fresh Stack, without earlier tests' outputs
    pulumi.runtime.set_mocks(mocks, project="sidekiq-fleet", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(
        {
            f"sidekiq-fleet:{key}": value if isinstance(value, str) else json.dumps(value)
            for key, value in values.items()
        },
        secret_keys=[f"sidekiq-fleet:{key}" for key in secret_keys],
    )
    return monitor


def run_program(monitor: RecordingMonitor) -> None:
    """Run __main__.py as Pulumi would and collect its resolved stack outputs."""

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__")
        outputs = pulumi.runtime.get_root_resource().outputs
        return pulumi.Output.from_input(dict(outputs)).apply(monitor.stack_outputs.update)

    program()


def ec2_values(count: int = 3, batch_size: int = 1) -> dict[str, Any]:
    return {
        "app": "example",
        "appVersion": "v1.2.3",
        "hosts": {
            "provider": "ec2",
            "count": count,
            "subnetIds": ["subnet-0a1b2c3d", "subnet-0b1c2d3e"],
            "sshIngressCidrs": ["203.0.113.0/24", "2001:db8::/32"],
            "publicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ7 ops@example",
        },
        "ssh": {"privateKey": FAKE_KEY},
        "rollout": {"batchSize": batch_size},
        "env": {"REDIS_URL": ENV_SECRET},
    }


def restart_of(monitor: RecordingMonitor, host: str) -> Registration:
    return monitor.registrations[f"{host}-restart"]


HOSTS = [f"example-staging-sidekiq-{i}" for i in (1, 2, 3)]
# One copy of every file that is not secret, and the secret env file on its own.
COPIES = ["files", "env"]
ARCHIVE_SIG = "0def7320c3a5731c473e5ecbe6d01bc7"
PUBLIC_FILES = {
    "sidekiq.target",
    "sidekiq-default@.service",
    "sidekiq-first-release.path",
    "sidekiq-first-release.service",
    "sidekiqctl",
    "sidekiq-fleet-sidekiq",
}


@pytest.fixture
def ec2_program() -> RecordingMonitor:
    monitor = configure("staging", ec2_values(), secret_keys=("ssh", "env"))

    run_program(monitor)
    return monitor


def test_security_group_allows_ssh_from_the_configured_cidrs_only(ec2_program: RecordingMonitor) -> None:
    (group,) = ec2_program.of_type("aws:ec2/securityGroup:SecurityGroup")
    (rule,) = group.inputs["ingress"]
    assert (rule["protocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 22.0, 22.0)
    assert rule["cidrBlocks"] == ["203.0.113.0/24"]
    assert rule["ipv6CidrBlocks"] == ["2001:db8::/32"]
    assert group.inputs["vpcId"] == "vpc-0123abcd"


@pytest.mark.parametrize(
    ("ami", "instance_type", "name_filter", "architecture"),
    [
        pytest.param({}, "t3.small", "debian-12-amd64-*", "x86_64", id="default"),
        pytest.param({"debian": 13}, "t3.small", "debian-13-amd64-*", "x86_64", id="debian-13"),
        pytest.param(
            {"debian": 13, "architecture": "arm64"},
            "t4g.small",
            "debian-13-arm64-*",
            "arm64",
            id="debian-13-arm64",
        ),
        pytest.param(
            {"debian": 12, "architecture": "arm64"},
            "m7g.large",
            "debian-12-arm64-*",
            "arm64",
            id="debian-12-arm64",
        ),
    ],
)
def test_instances_run_debians_newest_official_image_of_the_release(
    ami, instance_type, name_filter, architecture
) -> None:
    values = ec2_values()
    values["hosts"]["ami"] = ami
    values["hosts"]["instanceType"] = instance_type
    monitor = configure("staging", values, secret_keys=("ssh", "env"))
    run_program(monitor)
    (lookup,) = [call for call in monitor.mocks.calls if call.token == "aws:ec2/getAmi:getAmi"]
    assert lookup.args["owners"] == ["136693071363"]
    assert lookup.args["mostRecent"] is True
    assert {f["name"]: f["values"] for f in lookup.args["filters"]} == {
        "name": [name_filter],
        "architecture": [architecture],
    }
    instances = monitor.of_type("aws:ec2/instance:Instance")
    assert len(instances) == 3
    assert {i.inputs["ami"] for i in instances} == {IMAGES[name_filter]}
    assert {i.inputs["instanceType"] for i in instances} == {instance_type}


def test_instances_spread_round_robin_with_user_data(ec2_program: RecordingMonitor) -> None:
    instances = sorted(ec2_program.of_type("aws:ec2/instance:Instance"), key=lambda r: r.name)
    subnets = [i.inputs["subnetId"] for i in instances]
    assert subnets == ["subnet-0a1b2c3d", "subnet-0b1c2d3e", "subnet-0a1b2c3d"]
    assert all(i.inputs["ami"] == "ami-0123456789abcdef0" for i in instances)
    assert all("- name: deploy" in i.inputs["userData"] for i in instances)
    assert all(i.inputs["metadataOptions"]["httpTokens"] == "required" for i in instances)


def test_restart_triggers_hold_the_app_version(ec2_program: RecordingMonitor) -> None:
    for host in HOSTS:
        restart = restart_of(ec2_program, host)
        assert restart.inputs["triggers"][0] == "v1.2.3"
        assert "triggers[*]" in restart.replace_on_changes


def test_restart_runs_the_control_scripts_restart_for_its_host(ec2_program: RecordingMonitor) -> None:
    for host in HOSTS:
        body = shlex.split(restart_of(ec2_program, host).inputs["create"])[4]
        assert body.splitlines()[-1] == (
            f"exec env SIDEKIQ_FLEET_HOST={host} /usr/local/sbin/sidekiqctl restart v1.2.3"
        )


def triggers_of(processes: list[dict[str, str]] | None, version: str = "v1.2.3") -> dict[str, list]:
    values = ec2_values(count=1)
    values["appVersion"] = version
    if processes is not None:
        values["sidekiq"] = {"processes": processes}
    monitor = configure("staging", values, secret_keys=("ssh",))
    run_program(monitor)
    host = HOSTS[0]
    return {
        step: monitor.registrations[f"{host}-{step}"].inputs["triggers"] for step in ("install", "restart")
    }


def test_a_new_process_reinstalls_and_restarts_and_a_version_bump_only_restarts() -> None:
    """The files' digest triggers both; appVersion only the restart (env secret left out: plain digests)."""
    base = triggers_of(None)
    added = triggers_of([{"name": "default"}, {"name": "low"}])
    bumped = triggers_of(None, version="v1.2.4")
    assert added["install"] != base["install"]
    assert added["restart"][1] == added["install"][0]
    assert added["restart"][0] == base["restart"][0] == "v1.2.3"
    assert bumped["install"] == base["install"]
    assert bumped["restart"] == ["v1.2.4", base["install"][0]]


def test_restart_depends_on_install_and_install_on_every_copy(ec2_program: RecordingMonitor) -> None:
    regs = ec2_program.registrations
    for host in HOSTS:
        install = regs[f"{host}-install"]
        assert regs[f"{host}-install"].urn in restart_of(ec2_program, host).dependencies
        all_copies = ec2_program.of_type("command:remote:CopyToRemote")
        copies = [r for r in all_copies if r.name.startswith(host + "-")]
        assert sorted(c.name.removeprefix(f"{host}-copy-") for c in copies) == sorted(COPIES)
        assert {c.urn for c in copies} <= set(install.dependencies)
        assert regs[f"{host}-prepare"].urn in copies[0].dependencies
        assert regs[f"{host}-port-open"].urn in regs[f"{host}-prepare"].dependencies


def test_files_that_are_not_secret_travel_in_one_copy_of_a_directory(ec2_program: RecordingMonitor) -> None:
    bundle = PROJECT_DIR / ".state" / "staged" / "staging"
    on_disk = {path.name: path.read_text() for path in bundle.iterdir()}
    assert set(on_disk) == PUBLIC_FILES
    assert "User=deploy" in on_disk["sidekiq-default@.service"]
    assert on_disk["sidekiqctl"].startswith("#!/bin/bash")
    assert not any("s3cr3t-env-value" in content for content in on_disk.values())
    triggers = set()
    for host in HOSTS:
        copy = ec2_program.registrations[f"{host}-copy-files"]
        # Relative (pytest runs here, Pulumi in the project directory), with the slash that makes
        # CopyToRemote copy the directory's files, not the directory.
        assert copy.inputs["source"] == {SECRET_SIG: ARCHIVE_SIG, "path": f"{os.path.relpath(bundle)}/"}
        assert copy.inputs["remotePath"] == "/var/lib/sidekiq-fleet/staging/sidekiq"
        assert "triggers[*]" in copy.replace_on_changes
        triggers.add(tuple(copy.inputs["triggers"]))
        env = ec2_program.registrations[f"{host}-copy-env"]
        assert env.inputs["remotePath"] == "/var/lib/sidekiq-fleet/staging/sidekiq/sidekiq.env"
    (digest,) = triggers
    assert len(digest) == 1
    assert len(digest[0]) == 64


def test_the_copy_of_the_files_is_triggered_by_their_content_only() -> None:
    """A new process adds a unit to the directory; a version bump changes no file."""

    def copy_triggers(processes: list[dict[str, str]] | None, version: str = "v1.2.3") -> list:
        values = ec2_values(count=1)
        values["appVersion"] = version
        if processes is not None:
            values["sidekiq"] = {"processes": processes}
        monitor = configure("staging", values, secret_keys=("ssh",))
        run_program(monitor)
        return monitor.registrations[f"{HOSTS[0]}-copy-files"].inputs["triggers"]

    base = copy_triggers(None)
    assert copy_triggers(None, version="v1.2.4") == base
    assert copy_triggers([{"name": "default"}, {"name": "low"}]) != base
    staged = {path.name for path in (PROJECT_DIR / ".state" / "staged" / "staging").iterdir()}
    assert staged == PUBLIC_FILES | {"sidekiq-low@.service"}
    # Dropping the process drops its unit from the directory, so no host gets it staged again.
    assert copy_triggers(None) == base
    staged = {path.name for path in (PROJECT_DIR / ".state" / "staged" / "staging").iterdir()}
    assert staged == PUBLIC_FILES


@pytest.mark.parametrize(
    ("batch_size", "expected_waits"),
    [
        (1, {0: set(), 1: {0}, 2: {1}}),
        (2, {0: set(), 1: set(), 2: {0, 1}}),
    ],
)
def test_rolling_chain_across_three_hosts(batch_size: int, expected_waits: dict[int, set[int]]) -> None:
    monitor = configure("staging", ec2_values(count=3, batch_size=batch_size), secret_keys=("ssh", "env"))

    run_program(monitor)
    restart_urns = [restart_of(monitor, h).urn for h in HOSTS]
    for index, host in enumerate(HOSTS):
        deps = set(restart_of(monitor, host).dependencies)
        waits = {i for i, urn in enumerate(restart_urns) if urn in deps}
        assert waits == expected_waits[index], host


def test_no_triggered_resource_has_a_delete(ec2_program: RecordingMonitor) -> None:
    """A trigger change replaces the resource and runs the OLD one's delete."""
    commands = ec2_program.of_type("command:remote:Command")
    triggered = [c for c in commands if c.inputs.get("triggers")]
    assert len(triggered) == 6  # install and restart on each of 3 hosts
    for command in triggered:
        assert "delete" not in command.inputs, command.name
    uninstalls = [c for c in commands if "delete" in c.inputs]
    assert sorted(c.name for c in uninstalls) == sorted(f"{h}-uninstall" for h in HOSTS)
    for command in uninstalls:
        assert "triggers" not in command.inputs
        assert "create" not in command.inputs
        body = shlex.split(command.inputs["delete"])[4]
        assert "rm -f /usr/local/sbin/sidekiqctl" in body.splitlines()
        # The units go through this render's control script, carried in the delete itself.
        assert 'env SIDEKIQ_FLEET_HOST="$host" bash "$control" teardown' in body
        assert "marker='# sidekiq-fleet group: sidekiq'" in body.splitlines()


def connection_of(reg: Registration) -> dict[str, Any]:
    connection = reg.inputs["connection"]
    return connection["value"] if is_secret(connection) else connection


def test_secrets_stay_secret(ec2_program: RecordingMonitor) -> None:
    remote = [r for r in ec2_program.registrations.values() if r.type.startswith("command:remote:")]
    # prepare, two copies, install, restart and uninstall on each of the 3 hosts
    assert len(remote) == 18
    for reg in remote:
        connection = reg.inputs["connection"]
        assert is_secret(connection) or is_secret(connection["privateKey"]), reg.name
        key = connection_of(reg)["privateKey"]
        assert (key["value"] if is_secret(key) else key) == FAKE_KEY, reg.name
    for reg in ec2_program.registrations.values():
        plain = json.dumps(without_secrets(reg.inputs))
        assert "OPENSSH PRIVATE KEY" not in plain, reg.name
        assert "s3cr3t-env-value" not in plain, reg.name
    env_copy = ec2_program.registrations[f"{HOSTS[0]}-copy-env"]
    assert is_secret(env_copy.inputs["source"])
    assert "source" in env_copy.additional_secret_outputs
    restart = restart_of(ec2_program, HOSTS[0])
    assert {"stdout", "stderr"} <= set(restart.additional_secret_outputs)
    assert restart.inputs["logging"] == "stdoutAndStderr"


def test_stack_outputs_have_the_documented_shape(ec2_program: RecordingMonitor) -> None:
    outputs = ec2_program.stack_outputs
    assert {k: v for k, v in outputs.items() if k != "hosts"} == {
        "outputsVersion": 3.0,
        "stage": "staging",
        "app": "example",
        "appVersion": "v1.2.3",
        "scope": "system",
        "deployUser": "deploy",
        "units": ["sidekiq.target", "sidekiq-default@.service"],
        "control": "/usr/local/sbin/sidekiqctl",
        "batchSize": 1.0,
        "opsIdentityFile": None,
    }
    assert [h["name"] for h in outputs["hosts"]] == HOSTS
    first = outputs["hosts"][0]
    assert first == {
        "name": HOSTS[0],
        "address": "198.51.100.1",
        "port": 22.0,
        "sshUser": "admin",
        # Learnt by the first connection (prepare), trust on first use.
        "hostKey": learned_key("example-staging-sidekiq-1"),
        "units": ["sidekiq.target", "sidekiq-default@.service"],
        "control": "/usr/local/sbin/sidekiqctl",
        "appVersion": "v1.2.3",
        "instanceId": "example-staging-1-id",
        "publicIp": "198.51.100.1",
        "privateIp": "10.0.0.1",
        "publicDns": "ec2-1.example.test",
        "privateDns": "ip-1.internal",
    }


@pytest.mark.parametrize(("ssh_address", "prefix"), [("public", "198.51.100."), ("private", "10.0.0.")])
def test_ssh_goes_to_the_configured_instance_address(ssh_address: str, prefix: str) -> None:
    values = ec2_values(count=2)
    values["hosts"]["sshAddress"] = ssh_address
    monitor = configure("staging", values, secret_keys=("ssh", "env"))

    run_program(monitor)
    for number, host in ((1, HOSTS[0]), (2, HOSTS[1])):
        address = f"{prefix}{number}"
        for step in (
            "prepare",
            "install",
            "restart",
            "uninstall",
            "copy-files",
            "copy-env",
        ):
            assert connection_of(monitor.registrations[f"{host}-{step}"])["host"] == address, step
        port_open = monitor.registrations[f"{host}-port-open"].inputs["create"]
        assert port_open.startswith(f"address={address} port=22 "), port_open
    assert [h["address"] for h in monitor.stack_outputs["hosts"]] == [f"{prefix}1", f"{prefix}2"]


def test_after_prepare_every_connection_to_an_instance_pins_the_key_prepare_learnt(
    ec2_program: RecordingMonitor,
) -> None:
    """Issue 15, hole 6: only the first connection to a new instance trusts on first use."""
    for host in HOSTS:
        assert "hostKey" not in connection_of(ec2_program.registrations[f"{host}-prepare"])
        for step in ("copy-files", "copy-env", "install", "restart", "uninstall"):
            connection = connection_of(ec2_program.registrations[f"{host}-{step}"])
            assert connection["hostKey"] == learned_key(host), (host, step)


def test_existing_hosts_get_the_same_output_shape_and_pinned_keys() -> None:
    monitor = configure("staging", EXISTING_STAGE, secret_keys=("ssh",))

    run_program(monitor)
    assert not monitor.of_type("aws:ec2/instance:Instance")
    hosts = monitor.stack_outputs["hosts"]
    assert [(h["name"], h["address"], h["port"]) for h in hosts] == [
        ("web1", "192.0.2.11", 22.0),
        ("web2", "192.0.2.12", 2222.0),
    ]
    assert hosts[0] == {
        "name": "web1",
        "address": "192.0.2.11",
        "port": 22.0,
        "sshUser": "admin",
        "hostKey": HOST_KEY,
        "units": ["sidekiq.target", "sidekiq-default@.service"],
        "control": "/usr/local/sbin/sidekiqctl",
        "appVersion": "3f2c1e9",
        "instanceId": None,
        "publicIp": None,
        "privateIp": None,
        "publicDns": None,
        "privateDns": None,
    }
    assert set(hosts[1]) == set(hosts[0])
    # A configured key is never replaced by what prepare printed.
    assert hosts[1]["hostKey"] == EXISTING_STAGE["hosts"]["existing"][1]["hostKey"] != learned_key("web2")
    for step in ("prepare", "copy-files", "install", "restart", "uninstall"):
        connection = connection_of(monitor.registrations[f"web2-{step}"])
        assert connection["hostKey"] == EXISTING_STAGE["hosts"]["existing"][1]["hostKey"], step
    assert connection["port"] == 2222.0
    assert connection["user"] == "admin"
    assert not [r for r in monitor.of_type("command:remote:CopyToRemote") if r.name.endswith("-env")]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_main_runs_with_the_committed_stack_files(stack: str) -> None:
    values = values_from_stack_file(PROJECT_DIR / f"Pulumi.{stack}.yaml")
    values["ssh"]["privateKey"] = FAKE_KEY  # set with `pulumi config set --secret` in real use
    monitor = configure(stack, values, secret_keys=("ssh",))

    run_program(monitor)
    expected_count = values["hosts"]["count"]
    assert len(monitor.of_type("aws:ec2/instance:Instance")) == expected_count
    assert len(monitor.stack_outputs["hosts"]) == expected_count
    assert monitor.stack_outputs["stage"] == stack


def test_bad_config_fails_before_any_resource_is_registered() -> None:
    values = ec2_values()
    values["hosts"]["sshIngressCidrs"] = []
    values["rollout"] = {"batchSize": 0}
    monitor = configure("staging", values, secret_keys=("ssh", "env"))

    with pytest.raises(pulumi.RunError) as error:
        run_program(monitor)
    assert "sidekiq-fleet:hosts.sshIngressCidrs" in str(error.value)
    assert "sidekiq-fleet:rollout.batchSize" in str(error.value)
    assert [r.type for r in monitor.registrations.values()] == ["pulumi:pulumi:Stack"]
