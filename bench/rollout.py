"""Measure what a version restart costs under steady load on 3 local hosts, and print tables (issue 8).

    python bench/rollout.py [--distro bookworm|trixie] [--runs 1] [--rate 20] [--job-seconds 0.1]
                            [--eager-aws] [--cases overlap,healthy0,restart,floor,noop,recycle] [--json FILE]

Run it as root with the Pulumi toolchain on PATH (`source bin/_common.sh; source toolchain/env.sh`);
it honours SIDEKIQ_FLEET_HOST_PREFIX and SIDEKIQ_FLEET_SUBNET. It boots 3 hosts of --distro (Debian 12
with Sidekiq 6.4.1, the default, or Debian 13 with 7.3.2; the table names the version it found running),
deploys a copy of this project's local stack to them with its own backend (tests/pulumi_project.py),
and then, side by side in one run:

- for each rollout.strategy the program accepts and implements (`restart`; `overlap` once hosts get
  the control script, /usr/local/sbin/sidekiqctl) and for the floor, a bare `sudo systemctl restart`
  of the running unit on every host at once: --runs version bumps (`pulumi up` after an appVersion
  change) with rollout.batchSize 1 and --runs with 3, under steady load: --rate RecordingJobs a
  second pushed on each host, each sleeping --job-seconds. Per host: the gap
  (last job STARTED by a process that ran before the restart, to the first job started by a process
  that did not), jobs lost, jobs run twice, peak PSS of the host (both processes during an overlap),
  the drain (the old process's TSTP to its unit's stop; the title shows the quiet at the next heartbeat,
  5 s in 6.x, 10 s in 7.x); per run, `pulumi up`'s wall time;
- the long-job case: one job longer than sidekiq.timeout on each host, pushed just before a bump:
  how often it finished and on which process (rollout.drainTimeout is raised above its length);
- overlap with `rollout.healthySeconds: 0` beside the default 2 (issue 19): the old process quiets at the
  new one's READY instead of after 2 s of proven health, so both fetch for a shorter time;
- the recycle case (issue 19): a release whose RecordingJob keeps 256 KiB per job grows past
  `sidekiq.recycleAboveMiB` under the same load, and the recycle timer replaces it (--runs recycles,
  each at least recycleMinIntervalSeconds after the last): gap, lost, run twice, peak PSS;
- a no-op `pulumi up` against an empty Pulumi program's `up` (same engine, same backend), with the
  ssh sessions the no-op opened on the hosts (every remote command is one); with --eager-aws, also
  the no-op with `import pulumi_aws` put back at the top of components/hosts.py (P3, before and after);
- the program's evaluation time for a 50-host EC2 stage under pulumi.runtime mocks.

The hosts are torn down at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

APP = "/var/www/example/local"
JOBS_LOG = f"{APP}/shared/jobs.log"
CONTROL_SCRIPT = "/usr/local/sbin/sidekiqctl"
PUSHER = "/var/tmp/bench-push.rb"
# A running Sidekiq's process title: "sidekiq 6.4.1 20260101000000 [0 of 5 busy]".
SIDEKIQ_TITLE = "^sidekiq [0-9]"
# The unit a bare `systemctl restart` hits: today's sidekiq.service, or a slot of the contract.
UNIT_PATTERN = re.compile(r"^sidekiq(\.service|-[A-Za-z0-9_.-]+@[ab]\.service)$")

# Pushes RecordingJobs at a steady rate until SIGTERM; one "ID PUSHED_AT" line per job Redis took.
PUSHER_RB = """\
require "bundler/setup"
require "sidekiq"
require "time"
Redis.silence_deprecations = true if defined?(Redis) && Redis.respond_to?(:silence_deprecations=)
prefix, rate, seconds, out = ARGV[0], ARGV[1].to_f, ARGV[2].to_f, ARGV[3]
stop = false
Signal.trap("TERM") { stop = true }
start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
n = 0
File.open(out, "a") do |f|
  until stop
    id = "#{prefix}-#{n}"
    Sidekiq::Client.push("class" => "RecordingJob", "queue" => "default", "args" => [id, seconds])
    f.syswrite("#{id} #{Time.now.utc.iso8601(3)}\\n")
    n += 1
    # On a schedule, not a fixed sleep: a slow push is caught up, so the rate holds.
    ahead = start + n / rate - Process.clock_gettime(Process::CLOCK_MONOTONIC)
    sleep(ahead) if ahead.positive?
  end
end
"""

MOCK_EVAL = """
import json, sys, time
t0 = time.perf_counter()
from tests.test_program import configure, ec2_values, run_program
t1 = time.perf_counter()
monitor = configure("staging", ec2_values(count=int(sys.argv[1])), secret_keys=("ssh", "env"))
run_program(monitor)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "evaluate": t2 - t1, "resources": len(monitor.registrations)}))
"""


# ---------------------------------------------------------------- pure parts (tests/test_bench_rollout.py)


@dataclass(frozen=True)
class Job:
    id: str
    pid: int
    started: float  # seconds since the epoch
    finished: float


def epoch(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time such as 2026-11-28T10:00:00.123Z."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_jobs(lines: Iterable[str], prefix: str) -> list[Job]:
    """The RecordingJob lines of jobs.log whose id starts with prefix; other lines are skipped."""
    jobs = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written when the log was read
        if not str(entry.get("id", "")).startswith(prefix) or "started" not in entry:
            continue
        jobs.append(Job(entry["id"], int(entry["pid"]), epoch(entry["started"]), epoch(entry["at"])))
    return jobs


def parse_pushed(lines: Iterable[str]) -> dict[str, float]:
    """The pusher's "ID PUSHED_AT" lines: when Redis had each job."""
    pushed = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            pushed[parts[0]] = epoch(parts[1])
    return pushed


@dataclass(frozen=True)
class Switch:
    old_pids: tuple[int, ...]
    new_pids: tuple[int, ...]
    last_old_start: float
    first_new_start: float

    @property
    def gap(self) -> float:
        """Seconds with no process taking jobs across the switch; 0 when both took jobs at once."""
        return max(0.0, self.first_new_start - self.last_old_start)


def switch(jobs: Sequence[Job], restart_at: float) -> Switch | None:
    """Old processes are those that started a job before restart_at; new ones, every other process.

    None when no process is new (nothing restarted) or none is old (no load before the restart).
    """
    old = {job.pid for job in jobs if job.started < restart_at}
    old_jobs = [job for job in jobs if job.pid in old]
    new_jobs = [job for job in jobs if job.pid not in old]
    if not old_jobs or not new_jobs:
        return None
    return Switch(
        tuple(sorted(old)),
        tuple(sorted({job.pid for job in new_jobs})),
        max(job.started for job in old_jobs),
        min(job.started for job in new_jobs),
    )


def ambient_gap(jobs: Sequence[Job], before: float) -> float | None:
    """The median time between consecutive job starts before `before`: the gap with no restart at all."""
    starts = sorted(job.started for job in jobs if job.started < before)
    if len(starts) < 2:
        return None
    return statistics.median(b - a for a, b in zip(starts, starts[1:], strict=False))


def lost(pushed: Iterable[str], jobs: Sequence[Job]) -> list[str]:
    """Pushed ids that never finished."""
    done = {job.id for job in jobs}
    return sorted(set(pushed) - done)


def run_twice(jobs: Sequence[Job]) -> dict[str, int]:
    """Ids that finished more than once, with how often."""
    return {job_id: n for job_id, n in sorted(Counter(job.id for job in jobs).items()) if n > 1}


def drain_seconds(entries: Iterable[dict[str, Any]], old_pids: Iterable[int]) -> float | None:
    """Seconds from an old process's TSTP ("Received TSTP" from its PID) to its manager's "Stopped" of
    its unit, in `journalctl -o json` entries; None when no old process was quieted and stopped. The
    manager is systemd (PID 1, UNIT=) or, in scope: user, the deploy user's (systemd, USER_UNIT=)."""
    pids = {str(pid) for pid in old_pids}
    quieted: dict[str, float] = {}
    stops: list[tuple[str, float]] = []
    for entry in entries:
        message = entry.get("MESSAGE")
        if not isinstance(message, str):
            continue
        at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        if entry.get("_PID") in pids and "Received TSTP" in message:
            unit = entry.get("_SYSTEMD_USER_UNIT") or entry.get("_SYSTEMD_UNIT", "")
            quieted.setdefault(unit, at)
        elif message.startswith("Stopped "):
            if entry.get("_PID") == "1" and "UNIT" in entry:
                stops.append((entry["UNIT"], at))
            elif entry.get("_COMM") == "systemd" and "USER_UNIT" in entry:
                stops.append((entry["USER_UNIT"], at))
    drains = []
    for unit, tstp in quieted.items():
        after = [at for stopped, at in stops if stopped == unit and at >= tstp]
        if after:
            drains.append(min(after) - tstp)
    return max(drains) if drains else None


def spread(values: Sequence[float]) -> str:
    """min / median / max, in seconds with 3 decimals, or "-" for no values."""
    if not values:
        return "-"
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# ---------------------------------------------------------------- measuring on the hosts


@dataclass
class HostRun:
    host: str
    pushed: int
    lost: list[str]
    twice: dict[str, int]
    gap: float | None
    ambient: float | None
    old_pids: list[int]
    new_pids: list[int]
    peak_pss_mib: float
    drain: float | None = None


@dataclass
class Trial:
    case: str  # overlap, restart or floor
    batch: int | None
    seconds: float  # pulumi up's wall time, or the slowest bare restart
    hosts: list[HostRun] = field(default_factory=list)
    long_jobs: list[dict[str, Any]] = field(default_factory=list)
    output: str = ""


def sh(host: Any, command: str, user: str | None = None, timeout: float = 120) -> str:
    result = host.exec(command, user=user, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{host.name}: {command}: {result.stdout}{result.stderr}")
    return result.stdout


class PssSampler(threading.Thread):
    """Peak PSS of each host's whole cgroup subtree, sampled every 0.2 s while it runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        from localhosts import state

        self.cgroups = {rec["name"]: rec["cgroups"] for rec in (state.load() or {})["hosts"]}
        self.peak = dict.fromkeys(self.cgroups, 0.0)
        self.done = threading.Event()

    def run(self) -> None:
        from localhosts.sysutil import cgroup_procs, pss_kib

        while not self.done.is_set():
            for name, cgroups in self.cgroups.items():
                pids = sorted({pid for cg in cgroups for pid in cgroup_procs(Path(cg))})
                self.peak[name] = max(self.peak[name], pss_kib(pids) / 1024)
            self.done.wait(0.2)

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.join()
        return self.peak


class Bench:
    def __init__(self, hosts: list[Any], project: Any, rate: float, job_seconds: float) -> None:
        self.hosts = hosts
        self.project = project
        self.rate = rate
        self.job_seconds = job_seconds
        self.version = 1
        self.trials = 0

    def each(self, fn: Callable[[Any], Any]) -> list[Any]:
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            return list(pool.map(fn, self.hosts))

    def sidekiqs(self, host: Any) -> int:
        return len(sh(host, f"pgrep -f {shlex.quote(SIDEKIQ_TITLE)} || true").split())

    def settle(self, timeout: float = 120) -> None:
        """Wait until each host runs one Sidekiq: an overlap's old process may still be draining."""
        deadline = time.monotonic() + timeout
        while any(self.each(lambda h: self.sidekiqs(h) != 1)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"hosts do not settle to one Sidekiq each within {timeout} s")
            time.sleep(0.5)

    def start_pushers(self, prefix: str) -> None:
        def start(host: Any) -> None:
            host.exec(f"cat > {PUSHER}", user="deploy", input=PUSHER_RB, check=True)
            release = sh(host, f"readlink -f {APP}/current").strip()
            argv = [
                "systemd-run", f"--unit=bench-push-{prefix}", "--collect", "--uid=deploy",
                f"--working-directory={release}", f"--setenv=BUNDLE_GEMFILE={release}/Gemfile",
                "ruby", PUSHER, prefix, str(self.rate), str(self.job_seconds), f"/var/tmp/pushed-{prefix}",
            ]  # fmt: skip
            sh(host, shlex.join(argv))

        self.each(start)

    def stop_pushers(self, prefix: str) -> None:
        self.each(lambda h: sh(h, f"systemctl stop bench-push-{prefix}.service"))

    def collect(self, host: Any, prefix: str, extra: Sequence[str], timeout: float) -> tuple[dict, list[Job]]:
        """The pushed ids and the recorded jobs of a trial, once every pushed job finished (or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            pushed = parse_pushed(sh(host, f"cat /var/tmp/pushed-{prefix}").splitlines())
            jobs = parse_jobs(sh(host, f"cat {JOBS_LOG}").splitlines(), prefix)
            if not lost([*pushed, *extra], jobs) or time.monotonic() > deadline:
                return pushed, jobs
            time.sleep(1)

    def trial(
        self,
        case: str,
        batch: int | None,
        action: Callable[[], tuple[float, str]],
        long_job: float | None = None,
    ) -> Trial:
        self.settle()
        self.trials += 1
        prefix = f"t{self.trials}"
        sampler = PssSampler()
        sampler.start()
        self.start_pushers(prefix)
        time.sleep(3)  # steady load, and jobs of the old process to measure from
        long_ids = []
        if long_job is not None:
            for host in self.hosts:
                long_id = f"{prefix}-long-{host.name}"
                sh(host, f"cd {APP}/current && bin/push-jobs --sleep {long_job} {long_id}", user="deploy")
                long_ids.append(long_id)
            time.sleep(1.5)  # taken by a worker of the old process
        restart_at = time.time()
        seconds, output = action()
        action_end = time.time()
        time.sleep(3)
        self.stop_pushers(prefix)
        result = Trial(case, batch, seconds, output=output)
        wait = 60 + (long_job or 0) * 2
        peaks = sampler.stop()
        collected = self.each(
            lambda h: self.collect(h, prefix, [i for i in long_ids if i.endswith(f"-{h.name}")], wait)
        )
        for host, (pushed, jobs) in zip(self.hosts, collected, strict=True):
            steady = [job for job in jobs if job.id in pushed]
            moved = switch(steady, restart_at)
            result.hosts.append(
                HostRun(
                    host.name,
                    len(pushed),
                    lost(pushed, steady),
                    run_twice(steady),
                    moved.gap if moved else None,
                    ambient_gap(steady, restart_at),
                    list(moved.old_pids) if moved else [],
                    list(moved.new_pids) if moved else [],
                    round(peaks[host.name], 1),
                )
            )
            if long_ids:
                long_id = f"{prefix}-long-{host.name}"
                runs = [job for job in jobs if job.id == long_id]
                old = moved.old_pids if moved else ()
                result.long_jobs.append(
                    {
                        "host": host.name,
                        "finished": len(runs),
                        "on": ["old" if job.pid in old else "new" for job in runs],
                        # Positive: it finished after `pulumi up` returned, so the deploy did not wait.
                        "after_up_s": [round(job.finished - action_end, 1) for job in runs],
                    }
                )
        # The drain ends after the last job: the old process must be gone before its journal is read.
        self.settle(timeout=120 + (long_job or 0))
        for host, run in zip(self.hosts, result.hosts, strict=True):
            journal = sh(
                host,
                f"journalctl -o json --no-pager --since @{int(restart_at) - 1} "
                "--grep 'Received TSTP|^Stopped '",
            )
            run.drain = drain_seconds(map(json.loads, journal.splitlines()), run.old_pids)
        print(f"{case} batch {batch}: {[asdict(h) for h in result.hosts]}", file=sys.stderr, flush=True)
        return result

    def bump(self, strategy: str, batch: int) -> Callable[[], tuple[float, str]]:
        def action() -> tuple[float, str]:
            self.version += 1
            self.project.config_set("appVersion", f"local-{self.version}")
            self.project.config_set("rollout.strategy", strategy)
            self.project.config_set("rollout.batchSize", str(batch))
            run = self.project.up()
            return run.seconds, run.output

        return action

    def floor(self) -> tuple[float, str]:
        def restart(host: Any) -> tuple[float, str]:
            units = sh(host, "systemctl list-units --type=service --state=active --plain --no-legend")
            unit = next(line.split()[0] for line in units.splitlines() if UNIT_PATTERN.match(line.split()[0]))
            started = time.monotonic()
            host.ssh(f"sudo -n systemctl restart {shlex.quote(unit)}", check=True)
            return time.monotonic() - started, unit

        results = self.each(restart)
        return max(s for s, _ in results), ", ".join(
            f"{h.name}: {u}" for h, (_, u) in zip(self.hosts, results, strict=True)
        )

    def ssh_sessions(self) -> int:
        counts = self.each(
            lambda h: sh(h, "journalctl -u ssh.service -o cat --no-pager").count("Accepted publickey")
        )
        return sum(counts)


# The recycle case's settings: a check every 5 s, at most one recycle per process in 30 s.
RECYCLE_ABOVE_MIB = 160
RECYCLE_SETTINGS = {
    "sidekiq.recycleAboveMiB": str(RECYCLE_ABOVE_MIB),
    "sidekiq.recycleCheckSeconds": "5",
    "sidekiq.recycleMinIntervalSeconds": "30",
}


def recycle_trials(bench: Bench, runs: int) -> list[Trial]:
    """Recycling on, a growing release deployed, then one trial per recycle of every host."""
    from tests.e2e.test_memory import GROWING, recycled_at, release_with

    for key, value in RECYCLE_SETTINGS.items():
        bench.project.config_set(key, value)
    bench.each(lambda h: release_with(h, "20270101000000", GROWING))
    bench.version += 1
    bench.project.config_set("appVersion", f"local-{bench.version}")
    bench.project.up()
    began = time.time()
    trials = []
    for count in range(1, runs + 1):

        def recycled(count: int = count) -> tuple[float, str]:
            start = time.monotonic()
            while not all(len(recycled_at(h, began)) >= count for h in bench.hosts):
                if time.monotonic() - start > 300:
                    raise RuntimeError(f"no recycle {count} on every host within 300 s")
                time.sleep(0.5)
            return time.monotonic() - start, ""

        trials.append(bench.trial("recycle", None, recycled))
    return trials


def measure_noop(bench: Bench, project: Any, empty: Any, runs: int, eager_aws: bool) -> dict[str, Any]:
    """Wall times of no-op ups, interleaved (empty, this program, eager variant) so drifting load hits
    each alike."""
    hosts_py = project.directory / "components" / "hosts.py"
    variants = {"noop": hosts_py.read_text()}
    if eager_aws:
        # What the program did before P3: the AWS SDK loaded for every stage.
        variants["before"] = variants["noop"].replace(
            "\nimport pulumi\n", "\nimport pulumi\nimport pulumi_aws\n", 1
        )
        if variants["before"] == variants["noop"]:
            raise RuntimeError(f"no `import pulumi` line in {hosts_py} to put the AWS import after")
    result: dict[str, Any] = {"empty": [], "imports": {}, **{key: [] for key in variants}}
    sessions = bench.ssh_sessions()
    for _ in range(runs):
        result["empty"].append(empty.up("--expect-no-changes").seconds)
        for key, text in variants.items():
            hosts_py.write_text(text)
            result[key].append(project.up("--expect-no-changes").seconds)
            result["imports"].setdefault(key, []).append(import_seconds(project.directory))
    hosts_py.write_text(variants["noop"])
    result["ssh"] = bench.ssh_sessions() - sessions
    # The count sees logins: one ssh command per host adds exactly one each.
    bench.each(lambda h: h.ssh("true", check=True))
    result["control"] = bench.ssh_sessions() - sessions - result["ssh"]
    return result


def import_seconds(directory: Path) -> float:
    """How long a fresh interpreter takes to import the program's modules (and the SDKs they load)."""
    probe = "import time; t = time.perf_counter(); import components.fleet; print(time.perf_counter() - t)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=directory, capture_output=True, text=True, check=True
    )
    return float(result.stdout)


def empty_program(root: Path, env: dict[str, str]) -> Any:
    """A Python Pulumi program that declares nothing, in the same backend, with the same virtualenv."""
    from tests.pulumi_project import PulumiProject

    directory = root / "empty"
    directory.mkdir()
    (directory / "Pulumi.yaml").write_text(
        "name: empty\nruntime:\n  name: python\n  options:\n    toolchain: pip\n"
        f"    virtualenv: {PROJECT_DIR / '.venv'}\n"
    )
    (directory / "__main__.py").write_text('"""Declares nothing: the engine and language host alone."""\n')
    project = PulumiProject(directory, env)
    project.pulumi("stack", "init", "local")
    project.up()
    return project


def serving_sidekiq(host: Any) -> dict[str, Any]:
    """The enabled slot's status record (its running Sidekiq's version and concurrency), as the control script
    reads it from the process title, which Sidekiq writes at its first heartbeat."""
    from ops.control import parse_status

    deadline = time.monotonic() + 30
    while True:
        records = [r for r in parse_status(sh(host, f"{CONTROL_SCRIPT} status")) if r["enabled"]]
        if records and records[0]["sidekiq"] and records[0]["concurrency"]:
            return records[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host.name}: no Sidekiq version in the status within 30 s: {records}")
        time.sleep(1)


def mock_evaluation(count: int) -> dict[str, Any]:
    """One fresh interpreter: the import of the program's modules, then the evaluation under mocks."""
    result = subprocess.run(
        [sys.executable, "-c", MOCK_EVAL, str(count)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report


HEALTHY_0 = "overlap, healthySeconds 0"


def report(
    trials: list[Trial],
    implemented: list[str],
    noop: dict[str, Any] | None,
    mock: dict[str, Any],
    settings: str,
) -> str:
    out = [settings]
    rows = [["case", "host-runs", "gap min / median / max (s)", "ambient (s)", "lost / pushed", "run twice",
             "peak PSS MiB per host", "drain min / median / max (s)", "wall time (s)"]]  # fmt: skip
    cases = [("overlap", 1), ("overlap", 3), (HEALTHY_0, 1), ("restart", 1), ("restart", 3), ("floor", None)]
    cases.append(("recycle", None))
    for case, batch in cases:
        chosen = [t for t in trials if t.case == case and t.batch == batch and not t.long_jobs]
        label = case if batch is None else f"{case}, batch {batch}"
        if not chosen:
            if case in ("overlap", "restart") and case not in implemented:
                rows.append([label, "0", "not built in this checkout", "-", "-", "-", "-", "-", "-"])
            continue
        runs = [h for t in chosen for h in t.hosts]
        gaps = [h.gap for h in runs if h.gap is not None]
        ambient = [h.ambient for h in runs if h.ambient is not None]
        peaks = [
            max(h.peak_pss_mib for h in runs if h.host == name) for name in sorted({h.host for h in runs})
        ]
        rows.append(
            [
                label,
                f"{len(runs)} ({len(gaps)} restarted)",
                spread(gaps),
                f"{statistics.median(ambient):.3f}" if ambient else "-",
                f"{sum(len(h.lost) for h in runs)} / {sum(h.pushed for h in runs)}",
                str(sum(len(h.twice) for h in runs)),
                " / ".join(f"{p:.0f}" for p in peaks),
                spread([h.drain for h in runs if h.drain is not None]),
                ", ".join(f"{t.seconds:.1f}" for t in chosen),
            ]
        )
    if trials:
        out.append(table(rows))
        out.append(
            "wall time: `pulumi up` per run; for the floor, the slowest of the 3 simultaneous restarts; for "
            "recycle, from the start of the load to the recycle of every host."
        )

    long_rows = [["case", "host", "finished", "on process", "finished after up returned (s)", "up (s)"]]
    for trial in trials:
        for entry in trial.long_jobs:
            long_rows.append(
                [trial.case, entry["host"], str(entry["finished"]), ", ".join(entry["on"]) or "-",
                 ", ".join(f"{s:+.1f}" for s in entry["after_up_s"]) or "-", f"{trial.seconds:.1f}"]
            )  # fmt: skip
    if len(long_rows) > 1:
        out.append(
            "\nLong job (longer than sidekiq.timeout), pushed 1.5 s before the bump:\n" + table(long_rows)
        )

    if noop is None:
        return "\n".join(out)
    empty = noop["empty"]
    noop_rows = [
        ["program", "wall time min / median / max (s)", "x empty (median, min)", "import of the program (s)",
         "ssh sessions on the hosts"]
    ]  # fmt: skip
    noop_rows.append(["empty Pulumi program", spread(empty), "1.00, 1.00", "-", "-"])
    for label, key in (
        ("no-op up, this checkout", "noop"),
        ("no-op up, pulumi_aws imported at the top of hosts.py", "before"),
    ):
        if key in noop:
            times = noop[key]
            ratios = (
                f"{statistics.median(times) / statistics.median(empty):.2f}, {min(times) / min(empty):.2f}"
            )
            noop_rows.append([label, spread(times), ratios, spread(noop["imports"][key]), "-"])
    sessions = f"{noop['ssh']} (control: 1 ssh per host gave {noop['control']})"
    noop_rows.append(["all no-op ups together", "-", "-", "-", sessions])
    out.append(
        "\nNo-op `pulumi up` (engine, backend and virtualenv shared with the empty program):\n"
        + table(noop_rows)
    )
    out.append(
        f"\n{mock['hosts']}-host EC2 stage under pulumi.runtime mocks, {len(mock['evaluate'])} fresh "
        f"interpreters: evaluation {spread(mock['evaluate'])} s (min / median / max), plus "
        f"{spread(mock['import'])} s to import the program and SDKs; "
        f"{mock['resources']} resources registered."
    )
    out.append(
        "\nIssue 8's goals:\n" + table([["goal", "verdict", "measured"], *goal_rows(trials, noop, mock)])
    )
    return "\n".join(out)


def goal_rows(trials: list[Trial], noop: dict[str, Any], mock: dict[str, Any]) -> list[list[str]]:
    """P1, P2, P3 and the 50-host evaluation, judged on the overlap strategy's measurements."""
    steady = [h for t in trials if t.case == "overlap" and not t.long_jobs for h in t.hosts]
    long_jobs = [entry for t in trials if t.case == "overlap" for entry in t.long_jobs]
    rows = []
    gaps = [h.gap for h in steady if h.gap is not None]
    if gaps and len(gaps) == len(steady):
        median, worst = statistics.median(gaps), max(gaps)
        met = median <= 0.1 and worst <= 0.3
        rows.append(["P1 gap: median <= 0.1 s, max <= 0.3 s", "met" if met else "NOT met",
                     f"median {median:.3f} s, max {worst:.3f} s over {len(gaps)} host-runs"])  # fmt: skip
    else:
        rows.append(["P1 gap: median <= 0.1 s, max <= 0.3 s", "not measured",
                     "overlap not built, or a host did not restart"])  # fmt: skip
    lost_jobs = sum(len(h.lost) for h in steady)
    pushed = sum(h.pushed for h in steady)
    once_on_old = bool(long_jobs) and all(entry["on"] == ["old"] for entry in long_jobs)
    if steady:
        met = lost_jobs == 0 and pushed >= 1000 and not any(h.twice for h in steady) and once_on_old
        rows.append(
            [
                "P2 0 lost of >= 1000; a long job once, on the draining process",
                "met" if met else "NOT met",
                f"{lost_jobs} lost of {pushed}, {sum(len(h.twice) for h in steady)} run twice; long job: "
                + "; ".join(f"{e['host']} {e['finished']}x on {'/'.join(e['on']) or '-'}" for e in long_jobs),
            ]
        )
    else:
        rows.append(["P2 0 lost of >= 1000; a long job once, on the draining process", "not measured",
                     "overlap not built"])  # fmt: skip
    ratio = statistics.median(noop["noop"]) / statistics.median(noop["empty"])
    met = ratio <= 1.2 and noop["ssh"] == 0
    rows.append(["P3 no-op up: 0 remote commands, <= 1.2x an empty program", "met" if met else "NOT met",
                 f"{ratio:.2f}x (median), {noop['ssh']} ssh sessions"])  # fmt: skip
    evaluation = statistics.median(mock["evaluate"])
    rows.append([f"{mock['hosts']}-host EC2 stage evaluates in < 3 s", "met" if evaluation < 3 else "NOT met",
                 f"{evaluation:.2f} s (median)"])  # fmt: skip
    return rows


CASES = ("overlap", "healthy0", "restart", "floor", "noop", "recycle")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--distro", default="bookworm", help="the hosts' Debian release: bookworm or trixie")
    parser.add_argument("--runs", type=int, default=1, help="version bumps per strategy and batch size")
    parser.add_argument("--rate", type=float, default=20, help="jobs pushed per second on each host")
    parser.add_argument("--job-seconds", type=float, default=0.1, help="how long each steady job sleeps")
    parser.add_argument("--noop-runs", type=int, default=7)
    parser.add_argument(
        "--eager-aws",
        action="store_true",
        help="also time a no-op up that imports pulumi_aws for every stage",
    )
    parser.add_argument("--noop-only", action="store_true", help="skip the restart trials")
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated, of {', '.join(CASES)}: what to measure (all by default)",
    )
    parser.add_argument("--mock-hosts", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args(argv)
    cases = set(args.cases.split(","))
    if cases - set(CASES):
        parser.error(f"--cases: {', '.join(sorted(cases - set(CASES)))} unknown; expected {', '.join(CASES)}")
    if args.noop_only:
        cases = {"noop"}

    import localhosts
    from tests.pulumi_project import new_project

    evaluations = [mock_evaluation(args.mock_hosts) for _ in range(3)]
    mock = {
        "hosts": args.mock_hosts,
        "resources": evaluations[0]["resources"],
        **{key: [e[key] for e in evaluations] for key in ("import", "evaluate")},
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp,
        localhosts.up(3, distro=args.distro) as hosts,
    ):
        root = Path(tmp)
        project = new_project(root, list(hosts), {})
        timeout = int(project.pulumi("config", "get", "--path", "sidekiq-fleet:sidekiq.timeout").output)
        long_job = timeout + 7
        # The old slot may drain the long job: give it room (not the point of the other trials).
        # Set before the first up, so that with --noop-only the no-ops find nothing to change.
        project.config_set("rollout.drainTimeout", str(long_job + 30))
        project.up()
        bench = Bench(list(hosts), project, args.rate, args.job_seconds)
        rollout = project.pulumi("config", "get", "sidekiq-fleet:rollout").output.strip()
        running = serving_sidekiq(hosts[0])
        settings = (
            f"3 {args.distro} hosts, Sidekiq {running['sidekiq']} (concurrency {running['concurrency']}), "
            f"{args.rate:g} jobs/s pushed on each, each job sleeping {args.job_seconds:g} s, "
            f"sidekiq.timeout {timeout} s, long job {long_job} s, "
            f"rollout {rollout} with each row's strategy and batch size."
        )
        has_script = all(h.exec(f"test -x {CONTROL_SCRIPT}").returncode == 0 for h in hosts)
        implemented = ["overlap", "restart"] if has_script else ["restart"]
        trials = []
        for strategy in [s for s in implemented if s in cases]:
            for batch in (1, 3):
                for _ in range(args.runs):
                    trials.append(bench.trial(strategy, batch, bench.bump(strategy, batch)))
            trials.append(bench.trial(strategy, 3, bench.bump(strategy, 3), long_job=float(long_job)))
        if "healthy0" in cases and "overlap" in implemented:
            project.config_set("rollout.healthySeconds", "0")
            for _ in range(args.runs):
                trial = bench.trial(HEALTHY_0, 1, bench.bump("overlap", 1))
                trials.append(trial)
            project.config_set("rollout.healthySeconds", "2")
        for _ in range(args.runs if "floor" in cases else 0):
            trials.append(bench.trial("floor", None, bench.floor))

        noop = None
        if "noop" in cases:
            bench.settle()
            empty = empty_program(root, project.env)
            noop = measure_noop(bench, project, empty, args.noop_runs, args.eager_aws)
        # Last: it leaves a growing release behind.
        if "recycle" in cases:
            trials += recycle_trials(bench, args.runs)

    text = report(trials, implemented, noop, mock, settings)
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"trials": [asdict(t) for t in trials], "noop": noop, "mock": mock, "table": text}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
