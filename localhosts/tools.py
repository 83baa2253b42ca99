"""Prerequisites on the main machine: Debian tools, the apt mirror, the harness SSH key."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import config
from .sysutil import Log, quiet, run

SOURCES_DEB822 = Path("/etc/apt/sources.list.d/debian.sources")
SOURCES_LIST = Path("/etc/apt/sources.list")


def ensure_tools(log: Log = quiet) -> None:
    """apt-get install whatever the harness needs and is missing; update the lists only if that fails."""
    missing = sorted({pkg for tool, pkg in config.TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", *missing]
    if run(argv, check=False, env=env).returncode != 0:
        # Fresh machines often have no package lists yet.
        run(["apt-get", "update", "-q"], env=env)
        run(argv, env=env)


def _is_release(suite: str) -> bool:
    # bookworm, trixie: not bookworm-updates or bookworm-security, which live on other archives.
    return "-" not in suite and "/" not in suite


def debian_mirror() -> str:
    """The mirror this machine's apt uses for a Debian release's main component; every release the hosts
    run comes from the same archive. Hosts' names never live in our files."""
    override = os.environ.get("SIDEKIQ_FLEET_MIRROR")
    if override:
        return override
    if SOURCES_DEB822.exists():
        for stanza in SOURCES_DEB822.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if (
                "deb" in fields.get("types", "").split()
                and any(_is_release(suite) for suite in fields.get("suites", "").split())
                and "main" in fields.get("components", "").split()
                and fields.get("enabled", "yes").lower() != "no"
            ):
                return fields["uris"].split()[0]
    if SOURCES_LIST.exists():
        for line in SOURCES_LIST.read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            # deb [options] URI suite components...
            parts = [p for p in parts if not (p.startswith("[") or p.endswith("]"))]
            if len(parts) >= 4 and parts[0] == "deb" and _is_release(parts[2]) and "main" in parts[3:]:
                return parts[1]
    raise RuntimeError(
        f"no apt source for a Debian release's main component in {SOURCES_DEB822} or {SOURCES_LIST}; "
        "set SIDEKIQ_FLEET_MIRROR"
    )


def ensure_keypair(log: Log = quiet) -> Path:
    """Generate the harness key once; the template authorizes its public half."""
    key = config.key_path()
    pub = key.with_name(key.name + ".pub")
    if key.exists() and pub.exists():
        os.chmod(key, 0o600)
        return key
    key.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(key.parent, 0o700)
    for stale in (key, pub):
        stale.unlink(missing_ok=True)
    log(f"generating {key}")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sidekiq-fleet-localhosts", "-f", str(key)])
    os.chmod(key, 0o600)
    return key


def public_key() -> str:
    key = config.key_path()
    return key.with_name(key.name + ".pub").read_text().strip()
