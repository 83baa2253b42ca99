"""End-to-end fixtures: the real Pulumi engine, driving this program, against local systemd hosts.

The project is copied to a temporary directory so the tests can change stack config freely and
keep their own state backend; the code that runs is this checkout's.

A module runs on the distros its DISTROS names (default: bookworm only), each on hosts of its own, one
distro after the other. `@pytest.mark.distros("bookworm")` keeps one test of such a module to those named.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import localhosts
from tests.pulumi_project import PulumiProject, new_project

HOST_COUNT = 3
DISTROS = ("bookworm",)
# What the app of each distro's hosts runs (localhosts/recipe), written out: Sidekiq's version, and its
# concurrency summed over the capsules of config/sidekiq.yml.
SIDEKIQ_VERSION = {"bookworm": "6.4.1", "trixie": "7.3.2"}
CONCURRENCY = {"bookworm": 5, "trixie": 5 + 1}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "distros(*names): run this test only on the distros named")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "distro" in metafunc.fixturenames:
        distros = getattr(metafunc.module, "DISTROS", DISTROS)
        metafunc.parametrize("distro", distros, ids=distros, scope="module")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("distros")
        callspec = getattr(item, "callspec", None)
        distro = callspec.params.get("distro") if callspec else None
        (drop if marker and distro and distro not in marker.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module")
def hosts(request: pytest.FixtureRequest, distro: str) -> Iterator[localhosts.Fleet]:
    """Fresh hosts of the distro for the module (its HOST_COUNT, else 3); torn down however the tests end."""
    count = getattr(request.module, "HOST_COUNT", HOST_COUNT)
    with localhosts.up(count, distro=distro, log=lambda message: print(f"[localhosts] {message}")) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def project(
    hosts: localhosts.Fleet, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> PulumiProject:
    """The module's stack, with its STACK_OVERRIDES ({"sidekiq": {...}}) on top of Pulumi.local.yaml."""
    root = tmp_path_factory.mktemp("e2e")
    return new_project(root, list(hosts), getattr(request.module, "STACK_OVERRIDES", {}))


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def assert_clean_trial(trial: Any, min_pushed: int = 100) -> None:
    """bench/rollout.py's measures of a switch under load: nothing lost or run twice, jobs on the old
    process and on the new, and the gap within the ambient spacing of job starts, with a push slot of
    slack for a loaded machine."""
    for run in trial.hosts:
        assert run.pushed >= min_pushed, run
        assert run.lost == [], run
        assert run.twice == {}, run
        assert run.old_pids, f"{run.host}: no job ran on the old process: {run}"
        assert run.new_pids, f"{run.host}: no switch to a new process: {run}"
        assert run.gap is not None, run
        assert run.gap <= max(run.ambient or 0, 0.05) + 0.1, run
