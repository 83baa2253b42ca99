"""The harness's reboot: the same overlay boots again, with the same name, address and host key."""

from __future__ import annotations

import json

import pytest

import localhosts
from localhosts import config

pytestmark = pytest.mark.e2e

HOST_COUNT = 1
MARKER = "/var/tmp/written-before-the-reboot"


def boot_id(host: localhosts.Host) -> str:
    return host.exec(["cat", "/proc/sys/kernel/random/boot_id"], check=True).stdout.strip()


def test_reboot_keeps_the_disk_and_boots_afresh(hosts: localhosts.Fleet) -> None:
    before = localhosts.get(hosts[0].name)
    first_boot = boot_id(before)
    before.exec(f"echo {first_boot} > {MARKER}", check=True)

    after = before.reboot()

    assert after.nspawn_pid != before.nspawn_pid
    assert not before.alive()
    assert after.alive()
    assert (after.name, after.address, after.host_key) == (before.name, before.address, before.host_key)
    assert boot_id(after) != first_boot
    # Over ssh with strict host key checking: the recorded key is still the host's.
    assert after.ssh(f"cat {MARKER}", check=True).stdout.strip() == first_boot
    assert after.exec(["systemctl", "is-system-running"]).stdout.strip() == "running"
    record = json.loads(config.state_path().read_text())["hosts"][0]
    assert record["phase"] == "ready"
    assert record["nspawn_pid"] == after.nspawn_pid
    assert localhosts.get(before.name) == after


def test_reboot_from_inside_the_host_is_brought_back(hosts: localhosts.Fleet) -> None:
    host = localhosts.get(hosts[0].name)
    first_boot = boot_id(host)
    # As a test of the program would: the host reboots itself, then the harness boots it again.
    # The shutdown may close the session before ssh sees the command's exit (255: "closed by remote host").
    assert host.ssh("sudo -n systemctl reboot --no-block").returncode in (0, 255)

    again = localhosts.reboot(host.name)

    assert again.nspawn_pid != host.nspawn_pid
    assert again.alive()
    assert boot_id(again) != first_boot
    assert again.ssh(f"test -s {MARKER}").returncode == 0
