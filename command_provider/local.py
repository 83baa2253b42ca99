"""Local side of the stand-in: ``command:local:Command`` runs a process on this machine.

The command runs as ``interpreter + [command]`` (default ``/bin/sh -c``), in ``dir`` (default:
the provider's working directory, which the engine sets to the project directory), with this
process's environment plus ``environment`` plus PULUMI_COMMAND_STDOUT/STDERR from the previous
outputs. ``assetPaths`` and ``archivePaths`` are not implemented (the ``assets`` and ``archive``
outputs are never set).
"""

from __future__ import annotations

import asyncio
import os
import signal

from . import output

DEFAULT_INTERPRETER = ["/bin/sh", "-c"]


async def run(
    command: str,
    *,
    interpreter: list[str] | None,
    directory: str | None,
    env: dict[str, str],
    stdin: str | None,
    logging: str,
    log: output.LogLine,
    secret_command: bool,
) -> output.Captured:
    """Run ``command``; raise CommandFailed unless it exits 0."""
    argv = [*(interpreter or DEFAULT_INTERPRETER), command]
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=directory or None,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        if stdin:
            assert process.stdin is not None
            process.stdin.write(stdin.encode())
            await process.stdin.drain()
            process.stdin.close()
        assert process.stdout is not None and process.stderr is not None
        captured = await output.pump_both(process.stdout.read, process.stderr.read, logging, log)
        code = await process.wait()
    finally:
        if process.returncode is None:  # cancelled: take the whole process group down
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if code == 0:
        return captured
    if code < 0:
        reason = f"signal: {(signal.strsignal(-code) or str(-code)).lower()}"
    else:
        reason = f"exit status {code}"
    raise output.CommandFailed(output.failure_message(reason, command, secret_command, captured))
