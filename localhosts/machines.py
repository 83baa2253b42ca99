"""Booting, reaching and stopping the nspawn hosts."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from . import config, state, template, tools
from .sysutil import (
    Log,
    cgroup_procs,
    container_init,
    is_alive,
    link_exists,
    proc_starttime,
    pss_kib,
    quiet,
    reap,
    remove_cgroup,
    remove_tree,
    run,
    signal_if_alive,
    unmount_all,
    wait_until,
)

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STOP_GRACE = 15.0

# Popen objects of the hosts this process launched, kept so they can be waited for
# (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}

Command = str | Sequence[str]


@dataclass(frozen=True)
class Host:
    """One booted host, as tests and the Pulumi stack see it."""

    name: str
    address: str
    port: int
    host_key: str
    user: str
    private_key_path: Path
    known_hosts_path: Path
    index: int = 0
    distro: str = config.DEFAULT_DISTRO
    nspawn_pid: int | None = field(default=None, repr=False)
    nspawn_starttime: int | None = field(default=None, repr=False)

    @property
    def known_hosts_line(self) -> str:
        host = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{host} {self.host_key}"

    def alive(self) -> bool:
        return is_alive(self.nspawn_pid, self.nspawn_starttime)

    def init_pid(self) -> int:
        """PID (in our namespace) of the host's systemd, found afresh so it is never stale."""
        if not self.alive() or self.nspawn_pid is None:
            raise RuntimeError(f"{self.name} is not running")
        pid = container_init(self.nspawn_pid)
        if pid is None:
            raise RuntimeError(f"{self.name}: no init process under nspawn PID {self.nspawn_pid}")
        return pid

    def ssh_argv(
        self, command: Command | None = None, *, user: str | None = None, tty: bool = False
    ) -> list[str]:
        """ssh command line that trusts only the host key recorded at boot."""
        argv = [
            "ssh",
            "-i", str(self.private_key_path),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts_path}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "HostKeyAlgorithms=ssh-ed25519",
            "-o", "ConnectTimeout=5",
            "-o", "LogLevel=ERROR",
            "-p", str(self.port),
            "-l", user or self.user,
        ]  # fmt: skip
        argv.append("-t" if tty else "-T")
        argv.append(self.address)
        if command is not None:
            argv.append(command if isinstance(command, str) else shlex.join(command))
        return argv

    def ssh(
        self,
        command: Command,
        *,
        user: str | None = None,
        check: bool = False,
        input: str | None = None,
        timeout: float | None = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command over ssh (a string goes to the remote shell as is; a list is quoted)."""
        return run(self.ssh_argv(command, user=user), check=check, input=input, timeout=timeout)

    def exec_argv(self, command: Command, *, user: str | None = None) -> list[str]:
        """nsenter into every namespace of the host's PID 1, with a clean root environment."""
        argv = list(command) if not isinstance(command, str) else ["/bin/sh", "-c", command]
        if user and user != "root":
            argv = ["runuser", "-u", user, "--", *argv]
        env = ["PATH=" + PATH, "HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8"]
        if os.environ.get("TERM"):
            env.append("TERM=" + os.environ["TERM"])
        return [
            "nsenter", "--target", str(self.init_pid()), "--all", "--root", "--wd",
            "/usr/bin/env", "-i", *env, *argv,
        ]  # fmt: skip

    def exec(
        self,
        command: Command,
        *,
        user: str | None = None,
        check: bool = False,
        input: str | None = None,
        timeout: float | None = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host as root (or `user`), without ssh: works while sshd is down."""
        return run(self.exec_argv(command, user=user), check=check, input=input, timeout=timeout)

    def reboot(self, *, timeout: float = 180.0, log: Log = quiet) -> Host:
        """Reboot the host and boot its overlay again; returns the host with its new nspawn PID."""
        return reboot(self.name, timeout=timeout, log=log)


class Fleet(list[Host]):
    """The hosts of one `up`; as a context manager it always tears them down."""

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        down()

    def by_name(self, name: str) -> Host:
        for host in self:
            if host.name == name:
                return host
        raise KeyError(name)


@dataclass
class HostStatus:
    name: str
    address: str
    alive: bool
    phase: str
    system_state: str | None
    pss_mib: float | None


# ---------------------------------------------------------------- public API


def up(
    n: int,
    *,
    distro: str = config.DEFAULT_DISTRO,
    timeout: float = 180.0,
    allow_degraded: bool = False,
    keep_on_failure: bool = False,
    log: Log = quiet,
) -> Fleet:
    """Tear down any previous hosts, then boot n fresh ones of the distro and wait until ssh and systemd are
    ready.

    On failure (or Ctrl-C) everything is torn down again unless keep_on_failure is set; `down()` can
    always finish the job.
    """
    if not 1 <= n <= config.MAX_HOSTS:
        raise ValueError(f"n must be between 1 and {config.MAX_HOSTS}")
    tools.ensure_tools(log)
    rootfs = template.ensure_template(distro, log)
    with state.locked():
        _down_locked(log)
        try:
            _up_locked(n, distro, rootfs, timeout, allow_degraded, log)
        except BaseException:
            if keep_on_failure:
                log("keeping what was started; run `python -m localhosts down` to clean up")
            else:
                log("up failed, tearing down")
                _down_locked(log)
            raise
    return Fleet(hosts())


def down(*, log: Log = quiet) -> None:
    """Stop every host this harness started and remove every trace; safe to repeat."""
    with state.locked():
        _down_locked(log)


def reboot(name: str, *, timeout: float = 180.0, log: Log = quiet) -> Host:
    """Reboot one host: `systemctl reboot` inside (unless it already went down), then the same overlay
    boots again with the same name, address and host key, and this waits for ssh and systemd as `up` does.

    systemd-nspawn exits when the container reboots, so the harness is what brings the host back.
    """
    with state.locked():
        data = state.load()
        rec = next((r for r in (data or {}).get("hosts", []) if r["name"] == name), None)
        if data is None or rec is None:
            raise KeyError(f"no host {name!r} in {config.state_path()}")
        if rec.get("phase") not in ("ready", "rebooting"):
            raise RuntimeError(f"{name} is {rec.get('phase')!r}, not ready: run `up` again")
        if _nspawn_alive(rec):
            host = _host_from(data, rec)
            log(f"{name}: systemctl reboot")
            # --no-block: the command returns before its own process is torn down with the host. It may
            # fail on a host that is already shutting down (a reboot from inside): nspawn's exit decides.
            try:
                asked = host.exec(["systemctl", "reboot", "--no-block"], timeout=30)
                said = (asked.stdout + asked.stderr).strip()
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                said = str(exc)
            if not wait_until(lambda: not _nspawn_alive(rec), timeout, 0.1):
                raise TimeoutError(
                    f"{name}: systemd-nspawn still running {timeout:g} s after the reboot "
                    f"({said or 'no output'})"
                )
        _reap_child(rec.get("nspawn_pid"))
        rec["phase"] = "rebooting"
        rec["timings"] = {}
        state.save(data)
        # What nspawn leaves behind when it exits; the overlay mount and the cgroups are ours and stay.
        remove_tree(Path("/run/systemd/nspawn/propagate") / name)
        _launch(rec, data, log, append_log=True)
        try:
            _wait_ready(data, [rec], timeout, allow_degraded=False, log=log)
        except BaseException:
            log(f"{name}: the reboot did not come back; `down` cleans up")
            raise
        rec["reboots"] = rec.get("reboots", 0) + 1
        state.save(data)
        return _host_from(data, rec)


def hosts() -> list[Host]:
    """The hosts recorded in the state file (alive or not)."""
    data = state.load()
    if not data:
        return []
    return [_host_from(data, rec) for rec in data["hosts"] if rec.get("host_key")]


def get(name: str) -> Host:
    for host in hosts():
        if host.name == name:
            return host
    raise KeyError(f"no host {name!r} in {config.state_path()}")


def status() -> list[HostStatus]:
    data = state.load()
    result: list[HostStatus] = []
    for rec in (data or {}).get("hosts", []):
        alive = is_alive(rec.get("nspawn_pid"), rec.get("nspawn_starttime"))
        system_state = None
        pss = None
        if alive and rec.get("host_key"):
            host = _host_from(data or {}, rec)
            try:
                system_state = host.exec(["systemctl", "is-system-running"], timeout=10).stdout.strip()
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                system_state = f"? ({exc})"
            # Every process of the host sits in its subtree in each hierarchy; the union guards against races.
            pids = sorted({p for cg in rec.get("cgroups", []) for p in cgroup_procs(Path(cg))})
            pss = round(pss_kib(pids) / 1024, 1)
        result.append(
            HostStatus(rec["name"], rec["address"], alive, rec.get("phase", "?"), system_state, pss)
        )
    return result


# ---------------------------------------------------------------- up


def _host_from(data: dict[str, Any], rec: dict[str, Any]) -> Host:
    return Host(
        name=rec["name"],
        address=rec["address"],
        port=rec["port"],
        host_key=rec["host_key"],
        user=rec["user"],
        private_key_path=Path(data["private_key"]),
        known_hosts_path=Path(data["known_hosts"]),
        index=rec["index"],
        distro=data.get("distro", config.DEFAULT_DISTRO),
        nspawn_pid=rec.get("nspawn_pid"),
        nspawn_starttime=rec.get("nspawn_starttime"),
    )


def _up_locked(n: int, distro: str, rootfs: Path, timeout: float, allow_degraded: bool, log: Log) -> None:
    runtime = config.runtime_root()
    data: dict[str, Any] = {
        "format": state.FORMAT,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "distro": distro,
        "template": str(rootfs),
        "private_key": str(runtime / "id_ed25519"),
        "known_hosts": str(runtime / "known_hosts"),
        "hosts": [],
    }
    for i in range(1, n + 1):
        name = config.host_name(i)
        hostdir = runtime / name
        data["hosts"].append(
            {
                "name": name,
                "index": i,
                "address": config.host_address(i),
                "gateway": config.gateway_address(i),
                "prefix_len": 24,
                "port": 22,
                "user": config.LOGIN_USER,
                "host_key": None,
                "link": config.link_name(name),
                "dir": str(hostdir),
                "merged": str(hostdir / "merged"),
                # Outside the host dir so it survives down, for a look after a failed boot.
                "log": str(runtime / "logs" / f"{name}.log"),
                "cgroups": [str(root / config.CGROUP_PARENT / name) for root in config.CGROUP_ROOTS],
                "nspawn_pid": None,
                "nspawn_starttime": None,
                "phase": "preparing",
                "timings": {},
                "error": None,
            }
        )
    # Recorded before anything exists, so an interrupted up still leaves down a complete list to undo.
    state.save(data)

    for rec in data["hosts"]:
        _prepare(rec, rootfs, log)
        state.save(data)
    (runtime / "known_hosts").write_text("".join(f"{r['address']} {r['host_key']}\n" for r in data["hosts"]))
    # Beside known_hosts, so a stage file names the same paths whatever the cache root is.
    key_copy = runtime / "id_ed25519"
    key_copy.unlink(missing_ok=True)
    key_copy.touch(mode=0o600)
    key_copy.write_bytes(config.key_path().read_bytes())
    for rec in data["hosts"]:
        _launch(rec, data, log)
    _wait_ready(data, data["hosts"], timeout, allow_degraded, log)


def _prepare(rec: dict[str, Any], rootfs: Path, log: Log) -> None:
    """Overlay on the template plus the few files that make this host itself."""
    hostdir = Path(rec["dir"])
    merged = Path(rec["merged"])
    for sub in ("upper", "work", "merged"):
        (hostdir / sub).mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={rootfs},upperdir={hostdir / 'upper'},workdir={hostdir / 'work'}"
    run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)])
    rec["phase"] = "mounted"

    etc = merged / "etc"
    (etc / "hostname").write_text(rec["name"] + "\n")
    with open(etc / "hosts", "a") as fh:
        # sudo looks its own host name up; without this it stalls on DNS the host cannot reach.
        fh.write(f"127.0.1.1\t{rec['name']}\n")
    network = etc / "systemd" / "network" / "10-host0.network"
    network.parent.mkdir(parents=True, exist_ok=True)
    # Sorts before 80-container-host0.network, which would want DHCP; no gateway: only we are reachable.
    network.write_text(
        "[Match]\nName=host0\n\n"
        f"[Network]\nAddress={rec['address']}/{rec['prefix_len']}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
    env = {"PATH": PATH, "HOME": "/root"}
    run(["chroot", str(merged), "ssh-keygen", "-A"], env=env)
    run(["systemd-machine-id-setup", f"--root={merged}"], env=env)
    pub = (etc / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
    rec["host_key"] = f"{pub[0]} {pub[1]}"
    rec["phase"] = "prepared"
    log(f"{rec['name']}: prepared overlay at {merged}")


# The launching shell joins the host's own cgroups, then becomes nspawn (same PID), so the container's
# units live in a subtree of their own instead of colliding at the hierarchy root.
_JOIN_CGROUPS_THEN_EXEC = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 97; shift; n=$((n-1)); done; exec "$@"'
)


def _launch(rec: dict[str, Any], data: dict[str, Any], log: Log, append_log: bool = False) -> None:
    procs_files = []
    for cg in rec["cgroups"]:
        Path(cg).mkdir(parents=True, exist_ok=True)
        procs_files.append(str(Path(cg) / "cgroup.procs"))
    argv = [
        "systemd-nspawn",
        "--directory", rec["merged"],
        "--machine", rec["name"],
        "--boot",
        "--network-veth",
        "--register=no",  # no systemd on the main machine, so no machined to register with
        "--keep-unit",
        "--console=passive",
        "--link-journal=no",  # keep the journal inside the overlay, nothing under /var/log/journal here
        "--resolv-conf=off",
        "--timezone=off",
    ]  # fmt: skip
    Path(rec["log"]).parent.mkdir(parents=True, exist_ok=True)
    with open(rec["log"], "ab" if append_log else "wb") as logfh:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _JOIN_CGROUPS_THEN_EXEC, "sh", str(len(procs_files)), *procs_files, *argv],
            stdin=subprocess.DEVNULL,
            stdout=logfh,
            stderr=subprocess.STDOUT,
            env={"PATH": PATH, "LANG": "C.UTF-8"},
            # Own session: a Ctrl-C in our terminal must reach us (who tear down in order), not the hosts.
            start_new_session=True,
        )
    _children[proc.pid] = proc
    rec["nspawn_pid"] = proc.pid
    rec["nspawn_starttime"] = proc_starttime(proc.pid)
    rec["phase"] = "booting"
    rec["launched_at"] = time.time()
    state.save(data)
    log(f"{rec['name']}: nspawn PID {proc.pid}")


class _Waiter:
    """Per-host progress through link -> ssh -> systemd, driven by one polling loop (so Ctrl-C is prompt)."""

    def __init__(self, rec: dict[str, Any], data: dict[str, Any]) -> None:
        self.rec = rec
        self.host = _host_from(data, rec)
        self.start = time.monotonic()
        self.stage = "link"
        self.probe: subprocess.Popen[str] | None = None
        self.last_error = ""
        self.next_try = 0.0

    def elapsed(self) -> float:
        return round(time.monotonic() - self.start, 2)

    def kill_probe(self) -> None:
        if self.probe and self.probe.poll() is None:
            self.probe.kill()
            self.probe.wait()
        self.probe = None

    def step(self, allow_degraded: bool) -> None:
        rec = self.rec
        if not self.host.alive():
            raise RuntimeError(
                f"{rec['name']}: systemd-nspawn exited during boot; end of {rec['log']}:\n{_tail(rec['log'])}"
            )
        if self.stage == "link":
            if not link_exists(rec["link"]):
                return
            run(["ip", "addr", "replace", f"{rec['gateway']}/{rec['prefix_len']}", "dev", rec["link"]])
            run(["ip", "link", "set", rec["link"], "up"])
            rec["timings"]["link"] = self.elapsed()
            self.stage = "ssh"
        if self.stage == "ssh":
            if self.probe is None:
                if time.monotonic() < self.next_try:
                    return
                self.probe = subprocess.Popen(
                    self.host.ssh_argv("true"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                return
            if self.probe.poll() is None:
                return
            _, err = self.probe.communicate()
            code = self.probe.returncode
            self.probe = None
            if code != 0:
                self.last_error = err.strip()
                self.next_try = time.monotonic() + 0.25
                return
            rec["timings"]["ssh"] = self.elapsed()
            self.stage = "systemd"
            self.probe = subprocess.Popen(
                self.host.exec_argv(["systemctl", "is-system-running", "--wait"]),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            return
        if self.stage == "systemd":
            assert self.probe is not None
            if self.probe.poll() is None:
                return
            out, err = self.probe.communicate()
            self.probe = None
            system_state = out.strip()
            rec["system_state"] = system_state
            rec["timings"]["running"] = self.elapsed()
            if system_state == "running":
                self.stage = "ready"
                return
            failed = self.host.exec(
                ["systemctl", "list-units", "--failed", "--plain", "--no-legend"]
            ).stdout.strip()
            rec["failed_units"] = [line.split()[0] for line in failed.splitlines() if line.strip()]
            if system_state == "degraded" and allow_degraded:
                self.stage = "ready"
                return
            what = system_state or err.strip()
            raise RuntimeError(f"{rec['name']}: systemd is {what!r}; failed units: {rec['failed_units']}")


def _wait_ready(
    data: dict[str, Any], recs: list[dict[str, Any]], timeout: float, allow_degraded: bool, log: Log
) -> None:
    waiters = [_Waiter(rec, data) for rec in recs]
    try:
        while True:
            pending = [w for w in waiters if w.stage != "ready"]
            if not pending:
                break
            for w in pending:
                try:
                    w.step(allow_degraded)
                except BaseException as exc:
                    w.rec["phase"] = "failed"
                    w.rec["error"] = str(exc)
                    state.save(data)
                    raise
                if w.stage == "ready":
                    w.rec["phase"] = "ready"
                    state.save(data)
                    t, name = w.rec["timings"], w.rec["name"]
                    log(f"{name}: ssh after {t['ssh']} s, {w.rec['system_state']} after {t['running']} s")
                elif w.elapsed() > timeout:
                    detail = f" (last ssh error: {w.last_error})" if w.stage == "ssh" and w.last_error else ""
                    raise TimeoutError(
                        f"{w.rec['name']}: still waiting for {w.stage} after {timeout:g} s{detail}"
                    )
            time.sleep(0.05)
    finally:
        for w in waiters:
            w.kill_probe()


def _tail(path: str, lines: int = 20) -> str:
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- down


def _down_locked(log: Log) -> None:
    data = state.load()
    recs: list[dict[str, Any]] = (data or {}).get("hosts", [])
    errors: list[str] = []

    # Ask every host to power off at once, then give them a shared grace period. A host still early in
    # boot has no handler for the poweroff signal yet and drops it, so the request is repeated.
    for rec in recs:
        if signal_if_alive(rec.get("nspawn_pid"), rec.get("nspawn_starttime"), signal.SIGTERM):
            log(f"{rec['name']}: SIGTERM to nspawn {rec['nspawn_pid']} (orderly poweroff)")
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        if wait_until(lambda: not any(_nspawn_alive(r) for r in recs), min(2.0, deadline - time.monotonic())):
            break
        for rec in recs:
            signal_if_alive(rec.get("nspawn_pid"), rec.get("nspawn_starttime"), signal.SIGTERM)
    for rec in recs:
        if _nspawn_alive(rec):
            errors += _kill_hard(rec, log)
        _reap_child(rec.get("nspawn_pid"))

    for rec in recs:
        link = rec.get("link")
        if link and link_exists(link):
            # Normally gone with the container's network namespace; only a leftover is deleted here.
            log(f"{rec['name']}: deleting leftover link {link}")
            proc = run(["ip", "link", "delete", link], check=False)
            if proc.returncode != 0 and link_exists(link):
                errors.append(f"ip link delete {link}: {proc.stderr.strip()}")
        hostdir = Path(rec["dir"])
        errors += unmount_all(hostdir, log)
        for cg in rec.get("cgroups", []):
            err = remove_cgroup(Path(cg))
            if err:
                errors.append(err)
        # nspawn's own scratch dir on the main machine; it declines to delete it when /run is not a tmpfs.
        propagate = Path("/run/systemd/nspawn/propagate") / rec["name"]
        for path in (hostdir, propagate):
            try:
                remove_tree(path)
            except (OSError, RuntimeError) as exc:
                errors.append(str(exc))

    errors += _sweep(log)
    if errors:
        if data is not None:
            state.save(data)
        raise RuntimeError("down left things behind; fix and run it again:\n  " + "\n  ".join(errors))
    state.delete()
    (config.runtime_root() / "known_hosts").unlink(missing_ok=True)
    (config.runtime_root() / "id_ed25519").unlink(missing_ok=True)
    if recs:
        log(f"stopped and removed {', '.join(r['name'] for r in recs)}")


def _nspawn_alive(rec: dict[str, Any]) -> bool:
    return is_alive(rec.get("nspawn_pid"), rec.get("nspawn_starttime"))


def _kill_hard(rec: dict[str, Any], log: Log) -> list[str]:
    """Last resort: SIGKILL the container's init (the kernel then kills the whole PID namespace)."""
    pid = rec["nspawn_pid"]
    init = container_init(pid)
    if init is not None:
        log(f"{rec['name']}: no poweroff after {STOP_GRACE:.0f} s, SIGKILL to its init {init}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signal.SIGKILL)
    if wait_until(lambda: not _nspawn_alive(rec), 10, 0.1):
        return []
    log(f"{rec['name']}: nspawn {pid} still there, SIGKILL")
    signal_if_alive(pid, rec.get("nspawn_starttime"), signal.SIGKILL)
    if wait_until(lambda: not _nspawn_alive(rec), 10, 0.1):
        return []
    return [f"{rec['name']}: nspawn PID {pid} survives SIGKILL"]


def _reap_child(pid: int | None) -> None:
    if not pid:
        return
    proc = _children.pop(pid, None)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _children[pid] = proc
    else:
        reap(pid)


def _sweep(log: Log) -> list[str]:
    """Traces with no state record (state lost or written late): mounts, empty cgroups, host dirs.

    Processes are never killed here; only what `up` recorded is ours to signal.
    """
    errors: list[str] = []
    runtime = config.runtime_root()
    if runtime.exists():
        errors += unmount_all(runtime, log)
        for entry in runtime.iterdir():
            if entry.is_dir() and entry.name.startswith(config.HOST_PREFIX):
                try:
                    remove_tree(entry)
                except (OSError, RuntimeError) as exc:
                    errors.append(str(exc))
    for root in config.CGROUP_ROOTS:
        parent = root / config.CGROUP_PARENT
        if not parent.is_dir():
            continue
        for child in sorted(p for p in parent.iterdir() if p.is_dir()):
            procs = cgroup_procs(child)
            if procs:
                errors.append(
                    f"{child} holds processes not recorded in the state file: {procs}; not killing them"
                )
                continue
            err = remove_cgroup(child)
            if err:
                errors.append(err)
        if not any(p.is_dir() for p in parent.iterdir()):
            err = remove_cgroup(parent)
            if err:
                errors.append(err)
    return errors
