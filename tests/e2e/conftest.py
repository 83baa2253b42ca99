"""End-to-end fixtures: the real Pulumi engine, driving this program, against local systemd hosts.

The project is copied to a temporary directory so the tests can change stack config freely and
keep their own state backend; the code that runs is this checkout's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import localhosts
from tests.pulumi_project import PulumiProject, new_project

HOST_COUNT = 3


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
