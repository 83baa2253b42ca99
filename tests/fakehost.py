"""A host to run the generated scripts on, without touching this machine.

Each run happens in a private mount namespace: /etc, /var/lib and /home are overlays of
this machine's directories, a layer of files the test seeds, and an empty upper layer;
/run is a fresh tmpfs. So the scripts' own `install`, `mv`, `cmp` and `rm` work on real
files, and the upper layers show afterwards exactly what a script created, changed or
removed. Programs that would reach systemd, sudo or Sidekiq are fakes on PATH that log
each call and answer as a test scripts them, call by call (busy, then idle; a unit that
fails to start; a failing visudo).
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

OVERLAID = ("/etc", "/var/lib", "/home", "/usr/local")
# What the date fake answers to date +%s.
EPOCH = 1764300000
# The run-as user and the login user, for getent, id, install -o and runuser.
DEPLOY_UID = 4711
ADMIN_UID = 4712

# Every fake logs its call, then answers with the first rule whose glob matches its
# arguments: the rule's n-th reply on its n-th call, its last reply from then on.
# Without a matching rule a spied program runs the real one, any other answers nothing.
# Past MAX_CALLS calls every fake fails: a loop that never ends (say, a mutant's) stops in
# moments instead of spinning until its deadline.
MAX_CALLS = 300
FAKE = r"""#!/bin/bash
name=${0##*/}
args="$*"
printf '%s\n' "$name ${args//$'\n'/ }" >>"$FAKE_DIR/calls.log"
echo "$EUID" >>"$FAKE_DIR/uids.log"
read -r total <"$FAKE_DIR/total"
echo "$((total += 1))" >"$FAKE_DIR/total"
if ((total > MAX_CALLS)); then
  echo "fake $name: over MAX_CALLS calls, a loop that does not end" >&2
  exit 99
fi
for rule in "$FAKE_DIR/rules/$name".*; do
  [ -d "$rule" ] || continue
  read -r pattern <"$rule/pattern"
  [[ "$*" == $pattern ]] || continue
  read -r n <"$rule/count"
  echo "$((n += 1))" >"$rule/count"
  read -r last <"$rule/replies"
  . "$rule/$((n < last ? n : last))"
  exit 0
done
REAL=
[ -z "$REAL" ] || exec "$REAL" "$@"
"""

# Runs as root in its own mount namespace: the overlays, then the script with the fakes first
# on PATH and in /usr/local/bin, then a copy of the upper layers out of the namespace. Upper
# layers on a tmpfs mount several times faster than on disk.
SANDBOX = r"""set -eu
layers=$SANDBOX_ROOT/layers
mkdir -p "$layers"
mount -t tmpfs tmpfs "$layers"
for dir in $OVERLAID; do
  name=${dir//\//_}
  mkdir -p "$SANDBOX_ROOT/seed$name" "$layers/upper$name" "$layers/work$name"
  mount -t overlay overlay -o "lowerdir=$SANDBOX_ROOT/seed$name:$dir" \
    -o "upperdir=$layers/upper$name,workdir=$layers/work$name" "$dir"
done
mount -t tmpfs tmpfs /run
# The fakes log and count their calls whoever runs them (runuser really switches to the user).
mkdir -m 0755 /run/fakehost
mount --bind "$FAKE_DIR" /run/fakehost
touch /run/fakehost/calls.log /run/fakehost/uids.log
chmod -R a+rwX /run/fakehost
FAKE_DIR=/run/fakehost
# What the host's /proc/meminfo says, when a test scripts it.
if [ -e "$FAKE_DIR/meminfo" ]; then mount --bind "$FAKE_DIR/meminfo" /proc/meminfo; fi
# The control script sets its own PATH: the fakes are also where that PATH looks first for them.
mkdir -p /usr/local/bin
mount --bind "$FAKE_DIR/bin" /usr/local/bin
rc=0
PATH="$FAKE_DIR/bin:$PATH" /bin/bash -c "$SCRIPT" || rc=$?
cp -a "$layers"/upper_* "$SANDBOX_ROOT"/
exit "$rc"
"""

# 6.4.1 names its tag (the release folder's name); 7.x leaves it empty, hence two spaces there.
SIDEKIQ_TITLE = "sidekiq {version} {tag} [{busy} of {concurrency} busy]{state}"


def title(
    busy: int, stopping: bool = True, *, version: str = "6.4.1", tag: str = "current", concurrency: int = 5
) -> str:
    """A reply of the ps fake: Sidekiq's process title."""
    text = SIDEKIQ_TITLE.format(
        version=version, tag=tag, busy=busy, concurrency=concurrency, state=" stopping" if stopping else ""
    )
    return f"echo {shlex.quote(text)}"


def unit_block(name: str, **properties: str) -> dict[str, str]:
    """What `systemctl show` says of a service for FakeHost.lists_units: enabled and active unless told."""
    block = {
        "Id": name,
        "FragmentPath": f"/etc/systemd/system/{name}",
        "UnitFileState": "enabled",
        "ActiveState": "active",
        "MainPID": "0",
        "WorkingDirectory": "",
        "ExecStart": "",
    }
    return {**block, **properties}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]
    uids: list[int]  # who made each call

    def calls_by(self, uid: int) -> list[str]:
        return [call for call, by in zip(self.calls, self.uids, strict=True) if by == uid]

    def ran(self, program: str) -> list[str]:
        """The calls of one program, each as "program arg1 arg2..."."""
        return [c for c in self.calls if c.split(" ", 1)[0] == program]

    def systemctl_changes(self) -> list[str]:
        """systemctl's calls other than queries, system or --user."""
        queries = {"list-units", "list-unit-files", "show", "is-active", "is-enabled"}
        return [call for call in self.ran("systemctl") if not queries & set(call.split()[1:3])]

    def position(self, call: str) -> int:
        """Index of the first call that is exactly ``call``; fails if there is none."""
        assert call in self.calls, f"{call!r} never ran; calls: {self.calls}"
        return self.calls.index(call)


class FakeHost:
    """Scriptable fakes, seeded files and an overlay sandbox for one test."""

    # Answers for a healthy host running Sidekiq as MainPID 4242, idle; a test's own rules come first.
    DEFAULTS: dict[tuple[str, str], tuple[str, ...]] = {
        ("sudo", "-n *"): ('shift; "$@"; exit $?',),
        # As the user, for real: what root hands them must work, and fail, as it does on a host.
        ("runuser", "-u * -- *"): (
            'user=$2; shift 3; exec setpriv --reuid="$user" --regid="$user" --init-groups "$@"',
        ),
        ("systemctl", "show -p MainPID --value *"): ("echo 4242",),
        # The user's manager comes with its runtime directory, as on a host.
        ("systemctl", "start user@*.service"): (
            'uid=${2#user@}; uid=${uid%.service}; /bin/install -d -o "$uid" -g "$uid" "/run/user/$uid"',
        ),
        ("ps", "*"): (title(0),),
        ("journalctl", "*"): ("echo 'fake journal line'",),
        ("date", "+%s"): (f"echo {EPOCH}",),
        # A fixed name, so that tests can spell out the calls that use it.
        ("mktemp", "-d /run/*.XXXXXX"): ('mkdir "${2%.*}.test" && echo "${2%.*}.test"',),
    }
    # Logged, then the real program: their effects land in the overlays.
    SPIED = (
        "install",
        "mv",
        "rm",
        "rmdir",
        "mkdir",
        "mktemp",
        "cmp",
        "getent",
        "id",
        "stat",
        "readlink",
        "flock",
    )
    # Logged and answered by rules only.
    FAKED = ("sudo", "systemctl", "journalctl", "ps", "visudo", "systemd-analyze", "sleep")
    FAKED += ("runuser", "loginctl", "cloud-init", "date", "systemd-run")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fake_dir = root / "fakes"
        self.bin = self.fake_dir / "bin"
        for directory in (self.bin, self.fake_dir / "rules"):
            directory.mkdir(parents=True)
        (self.fake_dir / "total").write_text("0")
        self._rules = 0
        for name in (*self.FAKED, *self.SPIED):
            path = self.bin / name
            real = _which(name) if name in self.SPIED else ""
            path.write_text(FAKE.replace("REAL=\n", f"REAL={real}\n").replace("MAX_CALLS", str(MAX_CALLS)))
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        users = {"deploy": DEPLOY_UID, "admin": ADMIN_UID}
        passwd = [f"{name}:x:{uid}:{uid}::/home/{name}:/bin/bash" for name, uid in users.items()]
        self.seed("/etc/passwd", _with_lines("/etc/passwd", passwd))
        self.seed(
            "/etc/group", _with_lines("/etc/group", [f"{name}:x:{uid}:" for name, uid in users.items()])
        )
        # The host's, not this machine's: the install checks the drop-in with the whole configuration.
        self.seed("/etc/sudoers", "Defaults env_reset\n@includedir /etc/sudoers.d\n", 0o440)
        for name, uid in users.items():
            home = self._layer("seed", f"/home/{name}")
            home.mkdir(parents=True)
            os.chown(home, uid, uid)

    def on(self, program: str, pattern: str, *replies: str) -> None:
        """Answer ``program``'s calls whose arguments match the glob ``pattern``.

        Each reply is bash run inside the fake ("echo 4242", "exit 3"); the n-th call gets
        the n-th reply and the last one repeats. Earlier rules win.
        """
        assert program in self.FAKED or program in self.SPIED, program
        self._rules += 1
        rule = self.fake_dir / "rules" / f"{program}.{self._rules:03d}"
        rule.mkdir()
        (rule / "pattern").write_text(pattern)
        (rule / "count").write_text("0")
        (rule / "replies").write_text(str(len(replies)))
        for index, reply in enumerate(replies, start=1):
            (rule / str(index)).write_text(reply + "\n")

    def seed(self, path: str, content: str, mode: int = 0o644) -> None:
        """A file the host has before the script runs (in the overlay's seed layer)."""
        target = self._layer("seed", path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
        # What is in a user's home is theirs, as are the directories on the way.
        parts = Path(path.replace("~", "/home/", 1) if path.startswith("~") else path).parts
        if parts[1:2] == ("home",) and len(parts) > 3:
            uid = {"deploy": DEPLOY_UID, "admin": ADMIN_UID}[parts[2]]
            for depth in range(4, len(parts) + 1):
                os.chown(self._layer("seed", str(Path(*parts[:depth]))), uid, uid)

    def symlink(self, path: str, points_to: str) -> None:
        """Make ``path`` (seeded before, so that its directories are there) a symbolic link."""
        link = self._layer("seed", path)
        owner = link.stat().st_uid
        link.unlink()
        link.symlink_to(points_to)
        os.chown(link, owner, owner, follow_symlinks=False)

    def lists_units(self, *blocks: dict[str, str], prefix: str = "") -> None:
        """systemctl (prefix "--user " for deploy's manager) lists these services, and `show` answers
        their properties block by block, as for several units at once."""
        names = "\\n".join(block["Id"] for block in blocks)
        self.on("systemctl", f"{prefix}list-units --type=service *", f"printf '{names}\\n'")
        self.on("systemctl", f"{prefix}list-unit-files *", "true")
        text = "\n\n".join("\n".join(f"{key}={value}" for key, value in block.items()) for block in blocks)
        self.on("systemctl", f"{prefix}show -p Id,FragmentPath,* -- *", f"printf '%s\\n' {shlex.quote(text)}")

    def meminfo(self, available_kib: int) -> None:
        """Make /proc/meminfo say MemAvailable is ``available_kib`` KiB."""
        total = available_kib * 2
        (self.fake_dir / "meminfo").write_text(
            f"MemTotal:       {total} kB\nMemFree:        {available_kib // 2} kB\n"
            f"MemAvailable:   {available_kib} kB\n"
        )

    def run(self, script: str) -> Run:
        """Run the script, as the provisioning user's ssh command would, on this host."""
        for (program, pattern), replies in self.DEFAULTS.items():
            self.on(program, pattern, *replies)
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "/bin/bash", "-c", SANDBOX],
            env={
                **os.environ,
                "SANDBOX_ROOT": str(self.root / "sandbox"),
                "OVERLAID": " ".join(OVERLAID),
                "FAKE_DIR": str(self.fake_dir),
                "SCRIPT": script,
            },
            capture_output=True,
            text=True,
            timeout=30,
        )
        logs = [self.fake_dir / name for name in ("calls.log", "uids.log")]
        calls, uids = (log.read_text().splitlines() if log.exists() else [] for log in logs)
        return Run(result.returncode, result.stdout, result.stderr, calls, [int(uid) for uid in uids])

    def changes(self) -> set[str]:
        """Every file the run created, changed or removed (directories aside)."""
        found = set()
        for top in OVERLAID:
            upper = self._layer("upper", top + "/")
            if upper.exists():
                found |= {f"{top}/{p.relative_to(upper)}" for p in upper.rglob("*") if not p.is_dir()}
        return found

    def removed(self, path: str) -> bool:
        """True if the run deleted ``path`` or a directory above it (overlayfs whiteouts)."""
        target = Path(path)
        return any(_is_whiteout(self._layer("upper", str(p))) for p in [target, *target.parents][:-1])

    def file(self, path: str) -> str | None:
        """The file's content as the run left it; None if it is not there (this machine's aside)."""
        if self.removed(path):
            return None
        for kind in ("upper", "seed"):
            if self._layer(kind, path).is_file():
                return self._layer(kind, path).read_text()
        return None

    def mode_owner(self, path: str) -> tuple[str, int, int]:
        """Mode, uid and gid of a file or directory as the run left it."""
        upper = self._layer("upper", path)
        info = (upper if upper.exists() else self._layer("seed", path)).stat()
        return oct(stat.S_IMODE(info.st_mode)), info.st_uid, info.st_gid

    def _layer(self, kind: str, path: str) -> Path:
        if path.startswith("~"):  # a file in a user's home, as render_files names it
            user, _, rest = path[1:].partition("/")
            path = f"/home/{user}/{rest}"
        for top in OVERLAID:
            if path in (top, top + "/") or path.startswith(top + "/"):
                return self.root / "sandbox" / (kind + top.replace("/", "_")) / path[len(top) + 1 :]
        if path in ("/", "/var", "/usr"):
            return self.root / "sandbox" / "none"  # above the overlays: never a whiteout
        raise AssertionError(f"{path} is outside the sandbox's overlays {OVERLAID}")


def _is_whiteout(path: Path) -> bool:
    try:
        info = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _which(name: str) -> str:
    for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if os.access(f"{directory}/{name}", os.X_OK):
            return f"{directory}/{name}"
    raise AssertionError(f"{name} is not installed")


def _with_lines(path: str, lines: list[str]) -> str:
    return "\n".join([Path(path).read_text().rstrip("\n"), *lines]) + "\n"
