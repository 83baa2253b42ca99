"""The stage config's typed model: every key under the ``sidekiq-fleet:`` namespace of
``Pulumi.<stage>.yaml``, with its expected form as its description."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .. import layout
from . import keys

NAMESPACE = "sidekiq-fleet"
# What `render` shows for encrypted stack values, which only the engine can decrypt.
SECRET_PLACEHOLDER = "<secret: set in the stack, not shown>"

# Debian's official AMIs (account 136693071363), named debian-<release>-<amd64|arm64>-<date>-<build>; the
# default user there is `admin`. Both releases are proven end to end (docs/hosts.md).
DEBIAN_AMI_OWNER = "136693071363"
DEBIAN_RELEASES = (12, 13)
DEFAULT_DEBIAN_RELEASE = 12
DEBIAN_ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64"}
DEFAULT_AMI_USERS = {DEBIAN_AMI_OWNER: "admin", "099720109477": "ubuntu"}

# Values that end up in unit files, sudoers and shell text are restricted to
# characters that need no escaping in any of them; quoting is still applied.
SAFE_PATH = r"^/[A-Za-z0-9._/@+-]*$"
SAFE_WORD = r"^[A-Za-z0-9._/@:+=-]+$"
POSIX_NAME = r"^[a-z_][a-z0-9_-]{0,31}$"
# A letter or digit first: a leading "-" would be an option to root's systemctl.
UNIT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
APP_VERSION = r"^[A-Za-z0-9][A-Za-z0-9._+/-]{0,127}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
PROCESS_NAME = r"^[a-z0-9][a-z0-9-]{0,31}$"
CONFIG_FILE = r"^[A-Za-z0-9._/@+-]+$"
DEFAULT_PROCESS = "default"
# The control script is /usr/local/sbin/<unitName>ctl, first in root's PATH and sudo's secure_path:
# these names would shadow the host's own tools there.
SHADOWED_CTL = frozenset(
    {
        "system", "journal", "login", "network", "hostname", "timedate", "locale", "machine", "bus",
        "resolve", "coredump", "boot", "oom", "portable", "userdb", "home", "sys",
    }
)  # fmt: skip
# /var/lib/sidekiq-fleet/<unitName> holds the version file; staging/ there is every stage's upload area.
RESERVED_UNIT_NAMES = frozenset({"staging"})
# A unit to adopt: a service of any name systemd allows, minus escapes; an instance, not a bare template.
ADOPTED_UNIT = r"^[A-Za-z0-9_][A-Za-z0-9:_.@-]{0,200}\.service$"
# A file directly under /etc/sudoers.d; a letter, digit or _ first, so never an option or a dot file.
SUDOERS_FILE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class AmiById(_Model):
    id: str = Field(pattern=r"^ami-[0-9a-f]{8,17}$", description="an AMI id such as ami-0123456789abcdef0")


class AmiLookup(_Model):
    owner: str = Field(
        DEBIAN_AMI_OWNER,
        pattern=r"^([0-9]{12}|amazon|self|aws-marketplace)$",
        description="an AWS account id (12 digits), amazon, self or aws-marketplace",
    )
    debian: int | None = Field(
        None,
        ge=min(DEBIAN_RELEASES),
        le=max(DEBIAN_RELEASES),
        description="12 (Debian 12, bookworm) or 13 (Debian 13, trixie); 12 when neither it nor name is set",
    )
    name: str | None = Field(
        None,
        min_length=1,
        description="an AMI name filter such as debian-13-amd64-*",
    )
    architecture: Literal["x86_64", "arm64"] = Field("x86_64", description="x86_64 or arm64")

    @model_validator(mode="after")
    def _one_way_to_name(self) -> AmiLookup:
        if self.name is not None and self.debian is not None:
            raise ValueError(
                "debian: is set together with name; expected one of them: debian picks Debian's official "
                "image of that release, name any filter"
            )
        if self.name is None and self.owner != DEBIAN_AMI_OWNER:
            raise ValueError(
                f"name: is required when owner is not Debian's ({DEBIAN_AMI_OWNER}); "
                "expected an AMI name filter such as al2023-ami-2023.*-x86_64"
            )
        return self

    @property
    def name_filter(self) -> str:
        """The image name filter: the configured one, else Debian's for the release and architecture."""
        if self.name is not None:
            return self.name
        release = self.debian or DEFAULT_DEBIAN_RELEASE
        return f"debian-{release}-{DEBIAN_ARCHITECTURES[self.architecture]}-*"


def _has_id(value: dict | AmiById) -> bool:
    return isinstance(value, AmiById) or "id" in value


def _check_cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=False)  # pragma: no mutate - strict=None is False too
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR") from None
    try:
        ipaddress.ip_network(value, strict=True)  # pragma: no mutate - strict is True by default
    except ValueError:
        raise ValueError(f"{value!r} has host bits set; {network} is the network") from None
    return str(network)


def _is_internet_wide(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Broader than any office or VPN: /0 to /7 for IPv4, /0 to /15 for IPv6."""
    return network.prefixlen < (8 if network.version == 4 else 16)


Cidr = Annotated[str, AfterValidator(_check_cidr)]

HostKey = Annotated[
    str,
    Field(
        # A comment may follow, as in /etc/ssh/ssh_host_ed25519_key.pub: it is not pinned.
        pattern=r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]+( [^\n]*)?$",
        description='an ssh public host key such as "ssh-ed25519 AAAAC3Nza..."',
    ),
    AfterValidator(keys.host_key),
]


# Graviton types carry a "g" after the generation (t4g, m7gd, c6gn, x2gd, im4gn); a1 was the first.
ARM64_FAMILY = re.compile(r"a1|[a-z]+[0-9]+[a-z]*g[a-z]*")


def instance_architecture(instance_type: str) -> Literal["x86_64", "arm64"] | None:
    """The architecture of an EC2 instance type by AWS's naming; None for Mac types, which run no
    Debian image."""
    family = instance_type.partition(".")[0]  # pragma: no mutate - one dot (the pattern): rpartition alike
    if family.startswith("mac"):
        return None
    return "arm64" if ARM64_FAMILY.fullmatch(family) else "x86_64"


class Ec2Hosts(_Model):
    provider: Literal["ec2"]
    count: int = Field(ge=1, le=100, description="an integer from 1 to 100")
    instance_type: str = Field(
        "t3.small",
        pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$",
        description="an EC2 instance type such as t3.small",
    )
    ami: Annotated[
        Annotated[AmiById, Tag("by-id")] | Annotated[AmiLookup, Tag("lookup")],
        Discriminator(
            lambda value: "by-id" if isinstance(value, dict | AmiById) and _has_id(value) else "lookup"
        ),
    ] = Field(
        default_factory=AmiLookup,
        description="{id: ami-...}, {debian: 12 or 13, architecture} or {owner, name, architecture}",
    )
    subnet_ids: list[
        Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$", description="subnet-<hex>")]
    ] = Field(min_length=1, description="a non-empty list of subnet ids; hosts are spread round-robin")
    ssh_ingress_cidrs: list[Cidr] = Field(
        min_length=1,
        description="a non-empty list of CIDRs allowed to reach port 22, such as [203.0.113.0/24]",
    )
    allow_ssh_from_anywhere: bool = Field(
        False, description="true to accept 0.0.0.0/0 or ::/0 in sshIngressCidrs"
    )
    ssh_address: Literal["public", "private"] = Field(
        "public", description="public or private: the instance address used for ssh"
    )
    key_name: str | None = Field(
        None, min_length=1, max_length=255, description="the name of an existing EC2 key pair"
    )
    public_key: str | None = Field(
        None,
        pattern=r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]+( .*)?$",
        description="an OpenSSH public key line for a new EC2 key pair",
    )
    root_volume_size: int = Field(20, ge=8, le=16384, description="root volume size in GiB, 8 to 16384")
    tags: dict[str, str] = Field(default_factory=dict, description="a map of tag names to strings")
    iam_instance_profile: str | None = Field(
        None, min_length=1, description="the name of an IAM instance profile"
    )
    cloud_init: str | None = Field(
        None,
        description="the team's own cloud-init user data (#cloud-config or a script), merged after ours",
    )

    @model_validator(mode="after")
    def _check_hosts(self) -> Ec2Hosts:
        open_cidrs = [c for c in self.ssh_ingress_cidrs if _is_internet_wide(ipaddress.ip_network(c))]
        if open_cidrs and not self.allow_ssh_from_anywhere:
            raise ValueError(
                f"sshIngressCidrs: {', '.join(open_cidrs)} opens ssh to the internet at large; "
                "expected your office, VPN or bastion CIDRs, or allowSshFromAnywhere: true"
            )
        architecture = instance_architecture(self.instance_type)
        if isinstance(self.ami, AmiLookup) and architecture not in (None, self.ami.architecture):
            example = "t4g.small" if self.ami.architecture == "arm64" else "t3.small"
            raise ValueError(
                f"instanceType: {self.instance_type} is an {architecture} type, but the image is "
                f"{self.ami.architecture} (ami.architecture), so EC2 would refuse to launch it; expected "
                f"an {self.ami.architecture} type such as {example}, or ami.architecture: {architecture}"
            )
        if (self.key_name is None) == (self.public_key is None):
            raise ValueError(
                "keyName: set exactly one of keyName or publicKey; expected the name of an "
                "existing EC2 key pair, or publicKey with an OpenSSH public key line"
            )
        return self


class ExistingHost(_Model):
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$", description="a short host name"
    )
    address: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$", description="an IP address or DNS name")
    port: int = Field(22, ge=1, le=65535, description="a TCP port from 1 to 65535")
    host_key: HostKey | None = Field(
        None, description='an ssh public host key such as "ssh-ed25519 AAAAC3Nza..."'
    )


class ExistingHosts(_Model):
    provider: Literal["existing"]
    existing: list[ExistingHost] = Field(
        min_length=1, description="a non-empty list of {address, port, hostKey}"
    )

    @model_validator(mode="after")
    def _unique(self) -> ExistingHosts:
        seen: set[tuple[str, int]] = set()
        for host in self.existing:
            if (host.address, host.port) in seen:
                raise ValueError(
                    f"existing: {host.address}:{host.port} is listed twice; expected each host once"
                )
            seen.add((host.address, host.port))
        names = [h.name for h in self.existing if h.name]
        if len(names) != len(set(names)):
            raise ValueError("existing: host names repeat; expected unique names")
        return self


class Ssh(_Model):
    user: str | None = Field(
        None,
        pattern=POSIX_NAME,
        description="the provisioning login user with passwordless sudo, such as admin",
    )
    private_key: SecretStr | None = Field(
        None,
        description="an OpenSSH private key, set with pulumi config set --secret --path ssh.privateKey",
    )
    private_key_file: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._/@+-]+$",
        description="a path to an OpenSSH private key file, absolute or relative to the project",
    )
    known_hosts_file: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._/@+-]+$",
        description="a known_hosts file that pins the keys of existing hosts without hostKey",
    )
    dial_error_limit: int = Field(30, ge=1, le=1000, description="an integer from 1 to 1000")
    per_dial_timeout: int = Field(15, ge=1, le=300, description="seconds, 1 to 300")
    ready_timeout: int = Field(
        600, ge=10, le=3600, description="seconds to wait for port 22 on a new host, 10 to 3600"
    )

    @field_validator("private_key", mode="after")
    @classmethod
    def _looks_like_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and key.get_secret_value() != SECRET_PLACEHOLDER:
            keys.check_private_key(key.get_secret_value())
        return key

    @model_validator(mode="after")
    def _one_key(self) -> Ssh:
        if (self.private_key is None) == (self.private_key_file is None):
            raise ValueError(
                "privateKey: set exactly one of privateKey or privateKeyFile; expected an OpenSSH "
                "private key set with pulumi config set --secret --path ssh.privateKey"
            )
        return self


def _normal_path(path: str) -> str:
    if posixpath.normpath(path) != path or path == "/" or path.startswith("//"):
        raise ValueError("must be a normalized absolute path without .., // or a trailing /")
    return path


def _writable_path(path: str) -> str:
    if path == "/":
        raise ValueError("/ would make the whole file system writable again")
    return _normal_path(path)


WritablePath = Annotated[str, Field(pattern=SAFE_PATH), AfterValidator(_writable_path)]


def _config_file(path: str) -> str:
    """systemd's PathExists= takes only a normalized path, and the first process's file is one."""
    if path.startswith("/"):
        return _normal_path(path)
    if posixpath.normpath(path) != path or path == ".." or path.startswith("../"):
        raise ValueError("must be a normalized path without .., //, ./ or a trailing /")
    return path


ConfigFile = Annotated[str, Field(pattern=CONFIG_FILE), AfterValidator(_config_file)]

# Memory limits and recycling, per stage under sidekiq. or per process; the process's own value wins.
MemoryHigh = Annotated[
    int | None,
    Field(
        ge=64,
        le=1048576,
        description="MiB, 64 to 1048576: systemd's MemoryHigh= for each slot, where the kernel throttles "
        "and reclaims; below memoryMax",
    ),
]
MemoryMax = Annotated[
    int | None,
    Field(
        ge=64,
        le=1048576,
        description="MiB, 64 to 1048576: systemd's MemoryMax= for each slot, where the kernel kills "
        "the process (OOMPolicy=continue, no swap)",
    ),
]
RecycleAboveMiB = Annotated[
    int | None,
    Field(
        alias="recycleAboveMiB",
        ge=64,
        le=1048576,
        description="MiB, 64 to 1048576: a serving slot above it is replaced with no gap; "
        "below memoryHigh and memoryMax; recycling is off without it",
    ),
]


def _off_or_a_limit(mib: int | None) -> int | None:
    if mib is not None and 0 < mib < 64:
        raise ValueError("Input should be 0 or greater than or equal to 64")
    return mib


# A process may turn off the stage's recycling with 0.
ProcessRecycleAboveMiB = Annotated[
    int | None,
    Field(
        alias="recycleAboveMiB",
        ge=0,
        le=1048576,
        description="MiB, 64 to 1048576: a serving slot above it is replaced with no gap; "
        "below memoryHigh and memoryMax; 0 turns off sidekiq.recycleAboveMiB for this process",
    ),
    AfterValidator(_off_or_a_limit),
]
RecycleCheckSeconds = Annotated[
    int | None,
    Field(ge=5, le=3600, description="seconds between memory checks, 5 to 3600; 30 when unset"),
]
RecycleMinIntervalSeconds = Annotated[
    int | None,
    Field(
        ge=30,
        le=86400,
        description="seconds, 30 to 86400: at most one recycle per process in that time; 300 when unset",
    ),
]
DEFAULT_RECYCLE_CHECK_SECONDS = 30
DEFAULT_RECYCLE_MIN_INTERVAL_SECONDS = 300


class Process(_Model):
    """One Sidekiq process per host, run as a template unit with two slots."""

    name: str = Field(
        pattern=PROCESS_NAME,
        description="lowercase letters, digits and -, at most 32, such as default or low",
    )
    config_file: ConfigFile | None = Field(
        None,
        description="a normalized path relative to appDir, or absolute; defaults to sidekiq.configFile",
    )
    drain_timeout: int | None = Field(
        None,
        ge=1,
        le=86400,
        description="seconds the old slot may drain after a restart, 1 to 86400; "
        "defaults to rollout.drainTimeout",
    )
    memory_high: MemoryHigh = None
    memory_max: MemoryMax = None
    recycle_above_mib: ProcessRecycleAboveMiB = None
    recycle_check_seconds: RecycleCheckSeconds = None
    recycle_min_interval_seconds: RecycleMinIntervalSeconds = None


class ResolvedProcess(Process):
    """A process with the defaults of sidekiq and rollout filled in (Stage.processes)."""

    config_file: ConfigFile
    drain_timeout: int
    recycle_check_seconds: int
    recycle_min_interval_seconds: int


def _key(field: str) -> str:
    """A field's config key: its alias."""
    return Sidekiq.model_fields[field].alias or field


class Sidekiq(_Model):
    user: str = Field("deploy", pattern=POSIX_NAME, description="a POSIX user name such as deploy")
    group: str | None = Field(None, pattern=POSIX_NAME, description="a POSIX group name")
    app_dir: str | None = Field(
        None,
        pattern=SAFE_PATH,
        description="an absolute path such as /var/www/<app>/<stage>/current",
    )
    environment: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a Rails environment name such as staging"
    )
    config_file: ConfigFile = Field(
        "config/sidekiq.yml",
        description="a normalized path relative to appDir, or absolute",
    )
    command: str = Field(
        "bundle exec sidekiq",
        description="words like `bundle exec sidekiq` or `/home/deploy/.rbenv/shims/bundle exec sidekiq`",
    )
    login_shell: bool = Field(True, description="true to run the command through /bin/bash -lc")
    timeout: int = Field(25, ge=1, le=3600, description="Sidekiq's -t shutdown timeout in seconds, 1 to 3600")
    timeout_stop_sec: int | None = Field(None, ge=6, le=7200, description="seconds, at least timeout + 5")
    watchdog_sec: int = Field(10, ge=0, le=3600, description="seconds, 0 disables the watchdog")
    restart_sec: int = Field(1, ge=0, le=3600, description="seconds, 0 to 3600")
    unit_name: str = Field(
        "sidekiq",
        pattern=UNIT_NAME,
        description="a letter or digit, then letters, digits, - and _ such as sidekiq",
    )
    scope: Literal["system", "user"] = Field("system", description="system or user")
    unit_template: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._/-]+\.j2$",
        description="a jinja2 template path relative to the project, ending in .j2",
    )
    hardening: Literal["strict", "off"] = Field("strict", description="strict or off")
    writable_paths: list[WritablePath] | None = Field(
        None,
        description="absolute, normalized paths such as /var/www/<app>/<stage>/shared",
    )
    authorized_keys: list[Annotated[str, AfterValidator(keys.authorized_key)]] = Field(
        [],
        max_length=100,
        description='OpenSSH public key lines such as "ssh-ed25519 AAAAC3Nza... alice@laptop"',
    )
    processes: list[Process] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="a list of 1 to 16 {name, configFile, drainTimeout, memoryHigh, memoryMax, "
        "recycleAboveMiB, recycleCheckSeconds, recycleMinIntervalSeconds}; defaults to one process, default",
    )
    memory_high: MemoryHigh = None
    memory_max: MemoryMax = None
    recycle_above_mib: RecycleAboveMiB = None
    recycle_check_seconds: RecycleCheckSeconds = None
    recycle_min_interval_seconds: RecycleMinIntervalSeconds = None
    adopt: list[Annotated[str, Field(pattern=ADOPTED_UNIT)]] = Field(
        [],
        max_length=16,
        description="service names such as sidekiq.service or example_sidekiq_production.service: system "
        "units, or user units of sidekiq.user, that pulumi up takes over with no gap",
    )
    adopt_sudoers: list[Annotated[str, Field(pattern=SUDOERS_FILE_NAME)]] = Field(
        [],
        max_length=16,
        description="file names directly under /etc/sudoers.d, such as deploy-systemctl, that pulumi up "
        "removes (keeping a copy) once visudo -c accepts the configuration without them",
    )

    @field_validator("command", mode="after")
    @classmethod
    def _command_words(cls, command: str) -> str:
        words = command.split()
        if not words:
            raise ValueError("must not be empty")
        for word in words:
            if not re.fullmatch(SAFE_WORD, word):
                raise ValueError(f"word {word!r} has characters outside A-Z a-z 0-9 . _ / @ : + = -")
        if "/" in words[0] and not words[0].startswith("/"):
            raise ValueError(f"{words[0]!r} must be a bare command or an absolute path")
        return " ".join(words)

    @field_validator("app_dir", mode="after")
    @classmethod
    def _normal_app_dir(cls, path: str | None) -> str | None:
        return None if path is None else _normal_path(path)

    @model_validator(mode="after")
    def _stop_timeout(self) -> Sidekiq:
        if self.timeout_stop_sec is not None and self.timeout_stop_sec < self.timeout + 5:
            raise ValueError(
                f"timeoutStopSec: {self.timeout_stop_sec} is below timeout + 5 = "
                f"{self.timeout + 5}, so systemd would SIGKILL Sidekiq before it pushes unfinished "
                f"jobs back to Redis; expected at least {self.timeout + 5}, or leave it unset"
            )
        if self.watchdog_sec == 1:
            raise ValueError(
                "watchdogSec: 1 is too short, Sidekiq pings at half of it; expected 0 (off) or 2+"
            )
        if self.unit_name in SHADOWED_CTL:
            raise ValueError(
                f"unitName: {self.unit_name} would install the control script as "
                f"/usr/local/sbin/{self.unit_name}ctl, ahead of the host's own {self.unit_name}ctl "
                "in root's PATH; expected another name, such as sidekiq"
            )
        if self.unit_name in RESERVED_UNIT_NAMES:
            raise ValueError(
                f"unitName: {self.unit_name} is the name of sidekiq-fleet's upload directory on "
                "the hosts; expected another name, such as sidekiq"
            )
        names = [process.name for process in self.processes or []]
        if len(names) != len(set(names)):
            raise ValueError("processes: names repeat; expected each process name once")
        for index, name in enumerate(self.adopt):
            if name.endswith("@.service"):
                raise ValueError(
                    f"adopt[{index}]: {name} is a template, which does not run; expected an instance "
                    "such as sidekiq@1.service"
                )
            if layout.is_group_service(self.unit_name, name):
                raise ValueError(
                    f"adopt[{index}]: {name} is a unit of this group ({self.unit_name}) itself; expected "
                    "another team's or capistrano-sidekiq's unit, such as sidekiq.service"
                )
        if len(self.adopt) != len(set(self.adopt)):
            raise ValueError("adopt: names repeat; expected each unit once")
        if f"sidekiq-fleet-{self.unit_name}" in self.adopt_sudoers:
            raise ValueError(
                f"adoptSudoers: sidekiq-fleet-{self.unit_name} is this group's own drop-in; expected "
                "the file that holds the broad line, such as deploy-systemctl"
            )
        if len(self.adopt_sudoers) != len(set(self.adopt_sudoers)):
            raise ValueError("adoptSudoers: names repeat; expected each file once")
        self._check_memory()
        if self.hardening == "off" and self.writable_paths is not None:
            raise ValueError(
                "writablePaths: has no effect with hardening: off, where Sidekiq may write anywhere "
                "its user may; expected hardening: strict, or no writablePaths"
            )
        return self

    def memory_setting(self, process: Process | None, index: int, field: str) -> tuple[int | None, str]:
        """A process's own value and its key, else the stage's."""
        own = None if process is None else getattr(process, field)
        if own is not None:
            return own, f"processes[{index}].{_key(field)}"
        return getattr(self, field), _key(field)

    def _check_memory(self) -> None:
        recycling = False  # pragma: no mutate - None is as false for `recycling or ...`
        for index, process in enumerate(self.processes or [None]):
            (high, high_key), (top, top_key), (above, above_key) = (
                self.memory_setting(process, index, field)
                for field in ("memory_high", "memory_max", "recycle_above_mib")
            )
            if high is not None and top is not None and high >= top:
                raise ValueError(
                    f"{high_key}: {high} MiB is not below sidekiq.{top_key} {top} MiB, so the kernel "
                    "would kill the process before it throttles it; expected memoryHigh below memoryMax"
                )
            ceiling, ceiling_key = (high, high_key) if high is not None else (top, top_key)
            if above is not None and ceiling is not None and above >= ceiling:
                raise ValueError(
                    f"{above_key}: {above} MiB is not below sidekiq.{ceiling_key} {ceiling} MiB, so the "
                    "process would be throttled or killed before it is recycled; expected recycleAboveMiB "
                    "below memoryHigh and memoryMax"
                )
            if process is not None and process.recycle_above_mib == 0 and self.recycle_above_mib is None:
                raise ValueError(
                    f"{above_key}: 0 turns off sidekiq.recycleAboveMiB for process {process.name}, which "
                    "is not set; expected 64 to 1048576 to recycle this process, or no recycleAboveMiB"
                )
            recycling = recycling or bool(above)
            for field in ("recycle_check_seconds", "recycle_min_interval_seconds"):
                if process is not None and getattr(process, field) is not None and not above:
                    raise ValueError(
                        f"processes[{index}].{_key(field)}: has no effect without recycleAboveMiB for "
                        f"process {process.name}; expected recycleAboveMiB there or under sidekiq, or no "
                        f"{_key(field)}"
                    )
        if self.recycle_above_mib is not None and not recycling:
            raise ValueError(
                "recycleAboveMiB: has no effect, as every process turns it off with recycleAboveMiB: 0; "
                "expected a process without recycleAboveMiB: 0, or no recycleAboveMiB"
            )
        for field in ("recycle_check_seconds", "recycle_min_interval_seconds"):
            if getattr(self, field) is not None and not recycling:
                raise ValueError(
                    f"{_key(field)}: has no effect without recycleAboveMiB; expected recycleAboveMiB "
                    f"under sidekiq or a process, or no {_key(field)}"
                )


class Ops(_Model):
    """The `sidekiq-fleet` command's side of the stage."""

    identity_file: str | None = Field(
        None,
        pattern=r"^(~/)?[A-Za-z0-9._/@+-]+$",
        description="a private key file that sidekiq-fleet offers as the deploy user when no -i is given: "
        "absolute, ~/..., or relative to the project",
    )


class Rollout(_Model):
    batch_size: int = Field(1, ge=1, le=100, description="an integer from 1 to 100")
    strategy: Literal["overlap", "restart"] = Field(
        "overlap",
        description="overlap (start the new process, then quiet the old one) or restart (stop, then start)",
    )
    healthy_seconds: int = Field(
        2,
        ge=0,
        le=600,
        description="seconds, 0 to 600, that a new slot must stay up after READY, with its first heartbeat, "
        "before the old slot quiets; 0 quiets the old slot at READY",
    )
    drain_timeout: int | None = Field(
        None,
        ge=1,
        le=86400,
        description="seconds the old slot may drain after an overlap restart, 1 to 86400; "
        "defaults to sidekiq.timeout",
    )
    memory_margin: int = Field(
        256,
        ge=0,
        le=1048576,
        description="MiB that must stay free with both slots running, 0 to 1048576; "
        "below it the host falls back to restart",
    )
    quiet_first: bool = Field(True, description="true to send TSTP before a restart-strategy stop")
    max_busy_wait: int = Field(
        0, ge=0, le=3600, description="seconds a restart-strategy stop waits for busy workers, 0 to 3600"
    )

    @model_validator(mode="after")
    def _busy_wait_needs_quiet(self) -> Rollout:
        if self.max_busy_wait and not self.quiet_first:
            raise ValueError(
                f"maxBusyWait: {self.max_busy_wait} has no effect with quietFirst: false, as only a "
                "quiet process stops taking jobs; expected 0, or quietFirst: true"
            )
        return self


def _single_line(value: SecretStr) -> SecretStr:
    if any(c in value.get_secret_value() for c in "\n\r\x00"):
        raise ValueError("contains a newline, carriage return or NUL; expected a single line")
    return value


# Secret values are allowed, so every value is kept out of reprs and logs.
EnvValue = Annotated[SecretStr, AfterValidator(_single_line)]


class StageConfig(_Model):
    app: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="the application name, lowercase letters, digits, - and _",
    )
    app_version: str = Field(
        pattern=APP_VERSION,
        description="a git SHA or tag such as v1.4.2: letters, digits and . _ + / -, at most 128",
    )
    hosts: Ec2Hosts | ExistingHosts = Field(discriminator="provider")
    ssh: Ssh
    sidekiq: Sidekiq = Field(default_factory=Sidekiq)
    rollout: Rollout = Field(default_factory=Rollout)
    ops: Ops = Field(default_factory=Ops)
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], EnvValue] = Field(
        default_factory=dict,
        description="a map of environment variable names to single-line strings",
    )

    @model_validator(mode="after")
    def _ssh_user_known(self) -> StageConfig:
        if self.ssh.user is None and self.default_ssh_user is None:
            raise ValueError(
                "ssh.user: is required unless hosts use the default Debian or Ubuntu AMI lookup; "
                "expected the login user with passwordless sudo, such as admin"
            )
        sidekiq = self.sidekiq
        recycled = [
            key
            for above, key in (
                sidekiq.memory_setting(process, index, "recycle_above_mib")
                for index, process in enumerate(sidekiq.processes or [None])
            )
            if above
        ]
        if self.rollout.strategy == "restart" and recycled:
            raise ValueError(
                f"sidekiq.{recycled[0]}: recycling starts a second process beside the one it replaces, "
                "which rollout.strategy: restart says the host cannot hold; expected rollout.strategy: "
                "overlap, or no recycleAboveMiB"
            )
        if "MALLOC_ARENA_MAX" in self.env:
            raise ValueError("env.MALLOC_ARENA_MAX: the unit sets it to 2; expected other names")
        if isinstance(self.hosts, ExistingHosts) and self.ssh.known_hosts_file is None:
            for index, host in enumerate(self.hosts.existing):
                if host.host_key is None:
                    raise ValueError(
                        f"hosts.existing[{index}].hostKey: is required unless ssh.knownHostsFile is "
                        'set; expected an ssh public host key such as "ssh-ed25519 AAAAC3Nza..."'
                    )
        return self

    @property
    def default_ssh_user(self) -> str | None:
        hosts = self.hosts
        if isinstance(hosts, Ec2Hosts) and isinstance(hosts.ami, AmiLookup):
            return DEFAULT_AMI_USERS.get(hosts.ami.owner)
        return None


class Stage(BaseModel):
    """A validated stage: the config plus the values derived from the stage name."""

    model_config = ConfigDict(frozen=True)

    name: str
    config: StageConfig

    @property
    def ssh_user(self) -> str:
        user = self.config.ssh.user or self.config.default_ssh_user
        if user is None:  # StageConfig refuses this config: "ssh.user: is required unless ..."
            raise ValueError("ssh.user is required")  # pragma: no mutate - unreachable, see above
        return user

    @property
    def app_dir(self) -> str:
        return self.config.sidekiq.app_dir or f"/var/www/{self.config.app}/{self.name}/current"

    @property
    def app_root(self) -> str:
        """Where every release lives: Capistrano's deploy_to above `current`, else the app directory."""
        app_dir = self.app_dir
        return posixpath.dirname(app_dir) if posixpath.basename(app_dir) == "current" else app_dir

    @property
    def environment(self) -> str:
        return self.config.sidekiq.environment or self.name

    @property
    def processes(self) -> list[ResolvedProcess]:
        """Every process with its config file and drain timeout filled in."""
        sidekiq = self.config.sidekiq
        drain_timeout = self.config.rollout.drain_timeout or sidekiq.timeout
        declared = sidekiq.processes or [Process(name=DEFAULT_PROCESS)]
        return [
            ResolvedProcess(
                name=process.name,
                config_file=process.config_file or sidekiq.config_file,
                drain_timeout=process.drain_timeout or drain_timeout,
                memory_high=process.memory_high or sidekiq.memory_high,
                memory_max=process.memory_max or sidekiq.memory_max,
                # 0, a process's own "off", is None here, as unset is.
                recycle_above_mib=sidekiq.memory_setting(process, index, "recycle_above_mib")[0] or None,
                recycle_check_seconds=process.recycle_check_seconds
                or sidekiq.recycle_check_seconds
                or DEFAULT_RECYCLE_CHECK_SECONDS,
                recycle_min_interval_seconds=process.recycle_min_interval_seconds
                or sidekiq.recycle_min_interval_seconds
                or DEFAULT_RECYCLE_MIN_INTERVAL_SECONDS,
            )
            for index, process in enumerate(declared)
        ]

    @property
    def recycling(self) -> list[ResolvedProcess]:
        """The processes whose serving slot is replaced when it grows past recycleAboveMiB."""
        return [process for process in self.processes if process.recycle_above_mib is not None]

    @property
    def timeout_stop_sec(self) -> int:
        return self.config.sidekiq.timeout_stop_sec or self.config.sidekiq.timeout + 5

    @property
    def default_writable_paths(self) -> list[str]:
        """The release's tmp/ and log/, and Capistrano's shared/ beside `current`."""
        app_dir = self.app_dir
        paths = [f"{app_dir}/tmp", f"{app_dir}/log"]
        if self.app_root != app_dir:
            paths.append(posixpath.join(self.app_root, "shared"))
        return paths


STAGE_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


def models_in(annotation: Any, tag: str = "") -> list[tuple[type[BaseModel], str]]:
    """The models a field holds, each with what picks it in a union: its provider or its Tag."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        provider = annotation.model_fields.get("provider")
        return [(annotation, f"provider: {get_args(provider.annotation)[0]}" if provider else tag)]
    args = get_args(annotation)
    tag = next((arg.tag for arg in args if isinstance(arg, Tag)), tag)
    return [found for arg in args for found in models_in(arg, tag)]
