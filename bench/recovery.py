"""Measure how fast the Sidekiq unit recovers from faults on a local host, and print a table.

    python bench/recovery.py HOST [--runs 3] [--hardening strict|off]

Installs the local stage's unit and env file (rendered by components/, as `pulumi up` would push
them) on HOST, a host of `python -m localhosts up` (honours SIDEKIQ_FLEET_HOST_PREFIX and
SIDEKIQ_FLEET_SUBNET), then injects each fault --runs times. Every time is taken on the host with
`date`, from the moment the fault is injected:

- kill -9 of the main process: until the unit is active with a new MainPID, and until a job pushed
  right after the kill has run;
- SIGSTOP of the main process: until the watchdog has had it restarted (active, new MainPID), and
  until a job pushed then has run;
- Redis stopped, then `systemctl restart`: how long the failing restart takes to return; after
  15 s, whether systemd still retries; from `systemctl start redis-server` until Sidekiq is active
  and until a job queued before the outage has run.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import localhosts  # noqa: E402
from components.config import parse_stage, values_from_stack_file  # noqa: E402
from components.render import render_files  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parent.parent
UNIT = "sidekiq-default@a.service"  # slot a of the default process, as a first deploy starts it
APP = "/var/www/example/local"

# Shell functions for the trials; each trial prints "name seconds" lines.
HELPERS = f"""
set -u
unit={UNIT}
now() {{ date +%s.%N; }}
since() {{ echo "$(now) $1" | awk '{{printf "%.2f", $1 - $2}}'; }}
mainpid() {{ systemctl show -p MainPID --value "$unit"; }}
until_new_pid() {{  # old_pid: wait until the unit is active under another MainPID
  until systemctl is-active -q "$unit" && p=$(mainpid) && [ "$p" != 0 ] && [ "$p" != "$1" ]; do
    sleep 0.05
  done
}}
push() {{ (cd {APP}/current && runuser -u deploy -- bin/push-jobs "$1" >/dev/null); }}
until_ran() {{ until grep -q "\\"id\\":\\"$1\\"" {APP}/shared/jobs.log 2>/dev/null; do sleep 0.05; done; }}
"""

TRIALS = {
    "kill-9": """
old=$(mainpid); t0=$(now); kill -9 "$old"; push "$id"
until_new_pid "$old"; echo "active $(since "$t0")"
until_ran "$id"; echo "job $(since "$t0")"
""",
    "sigstop": """
old=$(mainpid); t0=$(now); kill -STOP "$old"
until_new_pid "$old"; echo "active $(since "$t0")"
push "$id"; until_ran "$id"; echo "job $(since "$t0")"
""",
    "redis-down": """
systemctl kill -s TSTP "$unit"; push "$id"; systemctl stop redis-server
t0=$(now); systemctl restart "$unit" 2>/dev/null; echo "failing-restart $(since "$t0")"
sleep 15; echo "retrying $(systemctl show -p NRestarts --value "$unit")"
if systemctl is-failed -q "$unit"; then
  # systemd gave up: nothing brings Sidekiq back but a start by hand, which is not timed.
  echo "gave-up 1"; systemctl start redis-server; systemctl start "$unit"; until_ran "$id"; exit 0
fi
t0=$(now); systemctl start redis-server
until systemctl is-active -q "$unit"; do sleep 0.05; done; echo "active $(since "$t0")"
until_ran "$id"; echo "job $(since "$t0")"
""",
}

ROWS = [
    ("kill-9", "active", "kill -9 of the main process", "active with a new MainPID"),
    ("kill-9", "job", "", "a job pushed right after the kill has run"),
    ("sigstop", "active", "SIGSTOP of the main process (WatchdogSec=10)", "active with a new MainPID"),
    ("sigstop", "job", "", "a job pushed after the restart has run"),
    ("redis-down", "failing-restart", "Redis down at `systemctl restart`", "the failing restart returns"),
    ("redis-down", "active", "", "Sidekiq active after Redis starts"),
    ("redis-down", "job", "", "a job queued before the outage has run"),
]


def install(host: localhosts.Host, hardening: str) -> None:
    values = values_from_stack_file(PROJECT_DIR / "Pulumi.local.yaml")
    values["sidekiq"] = {**values.get("sidekiq", {}), "hardening": hardening}
    values["ssh"]["privateKeyFile"] = str(host.private_key_path)
    stage = parse_stage("local", values)
    for file in render_files(stage):
        if file.role != "sudoers":
            quoted = shlex.quote(file.path)
            command = f'mkdir -p "$(dirname {quoted})" && cat > {quoted} && chmod {file.mode} {quoted}'
            host.exec(command, input=file.content, check=True)
    host.exec(f"systemctl daemon-reload && systemctl restart {UNIT}", check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hardening", choices=["strict", "off"], default="strict")
    args = parser.parse_args()
    host = localhosts.get(args.host)
    install(host, args.hardening)

    measured: dict[tuple[str, str], list[float]] = {}
    restarts: list[str] = []
    gave_up = 0
    for run in range(args.runs):
        for trial, body in TRIALS.items():
            script = f"{HELPERS}\nid=bench-{trial}-{run}-$$\n{body}"
            result = host.exec(["bash", "-c", script], timeout=180, check=True)
            for line in result.stdout.splitlines():
                name, value = line.split()
                if name == "retrying":
                    restarts.append(value)
                elif name == "gave-up":
                    gave_up += 1
                else:
                    measured.setdefault((trial, name), []).append(float(value))

    print(f"{args.runs} runs on {host.name}, hardening: {args.hardening}; seconds from the fault")
    print()
    print("| fault | until | median | min | max |")
    print("|---|---|---|---|---|")
    for trial, name, fault, until in ROWS:
        values = measured.get((trial, name))
        if not values:
            print(f"| {fault} | {until} | never: systemd gave up | | |")
            continue
        print(
            f"| {fault} | {until} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |"
        )
    print()
    print(
        f"15 s into the Redis outage systemd had restarted Sidekiq {', '.join(restarts)} times, "
        f"and given up (unit failed) in {gave_up} of {args.runs} runs."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
