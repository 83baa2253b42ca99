"""A copy of this project with its own state backend, driven through the real `pulumi` CLI.

Shared by the end-to-end fixtures (tests/e2e/conftest.py) and the rollout benchmark (bench/rollout.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

import localhosts

PROJECT_DIR = Path(__file__).resolve().parents[1]
STACK = "local"


@dataclass
class Run:
    args: list[str]
    returncode: int
    output: str  # stdout and stderr, as a person would read them
    seconds: float


@dataclass
class PulumiProject:
    """A copy of this project with its own backend, driven through the `pulumi` CLI."""

    directory: Path
    env: dict[str, str]
    runs: list[Run] = field(default_factory=list)

    def pulumi(self, *args: str, check: bool = True, timeout: float = 900) -> Run:
        argv = ["pulumi", *args, "--non-interactive", "--color", "never"]
        started = time.monotonic()
        result = subprocess.run(
            argv,
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        run = Run(argv, result.returncode, result.stdout, time.monotonic() - started)
        self.runs.append(run)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}")
        return run

    def up(self, *extra: str, check: bool = True) -> Run:
        return self.pulumi("up", "--yes", "--skip-preview", *extra, check=check)

    def config_set(self, path: str, value: str, secret: bool = False) -> None:
        self.pulumi(
            "config", "set", "--path", f"sidekiq-fleet:{path}", value, *(["--secret"] if secret else [])
        )

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.pulumi("stack", "output", "--json").output)

    def preview_steps(self) -> list[dict[str, Any]]:
        """The planned steps of the next `up`, from `pulumi preview --json`."""
        run = self.pulumi("preview", "--json")
        return json.loads(run.output[run.output.index("{") :])["steps"]


def copy_project(target: Path, hosts: list[localhosts.Host], overrides: dict[str, Any]) -> None:
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy2(PROJECT_DIR / name, target / name)
    shutil.copytree(
        PROJECT_DIR / "components", target / "components", ignore=shutil.ignore_patterns("__pycache__")
    )
    (target / ".venv").symlink_to(PROJECT_DIR / ".venv")
    stack = yaml.safe_load((PROJECT_DIR / f"Pulumi.{STACK}.yaml").read_text())
    stack.pop("encryptionsalt")  # the tests' own passphrase gets its own salt
    config = stack["config"]
    config["sidekiq-fleet:hosts"]["existing"] = [{"name": h.name, "address": h.address} for h in hosts]
    # The harness's cache may not be the default one the committed stack names.
    config["sidekiq-fleet:ssh"]["privateKeyFile"] = str(hosts[0].private_key_path)
    config["sidekiq-fleet:ssh"]["knownHostsFile"] = str(hosts[0].known_hosts_path)
    config["sidekiq-fleet:ops"]["identityFile"] = str(hosts[0].private_key_path)
    for key, value in overrides.items():
        config[f"sidekiq-fleet:{key}"] = {**config.get(f"sidekiq-fleet:{key}", {}), **value}
    (target / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(stack, sort_keys=False))


def new_project(
    root: Path,
    hosts: list[localhosts.Host],
    overrides: dict[str, Any],
) -> PulumiProject:
    """The local stack on these hosts in root/project, with its backend in root/backend, initialised.

    overrides ({"sidekiq": {...}}) go on top of Pulumi.local.yaml's values.
    """
    if shutil.which("pulumi") is None:
        raise AssertionError(
            "no `pulumi` on PATH: source toolchain/env.sh (bin/test does), which provides it"
        )
    directory = root / "project"
    directory.mkdir()
    copy_project(directory, hosts, overrides)
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{root / 'backend'}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e-only-passphrase",
    }
    (root / "backend").mkdir()
    project = PulumiProject(directory, env)
    project.pulumi("stack", "init", STACK)
    return project


def bench_rollout() -> ModuleType:
    """bench/rollout.py as a module: its measures (gap, losses, doubles) serve the end-to-end tests too."""
    spec = importlib.util.spec_from_file_location("bench_rollout", PROJECT_DIR / "bench" / "rollout.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # for its dataclasses
    spec.loader.exec_module(module)
    return module
