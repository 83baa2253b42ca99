"""`sidekiq-fleet <verb> <stage>`: operate a stage's hosts from its stack outputs.

Exit status: 0 when every host succeeded, 1 when any host failed or was skipped, 2 when nothing
ran (a usage, stage or outputs problem), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.__main__ import load_stage, render_stage, stage_for_render
from components.config import Stage, StageConfigError, values_from_config
from components.layout import FLEET_VERBS
from components.render import render_files

from . import capistrano, check, control, inventory, ssh
from .outputs import (
    PROJECT_DIR,
    Fleet,
    Host,
    OpsError,
    fleet_from_outputs,
    read_outputs_file,
    stack_config,
    stack_outputs,
)


def _host_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME[,NAME...] as in the stack outputs")
    return names


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidekiq-fleet", description="Operate a stage's Sidekiq hosts from its stack outputs."
    )
    parser.add_argument(
        "--project",
        type=Path,
        default=PROJECT_DIR,
        help="the Pulumi project directory (default: %(default)s)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    render = verbs.add_parser("render", help="print every file the stage would push (from its stack file)")
    render.add_argument("stage")

    hosts = argparse.ArgumentParser(add_help=False)
    hosts.add_argument("stage")
    hosts.add_argument("--hosts", type=_host_names, help="only these hosts: NAME[,NAME...]")
    hosts.add_argument(
        "--outputs", type=Path, help="a saved `pulumi stack output --json` instead of the stack"
    )
    hosts.add_argument("--json", action="store_true", help="machine-readable output")

    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "-i",
        "--identity",
        type=Path,
        action="append",
        help="the deploy user's private key (repeatable; default: the stage's ops.identityFile, else "
        "ssh-agent and ~/.ssh/id_*)",
    )
    remote.add_argument(
        "--connect-timeout",
        type=_positive(float),
        default=ssh.DEFAULT_CONNECT_TIMEOUT,
        help="seconds until a host that does not answer fails (default: %(default)s)",
    )
    remote.add_argument(
        "--parallel",
        type=_positive(int),
        default=ssh.DEFAULT_PARALLEL,
        help="hosts at once (default: %(default)s)",
    )

    helps = {
        "status": "slot, state, MainPID, busy, release, memory, memory limit, last recycle and version of "
        "every process",
        "quiet": "TSTP every process: no new jobs",
        "stop": "stop every slot gracefully",
        "start": "start the enabled slots",
        "restart": "the zero-gap restart, batch by batch (rollout.batchSize), stopping at the first failure",
    }
    for verb in FLEET_VERBS:
        verbs.add_parser(verb, parents=[hosts, remote], help=helps[verb])
    logs = verbs.add_parser("logs", parents=[hosts, remote], help="the last journal lines of every slot")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following (Ctrl-C ends)")
    drift = verbs.add_parser(
        "check", parents=[hosts, remote], help="drift: installed files and slots against the render"
    )
    drift.add_argument(
        "--repair",
        action="store_true",
        help="`pulumi up --replace` the drifted hosts' install resources, then check again",
    )
    listing = verbs.add_parser("inventory", parents=[hosts], help="the hosts for other tooling")
    listing.add_argument("--format", choices=inventory.FORMATS, default="json")
    imports = verbs.add_parser(
        "import", help="write Pulumi.<STAGE>.yaml (existing hosts) from a Capistrano project's stage"
    )
    imports.add_argument(
        "--capistrano", type=Path, required=True, metavar="DIR", help="the Capistrano project (its Capfile)"
    )
    imports.add_argument("--stage", required=True, help="the Capistrano stage, also the stack's name")
    imports.add_argument(
        "--cap-command",
        help='how to run Capistrano in DIR (default: "bundle exec cap" with a Gemfile.lock, else "cap")',
    )
    imports.add_argument(
        "--known-hosts",
        type=Path,
        default=capistrano.DEFAULT_KNOWN_HOSTS,
        help="pin each host's key from this known_hosts file (default: %(default)s)",
    )
    imports.add_argument("--output", type=Path, help="write here instead of <project>/Pulumi.<STAGE>.yaml")
    imports.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


async def load_fleet(args: argparse.Namespace) -> Fleet:
    if args.outputs is not None:
        outputs = read_outputs_file(args.outputs)
    else:
        progress = ssh.Progress(f"reading the stack outputs of {args.stage}")
        progress.detail = "pulumi stack output"
        outputs = await ssh.with_progress(
            progress, asyncio.to_thread(stack_outputs, args.stage, args.project)
        )
    fleet = fleet_from_outputs(args.stage, outputs)
    return dataclasses.replace(fleet, hosts=tuple(fleet.select(args.hosts)))


def _target(fleet: Fleet, host: Host) -> ssh.Target:
    # Always the deploy user of the outputs, never the admin login (sshUser) the program uses.
    return ssh.Target(host.name, host.address, host.port, fleet.deploy_user, host.host_key)


def _outcome(result: ssh.Result) -> str:
    return "ok" if result.ok else "SKIPPED" if result.skipped else "FAILED"


def _detail(verb: str, result: ssh.Result, records: list[dict[str, Any]] | None) -> str:
    if verb == "check" and result.ok:
        return "no drift"
    if not result.ok:
        return result.error or "failed"
    if records is not None:
        return "no slot enabled or active"  # a host with a slot shows in the table instead
    last = [line for line in result.stdout.splitlines() if line.strip()][-1:]
    return last[0] if last else "done"


def report(
    fleet: Fleet,
    verb: str,
    results: list[ssh.Result],
    seconds: float,
    as_json: bool,
    out: Any = sys.stdout,
    lines_out: Any = None,
    drift: dict[str, list[str]] | None = None,
) -> int:
    """Print the per-host results and the summary; the exit status (1 if any host did not succeed)."""
    statuses: dict[str, list[dict[str, Any]]] = {}
    if verb == "status":
        for result in results:
            if result.ok:
                try:
                    statuses[result.name] = control.parse_status(result.stdout)
                except control.StatusLineError as error:
                    result.ok, result.error = False, f"unreadable status line: {error}"
    failed = [result.name for result in results if not result.ok and not result.skipped]
    skipped = [result.name for result in results if result.skipped]
    ok = not failed and not skipped
    if as_json:
        document = {
            "verb": verb,
            "stage": fleet.stage,
            "ok": ok,
            "seconds": round(seconds, 3),
            "hosts": [
                {
                    "name": result.name,
                    "ok": result.ok,
                    "skipped": result.skipped,
                    "error": result.error,
                    "exitStatus": result.exit_status,
                    "seconds": round(result.seconds, 3),
                    **({"processes": statuses[result.name]} if result.name in statuses else {}),
                    **({"drift": drift[result.name]} if drift and result.name in drift else {}),
                    **({} if verb == "logs" else {"stdout": result.stdout, "stderr": result.stderr}),
                }
                for result in results
            ],
        }
        print(json.dumps(document), file=out)
        return 0 if ok else 1
    lines_out = lines_out or out
    rows = [(name, record) for name, records in statuses.items() for record in records]
    if rows:
        print(control.status_table(rows), file=out)
    in_table = {name for name, _ in rows}
    width = max((len(result.name) for result in results), default=0)
    for result in results:
        if result.name in in_table:
            continue  # its rows say it all
        detail = _detail(verb, result, statuses.get(result.name))
        print(f"{result.name.ljust(width)}  {_outcome(result):<7}  {detail}", file=lines_out)
        for problem in (drift or {}).get(result.name, []):
            print(f"{' ' * width}    {problem}", file=lines_out)
    summary = f"{verb} {fleet.stage}: {len(results) - len(failed) - len(skipped)} of {len(results)} hosts ok"
    if failed:
        summary += f"; failed: {', '.join(failed)}"
    if skipped:
        summary += f"; skipped: {', '.join(skipped)}"
    print(f"{summary} ({seconds:.1f} s)", file=lines_out)
    return 0 if ok else 1


def _print_line(as_json: bool) -> ssh.LineHandler:
    """Log lines as they arrive, prefixed with the host name (stderr lines to stderr)."""

    def emit(name: str, stream: str, line: str) -> None:
        if as_json:
            print(json.dumps({"host": name, "stream": stream, "line": line}), flush=True)
        else:
            print(f"{name} | {line}", file=sys.stdout if stream == "stdout" else sys.stderr, flush=True)

    return emit


def _stage_identity(fleet: Fleet, project: Path) -> list[Path] | None:
    """The stage's ops.identityFile from the outputs: ~ is the operator's home, a relative path the
    project's."""
    if fleet.identity_file is None:
        return None
    return [project / Path(fleet.identity_file).expanduser()]


async def run(args: argparse.Namespace) -> int:
    if args.verb == "render":
        print(render_stage(args.stage, args.project), end="")
        return 0
    if args.verb == "import":
        return capistrano.run_import(
            args.capistrano,
            args.stage,
            args.output or args.project / f"Pulumi.{args.stage}.yaml",
            force=args.force,
            command=args.cap_command,
            known_hosts=args.known_hosts,
            out=sys.stdout,
            err=sys.stderr,
        )
    fleet = await load_fleet(args)
    if args.verb == "inventory":
        print(inventory.render_inventory(fleet, args.format), end="")
        return 0
    if not fleet.hosts:
        raise OpsError(f"the stack outputs of {fleet.stage} list no hosts")
    options = ssh.Options(
        identities=args.identity or _stage_identity(fleet, args.project),
        connect_timeout=args.connect_timeout,
        parallel=args.parallel,
    )
    targets = [_target(fleet, host) for host in fleet.hosts]
    by_name = {host.name: host for host in fleet.hosts}
    started = time.monotonic()
    if args.verb == "logs":
        verb = "follow" if args.follow else "logs"
        on_line = _print_line(args.json)
        # Following never ends by itself: no progress line there.
        progress = None if args.follow else ssh.Progress(f"logs {fleet.stage}")
        results = await ssh.run_many(
            targets,
            lambda t: control.control_command(fleet, by_name[t.name], verb),
            options,
            progress,
            on_line,
        )
        return report(fleet, "logs", results, time.monotonic() - started, args.json, lines_out=sys.stderr)

    if args.verb == "check":
        return await run_check(args, fleet, targets, options)

    def command_for(target: ssh.Target) -> str:
        return control.control_command(fleet, by_name[target.name], args.verb)

    label = f"{args.verb} {fleet.stage}"
    if args.verb == "restart":
        results = await ssh.run_in_batches(targets, fleet.batch_size, command_for, options, label)
    else:
        results = await ssh.run_many(targets, command_for, options, ssh.Progress(label))
    return report(fleet, args.verb, results, time.monotonic() - started, args.json)


async def _check_once(
    fleet: Fleet, targets: list[ssh.Target], options: ssh.Options, stage: Stage, project: Path
) -> tuple[list[ssh.Result], dict[str, list[str]]]:
    """Each host's differences from the render (a host with none is ok; one with some fails)."""
    expected = check.expected_sums(render_files(stage, project))
    by_name = {host.name: host for host in fleet.hosts}

    def command_for(target: ssh.Target) -> str:
        host = by_name[target.name]
        sums = control.control_command(fleet, host, "sums")
        return f"{sums} && {control.control_command(fleet, host, 'status')}"

    results = await ssh.run_many(targets, command_for, options, ssh.Progress(f"check {fleet.stage}"))
    drift: dict[str, list[str]] = {}
    for result in results:
        if not result.ok:
            continue
        try:
            problems = check.file_drift(expected, check.parse_sums(result.stdout))
            problems += check.slot_drift(stage, control.parse_status(result.stdout))
        except (check.SumsError, control.StatusLineError) as error:
            result.ok, result.error = False, f"unreadable answer: {error}"
            continue
        if problems:
            result.ok, result.error = False, f"drift: {len(problems)} difference(s)"
        # Shown with the drift; only the differences fail the host.
        if problems or check.host_warnings(result.stdout):
            drift[result.name] = problems + check.host_warnings(result.stdout)
    return results, drift


def repair(stage_name: str, project: Path, drift: dict[str, list[str]]) -> None:
    """`pulumi up --replace` of the drifted hosts' copies and install (and restart when a slot
    drifted), through the Automation API; the engine's output goes to stderr."""
    from pulumi import automation

    stack = automation.select_stack(stack_name=stage_name, work_dir=str(project))
    resources = (stack.export_stack().deployment or {}).get("resources", [])
    urns = []
    for name, problems in drift.items():
        slots = any(problem.startswith("process ") for problem in problems)
        urns += check.repair_urns(resources, name, slots)
    if not urns:
        raise OpsError(f"no install resources of {', '.join(drift)} in the stack {stage_name}")
    try:
        stack.up(replace=urns, on_output=lambda line: print(line, file=sys.stderr, end=""))
    except automation.CommandError as error:
        reason = str(error).rpartition("stderr:")[2].strip() or str(error)
        raise OpsError(f"pulumi up --replace failed: {reason}") from error


async def _stage_to_check(args: argparse.Namespace, name: str) -> Stage:
    """The stage from the stack's config, decrypted, so that files holding secrets (the env file)
    are compared too; from the stack file alone with --outputs, or when the config cannot be
    decrypted here (such files are then checked for presence only)."""
    if args.outputs is None:
        try:
            config = await asyncio.to_thread(stack_config, name, args.project)
        except OpsError as error:
            print(f"sidekiq-fleet: note: {error}; encrypted values are not compared", file=sys.stderr)
        else:
            return stage_for_render(name, values_from_config(config))
    return load_stage(name, args.project)


async def run_check(
    args: argparse.Namespace, fleet: Fleet, targets: list[ssh.Target], options: ssh.Options
) -> int:
    if args.repair and args.outputs is not None:
        raise OpsError("--repair runs `pulumi up` on the stack: it cannot work from --outputs")
    stage = await _stage_to_check(args, fleet.stage)
    started = time.monotonic()
    results, drift = await _check_once(fleet, targets, options, stage, args.project)
    failed = {result.name for result in results if not result.ok}
    drifted = {name: problems for name, problems in drift.items() if name in failed}
    if args.repair and drifted:
        report(fleet, "check", results, time.monotonic() - started, args.json, out=sys.stderr, drift=drift)
        print(f"repairing {', '.join(drifted)}: pulumi up --replace of their install", file=sys.stderr)
        await asyncio.to_thread(repair, fleet.stage, args.project, drifted)
        started = time.monotonic()
        results, drift = await _check_once(fleet, targets, options, stage, args.project)
    return report(fleet, "check", results, time.monotonic() - started, args.json, drift=drift)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (OpsError, StageConfigError, FileNotFoundError) as error:
        print(f"sidekiq-fleet: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
