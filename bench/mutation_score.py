"""Mutation score of the pure layers against the fast suite, and its ratchet.

    python bench/mutation_score.py                # mutate every pure-layer file, print the table, check
    python bench/mutation_score.py components/render.py   # only these files
    python bench/mutation_score.py --changed      # only files changed since their score was recorded
    python bench/mutation_score.py --record       # also write the new scores (thresholds only go up)

mutmut (configured in pyproject.toml) mutates components/config/*.py, layout.py, render.py and scripts.py
and runs the fast suite against each mutant. A file's score is killed / (killed + survived),
where a timeout counts as killed and a mutant no test reaches as survived. Mutants that cannot
change behaviour carry `# pragma: no mutate` with the reason on the same line; mutmut does not
generate them, and the table counts them.

The ratchet fails when a file's score falls below its threshold in bench/mutation_thresholds.json.
Each entry also records the digest of the file and of its own tests when it was measured: with
--changed only files whose digest differs are mutated, which is what CI runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
THRESHOLDS = PROJECT_DIR / "bench" / "mutation_thresholds.json"
PRAGMA = "# pragma: no mutate"
# Each pure-layer file, with the files whose change can change its score: itself and its own tests.
# Kills from other test files are a bonus the full run (bin/test --mutation) keeps watching.
SHARED_INPUTS = ["tests/conftest.py", "pyproject.toml"]
CONFIG_TESTS = ["tests/test_config.py", "tests/test_config_files.py"]
FILES = {
    "components/config/model.py": CONFIG_TESTS,
    "components/config/errors.py": CONFIG_TESTS,
    "components/config/sources.py": CONFIG_TESTS,
    "components/config/files.py": CONFIG_TESTS,
    "components/config/keys.py": CONFIG_TESTS,
    "components/layout.py": ["tests/test_layout.py", "components/templates"],
    "components/render.py": ["tests/test_render.py", "components/templates"],
    "components/scripts.py": ["tests/test_scripts.py", "tests/fakehost.py"],
}
KILLED = {1, 3, 24, -24, 36, 152, 255}  # test failure, pytest error, timeout (SIGXCPU or mutmut's)
SURVIVED = {0, 5, 33}  # tests passed, or no test covers the mutated function
NOT_RUN = {None, 34, 37}  # not checked yet, skipped, caught by a type checker (not configured)


@dataclass
class Score:
    path: str
    killed: int
    survived: int
    equivalent: int
    survivors: list[str]

    @property
    def percent(self) -> float:
        total = self.killed + self.survived
        return 100.0 * self.killed / total if total else 100.0


def digest(path: str) -> str:
    """sha256 of the file and its own tests, so --changed knows when to measure again."""
    sha = hashlib.sha256()
    for name in [path, *FILES[path], *SHARED_INPUTS]:
        target = PROJECT_DIR / name
        for file in sorted(target.rglob("*")) if target.is_dir() else [target]:
            if file.is_file():
                sha.update(file.relative_to(PROJECT_DIR).as_posix().encode() + b"\0" + file.read_bytes())
    return sha.hexdigest()


def run_mutmut(paths: list[str], children: int) -> None:
    """Mutate the given files and run the fast suite on every mutant (fresh, no cached results)."""
    subprocess.run(["rm", "-rf", "mutants"], cwd=PROJECT_DIR, check=True)
    names = [path.removesuffix(".py").replace("/", ".") + ".*" for path in paths]
    mutmut = Path(sys.executable).parent / "mutmut"
    command = [str(mutmut), "run", "--max-children", str(children)]
    # Naming the mutants limits the run to these files; naming all of them would only slow it.
    if set(paths) != set(FILES):
        command += names
    # mutmut redraws its progress line many times a second: keep only the summary.
    result = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"mutmut run failed ({result.returncode})")


def score(path: str) -> Score:
    meta = PROJECT_DIR / "mutants" / f"{path}.meta"
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    unknown = {code for code in codes.values() if code not in KILLED | SURVIVED | NOT_RUN}
    if unknown:
        raise SystemExit(f"{path}: mutmut exit codes {unknown} are neither killed nor survived")
    if any(code is None for code in codes.values()):
        raise SystemExit(f"{path}: some mutants were not run; run mutmut to the end")
    source = (PROJECT_DIR / path).read_text()
    return Score(
        path=path,
        killed=sum(code in KILLED for code in codes.values()),
        survived=sum(code in SURVIVED for code in codes.values()),
        equivalent=source.count(PRAGMA),
        survivors=sorted(name for name, code in codes.items() if code in SURVIVED),
    )


def table(scores: list[Score], thresholds: dict[str, dict]) -> str:
    rows = [
        "| file | killed | survived | equivalent (pragma) | score | threshold |",
        "|---|---|---|---|---|---|",
    ]
    for s in scores:
        threshold = thresholds.get(s.path, {}).get("threshold", 0.0)
        counts = f"{s.killed} | {s.survived} | {s.equivalent}"
        rows.append(f"| `{s.path}` | {counts} | {s.percent:.1f}% | {threshold:.1f}% |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="*", help=f"files to mutate, of {', '.join(FILES)} (all)")
    parser.add_argument(
        "--changed", action="store_true", help="only files changed since their recorded score"
    )
    parser.add_argument("--record", action="store_true", help="write the scores; thresholds never go down")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    parser.add_argument("--children", type=int, default=int(os.environ.get("MUTATION_CHILDREN", "1")))
    args = parser.parse_args(argv)
    unknown = set(args.paths) - set(FILES)
    if unknown:
        parser.error(f"not a pure-layer file: {', '.join(sorted(unknown))}")

    thresholds = json.loads(THRESHOLDS.read_text()) if THRESHOLDS.exists() else {}
    paths = args.paths or list(FILES)
    if args.changed:
        paths = [p for p in paths if thresholds.get(p, {}).get("digest") != digest(p)]
        if not paths:
            print("mutation ratchet: no pure-layer file or its tests changed since the recorded scores")
            return 0
    started = time.monotonic()
    run_mutmut(paths, args.children)
    seconds = time.monotonic() - started
    scores = [score(p) for p in paths]
    print(table(scores, thresholds))
    print(
        f"\n{sum(s.killed + s.survived for s in scores)} mutants of {len(paths)} file(s) in {seconds:.0f} s"
    )
    if args.survivors:
        for s in scores:
            print("\n".join(f"survived: {name}" for name in s.survivors))

    failed = [s for s in scores if s.percent < thresholds.get(s.path, {}).get("threshold", 0.0) - 1e-9]
    for s in failed:
        print(
            f"mutation ratchet: {s.path} scores {s.percent:.1f}%, below its threshold "
            f"{thresholds[s.path]['threshold']:.1f}%; `mutmut results` lists the survivors",
            file=sys.stderr,
        )
    if args.record and not failed:
        for s in scores:
            old = thresholds.get(s.path, {}).get("threshold", 0.0)
            # One decimal, rounded down, so the same suite always meets its own threshold.
            thresholds[s.path] = {
                "threshold": max(old, int(s.percent * 10) / 10),
                "score": round(s.percent, 1),
                "digest": digest(s.path),
            }
        THRESHOLDS.write_text(json.dumps(thresholds, indent=2, sort_keys=True) + "\n")
        print(f"recorded in {THRESHOLDS.relative_to(PROJECT_DIR)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
