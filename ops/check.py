"""The drift check: what a host has installed against what the stage renders. Pure functions.

The host side is the control script's read-only `sums` verb (`sha256 path` per installed file of the
group) and its `status` lines; the expected side is components.render.render_files, never a copy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from components.config import SECRET_PLACEHOLDER, Stage
from components.render import RenderedFile

_SUM_LINE = re.compile(r"^([0-9a-f]{64}) (\S.*)$")
# What `sums` adds for the host as a whole: a Sidekiq unit nobody adopted, a sudoers line that is root.
WARNING = "warning "


class SumsError(ValueError):
    """A `sums` line the control script should not have printed."""


def expected_sums(files: Sequence[RenderedFile]) -> dict[str, str | None]:
    """Path -> sha256 of the rendered content; None when the content holds encrypted stack values,
    which only the engine can decrypt (the file is then checked for presence only)."""
    return {
        file.path: None
        if SECRET_PLACEHOLDER in file.content
        else hashlib.sha256(file.content.encode()).hexdigest()
        for file in files
    }


def parse_sums(stdout: str) -> dict[str, str]:
    sums = {}
    for line in stdout.splitlines():
        if line.startswith(("process=", WARNING)):
            continue  # the status lines that follow in the same run, and the warnings
        match = _SUM_LINE.match(line)
        if match is None:
            raise SumsError(f"{line!r}: expected `<sha256> <path>`")
        sums[match.group(2)] = match.group(1)
    return sums


def host_warnings(stdout: str) -> list[str]:
    """The warnings of a `sums` run, each as `warning: <text>`; they do not fail the check."""
    lines = stdout.splitlines()
    return [f"warning: {line.removeprefix(WARNING)}" for line in lines if line.startswith(WARNING)]


def file_drift(expected: Mapping[str, str | None], actual: Mapping[str, str]) -> list[str]:
    """One line per file that differs: changed, missing, or installed but not rendered."""
    problems = []
    for path, digest in expected.items():
        if path not in actual:
            problems.append(f"{path}: missing")
        elif digest is not None and actual[path] != digest:
            problems.append(f"{path}: sha256 {actual[path][:12]}, the render has {digest[:12]}")
    problems += [f"{path}: installed but not in the render" for path in actual if path not in expected]
    return problems


def slot_drift(stage: Stage, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each declared process must have exactly one enabled slot, and it must be active."""
    problems = []
    for process in stage.processes:
        enabled = [r for r in records if r["process"] == process.name and r["enabled"]]
        if len(enabled) != 1:
            slots = ", ".join(r["slot"] for r in enabled) or "none"
            problems.append(f"process {process.name}: enabled slots {slots}; expected exactly one")
        elif enabled[0]["state"] != "active":
            problems.append(
                f"process {process.name}: the enabled slot {enabled[0]['slot']} is "
                f"{enabled[0]['state'] or 'unknown'}; expected active"
            )
    return problems


def repair_urns(resources: Sequence[Mapping[str, Any]], host: str, slots_too: bool) -> list[str]:
    """The URNs `pulumi up --replace` needs to reinstall HOST's files (its copies and install), and its
    restart when a slot drifted; from the resources of `pulumi stack export`."""
    names = (f"{host}-install", f"{host}-restart") if slots_too else (f"{host}-install",)
    urns = []
    for resource in resources:
        urn = resource.get("urn", "")
        name = urn.rsplit("::", 1)[-1]
        kind = resource.get("type")
        if (kind == "command:remote:Command" and name in names) or (
            kind == "command:remote:CopyToRemote" and name.startswith(f"{host}-copy-")
        ):
            urns.append(urn)
    return urns
