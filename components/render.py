"""Renderers: pure functions from a validated stage to file contents (jinja2)."""

from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Literal

import jinja2

from . import layout
from .config import Stage
from .config.model import ResolvedProcess
from .layout import MANAGED_NOTE, control_path, env_path, staging_dir, sudoers_path, unit_dir

TEMPLATES = Path(__file__).parent / "templates"

FileRole = Literal["unit", "control", "sudoers", "env"]


@dataclass(frozen=True)
class RenderedFile:
    """One file to push. ``path`` starts with ``~user/`` for files in a user's home."""

    role: FileRole
    path: str
    mode: str
    owner: str
    group: str
    content: str
    staged_path: str  # where CopyToRemote puts it, before validation and install
    secret: bool = False


def _systemd_env_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def shell_quote(value: object) -> str:
    """The jinja2 filter for every value that reaches a shell."""
    return shlex.quote(str(value))


def _environment(project_dir: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(TEMPLATES)]
    if project_dir is not None:
        loaders.insert(0, jinja2.FileSystemLoader(project_dir))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # pragma: no mutate - None, or leaving it out, is False too
    )
    env.filters["systemd_env_quote"] = _systemd_env_quote
    env.filters["shell_quote"] = shell_quote
    return env


def exec_start(stage: Stage, process: ResolvedProcess) -> str:
    """ExecStart= value: the seed's login-shell form, plus -t so systemd and Sidekiq agree."""
    sidekiq = stage.config.sidekiq
    words = [
        *sidekiq.command.split(),
        "-e",
        stage.environment,
        "-C",
        process.config_file,
        "-t",
        str(sidekiq.timeout),
    ]
    if sidekiq.login_shell:
        return "/bin/bash -lc " + shlex.quote("exec " + " ".join(words))
    return " ".join(shlex.quote(w) for w in words)


def first_release_file(stage: Stage) -> str:
    """The first process's config file: it appears on the host with the first release."""
    return posixpath.join(stage.app_dir, stage.processes[0].config_file)


def read_write_paths(stage: Stage) -> list[str]:
    """ReadWritePaths= entries. A default path may be missing on the host (an app without log/):
    "-" makes systemd skip it. Configured paths are checked on the host before install instead."""
    configured = stage.config.sidekiq.writable_paths
    if configured is not None:
        return list(configured)
    return [f"-{path}" for path in stage.default_writable_paths]


def _unit_text(stage: Stage, body: str) -> str:
    # Put here, not in the templates, so that a stage's own unit template carries the marker too.
    return f"# {MANAGED_NOTE}\n{layout.group_marker(stage.config.sidekiq.unit_name)}\n{body}"


def _wanted_by(stage: Stage) -> str:
    return "multi-user.target" if stage.config.sidekiq.scope == "system" else "default.target"


def render_target(stage: Stage) -> str:
    """One target per stage: starting or stopping it starts or stops every slot."""
    body = (
        _environment(None)
        .get_template("sidekiq.target.j2")
        .render(app=stage.config.app, stage=stage.name, wanted_by=_wanted_by(stage))
    )
    return _unit_text(stage, body)


def render_unit(stage: Stage, process: ResolvedProcess, project_dir: Path | None = None) -> str:
    """The slot template of one process: the hardened Sidekiq unit, part of the stage's target."""
    sidekiq = stage.config.sidekiq
    if stage.config.env:
        env_file = (
            f"%h/.config/sidekiq-fleet/{sidekiq.unit_name}.env"
            if sidekiq.scope == "user"
            else env_path(stage)
        )
    else:
        env_file = None
    template = sidekiq.unit_template or "sidekiq.service.j2"
    body = (
        _environment(project_dir)
        .get_template(template)
        .render(
            managed_note=MANAGED_NOTE,
            app=stage.config.app,
            stage=stage.name,
            environment=stage.environment,
            unit_name=sidekiq.unit_name,
            unit=layout.template_unit(stage.config.sidekiq.unit_name, process.name),
            process=process.name,
            config_file=process.config_file,
            target=layout.target_unit(stage.config.sidekiq.unit_name),
            # Kept for stages' own templates written before slots: the slots' WantedBy=.
            wanted_by=layout.target_unit(stage.config.sidekiq.unit_name),
            app_dir=stage.app_dir,
            scope=sidekiq.scope,
            user=sidekiq.user,
            group=sidekiq.group or sidekiq.user,
            exec_start=exec_start(stage, process),
            env_file=env_file,
            watchdog_sec=sidekiq.watchdog_sec,
            restart_sec=sidekiq.restart_sec,
            timeout=sidekiq.timeout,
            timeout_stop_sec=stage.timeout_stop_sec,
            hardening=sidekiq.hardening,
            read_write_paths=read_write_paths(stage),
            memory_high=process.memory_high,
            memory_max=process.memory_max,
        )
    )
    return _unit_text(stage, body)


def recycle_period(stage: Stage) -> int:
    """The recycle timer's period: the shortest recycleCheckSeconds; the control script checks each
    process at its own."""
    return min(process.recycle_check_seconds for process in stage.recycling)


def render_recycle_timer(stage: Stage) -> str:
    group = stage.config.sidekiq.unit_name
    body = (
        _environment(None)
        .get_template("recycle.timer.j2")
        .render(
            app=stage.config.app,
            stage=stage.name,
            target=layout.target_unit(group),
            service=layout.recycle_unit(group, "service"),
            period=recycle_period(stage),
        )
    )
    return _unit_text(stage, body)


def render_recycle_service(stage: Stage) -> str:
    body = (
        _environment(None)
        .get_template("recycle.service.j2")
        .render(app=stage.config.app, stage=stage.name, control=control_path(stage))
    )
    return _unit_text(stage, body)


def render_first_release_path(stage: Stage) -> str:
    """Armed only while a host waits for its first release; the control script disarms it."""
    body = (
        _environment(None)
        .get_template("first-release.path.j2")
        .render(
            app=stage.config.app,
            stage=stage.name,
            path=first_release_file(stage),
            service=layout.first_release_unit(stage.config.sidekiq.unit_name, "service"),
            wanted_by=_wanted_by(stage),
        )
    )
    return _unit_text(stage, body)


def render_first_release_service(stage: Stage) -> str:
    body = (
        _environment(None)
        .get_template("first-release.service.j2")
        .render(app=stage.config.app, stage=stage.name, control=control_path(stage))
    )
    return _unit_text(stage, body)


def sudo_commands(stage: Stage) -> list[str]:
    """The exact command lines the deploy user may run as root.

    sudo matches arguments literally; the empty argument "" forbids any further one.
    """
    return [f"{control_path(stage)} {verb}" for verb in layout.DEPLOY_VERBS]


def sudoers_alias(unit_name: str) -> str:
    """The drop-in's Cmnd_Alias: unique per unit name, as aliases share one namespace on a host.

    An alias is upper case, digits and _: sidekiq-a, sidekiq_a and SIDEKIQ-A would collide without
    the digest of the exact name.
    """
    digest = hashlib.sha256(unit_name.encode()).hexdigest()[:12].upper()
    return f"SIDEKIQ_FLEET_{unit_name.upper().replace('-', '_')}_{digest}"


def render_sudoers(stage: Stage) -> str:
    sidekiq = stage.config.sidekiq
    alias = sudoers_alias(sidekiq.unit_name)
    return (
        _environment(None)
        .get_template("sudoers.j2")
        .render(
            managed_note=MANAGED_NOTE,
            user=sidekiq.user,
            control=control_path(stage),
            alias=alias,
            commands=sudo_commands(stage),
        )
    )


def render_control(stage: Stage) -> str:
    """The control script, every stage value baked in and shell-quoted."""
    sidekiq = stage.config.sidekiq
    rollout = stage.config.rollout
    group = sidekiq.unit_name
    template_prefix, template_suffix = layout.template_affixes(group)
    in_home = f"~{sidekiq.user}/"  # user scope: the script finds the home on the host
    verbs = [*layout.DEPLOY_VERBS, *layout.ROOT_VERBS]
    return (
        _environment(None)
        .get_template("sidekiqctl.sh.j2")
        .render(
            managed_note=MANAGED_NOTE,
            marker=layout.group_marker(group),
            group=group,
            scope=sidekiq.scope,
            user=sidekiq.user,
            control_path=control_path(stage),
            sudoers_file=sudoers_path(stage),
            env_file=env_path(stage),
            unit_dir=unit_dir(stage).removeprefix(in_home),
            state_dir=layout.version_dir(stage).removeprefix(in_home),
            lock_file=layout.lock_file(stage),
            target=layout.target_unit(group),
            legacy_unit=layout.legacy_unit(group),
            path_unit=layout.first_release_unit(group, "path"),
            first_release_service=layout.first_release_unit(group, "service"),
            slots=layout.SLOTS,
            slot_unit_format=layout.printf_format(layout.SLOT_UNIT, group),
            drain_unit_format=layout.printf_format(layout.DRAIN_UNIT, group),
            adopted_drain_format=layout.ADOPTED_DRAIN_UNIT.format(group=group, index="%s"),
            adopt=sidekiq.adopt,
            app_root=stage.app_root,
            template_prefix=template_prefix,
            template_suffix=template_suffix,
            usage="|".join("restart [VERSION]" if verb == "restart" else verb for verb in verbs),
            verbs_without_argument=[verb for verb in verbs if verb != "restart"],
            # The first process's file also tells whether a release exists (PathExists= of the path unit).
            processes=[
                {
                    "name": process.name,
                    "config_path": posixpath.join(stage.app_dir, process.config_file),
                    "drain_timeout": process.drain_timeout,
                    "memory_max": process.memory_max or 0,
                    "recycle_above": process.recycle_above_mib or 0,
                    "recycle_check": process.recycle_check_seconds,
                    "recycle_interval": process.recycle_min_interval_seconds,
                }
                for process in stage.processes
            ],
            recycle_timer=layout.recycle_unit(group, "timer"),
            recycle_service=layout.recycle_unit(group, "service"),
            healthy_seconds=rollout.healthy_seconds,
            strategy=rollout.strategy,
            memory_margin=rollout.memory_margin,
            quiet_first=rollout.quiet_first,
            max_busy_wait=rollout.max_busy_wait,
            timeout=sidekiq.timeout,
            restart_sec=sidekiq.restart_sec,
        )
    )


def render_env_file(env: Mapping[str, str]) -> str:
    return (
        _environment(None)
        .get_template("sidekiq.env.j2")
        .render(managed_note=MANAGED_NOTE, env=dict(sorted(env.items())))
    )


def render_files(stage: Stage, project_dir: Path | None = None) -> list[RenderedFile]:
    """Every file pushed to each host of the stage, in install order."""
    sidekiq = stage.config.sidekiq
    user_scope = sidekiq.scope == "user"
    owner = sidekiq.user if user_scope else "root"
    group = (sidekiq.group or sidekiq.user) if user_scope else "root"
    name = sidekiq.unit_name
    units = [
        (layout.target_unit(name), render_target(stage)),
        *(
            (layout.template_unit(name, process.name), render_unit(stage, process, project_dir))
            for process in stage.processes
        ),
        (layout.first_release_unit(name, "path"), render_first_release_path(stage)),
        (layout.first_release_unit(name, "service"), render_first_release_service(stage)),
    ]
    if stage.recycling:
        units += [
            (layout.recycle_unit(name, "timer"), render_recycle_timer(stage)),
            (layout.recycle_unit(name, "service"), render_recycle_service(stage)),
        ]
    directory = unit_dir(stage)
    contents: list[tuple[FileRole, str, str, str, str, str]] = [
        ("unit", f"{directory}/{name}", "0644", owner, group, text) for name, text in units
    ]
    # Root's in both scopes: deploy may run it, never change it.
    contents.append(("control", control_path(stage), "0755", "root", "root", render_control(stage)))
    if not user_scope:
        # A user unit needs no sudo: the deploy user runs systemctl --user itself.
        contents.append(("sudoers", sudoers_path(stage), "0440", "root", "root", render_sudoers(stage)))
    if stage.config.env:
        env = {k: v.get_secret_value() for k, v in stage.config.env.items()}
        contents.append(("env", env_path(stage), "0600", owner, group, render_env_file(env)))
    return [
        RenderedFile(
            role,
            path,
            mode,
            file_owner,
            file_group,
            content,
            staged_path=f"{staging_dir(stage)}/{path.rsplit('/', 1)[1]}",
            secret=role == "env",
        )
        for role, path, mode, file_owner, file_group, content in contents
    ]


def files_digest(files: Sequence[RenderedFile]) -> str:
    """A digest of everything installed; a change re-runs install and restart."""
    rows = [[f.path, f.mode, f.owner, f.group, f.content] for f in files]
    payload = json.dumps(rows, sort_keys=True)  # pragma: no mutate - lists only: no key to sort
    return hashlib.sha256(payload.encode()).hexdigest()


def render_user_data(stage: Stage) -> str:
    """EC2 user data: our cloud-config, then the team's own cloud-init if any."""
    ours = (
        _environment(None)
        .get_template("cloud-config.yaml.j2")
        .render(managed_note=MANAGED_NOTE, user=stage.config.sidekiq.user)
    )
    theirs = getattr(stage.config.hosts, "cloud_init", None)
    if not theirs:
        return ours
    message = MIMEMultipart()
    message.attach(MIMEText(ours, "cloud-config"))
    subtype = "x-shellscript" if theirs.startswith("#!") else "cloud-config"
    part = MIMEText(theirs, subtype)
    # Append to our lists (users) instead of replacing them.
    part["Merge-Type"] = "list(append)+dict(no_replace,recurse_list)+str()"
    message.attach(part)
    # A fixed boundary keeps user data, and so the instances, stable across runs.
    digest = hashlib.sha256((ours + theirs).encode()).hexdigest()[:32]
    message.set_boundary(f"sidekiq-fleet-{digest}")
    return message.as_string()
