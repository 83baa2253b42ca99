"""Measure what each distro's local hosts run, and print the README's supported-versions table.

    python bench/versions.py [--distro bookworm --distro trixie]

Run it as root (`source bin/_common.sh`). For each distro it boots one host (replacing any running ones),
asks the running programs for their versions (systemd, sudo, Ruby, Redis), starts the example app's
Sidekiq under systemd-run as deploy and reads its version and concurrency from its process title, then
stops the host. Nothing is taken from package names or from this project's own records.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import localhosts  # noqa: E402
from localhosts import config  # noqa: E402

RELEASE = f"{config.APP_ROOT}/current"
TITLE = re.compile(r"^sidekiq (\S+) .*\[\d+ of (\d+) busy\]")

# column, command run as root on the host, pattern whose first group is the version
PROBES: list[tuple[str, str, str]] = [
    ("Debian", "cat /etc/debian_version", r"^(\S+)"),
    ("systemd", "systemctl --version", r"^systemd (\d+ \([^)]*\))"),
    ("sudo", "sudo -V", r"^Sudo version (\S+)"),
    ("Ruby", "ruby -v", r"^ruby (\S+)"),
    ("Redis", "redis-cli INFO server", r"redis_version:(\S+)"),
]


def first_group(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no {pattern!r} in {text!r}")
    return match.group(1)


def sidekiq_title(host: Any, timeout: float = 60) -> tuple[str, str]:
    """(version, concurrency) from the app Sidekiq's title at its first heartbeat; it runs as deploy."""
    argv = (
        "systemd-run --unit=versions-sidekiq --collect --uid=deploy --gid=deploy "
        f"--working-directory={RELEASE} --setenv=HOME=/home/deploy "
        "bundle exec sidekiq -e local -C config/sidekiq.yml"
    )
    host.exec(argv, check=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = host.exec("systemctl show -p MainPID --value versions-sidekiq.service").stdout.strip()
            if pid not in ("", "0"):
                match = TITLE.search(host.exec(f"ps -o args= -p {pid}").stdout.strip())
                if match:
                    return match.group(1), match.group(2)
            time.sleep(0.5)
        raise RuntimeError(f"{host.name}: no Sidekiq process title within {timeout} s")
    finally:
        host.exec("systemctl stop versions-sidekiq.service")


def measure(distro: str) -> dict[str, str]:
    with localhosts.up(1, distro=distro) as fleet:
        (host,) = fleet
        row = {"distro": f"{distro}"}
        for column, command, pattern in PROBES:
            row[column] = first_group(pattern, host.exec(command, check=True).stdout)
        row["Sidekiq"], row["concurrency"] = sidekiq_title(host)
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--distro", action="append", choices=sorted(config.DISTROS))
    args = parser.parse_args(argv)
    rows = [measure(distro) for distro in args.distro or list(config.DISTROS)]
    columns = ["distro", "Debian", "systemd", "sudo", "Ruby", "Sidekiq", "concurrency", "Redis"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row[c] for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
