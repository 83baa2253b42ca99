"""python -m localhosts {up N | down | reboot NAME | status | ssh NAME [CMD...] | exec NAME -- CMD...
| template}"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

from . import config, machines, state, template

_T0 = time.monotonic()


def _log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _sigterm_as_interrupt(_sig: int, _frame: FrameType | None) -> None:
    # So `kill <up>` runs the same teardown as Ctrl-C.
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    fleet = machines.up(
        args.n,
        distro=args.distro,
        timeout=args.timeout,
        allow_degraded=args.allow_degraded,
        keep_on_failure=args.keep_on_failure,
        log=_log,
    )
    data = state.load() or {}
    recs = {r["name"]: r for r in data.get("hosts", [])}
    rows = [["NAME", "ADDRESS", "PORT", "USER", "SYSTEMD", "SSH AFTER", "HOST KEY"]]
    for h in fleet:
        rec = recs[h.name]
        rows.append(
            [
                h.name,
                h.address,
                str(h.port),
                h.user,
                rec.get("system_state", "?"),
                f"{rec['timings'].get('ssh', '?')} s",
                h.host_key[:40] + "...",
            ]
        )
    print(_table(rows))
    print(f"\nstate: {config.state_path()}\nkey:   {data.get('private_key')}")
    print(f"ssh:   python -m localhosts ssh {fleet[0].name}")
    return 0


def cmd_down(_args: argparse.Namespace) -> int:
    machines.down(log=_log)
    return 0


def cmd_reboot(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    host = machines.reboot(args.name, timeout=args.timeout, log=_log)
    print(f"{host.name} is back: nspawn PID {host.nspawn_pid}, ssh {host.user}@{host.address}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    result = machines.status()
    if args.json:
        print(json.dumps([vars(s) for s in result], indent=2))
        return 0
    if not result:
        print(f"no hosts ({config.state_path()} absent)")
        return 0
    rows = [["NAME", "ADDRESS", "ALIVE", "PHASE", "SYSTEMD", "PSS MiB"]]
    for s in result:
        rows.append(
            [
                s.name,
                s.address,
                "yes" if s.alive else "no",
                s.phase,
                s.system_state or "-",
                "-" if s.pss_mib is None else f"{s.pss_mib:.1f}",
            ]
        )
    print(_table(rows))
    return 0 if all(s.alive for s in result) else 1


def _strip_dashes(argv: Sequence[str]) -> list[str]:
    return list(argv[1:]) if argv and argv[0] == "--" else list(argv)


def cmd_ssh(args: argparse.Namespace) -> int:
    host = machines.get(args.name)
    command = _strip_dashes(args.command)
    # Like ssh itself: the words are joined and the remote shell parses them.
    remote = " ".join(command) if command else None
    argv = host.ssh_argv(remote, user=args.user, tty=not command and sys.stdin.isatty())
    os.execvp(argv[0], argv)


def cmd_exec(args: argparse.Namespace) -> int:
    host = machines.get(args.name)
    command = _strip_dashes(args.command) or ["/bin/bash", "-l"]
    argv = host.exec_argv(command, user=args.user)
    os.execvp(argv[0], argv)


def cmd_template(args: argparse.Namespace) -> int:
    print(template.ensure_template(args.distro, log=_log, force=args.force))
    return 0


def _distro_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--distro",
        choices=sorted(config.DISTROS),
        default=config.DEFAULT_DISTRO,
        help="Debian release of the hosts (default: %(default)s)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localhosts", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("up", help="boot N fresh hosts sfhost1..sfhostN (replacing any running ones)")
    p.add_argument("n", type=int)
    _distro_argument(p)
    p.add_argument(
        "--timeout", type=float, default=180.0, help="seconds per host to reach ssh + systemd running"
    )
    p.add_argument("--allow-degraded", action="store_true", help="accept hosts whose systemd is degraded")
    p.add_argument("--keep-on-failure", action="store_true", help="leave a failed boot for inspection")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop and remove every host this harness started")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("reboot", help="reboot one host and boot its overlay again (same name, address, key)")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to power off, then to come back")
    p.set_defaults(func=cmd_reboot)

    p = sub.add_parser("status", help="list hosts and whether they are alive")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("ssh", help="ssh to a host (strict host key checking)")
    p.add_argument("-u", "--user", help=f"login user (default {config.LOGIN_USER})")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_ssh)

    p = sub.add_parser("exec", help="run a command as root inside a host via nsenter (no ssh)")
    p.add_argument("-u", "--user", help="run as this user instead of root")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD... (default: a login shell)")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("template", help="build the template only (cache warming)")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    _distro_argument(p)
    p.set_defaults(func=cmd_template)

    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("must run as root (mounts, cgroups, nspawn)")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _log("interrupted")
        return 130
    except (RuntimeError, TimeoutError, KeyError, ValueError) as exc:
        _log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
