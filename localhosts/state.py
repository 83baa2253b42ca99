"""The JSON state file: what `up` started, written step by step so `down` can undo even a half-done `up`."""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import config
from .sysutil import atomic_write

FORMAT = 1


def load() -> dict[str, Any] | None:
    path = config.state_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{path} is not valid JSON ({exc}); fix or remove it by hand") from exc
    if data.get("format") != FORMAT:
        raise RuntimeError(f"{path} has format {data.get('format')!r}, this harness reads {FORMAT}")
    return data


def save(data: dict[str, Any]) -> None:
    config.runtime_root().mkdir(parents=True, exist_ok=True)
    atomic_write(config.state_path(), json.dumps(data, indent=2, sort_keys=False) + "\n")


def delete() -> None:
    config.state_path().unlink(missing_ok=True)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise up and down; readers (status, ssh, exec) rely on atomic writes instead."""
    root = config.runtime_root()
    root.mkdir(parents=True, exist_ok=True)
    lock_path: Path = root / "lock"
    with open(lock_path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another up/down holds {lock_path}") from None
        yield
