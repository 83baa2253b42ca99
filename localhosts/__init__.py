"""Local Debian bookworm hosts with systemd as PID 1 (systemd-nspawn), for end-to-end tests and a demo stage.

Typical use (the hosts are torn down on leaving the block, even on Ctrl-C)::

    with localhosts.up(3) as hosts:
        hosts[0].ssh("sudo -n true", check=True)
        hosts[0].exec(["systemctl", "stop", "ssh.service"])
"""

from .machines import Fleet, Host, HostStatus, down, get, hosts, reboot, status, up
from .template import ensure_template, template_key

__all__ = [
    "Fleet",
    "Host",
    "HostStatus",
    "down",
    "ensure_template",
    "get",
    "hosts",
    "reboot",
    "status",
    "template_key",
    "up",
]
