"""Show what each sandbox directive of an installed Sidekiq unit blocks, on a local host.

    python bench/hardening_probe.py HOST [--unit sidekiq-default@a.service] [--scope system|user]
                                         [--user deploy]

Runs the same attempts twice as the unit's user: once unconfined (runuser), once in a oneshot unit
that copies the installed unit's [Service] sandbox lines, and prints a table. A directive is shown to
work when the attempt is allowed unconfined and refused under the unit. Honours the localhosts
variables (SIDEKIQ_FLEET_HOST_PREFIX, SIDEKIQ_FLEET_SUBNET), so run it on your own hosts.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import localhosts  # noqa: E402

PROBE = "sidekiq-fleet-probe"
SCRIPT = f"/usr/local/lib/{PROBE}/checks.sh"
MARKERS = (f"/tmp/{PROBE}-marker", f"/dev/{PROBE}-marker", f"/usr/lib/modules/{PROBE}")
# [Service] lines that make the probe a probe rather than Sidekiq.
NOT_COPIED = (
    "Type",
    "ExecStart",
    "ExecReload",
    "Restart",
    "RestartSec",
    "WatchdogSec",
    "NotifyAccess",
    "SyslogIdentifier",
)

# id, directive it shows, what the attempt does, bash that exits 0 when the attempt is allowed.
CHECKS: list[tuple[str, str, str, str]] = [
    ("nnp", "NoNewPrivileges", "run with no_new_privs unset", "nnp_unset"),
    ("caps", "CapabilityBoundingSet=", "keep a capability bounding set", "caps_kept"),
    ("etc", "ProtectSystem=strict", "write /etc", "touch /etc/.$P && rm /etc/.$P"),
    ("users", "PrivateUsers", "see the host's user ids", "host_users"),
    ("tmp", "PrivateTmp", "see the host's /tmp", "test -e /tmp/$P-marker || ! echo own /tmp >&2"),
    ("dev", "PrivateDevices", "see the host's /dev", "test -e /dev/$P-marker || ! echo own /dev >&2"),
    (
        "release",
        "ProtectSystem=strict",
        "write the release (owned by the user)",
        'touch "$APP/.$P" && rm "$APP/.$P"',
    ),
    ("shared", "ReadWritePaths", "write a writable path", 'touch "$RW/.$P" && rm "$RW/.$P"'),
    ("home-w", "ProtectHome=read-only", "write the home directory", "touch ~/.$P && rm ~/.$P"),
    ("home-r", "ProtectHome=read-only", "read ~/.profile", "cat ~/.profile"),
    (
        "sysctl",
        "ProtectKernelTunables",
        "write /proc/sys/kernel/domainname",
        "cat /proc/sys/kernel/domainname | tee /proc/sys/kernel/domainname",
    ),
    ("modules", "ProtectKernelModules", "list /usr/lib/modules", "ls /usr/lib/modules/$P"),
    ("kmsg", "ProtectKernelLogs", "read the kernel log", "dmesg"),
    (
        "cgroup",
        "ProtectControlGroups",
        "make a cgroup",
        "mkdir /sys/fs/cgroup/unified/$P && rmdir /sys/fs/cgroup/unified/$P",
    ),
    ("clock", "ProtectClock", "set the clock", 'date -s "@$(date +%s)"'),
    (
        "uts",
        "ProtectHostname",
        "share the host's UTS namespace",
        'test "$(readlink /proc/self/ns/uts)" = "$UTS" || ! echo own namespace >&2',
    ),
    (
        "proc",
        "ProtectProc=invisible",
        "see other users' processes",
        'ps -e -o uid= | grep -qv "^ *$(id -u)$" || ! echo only its own >&2',
    ),
    ("unshare", "RestrictNamespaces", "create a user namespace", "unshare --user --map-root-user true"),
    ("rt", "RestrictRealtime", "realtime scheduling", "chrt -f 1 true"),
    ("suid", "RestrictSUIDSGID", "make a setuid file", "touch /tmp/$P-f && chmod u+s /tmp/$P-f"),
    ("pers", "LockPersonality", "switch personality", "setarch linux32 true"),
    (
        "umask",
        "UMask=0027",
        "create world-readable files",
        "test $(( 8#$(umask) & 8#004 )) -eq 0 || ! echo umask $(umask) >&2",
    ),
    (
        "chown",
        "SystemCallFilter=~@privileged",
        "chown its own file",
        'touch /tmp/$P-f && chown "$(id -u)" /tmp/$P-f',
    ),
    ("affinity", "SystemCallFilter=~@resources", "pin itself to a CPU (taskset)", "taskset -c 0 true"),
    (
        "netlink",
        "RestrictAddressFamilies",
        "list its addresses (netlink)",
        "ruby -rsocket -e 'Socket.ip_address_list rescue abort($!.message)'",
    ),
    ("redis-tcp", "(must work)", "Redis over TCP", "redis-cli -h 127.0.0.1 ping | grep -q PONG"),
    (
        "redis-unix",
        "(must work)",
        "Redis over the unix socket",
        "redis-cli -s /run/redis/redis-server.sock ping",
    ),
]

HELPERS = r"""
P=sidekiq-fleet-probe
nnp_unset() { grep -q '^NoNewPrivs:[[:space:]]*0' /proc/self/status || ! echo "no_new_privs is set" >&2; }
caps_kept() { ! grep -q '^CapBnd:[[:space:]]*0*$' /proc/self/status || ! echo "empty bounding set" >&2; }
host_users() { grep -q '^ *0 *0 *4294967295' /proc/self/uid_map || ! echo "other ids map to nobody" >&2; }
attempt() {  # id code: one line "id|allowed" or "id|refused: <the error's last words>"
  local id=$1 err
  if err=$(eval "$2" 2>&1 >/dev/null); then echo "$id|allowed"; return; fi
  echo "$id|refused: $(tail -n1 <<<"$err" | sed 's/.*: //')"
}
rm -f "$RW/.$P" "/tmp/$P-f"
"""


def checks_script(app_dir: str, writable: str, uts: str) -> str:
    lines = ["#!/bin/bash", f"APP={shlex.quote(app_dir)} RW={shlex.quote(writable)} UTS={shlex.quote(uts)}"]
    lines.append(HELPERS)
    lines += [f"attempt {shlex.quote(cid)} {shlex.quote(code)}" for cid, _, _, code in CHECKS]
    lines.append('ipcmk -M 4096 | sed -n "s/.*id: /ipc|/p"')
    lines.append('rm -f "$RW/.$P" "/tmp/$P-f"')
    return "\n".join(lines) + "\n"


def sandbox_lines(unit_text: str) -> list[str]:
    """The [Service] lines of the installed unit that the probe keeps (user, directories, sandbox)."""
    kept, section = [], ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif (
            section == "[Service]"
            and "=" in line
            and not line.startswith("#")
            and (line.split("=", 1)[0] not in NOT_COPIED)
        ):
            kept.append(line)
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("--unit", default="sidekiq-default@a.service")
    parser.add_argument("--scope", choices=["system", "user"], default="system")
    parser.add_argument("--user", default="deploy")
    parser.add_argument("--writable", help="a writable path to try (default: shared/ beside appDir)")
    parser.add_argument(
        "--as-root",
        action="store_true",
        help="attempt as root (User=root), as job code that gained root would",
    )
    parser.add_argument(
        "--stop-unit", action="store_true", help="stop the unit meanwhile, so that RemoveIPC can act"
    )
    args = parser.parse_args()
    host = localhosts.get(args.host)

    def root(command: str, stdin: str | None = None) -> str:
        result = host.exec(command, input=stdin)
        if result.returncode != 0:
            raise SystemExit(f"{command}: {result.stdout}{result.stderr}")
        return result.stdout

    uid = root(f"id -u {shlex.quote(args.user)}").strip()
    as_user = f"runuser -u {shlex.quote(args.user)} -- env XDG_RUNTIME_DIR=/run/user/{uid}"
    systemctl = "systemctl" if args.scope == "system" else f"{as_user} systemctl --user"
    unit_text = root(f"{systemctl} cat {shlex.quote(args.unit)}")
    kept = sandbox_lines(unit_text)
    if args.as_root:
        if args.scope == "user":
            raise SystemExit("--as-root needs --scope system: a user manager cannot run units as root")
        kept = [line for line in kept if not line.startswith(("User=", "Group="))] + ["User=root"]
    app_dir = next((line.split("=", 1)[1] for line in kept if line.startswith("WorkingDirectory=")), "/")
    writable = args.writable or str(Path(app_dir).parent / "shared")
    uts = root("readlink /proc/1/ns/uts").strip()

    script = checks_script(app_dir, writable, uts)
    root(f"install -d -m 0755 {Path(SCRIPT).parent} && cat > {SCRIPT} && chmod 0644 {SCRIPT}", script)
    root("touch " + " ".join(MARKERS[:2]) + f" && mkdir -p {MARKERS[2]}")
    probe_unit = "\n".join(
        ["[Service]", "Type=oneshot", f"ExecStart=/bin/bash {SCRIPT}", f"SyslogIdentifier={PROBE}", *kept]
    )
    if args.scope == "system":
        path = f"/run/systemd/system/{PROBE}.service"
        install = f"cat > {shlex.quote(path)}"
    else:
        home = root(f"getent passwd {shlex.quote(args.user)} | cut -d: -f6").strip()
        path = f"{home}/.config/systemd/user/{PROBE}.service"
        folder = shlex.quote(str(Path(path).parent))
        install = f"{as_user} mkdir -p {folder} && {as_user} tee {shlex.quote(path)} >/dev/null"

    def results(text: str) -> dict[str, str]:
        return dict(line.split("|", 1) for line in text.splitlines() if "|" in line)

    def ipc_outcome(found: dict[str, str]) -> None:
        ipc = found.get("ipc")
        if ipc is not None:
            kept_ipc = f" {ipc} " in host.exec("ipcs -m").stdout
            host.exec(f"ipcrm -m {ipc}")
            found["ipc"] = "kept after exit" if kept_ipc else "removed at stop"

    if args.stop_unit:
        root(f"{systemctl} stop {shlex.quote(args.unit)}")
    try:
        runner = "" if args.as_root else as_user
        before = results(root(f"cd {shlex.quote(app_dir)} && {runner} bash {SCRIPT}"))
        ipc_outcome(before)
        root(install, probe_unit + "\n")
        since = root("date +%s.%N").strip()
        root(f"{systemctl} daemon-reload && {systemctl} start {PROBE}.service")
        root("journalctl --sync")
        after = results(root(f"journalctl -t {PROBE} --since @{since} -o cat --no-pager"))
        # RemoveIPC acts once no unit of the user runs (so before Sidekiq restarts), and the manager
        # drops the user a moment after the oneshot's start returns.
        time.sleep(2)
        ipc_outcome(after)
    finally:
        leftovers = " ".join([shlex.quote(path), *MARKERS, str(Path(SCRIPT).parent)])
        root(f"rm -rf {leftovers} && {systemctl} daemon-reload")
        if args.stop_unit:
            root(f"{systemctl} start {shlex.quote(args.unit)}")

    rows = [(d, what, before.get(cid, "?"), after.get(cid, "?")) for cid, d, what, _ in CHECKS]
    rows.append(
        ("RemoveIPC", "leave a SysV shared memory segment", before.get("ipc", "?"), after.get("ipc", "?"))
    )
    header = (
        "directive",
        "attempt as " + ("root" if args.as_root else args.user),
        "unconfined",
        f"under {args.unit} ({args.scope})",
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
