"""The ResourceProvider gRPC service of the stand-in command provider.

Outputs are the new input Struct echoed back as it came (so secret wrappers on inputs stay on
outputs) plus ``stdout``/``stderr`` for the two Command types. Values are revealed only to be
read. Inputs are never logged; what reaches the engine log is the commands' own output,
as with the real provider.

Preview (``preview=True``) runs nothing: Create and Update return the echoed inputs with
``stdout``/``stderr`` unknown, as the real provider (pulumi-go-provider's ``infer``) does.

Differences from the real provider that the engine can see: a failed command fails the RPC
with a plain error (the real one reports a partially created resource, so the engine keeps it
in the state and the next ``up`` updates rather than creates it), and Read returns the state
it is given (no refresh, no import).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, plugin_pb2, provider_pb2, provider_pb2_grpc

from . import (
    COPY_TO_REMOTE,
    LOCAL_COMMAND,
    PROVIDER_VERSION,
    REMOTE_COMMAND,
    RESOURCE_TYPES,
    diff,
    local,
    output,
    remote,
    wire,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Output-only properties: not inputs, so not compared by Diff when it falls back to old outputs.
OUTPUT_ONLY = {"stdout", "stderr", "assets", "archive"}

_KIND = {
    diff.ADD: provider_pb2.PropertyDiff.ADD,
    diff.DELETE: provider_pb2.PropertyDiff.DELETE,
    diff.UPDATE: provider_pb2.PropertyDiff.UPDATE,
}


def _resource_type(request: Any) -> str:
    if request.type:
        return request.type
    # urn:pulumi:stack::project::[parent$...]type::name
    return request.urn.split("::")[2].split("$")[-1]


def _resource_name(request: Any) -> str:
    return request.name or request.urn.split("::")[-1]


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(4)


def _echo(inputs: struct_pb2.Struct) -> struct_pb2.Struct:
    properties = struct_pb2.Struct()
    properties.CopyFrom(inputs)
    return properties


def _mark_connection_secret(properties: struct_pb2.Struct) -> None:
    """The real schema marks ``connection`` secret; keep it so even if it came in plain."""
    if "connection" in properties.fields and not wire.is_secret(wire.to_python(properties).get("connection")):
        plain = struct_pb2.Value()
        plain.CopyFrom(properties.fields["connection"])
        wrapped = properties.fields["connection"].struct_value
        wrapped.Clear()
        wrapped.fields[wire.SIG].string_value = wire.SECRET_SIG
        wrapped.fields["value"].CopyFrom(plain)


def _set_output_text(properties: struct_pb2.Struct, stdout: str, stderr: str) -> None:
    properties.fields["stdout"].string_value = stdout
    properties.fields["stderr"].string_value = stderr


class CommandProvider(provider_pb2_grpc.ResourceProviderServicer):
    """command:remote:Command, command:remote:CopyToRemote and command:local:Command."""

    def __init__(self, engine_address: str | None) -> None:
        self._engine_address = engine_address
        self._engine: engine_pb2_grpc.EngineStub | None = None
        self._channel: grpc.aio.Channel | None = None
        self._running: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    # -- engine log --------------------------------------------------------------------------

    async def _log(self, urn: str, message: str, *, ephemeral: bool = False) -> None:
        if not self._engine_address:
            return
        if self._engine is None:
            self._channel = grpc.aio.insecure_channel(self._engine_address)
            self._engine = engine_pb2_grpc.EngineStub(self._channel)
        request = engine_pb2.LogRequest(
            severity=engine_pb2.INFO, message=message, urn=urn, ephemeral=ephemeral
        )
        try:
            await self._engine.Log(request)
        except grpc.aio.AioRpcError as error:  # a lost log line must not fail the command
            log.debug("engine Log failed: %s", error.code())

    def _line_logger(self, urn: str) -> output.LogLine:
        async def log_line(line: str) -> None:
            await self._log(urn, line)

        return log_line

    def _status_logger(self, urn: str) -> remote.Status:
        async def status(message: str) -> None:
            await self._log(urn, message, ephemeral=True)

        return status

    # -- running work, and turning failures into RPC errors ----------------------------------

    async def _perform(self, context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            return await work
        except (output.CommandFailed, remote.Unsupported, ValueError) as error:
            message = str(error)
        except Exception as error:  # noqa: BLE001 - every failure becomes the RPC's error
            message = f"{type(error).__name__}: {error}"
        finally:
            if task is not None:
                self._running.discard(task)
        await context.abort(grpc.StatusCode.UNKNOWN, message)
        raise AssertionError("unreachable")

    # -- plugin and configuration ------------------------------------------------------------

    async def GetPluginInfo(self, request: empty_pb2.Empty, context: Any) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=PROVIDER_VERSION)

    async def Handshake(
        self, request: provider_pb2.ProviderHandshakeRequest, context: Any
    ) -> provider_pb2.ProviderHandshakeResponse:
        return provider_pb2.ProviderHandshakeResponse(
            accept_secrets=True, accept_resources=True, accept_outputs=False
        )

    async def CheckConfig(
        self, request: provider_pb2.CheckRequest, context: Any
    ) -> provider_pb2.CheckResponse:
        return provider_pb2.CheckResponse(inputs=request.news)

    async def DiffConfig(self, request: provider_pb2.DiffRequest, context: Any) -> provider_pb2.DiffResponse:
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    async def Configure(
        self, request: provider_pb2.ConfigureRequest, context: Any
    ) -> provider_pb2.ConfigureResponse:
        return provider_pb2.ConfigureResponse(acceptSecrets=True, supportsPreview=True, acceptResources=True)

    async def Cancel(self, request: empty_pb2.Empty, context: Any) -> empty_pb2.Empty:
        for task in list(self._running):
            task.cancel()
        return empty_pb2.Empty()

    # -- resources ---------------------------------------------------------------------------

    async def _known_type(self, request: Any, context: grpc.aio.ServicerContext) -> str:
        resource_type = _resource_type(request)
        if resource_type not in RESOURCE_TYPES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown resource type {resource_type!r}: this stand-in implements only "
                + ", ".join(RESOURCE_TYPES),
            )
        return resource_type

    async def Check(self, request: provider_pb2.CheckRequest, context: Any) -> provider_pb2.CheckResponse:
        resource_type = await self._known_type(request, context)
        news = wire.reveal(wire.to_python(request.news))
        failures = [
            provider_pb2.CheckFailure(property=name, reason=reason)
            for name, reason in check_inputs(resource_type, news)
        ]
        return provider_pb2.CheckResponse(inputs=request.news, failures=failures)

    async def Diff(self, request: provider_pb2.DiffRequest, context: Any) -> provider_pb2.DiffResponse:
        await self._known_type(request, context)
        if request.HasField("old_inputs"):
            olds = wire.to_python(request.old_inputs)
        else:
            olds = {k: v for k, v in wire.to_python(request.olds).items() if k not in OUTPUT_ONLY}
        changes = diff.detailed_diff(olds, wire.to_python(request.news))
        if not changes:
            return provider_pb2.DiffResponse(
                changes=provider_pb2.DiffResponse.DIFF_NONE, hasDetailedDiff=True
            )
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME,
            diffs=diff.changed_keys(changes),
            detailedDiff={
                path: provider_pb2.PropertyDiff(kind=_KIND[kind]) for path, kind in changes.items()
            },
            hasDetailedDiff=True,
            deleteBeforeReplace=False,
        )

    async def Create(self, request: provider_pb2.CreateRequest, context: Any) -> provider_pb2.CreateResponse:
        resource_type = await self._known_type(request, context)
        properties = _echo(request.properties)
        if resource_type != LOCAL_COMMAND:
            _mark_connection_secret(properties)
        if resource_type == COPY_TO_REMOTE:
            if not request.preview:
                inputs = wire.reveal(wire.to_python(request.properties))
                await self._perform(context, self._copy(request.urn, inputs))
            return provider_pb2.CreateResponse(
                id="" if request.preview else _new_id(""), properties=properties
            )
        if request.preview:
            _set_output_text(properties, wire.UNKNOWN, wire.UNKNOWN)
            return provider_pb2.CreateResponse(id="", properties=properties)
        raw = wire.to_python(request.properties)
        stdout = stderr = ""
        if raw.get("create") is not None:
            stdout, stderr = await self._perform(
                context, self._run(resource_type, request.urn, raw, raw["create"], previous={})
            )
        _set_output_text(properties, stdout, stderr)
        return provider_pb2.CreateResponse(id=_new_id(_resource_name(request)), properties=properties)

    async def Update(self, request: provider_pb2.UpdateRequest, context: Any) -> provider_pb2.UpdateResponse:
        resource_type = await self._known_type(request, context)
        properties = _echo(request.news)
        if resource_type != LOCAL_COMMAND:
            _mark_connection_secret(properties)
        if resource_type == COPY_TO_REMOTE:
            if not request.preview:
                olds = wire.reveal(wire.to_python(request.olds))
                news = wire.reveal(wire.to_python(request.news))
                if needs_copy(olds, news):
                    await self._perform(context, self._copy(request.urn, news))
            return provider_pb2.UpdateResponse(properties=properties)
        if request.preview:
            _set_output_text(properties, wire.UNKNOWN, wire.UNKNOWN)
            return provider_pb2.UpdateResponse(properties=properties)
        raw = wire.to_python(request.news)
        command = raw.get("update") if raw.get("update") is not None else raw.get("create")
        olds = wire.reveal(wire.to_python(request.olds))
        if command is None:
            # Nothing to run: keep the previous stdout and stderr, as they were stored.
            for key in ("stdout", "stderr"):
                if key in request.olds.fields:
                    properties.fields[key].CopyFrom(request.olds.fields[key])
            return provider_pb2.UpdateResponse(properties=properties)
        stdout, stderr = await self._perform(
            context, self._run(resource_type, request.urn, raw, command, previous=olds)
        )
        _set_output_text(properties, stdout, stderr)
        return provider_pb2.UpdateResponse(properties=properties)

    async def Delete(self, request: provider_pb2.DeleteRequest, context: Any) -> empty_pb2.Empty:
        resource_type = await self._known_type(request, context)
        # CopyToRemote: like the real provider, deleting it leaves the remote file in place.
        if resource_type != COPY_TO_REMOTE:
            raw = wire.to_python(request.properties)
            command = raw.get("delete")
            if command is not None:
                await self._perform(
                    context,
                    self._run(resource_type, request.urn, raw, command, previous=wire.reveal(raw)),
                )
        return empty_pb2.Empty()

    async def Read(self, request: provider_pb2.ReadRequest, context: Any) -> provider_pb2.ReadResponse:
        await self._known_type(request, context)
        return provider_pb2.ReadResponse(id=request.id, properties=request.properties, inputs=request.inputs)

    # -- the work ----------------------------------------------------------------------------

    async def _run(
        self,
        resource_type: str,
        urn: str,
        raw: dict[str, Any],
        raw_command: Any,
        previous: dict[str, Any],
    ) -> tuple[str, str]:
        """Run one command of a Command resource; return its stdout and stderr."""
        inputs = wire.reveal(raw)
        command = wire.reveal(raw_command)
        if not isinstance(command, str):
            raise ValueError("the command must be a string")
        env = command_environment(inputs, previous)
        logging_mode = output.logging_mode(inputs.get("logging"))
        stdin = inputs.get("stdin")
        secret_command = wire.contains_secret(raw_command)
        if resource_type == REMOTE_COMMAND:
            captured = await remote.run(
                remote.Connection.from_inputs(inputs.get("connection")),
                command,
                env=env,
                stdin=stdin,
                logging=logging_mode,
                log=self._line_logger(urn),
                status=self._status_logger(urn),
                secret_command=secret_command,
            )
        else:
            captured = await local.run(
                command,
                interpreter=wire.string_list(inputs.get("interpreter")),
                directory=inputs.get("dir"),
                env=env,
                stdin=stdin,
                logging=logging_mode,
                log=self._line_logger(urn),
                secret_command=secret_command,
            )
        return captured.stdout_text, captured.stderr_text

    async def _copy(self, urn: str, inputs: dict[str, Any]) -> None:
        await remote.copy(
            remote.Connection.from_inputs(inputs.get("connection")),
            remote.Source.from_inputs(inputs.get("source")),
            inputs["remotePath"],
            self._status_logger(urn),
        )

    # -- what this stand-in does not implement -----------------------------------------------

    async def _unimplemented(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented by the command provider stand-in")

    GetSchema = Parameterize = Invoke = Call = Construct = _unimplemented
    Attach = GetMapping = GetMappings = List = _unimplemented


# ---------------------------------------------------------------------------------------------
# Pure helpers (tested without a server)
# ---------------------------------------------------------------------------------------------


def command_environment(inputs: dict[str, Any], previous: dict[str, Any]) -> dict[str, str]:
    """``environment`` plus PULUMI_COMMAND_STDOUT/STDERR from ``previous`` outputs.

    The two are added when ``addPreviousOutputInEnv`` is not false and the previous value is
    non-empty, as the real provider does (``previous`` is empty on create).
    """
    env = wire.string_map(inputs.get("environment"))
    if inputs.get("addPreviousOutputInEnv") is not False:
        for key, name in (("stdout", "PULUMI_COMMAND_STDOUT"), ("stderr", "PULUMI_COMMAND_STDERR")):
            value = previous.get(key)
            if isinstance(value, str) and value and value != wire.UNKNOWN:
                env[name] = value
    return env


def needs_copy(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """CopyToRemote's update uploads again only if the source or the remote path changed."""
    if olds.get("remotePath") != news.get("remotePath"):
        return True
    old, new = olds.get("source"), news.get("source")
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return old != new
    return not wire.same_asset(old, new)


def check_inputs(resource_type: str, news: dict[str, Any]) -> list[tuple[str, str]]:
    """Input problems the engine should report before anything runs (unknowns are skipped)."""
    failures: list[tuple[str, str]] = []

    def known(value: Any) -> bool:
        return value is not None and not wire.is_unknown(value)

    if resource_type in (REMOTE_COMMAND, COPY_TO_REMOTE):
        connection = news.get("connection")
        if connection is None:
            failures.append(("connection", "missing required property 'connection'"))
        elif isinstance(connection, dict) and not wire.contains_unknown(connection):
            try:
                remote.Connection.from_inputs(connection)
            except (ValueError, remote.Unsupported) as error:
                failures.append(("connection", str(error)))
    if resource_type == COPY_TO_REMOTE:
        if news.get("remotePath") is None:
            failures.append(("remotePath", "missing required property 'remotePath'"))
        source = news.get("source")
        if source is None:
            failures.append(("source", "missing required property 'source'"))
        elif known(source) and not wire.contains_unknown(source):
            try:
                remote.Source.from_inputs(source)
            except (ValueError, remote.Unsupported) as error:
                failures.append(("source", str(error)))
    if resource_type in (REMOTE_COMMAND, LOCAL_COMMAND) and known(news.get("logging")):
        try:
            output.logging_mode(news.get("logging"))
        except ValueError as error:
            failures.append(("logging", str(error)))
    return failures
