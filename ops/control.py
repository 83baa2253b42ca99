"""The on-host control script (docs/architecture.md): its command lines and its status lines.

Pure functions: no SSH here.
"""

from __future__ import annotations

import shlex
from typing import Any

from components.layout import DEPLOY_VERBS

from .outputs import Fleet, Host

# The status line's fields (docs/architecture.md), in order, and how to read them; `-` is unknown.
STATUS_FIELDS = (
    "process",
    "slot",
    "enabled",
    "state",
    "pid",
    "since",
    "busy",
    "concurrency",
    "quiet",
    "release",
    "memory",
    "version",
    "sidekiq",
    "limit",
    "recycle",
    "recycled",
)
# Fields a control script installed by an older sidekiq-fleet does not print yet; read as unknown until the
# next `pulumi up` installs the new one.
_NEWER_FIELDS = {"sidekiq", "limit", "recycle", "recycled"}
# limit (memoryMax) and recycle (recycleAboveMiB) are bytes, as memory is.
_INTEGERS = {"pid", "busy", "concurrency", "memory", "limit", "recycle"}
_FLAGS = {"enabled", "quiet"}


class StatusLineError(ValueError):
    """A status line the control script should not have printed."""


def control_command(fleet: Fleet, host: Host, verb: str) -> str:
    """The shell command that runs the control script's VERB as the deploy user.

    System scope goes through the sudoers drop-in, which allows exactly `<script> <verb>` and no
    further argument; `-n` makes a missing rule fail at once instead of asking for a password.
    User scope runs the root-owned script directly.
    """
    if verb not in DEPLOY_VERBS:
        raise ValueError(
            f"{verb!r} is not a deploy verb of the control script; expected one of {DEPLOY_VERBS}"
        )
    words = [host.control_script, verb]
    if fleet.scope == "system":
        words = ["sudo", "-n", *words]
    return shlex.join(words)


def _value(key: str, text: str) -> Any:
    if text == "-":
        return None
    if key in _INTEGERS:
        try:
            return int(text)
        except ValueError:
            raise StatusLineError(f"{key}={text}: expected an integer or -") from None
    if key in _FLAGS:
        if text not in ("yes", "no"):
            raise StatusLineError(f"{key}={text}: expected yes, no or -")
        return text == "yes"
    return text


def parse_logfmt(line: str) -> dict[str, str]:
    """`key=value key="a value"` pairs; shlex reads logfmt's double quotes."""
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise StatusLineError(f"{line!r}: {error}") from None
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise StatusLineError(f"{line!r}: {word!r} is not key=value")
        pairs[key] = value
    return pairs


def parse_status(stdout: str) -> list[dict[str, Any]]:
    """One record per status line (`process=...`); other lines are the script's messages."""
    records = []
    for line in stdout.splitlines():
        if not line.startswith("process="):
            continue
        pairs = parse_logfmt(line)
        missing = [key for key in STATUS_FIELDS if key not in pairs and key not in _NEWER_FIELDS]
        if missing:
            raise StatusLineError(f"{line!r}: missing {', '.join(missing)}")
        # In the order of the fields, whatever the line's order; a newer field that is missing is unknown.
        record: dict[str, Any] = dict.fromkeys(STATUS_FIELDS)
        record.update((key, _value(key, text)) for key, text in pairs.items())
        records.append(record)
    return records


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _memory(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}M"


STATUS_COLUMNS = (
    *("HOST", "PROCESS", "SLOT", "ENABLED", "STATE", "PID", "SINCE", "BUSY", "QUIET", "MEMORY"),
    *("MAX", "RECYCLE AT", "RECYCLED", "SIDEKIQ", "VERSION", "RELEASE"),
)


def status_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A table of (host, status record) rows, columns padded to their widest cell."""
    cells = [list(STATUS_COLUMNS)]
    for host, record in rows:
        cells.append(
            [
                host,
                _show(record["process"]),
                _show(record["slot"]),
                _show(record["enabled"]),
                _show(record["state"]),
                _show(record["pid"]),
                _show(record["since"]),
                f"{_show(record['busy'])}/{_show(record['concurrency'])}",
                _show(record["quiet"]),
                _memory(record["memory"]),
                _memory(record["limit"]),
                _memory(record["recycle"]),
                _show(record["recycled"]),
                _show(record["sidekiq"]),
                _show(record["version"]),
                _show(record["release"]),
            ]
        )
    widths = [max(len(row[column]) for row in cells) for column in range(len(STATUS_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
