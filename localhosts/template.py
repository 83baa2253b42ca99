"""The template root filesystem: debootstrapped once, configured in a chroot, cached by recipe hash."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from . import config, tools
from .sysutil import Log, atomic_write, mounts_under, quiet, remove_tree, run, unmount_all

RECIPE_IN_ROOT = "/tmp/sidekiq-fleet-recipe"


def rootfs_dir(distro: str) -> Path:
    """One folder per distro, so building one never prunes the other's template."""
    config.distro(distro)  # an unknown name fails here, not in a path
    return config.cache_root() / "rootfs" / distro


def _recipe_files(distro: str) -> list[Path]:
    """The recipe's shared files and this distro's own (recipe/distros/<distro>/), not another's."""
    own = config.RECIPE_DIR / "distros" / distro
    others = config.RECIPE_DIR / "distros"
    return sorted(
        p
        for p in config.RECIPE_DIR.rglob("*")
        if p.is_file() and (p.is_relative_to(own) or not p.is_relative_to(others))
    )


def template_key(distro: str = config.DEFAULT_DISTRO) -> str:
    """Hash of everything that shapes the image, so any recipe change builds a new template."""
    recipe = []
    for path in _recipe_files(distro):
        rel = path.relative_to(config.RECIPE_DIR).as_posix()
        recipe.append([rel, os.access(path, os.X_OK), hashlib.sha256(path.read_bytes()).hexdigest()])
    ships = config.distro(distro)
    material = {
        "suite": distro,
        "variant": config.VARIANT,
        "packages": sorted(config.PACKAGES),
        "recipe": recipe,
        "admin_pubkey": tools.public_key(),
        "app_root": config.APP_ROOT,
        "release": config.RELEASE,
        "sidekiq": ships.sidekiq,
    }
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def ensure_template(distro: str = config.DEFAULT_DISTRO, log: Log = quiet, force: bool = False) -> Path:
    """Return the distro's template for the current recipe, building it first if needed."""
    tools.ensure_tools(log)
    tools.ensure_keypair(log)
    key = template_key(distro)
    folder = rootfs_dir(distro)
    dest = folder / key
    if dest.is_dir() and not force:
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        # Two builders at once would only waste a minute each; the second reuses the first's result.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.is_dir() and not force:
            return dest
        _remove_stale_builds(folder, log)
        started = time.monotonic()
        build = folder / f".build-{key}-{os.getpid()}"
        try:
            _debootstrap(build, distro, log)
            _configure(build, distro, log)
            meta = _describe(build, distro, key, time.monotonic() - started)
            if dest.is_dir():
                # Only with force: move the old one aside first so the new one still lands atomically.
                old = folder / f".old-{key}-{os.getpid()}"
                dest.rename(old)
                remove_tree(old)
            build.rename(dest)
            atomic_write(folder / f"{key}.json", json.dumps(meta, indent=2) + "\n")
            log(f"template {dest} built in {meta['build_seconds']:.0f} s")
            _prune_unused(keep=dest, log=log)
            return dest
        finally:
            if build.exists():
                unmount_all(build, log)
                remove_tree(build)


def _remove_stale_builds(folder: Path, log: Log) -> None:
    # Holding the lock means no build is running, so any leftover is from a build that died.
    for stale in folder.glob(".build-*"):
        log(f"removing unfinished build {stale}")
        unmount_all(stale, log)
        remove_tree(stale)
    for stale in folder.glob(".old-*"):
        remove_tree(stale)


def _prune_unused(keep: Path, log: Log) -> None:
    """Drop this distro's templates of older recipes (about 215 MB each) unless a host still uses one as its
    lower layer."""
    in_use = Path("/proc/self/mounts").read_text()
    for old in keep.parent.iterdir():
        if old == keep or old.name.startswith(".") or not old.is_dir():
            continue
        if f"lowerdir={old}," in in_use or f"lowerdir={old} " in in_use:
            continue
        log(f"removing template of an older recipe {old}")
        remove_tree(old)
        old.with_name(old.name + ".json").unlink(missing_ok=True)


def _build_log() -> Path:
    path = config.cache_root() / "logs" / "template-build.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _logged(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    """Run a long build step with its chatter in the build log, and its tail in the error if it fails."""
    logfile = _build_log()
    with open(logfile, "a") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n")
        fh.flush()
        proc = subprocess.run(argv, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL, env=env)
    if proc.returncode != 0:
        tail = "".join(logfile.read_text().splitlines(keepends=True)[-25:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); end of {logfile}:\n{tail}")


def _debootstrap(build: Path, distro: str, log: Log) -> None:
    mirror = tools.debian_mirror()
    log(f"debootstrap {distro} ({config.VARIANT}) into {build}")
    _logged(
        [
            "debootstrap",
            f"--variant={config.VARIANT}",
            "--components=main",
            f"--include={','.join(config.PACKAGES)}",
            distro,
            str(build),
            mirror,
        ],
        "debootstrap",
    )


def _configure(build: Path, distro: str, log: Log) -> None:
    log("configuring the template in a chroot")
    recipe = build / RECIPE_IN_ROOT.lstrip("/")
    shutil.copytree(config.RECIPE_DIR, recipe, ignore=shutil.ignore_patterns("__pycache__"))
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "ADMIN_PUBKEY": tools.public_key(),
        "APP_ROOT": config.APP_ROOT,
        "RELEASE": config.RELEASE,
        "SIDEKIQ_VERSION": config.distro(distro).sidekiq,
        "DISTRO": distro,
        "RECIPE": RECIPE_IN_ROOT,
    }
    # Ruby and setpriv want /proc; nothing else from the main machine is bound in.
    run(["mount", "-t", "proc", "proc", str(build / "proc")])
    try:
        _logged(
            ["chroot", str(build), "/bin/bash", f"{RECIPE_IN_ROOT}/configure.sh"],
            "template configuration",
            env,
        )
    finally:
        unmount_all(build / "proc", log)
    if mounts_under(build):
        raise RuntimeError(f"mounts left under {build}: {mounts_under(build)}")
    shutil.rmtree(recipe)


def _describe(build: Path, distro: str, key: str, seconds: float) -> dict[str, object]:
    """Record what went into the template, and refuse one with the wrong Sidekiq."""
    ships = config.distro(distro)
    wanted = [
        "ruby-sidekiq",
        "ruby",
        ships.ruby_package,
        "bundler",
        "redis-server",
        "systemd",
        "openssh-server",
        "sudo",
    ]
    out = run(["chroot", str(build), "dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *wanted]).stdout
    versions = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    upstream = versions.get("ruby-sidekiq", "").split("+")[0].split("-")[0]
    if upstream != ships.sidekiq:
        got = versions.get("ruby-sidekiq")
        raise RuntimeError(f"template has ruby-sidekiq {got}, want {ships.sidekiq}")
    size = int(run(["du", "-sxb", str(build)]).stdout.split()[0])
    return {
        "key": key,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds, 1),
        "size_bytes": size,
        "suite": distro,
        "packages": list(config.PACKAGES),
        "versions": versions,
    }
