"""End-to-end fixtures: the real Pulumi engine, driving this program, against local systemd hosts.

The project is copied to a temporary directory so the tests can change stack config freely and
keep their own state backend; the code that runs is this checkout's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import localhosts

PROJECT_DIR = Path(__file__).resolve().parents[2]
HOST_COUNT = 3
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


def _copy_project(target: Path, hosts: list[localhosts.Host], overrides: dict[str, Any]) -> None:
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
    for key, value in overrides.items():
        config[f"sidekiq-fleet:{key}"] = {**config.get(f"sidekiq-fleet:{key}", {}), **value}
    (target / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(stack, sort_keys=False))


@pytest.fixture(scope="module")
def hosts(request: pytest.FixtureRequest) -> Iterator[localhosts.Fleet]:
    """Fresh hosts for the module (its HOST_COUNT, else 3); torn down however the tests end."""
    count = getattr(request.module, "HOST_COUNT", HOST_COUNT)
    with localhosts.up(count, log=lambda message: print(f"[localhosts] {message}")) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def project(
    hosts: localhosts.Fleet, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> PulumiProject:
    """The module's stack, with its STACK_OVERRIDES ({"sidekiq": {...}}) on top of Pulumi.local.yaml."""
    if shutil.which("pulumi") is None:
        raise AssertionError("no `pulumi` on PATH: run the suite through bin/test, which provides it")
    root = tmp_path_factory.mktemp("e2e")
    directory = root / "project"
    directory.mkdir()
    _copy_project(directory, list(hosts), getattr(request.module, "STACK_OVERRIDES", {}))
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{root / 'backend'}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e-only-passphrase",
    }
    (root / "backend").mkdir()
    project = PulumiProject(directory, env)
    project.pulumi("stack", "init", STACK)
    return project


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
