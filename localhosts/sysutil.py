"""Small wrappers over /proc, mounts, cgroups and subprocess used by the rest of the harness."""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

Log = Callable[[str], None]


def quiet(_msg: str) -> None:
    pass


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text I/O; on failure the error carries stderr so callers can show it."""
    proc = subprocess.run(
        list(argv),
        check=False,
        text=True,
        capture_output=capture,
        env=env,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


class CommandError(subprocess.CalledProcessError, RuntimeError):
    """CalledProcessError whose message carries the command's stderr, so failures explain themselves."""

    def __str__(self) -> str:
        detail = (self.stderr or self.stdout or "").strip()
        return f"{shlex.join(self.cmd)} exited {self.returncode}: {detail[-2000:]}"


# ---------------------------------------------------------------- processes


def proc_starttime(pid: int) -> int | None:
    """Start time in clock ticks since boot: with the PID it identifies a process across PID reuse."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses; the fields after the last ')' are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[19])


def proc_state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()[0]


def proc_ppid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[1])


def is_alive(pid: int | None, starttime: int | None) -> bool:
    """True only for the very process we recorded, not a later one reusing its PID; zombies count as dead."""
    if not pid:
        return False
    reap(pid)
    state = proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return starttime is None or proc_starttime(pid) == starttime


def reap(pid: int) -> None:
    # Collect our own exited children so they stop showing up as zombies; others are not ours to wait for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def signal_if_alive(pid: int | None, starttime: int | None, sig: int) -> bool:
    if not is_alive(pid, starttime):
        return False
    assert pid is not None
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def container_init(nspawn_pid: int) -> int | None:
    """The container's PID 1 as seen from here: the child of nspawn whose innermost PID is 1."""
    with os.scandir("/proc") as entries:
        pids = [int(e.name) for e in entries if e.name.isdigit()]
    for pid in pids:
        if proc_ppid(pid) != nspawn_pid:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                return pid
    return None


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def pss_kib(pids: Sequence[int]) -> int:
    """Proportional set size summed over processes: shared pages are split, so hosts add up honestly."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                break
    return total


# ---------------------------------------------------------------- mounts


def _unescape_mount(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below root, deepest first so they can be unmounted in order."""
    root_s = str(root.resolve()) if root.exists() else str(root)
    found: list[Path] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape_mount(line.split()[4])
        if point == root_s or point.startswith(root_s.rstrip("/") + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_all(root: Path, log: Log = quiet) -> list[str]:
    """Unmount everything at or below root; a busy mount is retried, then detached lazily."""
    errors: list[str] = []
    for _attempt in range(3):
        points = mounts_under(root)
        if not points:
            return errors
        for point in points:
            proc = run(["umount", str(point)], check=False)
            if proc.returncode != 0:
                time.sleep(0.3)
        if not mounts_under(root):
            return errors
    for point in mounts_under(root):
        log(f"{point}: busy, detaching lazily")
        proc = run(["umount", "--lazy", str(point)], check=False)
        if proc.returncode != 0:
            errors.append(f"umount {point}: {proc.stderr.strip()}")
    return errors


def remove_tree(path: Path) -> None:
    """rm -rf that refuses to descend into anything still mounted (a bound /proc or /dev, say)."""
    if not path.exists() and not path.is_symlink():
        return
    if mounts_under(path):
        raise RuntimeError(f"refusing to delete {path}: still has mounts {mounts_under(path)}")
    shutil.rmtree(path)


# ---------------------------------------------------------------- cgroups


def cgroup_procs(path: Path) -> list[int]:
    """All PIDs in a cgroup and its descendants."""
    pids: list[int] = []
    if not path.is_dir():
        return pids
    for dirpath, _dirs, _files in os.walk(path):
        try:
            text = Path(dirpath, "cgroup.procs").read_text()
        except OSError:
            continue
        pids.extend(int(x) for x in text.split())
    return pids


def remove_cgroup(path: Path) -> str | None:
    """rmdir a cgroup and its children, deepest first; cgroupfs allows only rmdir, and only when empty."""
    if not path.is_dir():
        return None
    for dirpath, dirs, _files in os.walk(path, topdown=False):
        for d in dirs:
            _rmdir_cgroup(Path(dirpath, d))
    return _rmdir_cgroup(path)


def _rmdir_cgroup(path: Path) -> str | None:
    for _attempt in range(20):
        try:
            path.rmdir()
            return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            # EBUSY right after the last process exits is normal for a moment.
            if exc.errno != errno.EBUSY:
                return f"rmdir {path}: {exc.strerror}"
            time.sleep(0.1)
    return f"rmdir {path}: still busy (processes {cgroup_procs(path)})"


# ---------------------------------------------------------------- network


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Readers see the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
