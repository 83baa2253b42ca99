"""Measure CI's wall time on a clean clone: cold (empty caches) and warm (caches kept).

    python bench/ci_timing.py [--keep]

Clones this repository's HEAD into a temporary directory, puts a copy of ../shared beside it
as CI does, and runs `bash .ci/run` with CI=true, first with an empty cache root and pip cache
(cold: Go builds, debootstrap, pip downloads; .ci/run always starts with an empty Pulumi plugin
home), then again in a fresh clone with the same caches (warm). Debian packages installed by an
earlier run are not removed, so "cold" is a fresh machine minus `apt-get install` (about a
minute). Prints a table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
BUDGET_MINUTES = {"cold": 90, "warm": 45}


def run_ci(workdir: Path, label: str) -> tuple[float, int]:
    clone = workdir / f"clone-{label}" / "project"
    subprocess.run(["git", "clone", "-q", str(PROJECT_DIR), str(clone)], check=True)
    shutil.copytree(PROJECT_DIR.parent / "shared", clone.parent / "shared", dirs_exist_ok=True)
    env = {
        **os.environ,
        "CI": "true",
        "SIDEKIQ_FLEET_CACHE": str(workdir / "cache"),
        "PIP_CACHE_DIR": str(workdir / "pip-cache"),
    }
    env.pop("PULUMI_HOME", None)  # .ci/run makes an empty one for each run
    log = workdir / f"{label}.log"
    started = time.monotonic()
    with log.open("w") as out:
        code = subprocess.run(
            ["bash", ".ci/run"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT
        ).returncode
    seconds = time.monotonic() - started
    print(f"{label}: exit {code} after {seconds:.0f} s (log: {log})", flush=True)
    return seconds, code


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="keep the clones, logs and caches")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sidekiq-fleet-ci-timing-", dir="/var/tmp"))
    results = {label: run_ci(workdir, label) for label in ("cold", "warm")}
    cold = results["cold"][0]
    print()
    print("| run  | exit | seconds | minutes | budget   | share of cold |")
    print("|------|------|---------|---------|----------|---------------|")
    for label, (seconds, code) in results.items():
        budget = f"< {BUDGET_MINUTES[label]} min"
        print(
            f"| {label:4} | {code:4} | {seconds:7.0f} | {seconds / 60:7.1f} | {budget:8} "
            f"| {seconds / cold:13.2f} |"
        )
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return max(code for _, code in results.values())


if __name__ == "__main__":
    raise SystemExit(main())
