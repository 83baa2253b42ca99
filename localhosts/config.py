"""Paths, names and the fixed choices of the harness, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VARIANT = "minbase"


@dataclass(frozen=True)
class Distro:
    """What a Debian release's archive ships that the template build checks."""

    sidekiq: str
    ruby_package: str


# By suite (debootstrap's name). Each template build refuses a Sidekiq other than the one named here.
DISTROS: dict[str, Distro] = {
    "bookworm": Distro(sidekiq="6.4.1", ruby_package="ruby3.1"),
    "trixie": Distro(sidekiq="7.3.2", ruby_package="ruby3.3"),
}
DEFAULT_DISTRO = "bookworm"


def distro(name: str) -> Distro:
    try:
        return DISTROS[name]
    except KeyError:
        raise ValueError(f"unknown distro {name!r}; one of: {', '.join(DISTROS)}") from None


# What the template is debootstrapped with. Changing it changes the template key, so it rebuilds.
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "sudo",
    "ruby",
    "ruby-sidekiq",
    "bundler",
    "redis-server",
    "redis-tools",
    "iproute2",
    "procps",
    "netbase",
    "ca-certificates",
)

LOGIN_USER = "admin"
DEPLOY_USER = "deploy"
# SIDEKIQ_FLEET_HOST_PREFIX and SIDEKIQ_FLEET_SUBNET give a second, independent set of hosts (its own
# names, addresses, cgroups and runtime directory), so two suites can run on one machine at once.
HOST_PREFIX = os.environ.get("SIDEKIQ_FLEET_HOST_PREFIX") or "sfhost"
APP_ROOT = "/var/www/example/local"
RELEASE = "20260101000000"

# Host i gets 10.213.i.2/24; the main machine's end of ve-<name> gets 10.213.i.1/24.
SUBNET_PREFIX = os.environ.get("SIDEKIQ_FLEET_SUBNET") or "10.213"
MAX_HOSTS = 250

# One cgroup subtree per host in each hierarchy (see shared/notes/local-systemd-hosts.md).
CGROUP_ROOTS: tuple[Path, ...] = (
    Path("/sys/fs/cgroup/systemd"),
    Path("/sys/fs/cgroup/unified"),
)
CGROUP_PARENT = "sidekiq-fleet-hosts" + ("" if HOST_PREFIX == "sfhost" else f"-{HOST_PREFIX}")

# Tools on the main machine and the Debian packages that bring them.
TOOLS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "systemd-machine-id-setup": "systemd",
    "sudo": "sudo",
    "nsenter": "util-linux",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
}

RECIPE_DIR = Path(__file__).resolve().parent / "recipe"


def cache_root() -> Path:
    """Where templates and the harness key live; never inside the repository."""
    return Path(os.environ.get("SIDEKIQ_FLEET_CACHE") or "/var/cache/sidekiq-fleet")


def runtime_root() -> Path:
    """Where per-boot data lives: overlays, logs, state. Gone after a reboot, like the hosts."""
    return Path(os.environ.get("SIDEKIQ_FLEET_RUNTIME") or f"/run/{CGROUP_PARENT}")


def state_path() -> Path:
    return runtime_root() / "state.json"


def key_path() -> Path:
    """The harness's ed25519 private key; authorized for the login and deploy users."""
    return cache_root() / "ssh" / "id_ed25519"


def host_name(index: int) -> str:
    return f"{HOST_PREFIX}{index}"


def host_address(index: int) -> str:
    return f"{SUBNET_PREFIX}.{index}.2"


def gateway_address(index: int) -> str:
    return f"{SUBNET_PREFIX}.{index}.1"


def link_name(name: str) -> str:
    # nspawn names the main machine's end "ve-" + machine name, cut to the 15-byte IFNAMSIZ limit.
    return ("ve-" + name)[:15]
