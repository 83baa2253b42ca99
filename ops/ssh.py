"""Commands on many hosts at once over SSH (asyncssh), as the deploy user.

Each host's only trusted key is the `hostKey` of the stack outputs, and asyncssh asks the host for
that key's type: no known_hosts file, no ~/.ssh/config and no certificate authority take part. A host
that does not answer fails within the connect timeout while the others carry on; at most `parallel`
connections are open at once.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

import asyncssh

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_PARALLEL = 10

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    name: str
    address: str
    port: int
    user: str
    host_key: str | None


@dataclass(frozen=True)
class Options:
    identities: Sequence[Path] | None = None  # None: asyncssh's defaults (agent, ~/.ssh/id_*)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    parallel: int = DEFAULT_PARALLEL


@dataclass
class Result:
    name: str
    ok: bool = False
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    seconds: float = 0.0
    skipped: bool = False


# Called with (host name, stream name, line) for each line of output, as it arrives.
LineHandler = Callable[[str, str, str], None]


def _trusted_key(target: Target) -> asyncssh.SSHKey:
    if target.host_key is None:
        raise ValueError(
            "hostKey is null in the stack outputs: refusing to connect to a host whose key is not "
            "pinned; run `pulumi up` (its first connection to a host exports the host's ed25519 key) "
            "or set hosts.existing[].hostKey"
        )
    # Parsed once already, when the outputs were read (components/outputs.py).
    return asyncssh.import_public_key(target.host_key)


def _describe(error: BaseException, target: Target, options: Options) -> str:
    where = f"{target.address}:{target.port}"
    if isinstance(error, asyncssh.HostKeyNotVerifiable):
        return (
            f"host key mismatch at {where}: the host did not present the hostKey of the stack outputs "
            f"({target.host_key}); refusing to connect"
        )
    if isinstance(error, asyncssh.PermissionDenied):
        return f"{where} refused the login of {target.user!r}: none of the client keys is authorized"
    if isinstance(error, TimeoutError):
        return f"no SSH connection to {where} within {options.connect_timeout:g} s (connect timeout)"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused by {where}: is sshd running?"
    if isinstance(error, OSError):
        return f"cannot connect to {where}: {error.strerror or error}"
    if isinstance(error, asyncssh.Error):
        return f"ssh to {where} failed: {error.reason}"
    return f"{type(error).__name__}: {error}"


# C0 and C1 control characters but tab and newline, and DEL.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text from a host with its control characters (but tab and newline) written out as \\xNN.

    deploy controls what a host prints (its login files, its jobs' log lines): raw, an escape sequence
    would reach the operator's terminal (OSC 52 writes the clipboard).
    """
    return _CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


async def _read_lines(
    stream: asyncssh.SSHReader[str], name: str, kind: str, sink: list[str], on_line: LineHandler | None
) -> None:
    async for raw in stream:
        if not raw:  # asyncssh yields "" at the end of the stream
            break
        line = printable(raw)
        sink.append(line)
        if on_line is not None:
            on_line(name, kind, line.rstrip("\n"))


async def run_command(
    target: Target, command: str, options: Options, on_line: LineHandler | None = None
) -> Result:
    """Run COMMAND on the target as its user; every failure becomes the result's error."""
    result = Result(target.name)
    started = time.monotonic()
    try:
        key = _trusted_key(target)
        async with asyncssh.connect(
            target.address,
            port=target.port,
            username=target.user,
            known_hosts=([key], [], []),
            client_keys=[str(path) for path in options.identities] if options.identities else (),
            connect_timeout=options.connect_timeout,
            config=[],
            x509_trusted_certs=None,
        ) as connection:
            # Bytes that are not UTF-8 are written out as \xNN too, rather than failing the host.
            process = await connection.create_process(command, errors="backslashreplace")
            stdout: list[str] = []
            stderr: list[str] = []
            await asyncio.gather(
                _read_lines(process.stdout, target.name, "stdout", stdout, on_line),
                _read_lines(process.stderr, target.name, "stderr", stderr, on_line),
            )
            completed = await process.wait()
        result.exit_status = completed.exit_status
        result.stdout, result.stderr = "".join(stdout), "".join(stderr)
        result.ok = result.exit_status == 0
        if not result.ok:
            last = result.stderr.strip().splitlines()[-1:] or [f"signal {completed.exit_signal}"]
            result.error = f"exit status {result.exit_status}: {last[0]}"
    except (OSError, asyncssh.Error, ValueError) as error:
        result.error = printable(
            str(error) if isinstance(error, ValueError) else _describe(error, target, options)
        )
    result.seconds = time.monotonic() - started
    return result


class Progress:
    """A progress line on stderr for work that takes longer than `delay` seconds.

    On a terminal the line is rewritten in place and cleared at the end; elsewhere (CI logs) a
    line is printed after `delay` seconds and then every `every` seconds.
    """

    def __init__(self, label: str, stream: TextIO = sys.stderr, delay: float = 1.0, every: float = 10.0):
        self.label = label
        self.detail = ""
        self.stream = stream
        self.delay = delay
        self.every = every
        self.started = time.monotonic()
        self.shown = False

    def line(self) -> str:
        return f"{self.label}: {self.detail} ({time.monotonic() - self.started:.0f} s)"

    async def run(self) -> None:
        tty = self.stream.isatty()
        await asyncio.sleep(self.delay)
        while True:
            if tty:
                self.stream.write(f"\r\033[K{self.line()}")
            else:
                self.stream.write(f"{self.line()}\n")
            self.stream.flush()
            self.shown = True
            await asyncio.sleep(1.0 if tty else self.every)

    def clear(self) -> None:
        if self.shown and self.stream.isatty():
            self.stream.write("\r\033[K")
            self.stream.flush()


async def with_progress(progress: Progress | None, work: Awaitable[T]) -> T:
    if progress is None:
        return await work
    ticker = asyncio.create_task(progress.run())
    try:
        return await work
    finally:
        ticker.cancel()
        progress.clear()


async def run_many(
    targets: Sequence[Target],
    command_for: Callable[[Target], str],
    options: Options,
    progress: Progress | None = None,
    on_line: LineHandler | None = None,
) -> list[Result]:
    """Run each target's command, at most `options.parallel` at once; results in the targets' order."""
    limit = asyncio.Semaphore(options.parallel)
    pending = {target.name for target in targets}

    def waiting() -> str:
        names = sorted(pending)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return f"{len(targets) - len(pending)}/{len(targets)} hosts done, waiting for {shown}"

    async def one(target: Target) -> Result:
        async with limit:
            try:
                command = command_for(target)
            except ValueError as error:
                result = Result(target.name, error=str(error))
            else:
                result = await run_command(target, command, options, on_line)
        pending.discard(target.name)
        if progress is not None:
            progress.detail = waiting()
        return result

    if progress is not None:
        progress.detail = waiting()
    work = asyncio.gather(*(one(target) for target in targets))
    return await with_progress(progress, work)


async def run_in_batches(
    targets: Sequence[Target],
    size: int,
    command_for: Callable[[Target], str],
    options: Options,
    label: str,
    on_line: LineHandler | None = None,
) -> list[Result]:
    """Batch k+1 starts only when every host of batch k succeeded; later hosts are skipped."""
    from components.fleet import batches

    groups = batches(list(targets), size)
    results: list[Result] = []
    for number, group in enumerate(groups, start=1):
        progress = Progress(f"{label}, batch {number} of {len(groups)}")
        done = await run_many(group, command_for, options, progress, on_line)
        results += done
        failed = [result.name for result in done if not result.ok]
        if failed:
            reason = f"skipped: batch {number} failed on {', '.join(failed)}"
            results += [
                Result(t.name, skipped=True, error=reason) for later in groups[number:] for t in later
            ]
            break
    return results
