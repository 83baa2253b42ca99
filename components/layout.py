"""The host layout: every unit name, path and marker sidekiq-fleet gives a host, and the control
script's verbs.

The renderers, the install and uninstall scripts, the control script (through its render) and the
ops client take them from here; nothing else derives them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the config validates against these names, so it imports this module
    from .config import Stage

MANAGED_NOTE = "Managed by sidekiq-fleet (pulumi up); local edits are overwritten."
STATE_DIR = "/var/lib/sidekiq-fleet"
STAGING_DIR = f"{STATE_DIR}/staging"
SYSTEM_UNIT_DIR = "/etc/systemd/system"
SYSTEM_ENV_DIR = "/etc/sidekiq-fleet"
SUDOERS_DIR = "/etc/sudoers.d"
CONTROL_DIR = "/usr/local/sbin"
# Only root can open files there: flock works on a read-only descriptor.
SYSTEM_LOCK_DIR = "/run/sidekiq-fleet"

# Each process runs as a template unit; its two instances are the slots a restart alternates between.
SLOTS = ("a", "b")
TEMPLATE_UNIT = "{group}-{process}@.service"
SLOT_UNIT = "{group}-{process}@{slot}.service"
# The transient unit in which a replaced slot quiets and drains.
DRAIN_UNIT = "{group}-{process}-drain-{slot}.service"
# The transient unit in which a unit of sidekiq.adopt quiets and drains, by its index there.
ADOPTED_DRAIN_UNIT = "{group}-adopted-drain-{index}.service"

# The control script's verbs. `sidekiq-fleet VERB` runs the fleet verbs on every host.
FLEET_VERBS = ("status", "quiet", "stop", "start", "restart")
# What the deploy user may run (through sudo in system scope): `logs -f` is `follow`, `check` is `sums`.
DEPLOY_VERBS = (*FLEET_VERBS, "logs", "follow", "sums")
# Root's alone: the path unit runs first-release, the uninstall script runs teardown, the install
# runs foreign (the units of another tool that would run beside the slots), the recycle timer recycle.
ROOT_VERBS = ("first-release", "teardown", "foreign", "recycle")


def group_marker(group: str) -> str:
    """The line by which the control script finds every unit file of the group."""
    return f"# sidekiq-fleet group: {group}"


def target_unit(group: str) -> str:
    return f"{group}.target"


def legacy_unit(group: str) -> str:
    """The single unit of the releases before slots, which a first start replaces."""
    return f"{group}.service"


def template_unit(group: str, process: str) -> str:
    return TEMPLATE_UNIT.format(group=group, process=process)


def slot_unit(group: str, process: str, slot: str) -> str:
    return SLOT_UNIT.format(group=group, process=process, slot=slot)


def drain_unit(group: str, process: str, slot: str) -> str:
    return DRAIN_UNIT.format(group=group, process=process, slot=slot)


def printf_format(pattern: str, group: str) -> str:
    """PATTERN for the shell's printf, the process and the slot as its arguments, in that order."""
    return pattern.format(group=group.replace("%", "%%"), process="%s", slot="%s") + "\\n"


def template_affixes(group: str) -> tuple[str, str]:
    """What a template unit's file name has before and after the process name."""
    name = TEMPLATE_UNIT.format(group=group, process="\0")
    prefix, _, suffix = name.partition("\0")  # pragma: no mutate - one NUL: rpartition splits it alike
    return prefix, suffix


def first_release_unit(group: str, suffix: Literal["path", "service"]) -> str:
    return f"{group}-first-release.{suffix}"


def recycle_unit(group: str, suffix: Literal["timer", "service"]) -> str:
    """The timer, and the service it starts, that replace a slot grown past recycleAboveMiB."""
    return f"{group}-recycle.{suffix}"


def is_group_service(group: str, name: str) -> bool:
    """Whether NAME is a service the group itself installs or starts: a slot of any process, a drain
    unit (an adopted unit's too), the path unit's or the recycle timer's. The legacy unit
    (GROUP.service) is not: a group adopts it."""
    wildcard = "\0"  # pragma: no mutate - any text re.escape keeps and no unit name holds
    ours = (
        *(slot_unit(group, wildcard, slot) for slot in SLOTS),
        drain_unit(group, wildcard, wildcard),
        first_release_unit(group, "service"),
        recycle_unit(group, "service"),
    )
    return any(re.fullmatch(re.escape(unit).replace(wildcard, ".+"), name) for unit in ours)


def unit_dir(stage: Stage) -> str:
    sidekiq = stage.config.sidekiq
    if sidekiq.scope == "user":
        return f"~{sidekiq.user}/.config/systemd/user"
    return SYSTEM_UNIT_DIR


def env_path(stage: Stage) -> str:
    sidekiq = stage.config.sidekiq
    if sidekiq.scope == "user":
        return f"~{sidekiq.user}/.config/sidekiq-fleet/{sidekiq.unit_name}.env"
    return f"{SYSTEM_ENV_DIR}/{sidekiq.unit_name}.env"


def staging_dir(stage: Stage) -> str:
    """Per unit, so that stages sharing a host never touch each other's files."""
    return f"{STAGING_DIR}/{stage.config.sidekiq.unit_name}"


def version_dir(stage: Stage) -> str:
    """Where the control script keeps the appVersion of the last successful restart."""
    sidekiq = stage.config.sidekiq
    if sidekiq.scope == "user":
        return f"~{sidekiq.user}/.local/state/sidekiq-fleet/{sidekiq.unit_name}"
    return f"{STATE_DIR}/{sidekiq.unit_name}"


def adopted_sudoers_dir(stage: Stage) -> str:
    """Root's copies of sidekiq.adoptSudoers' files, in both scopes; `pulumi destroy` keeps them."""
    return f"{STATE_DIR}/{stage.config.sidekiq.unit_name}/adopted/sudoers"


def lock_file(stage: Stage) -> str:
    """One changing run of the control script at a time; in user scope the user's own, under its
    runtime directory ($XDG_RUNTIME_DIR on the host)."""
    sidekiq = stage.config.sidekiq
    if sidekiq.scope == "user":
        return f"sidekiq-fleet-{sidekiq.unit_name}.lock"
    return f"{SYSTEM_LOCK_DIR}/{sidekiq.unit_name}.lock"


def sudoers_path(stage: Stage) -> str:
    # No dot in the name: sudo silently skips such files in sudoers.d.
    return f"{SUDOERS_DIR}/sidekiq-fleet-{stage.config.sidekiq.unit_name}"


def control_path(stage: Stage) -> str:
    """The on-host control script (docs/architecture.md), one per unitName."""
    return f"{CONTROL_DIR}/{stage.config.sidekiq.unit_name}ctl"
