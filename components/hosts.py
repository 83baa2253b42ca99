"""Host components: new EC2 instances or existing servers, in one output shape."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pulumi

from .config import AmiById, Ec2Hosts, ExistingHosts, Stage
from .render import render_user_data


@dataclass(frozen=True)
class Host:
    """One server Sidekiq runs on, as the service component needs it."""

    name: str
    address: pulumi.Input[str]
    port: int
    host_key: str | None
    details: dict[str, Any]  # instance id and addresses for the stack outputs


def _ec2_hosts(component: pulumi.ComponentResource, name: str, stage: Stage) -> list[Host]:
    # Imported here: loading the AWS SDK costs about 0.5 s of every `pulumi up`, and only EC2 stages use it.
    import pulumi_aws as aws

    config = stage.config
    hosts = config.hosts
    assert isinstance(hosts, Ec2Hosts)
    child = pulumi.ResourceOptions(parent=component)
    tags = {"sidekiq-fleet:app": config.app, "sidekiq-fleet:stage": stage.name, **hosts.tags}

    subnet = aws.ec2.get_subnet_output(
        id=hosts.subnet_ids[0], opts=pulumi.InvokeOutputOptions(parent=component)
    )
    networks = [ipaddress.ip_network(c) for c in hosts.ssh_ingress_cidrs]
    security_group = aws.ec2.SecurityGroup(
        f"{name}-ssh",
        description=f"ssh to the {config.app} {stage.name} Sidekiq hosts",
        vpc_id=subnet.vpc_id,
        ingress=[
            aws.ec2.SecurityGroupIngressArgs(
                description="ssh",
                protocol="tcp",
                from_port=22,
                to_port=22,
                cidr_blocks=[str(n) for n in networks if n.version == 4],
                ipv6_cidr_blocks=[str(n) for n in networks if n.version == 6],
            )
        ],
        egress=[
            aws.ec2.SecurityGroupEgressArgs(
                protocol="-1",
                from_port=0,
                to_port=0,
                cidr_blocks=["0.0.0.0/0"],
                ipv6_cidr_blocks=["::/0"],
            )
        ],
        tags=tags,
        opts=child,
    )

    if hosts.public_key is not None:
        key_name: pulumi.Input[str] | None = aws.ec2.KeyPair(
            f"{name}-key", public_key=hosts.public_key, tags=tags, opts=child
        ).key_name
    else:
        key_name = hosts.key_name

    if isinstance(hosts.ami, AmiById):
        ami: pulumi.Input[str] = hosts.ami.id
    else:
        ami = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[hosts.ami.owner],
            filters=[
                aws.ec2.GetAmiFilterArgs(name="name", values=[hosts.ami.name_filter]),
                aws.ec2.GetAmiFilterArgs(name="architecture", values=[hosts.ami.architecture]),
            ],
            opts=pulumi.InvokeOutputOptions(parent=component),
        ).id

    user_data = render_user_data(stage)
    result = []
    for index in range(hosts.count):
        host_name = f"{config.app}-{stage.name}-sidekiq-{index + 1}"
        instance = aws.ec2.Instance(
            f"{name}-{index + 1}",
            ami=ami,
            instance_type=hosts.instance_type,
            subnet_id=hosts.subnet_ids[index % len(hosts.subnet_ids)],
            vpc_security_group_ids=[security_group.id],
            key_name=key_name,
            user_data=user_data,
            iam_instance_profile=hosts.iam_instance_profile,
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_size=hosts.root_volume_size, volume_type="gp3", encrypted=True
            ),
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="required"),
            tags={"Name": host_name, **tags},
            # A newer AMI matching the lookup must not replace running workers.
            opts=pulumi.ResourceOptions(parent=component, ignore_changes=["ami"]),
        )
        address = instance.public_ip if hosts.ssh_address == "public" else instance.private_ip
        result.append(
            Host(
                name=host_name,
                address=address,
                port=22,
                host_key=None,
                details={
                    "instanceId": instance.id,
                    "publicIp": instance.public_ip,
                    "privateIp": instance.private_ip,
                    "publicDns": instance.public_dns,
                    "privateDns": instance.private_dns,
                },
            )
        )
    return result


def _existing_hosts(stage: Stage) -> list[Host]:
    hosts = stage.config.hosts
    assert isinstance(hosts, ExistingHosts)
    return [
        Host(
            name=entry.name or f"host{index + 1}",
            address=entry.address,
            port=entry.port,
            host_key=entry.host_key,
            details={
                "instanceId": None,
                "publicIp": None,
                "privateIp": None,
                "publicDns": None,
                "privateDns": None,
            },
        )
        for index, entry in enumerate(hosts.existing)
    ]


class _HostsComponent(pulumi.ComponentResource):
    hosts: list[Host]

    def _publish(self) -> None:
        self.register_outputs({"hosts": [{"name": h.name, **h.details} for h in self.hosts]})


class Ec2Instances(_HostsComponent):
    """New EC2 instances: security group, key pair, AMI lookup, instances across subnets."""

    def __init__(self, name: str, stage: Stage, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sidekiq-fleet:hosts:Ec2Instances", name, None, opts)
        self.hosts = _ec2_hosts(self, name, stage)
        self._publish()


class ExistingServers(_HostsComponent):
    """Servers that already exist, taken from the stage config."""

    def __init__(self, name: str, stage: Stage, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sidekiq-fleet:hosts:ExistingServers", name, None, opts)
        self.hosts = _existing_hosts(stage)
        self._publish()


def provision_hosts(name: str, stage: Stage) -> list[Host]:
    component = Ec2Instances if stage.config.hosts.provider == "ec2" else ExistingServers
    return component(name, stage).hosts
