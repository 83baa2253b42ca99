"""Measure what taking over another tool's Sidekiq costs under steady load, and print a table (issue 18).

    python bench/adopt.py [--distros bookworm,trixie] [--runs 3] [--rate 20] [--job-seconds 0.1]

Run it as root with the Pulumi toolchain on PATH (`source bin/_common.sh; source toolchain/env.sh`).
For each distro and run it boots 2 fresh local hosts: host 1 runs the seed article's system
`sidekiq.service` and its `NOPASSWD: /usr/bin/systemctl` line, host 2 capistrano-sidekiq 3.2's default
user unit of deploy with lingering (tests/e2e/test_adopt.py writes both). Under --rate jobs a second on
each, the first `pulumi up` with `sidekiq.adopt` and `sidekiq.adoptSudoers` takes both over. Per host, as
bench/rollout.py measures a version bump: the gap (the last job started by the old Sidekiq to the first
started by the slot), the ambient spacing of job starts before it, jobs lost and run twice.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

KINDS = ("seed's system unit", "capistrano-sidekiq's user unit")


def adopt_once(distro: str, rate: float, job_seconds: float) -> list[Any]:
    """One run on fresh hosts: the HostRun of each kind of host, in KINDS order."""
    import localhosts
    from tests.e2e.test_adopt import (
        CAP_UNIT,
        SEED_SUDOERS,
        SEED_UNIT,
        seed_capistrano_user_unit,
        seed_system_unit,
    )
    from tests.pulumi_project import bench_rollout, new_project

    overrides = {"sidekiq": {"adopt": [SEED_UNIT, CAP_UNIT], "adoptSudoers": [SEED_SUDOERS]}}
    with tempfile.TemporaryDirectory(prefix="bench-adopt-") as tmp, localhosts.up(2, distro=distro) as hosts:
        seed_system_unit(hosts[0])
        seed_capistrano_user_unit(hosts[1])
        project = new_project(Path(tmp), list(hosts), overrides)
        bench = bench_rollout().Bench(list(hosts), project, rate, job_seconds)

        def up() -> tuple[float, str]:
            run = project.up()
            return run.seconds, run.output

        trial = bench.trial("adopt", 1, up)
        return trial.hosts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--distros", default="bookworm,trixie", help="comma-separated: bookworm, trixie")
    parser.add_argument("--runs", type=int, default=3, help="runs per distro, each on fresh hosts")
    parser.add_argument("--rate", type=float, default=20, help="jobs pushed per second on each host")
    parser.add_argument("--job-seconds", type=float, default=0.1, help="how long each steady job sleeps")
    args = parser.parse_args(argv)

    from tests.pulumi_project import bench_rollout

    rollout = bench_rollout()
    rows = [
        ["distro", "host", "runs", "gap min / median / max (s)", "ambient (s)", "lost / pushed", "run twice"]
    ]
    for distro in args.distros.split(","):
        runs = [adopt_once(distro, args.rate, args.job_seconds) for _ in range(args.runs)]
        for index, kind in enumerate(KINDS):
            hosts = [run[index] for run in runs]
            gaps = [h.gap for h in hosts if h.gap is not None]
            ambient = [h.ambient for h in hosts if h.ambient is not None]
            rows.append(
                [
                    distro,
                    kind,
                    f"{len(hosts)} ({len(gaps)} switched)",
                    rollout.spread(gaps),
                    f"{statistics.median(ambient):.3f}" if ambient else "-",
                    f"{sum(len(h.lost) for h in hosts)} / {sum(h.pushed for h in hosts)}",
                    str(sum(sum(h.twice.values()) for h in hosts)),
                ]
            )
    print(
        f"Adopting under load: {args.rate:g} jobs/s pushed on each host, each sleeping "
        f"{args.job_seconds:g} s; one `pulumi up` with sidekiq.adopt and sidekiq.adoptSudoers per run, "
        "on fresh hosts.\n"
    )
    print(rollout.table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
