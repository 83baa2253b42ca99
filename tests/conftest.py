"""Shared builders for the pure-layer tests."""

from __future__ import annotations

import copy
from typing import Any

import asyncssh
import pytest

from components.config import Stage, parse_stage

# A real key, made for this run: the config parses private keys (asyncssh).
FAKE_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ7yJcMjd2HDf+Y2rrGUXjx0JZr1o0Q1Kk2wT1dR5oP"

EXISTING_STAGE: dict[str, Any] = {
    "app": "example",
    "appVersion": "3f2c1e9",
    "hosts": {
        "provider": "existing",
        "existing": [
            {"name": "web1", "address": "192.0.2.11", "hostKey": HOST_KEY},
            {"name": "web2", "address": "192.0.2.12", "port": 2222, "hostKey": HOST_KEY},
        ],
    },
    "ssh": {"user": "admin", "privateKey": FAKE_KEY},
}


def stage_from(values: dict[str, Any], name: str = "staging") -> Stage:
    return parse_stage(name, values)


@pytest.fixture
def existing_values() -> dict[str, Any]:
    return copy.deepcopy(EXISTING_STAGE)


@pytest.fixture
def staging(existing_values: dict[str, Any]) -> Stage:
    """The seed's staging setup: rbenv bundle, staging env, default unit."""
    existing_values["sidekiq"] = {"command": "/home/deploy/.rbenv/shims/bundle exec sidekiq"}
    return stage_from(existing_values)
