"""SSH side of the stand-in: connecting, running a command, copying files with SFTP.

Behaviour follows pulumi-command 1.2.1 where our program depends on it:

* Host keys: with ``hostKey`` set, only that key is accepted (an OpenSSH public key line,
  ``ssh-ed25519 AAAA… [comment]``; the comment is ignored); without it any host key is
  accepted, as the real provider does.
* Dialing is retried on any failure (refused, timed out, handshake or authentication error)
  until ``dialErrorLimit`` failures have been exceeded (default 10, -1 = unlimited), each
  attempt bounded by ``perDialTimeout`` seconds (default 15, 0 = no bound). Between attempts
  it waits as the real provider's retry loop does (the Pulumi SDK's ``retry.Until`` defaults:
  100 ms, growing 1.5x per attempt, at most 5 s). The real provider has no *configurable* wait
  between dials (pulumi-command#1238), which is why our program waits for the port first.
* The command runs through the remote user's login shell, as ``ssh host 'command'`` does.
  ``environment`` (and PULUMI_COMMAND_STDOUT/STDERR) are sent as session environment
  requests; sshd drops any variable its ``AcceptEnv`` does not allow, silently here (the real
  provider fails on a refused ``environment`` variable and warns on the other two).

Not implemented (each fails loudly instead of being ignored): ``proxy`` (bastion hosts),
``agentSocketPath`` (SSH agents; SSH_AUTH_SOCK is not used either).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncssh

from . import output, wire

DEFAULT_DIAL_ERROR_LIMIT = 10
DEFAULT_PER_DIAL_TIMEOUT = 15
RETRY_DELAY = 0.1
RETRY_BACKOFF = 1.5
RETRY_MAX_DELAY = 5.0

Status = Callable[[str], Awaitable[None]]


class Unsupported(Exception):
    """An input this stand-in does not implement."""


@dataclass(frozen=True)
class Connection:
    host: str
    port: int = 22
    user: str = "root"
    password: str | None = None
    private_key: str | None = None
    private_key_password: str | None = None
    host_key: str | None = None
    dial_error_limit: int = DEFAULT_DIAL_ERROR_LIMIT
    per_dial_timeout: int = DEFAULT_PER_DIAL_TIMEOUT

    def __repr__(self) -> str:  # never show credentials
        return f"Connection({self.user}@{self.host}:{self.port})"

    @classmethod
    def from_inputs(cls, value: Any) -> Connection:
        """Parse the (revealed) ``connection`` input."""
        if not isinstance(value, dict) or not isinstance(value.get("host"), str):
            raise ValueError("connection: expected an object with a host")
        if value.get("proxy") is not None:
            raise Unsupported("connection.proxy (bastion hosts) is not implemented by this stand-in")
        if value.get("agentSocketPath") is not None:
            raise Unsupported("connection.agentSocketPath (SSH agents) is not implemented by this stand-in")
        return cls(
            host=value["host"],
            port=wire.as_int(value.get("port"), 22),
            user=value.get("user") or "root",
            password=value.get("password"),
            private_key=value.get("privateKey"),
            private_key_password=value.get("privateKeyPassword"),
            host_key=value.get("hostKey"),
            dial_error_limit=wire.as_int(value.get("dialErrorLimit"), DEFAULT_DIAL_ERROR_LIMIT),
            per_dial_timeout=wire.as_int(value.get("perDialTimeout"), DEFAULT_PER_DIAL_TIMEOUT),
        )


def reached_dial_limit(dials: int, limit: int) -> bool:
    """The real provider's rule: -1 (or less) is unlimited, else fail once dials exceed it."""
    return limit > -1 and dials > limit


def retry_delays() -> Any:
    delay = RETRY_DELAY
    while True:
        yield min(delay, RETRY_MAX_DELAY)
        delay *= RETRY_BACKOFF


def _connect_options(conn: Connection) -> dict[str, Any]:
    options: dict[str, Any] = {
        "username": conn.user,
        "config": [],  # no ~/.ssh/config
        "agent_path": None,
        "password": conn.password,
        "known_hosts": None,  # accept any host key unless one is pinned below
    }
    if conn.private_key is not None:
        options["client_keys"] = [asyncssh.import_private_key(conn.private_key, conn.private_key_password)]
    else:
        options["client_keys"] = None  # no default ~/.ssh keys
    if conn.host_key:
        # Trust exactly this key; asyncssh also negotiates this key's algorithm.
        options["known_hosts"] = ([asyncssh.import_public_key(conn.host_key)], [], [])
    return options


async def dial(conn: Connection, status: Status) -> asyncssh.SSHClientConnection:
    options = _connect_options(conn)  # a bad key fails here, before any dial, as in the real one
    timeout = conn.per_dial_timeout if conn.per_dial_timeout > 0 else None
    delays = retry_delays()
    attempt = 0
    while True:
        try:
            return await asyncio.wait_for(asyncssh.connect(conn.host, conn.port, **options), timeout)
        except (TimeoutError, OSError, asyncssh.Error) as error:
            reason = str(error) or type(error).__name__
            dials = attempt + 1
            if reached_dial_limit(dials, conn.dial_error_limit):
                raise output.CommandFailed(
                    f"after {attempt} failed attempts: ssh: dial {conn.host}:{conn.port}: {reason}"
                ) from None
            limit = "inf" if conn.dial_error_limit < 0 else str(conn.dial_error_limit)
            await status(f"Dial {dials}/{limit} failed: retrying")
            await asyncio.sleep(next(delays))
            attempt += 1


async def run(
    conn: Connection,
    command: str,
    *,
    env: dict[str, str],
    stdin: str | None,
    logging: str,
    log: output.LogLine,
    status: Status,
    secret_command: bool,
) -> output.Captured:
    """Run ``command`` on the host; raise CommandFailed unless it exits 0."""
    async with await dial(conn, status) as ssh:
        process = await ssh.create_process(command, env=env or (), encoding=None)
        if stdin:
            process.stdin.write(stdin.encode())
        process.stdin.write_eof()
        captured = await output.pump_both(process.stdout.read, process.stderr.read, logging, log)
        await process.wait_closed()
        exit_status = process.exit_status
        signal = process.exit_signal
    if exit_status == 0:
        return captured
    if signal is not None:
        reason = f"Process exited with signal {signal[0]}"
    elif exit_status is None:
        reason = "wait: remote command exited without exit status or exit signal"
    else:
        reason = f"Process exited with status {exit_status}"
    raise output.CommandFailed(output.failure_message(reason, command, secret_command, captured))


# ---------------------------------------------------------------------------------------------
# CopyToRemote
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What CopyToRemote uploads: text, or a local file or directory path."""

    text: str | None = None
    path: str | None = None

    @classmethod
    def from_inputs(cls, value: Any) -> Source:
        """Parse the (revealed) ``source`` input: a text or path asset, or a path archive."""
        if wire.is_asset(value):
            if isinstance(value.get("text"), str):
                return cls(text=value["text"])
            if isinstance(value.get("path"), str):
                return cls(path=value["path"])
            raise Unsupported("source: only text and path assets are implemented by this stand-in")
        if wire.is_archive(value):
            if isinstance(value.get("path"), str):
                return cls(path=value["path"])
            raise Unsupported(
                "source: only path archives (a local directory or file) are implemented by this stand-in"
            )
        raise ValueError("source: expected an asset or an archive")


async def _remote_stat(sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
    try:
        return await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return None


def _is_dir(attrs: asyncssh.SFTPAttrs | None) -> bool:
    return attrs is not None and attrs.permissions is not None and stat.S_ISDIR(attrs.permissions)


async def _write_file(sftp: asyncssh.SFTPClient, chunks: Any, dest: str) -> None:
    async with sftp.open(dest, "wb") as remote_file:
        for chunk in chunks:
            await remote_file.write(chunk)


def _file_chunks(path: str) -> Any:
    with open(path, "rb") as local_file:
        while chunk := local_file.read(1 << 20):
            yield chunk


async def _ensure_dir(sftp: asyncssh.SFTPClient, path: str) -> None:
    attrs = await _remote_stat(sftp, path)
    if attrs is None:
        await sftp.makedirs(path, exist_ok=True)
    elif not _is_dir(attrs):
        raise output.CommandFailed(f"remote path {path} exists but is not a directory")


async def _copy_dir(sftp: asyncssh.SFTPClient, source: str, dest: str) -> None:
    for root, dirs, files in os.walk(source):
        dirs.sort()
        relative = os.path.relpath(root, source)
        remote_root = dest if relative == "." else posixpath.join(dest, *relative.split(os.sep))
        await _ensure_dir(sftp, remote_root)
        for name in sorted(files):
            await _write_file(sftp, _file_chunks(os.path.join(root, name)), posixpath.join(remote_root, name))


async def copy(conn: Connection, source: Source, remote_path: str, status: Status) -> None:
    """Upload ``source`` to ``remote_path``, creating missing parent directories.

    Path semantics follow the real provider: text goes to exactly ``remote_path`` (an error if
    that is a directory); a file goes to ``remote_path``, or into it if it is a directory; a
    directory ``d`` goes to ``remote_path/d``, and ``d/`` (trailing slash) puts its contents
    into ``remote_path``. Existing files are overwritten.
    """
    async with await dial(conn, status) as ssh, ssh.start_sftp_client() as sftp:
        dest_attrs = await _remote_stat(sftp, remote_path)
        if source.text is not None:
            if _is_dir(dest_attrs):
                raise output.CommandFailed(
                    f"remote path {remote_path} is a directory; when using a text asset, "
                    "remotePath must be a file path"
                )
            await _ensure_parent(sftp, remote_path)
            await _write_file(sftp, [source.text.encode()], remote_path)
            return
        assert source.path is not None
        local = source.path
        if os.path.isdir(local):
            if dest_attrs is not None and not _is_dir(dest_attrs):
                raise output.CommandFailed(f"remote path {remote_path} exists but is not a directory")
            dest = remote_path
            if not local.endswith("/"):
                dest = posixpath.join(remote_path, os.path.basename(os.path.normpath(local)))
            await _copy_dir(sftp, local, dest)
        else:
            dest = remote_path
            if _is_dir(dest_attrs):
                dest = posixpath.join(remote_path, os.path.basename(local))
            else:
                await _ensure_parent(sftp, remote_path)
            await _write_file(sftp, _file_chunks(local), dest)


async def _ensure_parent(sftp: asyncssh.SFTPClient, path: str) -> None:
    parent = posixpath.dirname(path.rstrip("/"))
    if parent and parent != "/":
        await _ensure_dir(sftp, parent)
