"""Capturing a command's output, streaming it to the engine line by line, and failure messages."""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# What the `logging` input says to stream to the engine (output is captured either way).
LOG_STDOUT = {"stdout", "stdoutAndStderr"}
LOG_STDERR = {"stderr", "stdoutAndStderr"}
DEFAULT_LOGGING = "stdoutAndStderr"
LOGGING_VALUES = ("stdout", "stderr", "stdoutAndStderr", "none")

# How much of a failed command's output goes into the error message.
TAIL_LINES = 60
TAIL_CHARS = 12_000
COMMAND_CHARS = 160

LogLine = Callable[[str], Awaitable[None]]


class CommandFailed(Exception):
    """A command ran and failed; the message is what the engine shows."""


@dataclass
class Captured:
    """stdout, stderr and both interleaved in arrival order, as text."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    combined: list[str] = field(default_factory=list)

    @property
    def stdout_text(self) -> str:
        return trim_final_newline("".join(self.stdout))

    @property
    def stderr_text(self) -> str:
        return trim_final_newline("".join(self.stderr))


def trim_final_newline(text: str) -> str:
    """Like the real provider: one trailing newline is dropped from stdout and stderr."""
    return text[:-1] if text.endswith("\n") else text


async def pump(
    read: Callable[[int], Awaitable[bytes]],
    own: list[str],
    combined: list[str],
    log: LogLine | None,
) -> None:
    """Read a byte stream to EOF, keep its text, and hand each complete line to ``log``."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while True:
        chunk = await read(65536)
        text = decoder.decode(chunk or b"", final=not chunk)
        if text:
            own.append(text)
            combined.append(text)
            if log is not None:
                pending += text
                *lines, pending = pending.split("\n")
                for line in lines:
                    await log(line)
        if not chunk:
            break
    if log is not None and pending:
        await log(pending)


async def pump_both(
    read_stdout: Callable[[int], Awaitable[bytes]],
    read_stderr: Callable[[int], Awaitable[bytes]],
    logging: str,
    log: LogLine,
) -> Captured:
    captured = Captured()
    await asyncio.gather(
        pump(read_stdout, captured.stdout, captured.combined, log if logging in LOG_STDOUT else None),
        pump(read_stderr, captured.stderr, captured.combined, log if logging in LOG_STDERR else None),
    )
    return captured


def describe_command(command: str, secret: bool) -> str:
    """The command as the failure message shows it: its first line, or nothing if it is secret."""
    if secret:
        return "[secret command]"
    stripped = command.strip()
    lines = stripped.splitlines() or [""]
    shown = lines[0][:COMMAND_CHARS]
    if len(lines) > 1 or len(lines[0]) > COMMAND_CHARS:
        shown += "…"
    return json.dumps(shown, ensure_ascii=False)


def tail(text: str) -> str:
    lines = text.splitlines()
    cut = len(lines) > TAIL_LINES
    text = "\n".join(lines[-TAIL_LINES:])
    if len(text) > TAIL_CHARS:
        text, cut = text[-TAIL_CHARS:], True
    return ("[… earlier output omitted …]\n" if cut else "") + text


def failure_message(reason: str, command: str, secret: bool, captured: Captured) -> str:
    """``<reason>: running "<first line>…":`` and the tail of stdout and stderr, interleaved."""
    return f"{reason}: running {describe_command(command, secret)}:\n{tail(''.join(captured.combined))}"


def logging_mode(value: Any) -> str:
    if value is None:
        return DEFAULT_LOGGING
    if value not in LOGGING_VALUES:
        raise ValueError(f"logging: expected one of {', '.join(LOGGING_VALUES)}, got {value!r}")
    return value
