"""Entry point of the stand-in provider: ``python -m command_provider [flags] <engine-address>``.

The engine starts the plugin with its own gRPC address as the last argument (plus, with
verbose logging, flags such as ``--logtostderr -v=9``, which are ignored here). The plugin
listens on 127.0.0.1 on a free port, prints only that port number and a newline on stdout,
which the engine reads, and serves until it is stopped (SIGTERM/SIGINT) or the engine that
started it is gone.

Set COMMAND_PROVIDER_DEBUG_LOG=<file> to write this process's own debug log to a file; it
never logs inputs. Nothing else is written to stdout or stderr, which the engine shows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import grpc
from pulumi.runtime.proto import provider_pb2_grpc

from .provider import CommandProvider

MAX_MESSAGE_BYTES = 400 * 1024 * 1024  # what Pulumi's own plugins accept
PARENT_POLL_SECONDS = 2.0


def _restore_environment() -> None:
    """Undo the wrapper's PYTHONPATH, so local commands see the engine's environment."""
    if os.environ.pop("COMMAND_PROVIDER_WRAPPED", None) is None:
        return
    saved = os.environ.pop("COMMAND_PROVIDER_SAVED_PYTHONPATH", None)
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


def _engine_address(argv: list[str]) -> str | None:
    positional = [arg for arg in argv if not arg.startswith("-")]
    return positional[-1] if positional else None


class _CallLogger(grpc.aio.ServerInterceptor):
    """Debug-logs the name of each RPC (never its payload)."""

    async def intercept_service(self, continuation, handler_call_details):  # noqa: ANN001
        logging.getLogger(__name__).debug("rpc %s", handler_call_details.method)
        return await continuation(handler_call_details)


async def serve(engine_address: str | None) -> None:
    server = grpc.aio.server(
        interceptors=[_CallLogger()],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    provider = CommandProvider(engine_address)
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(provider, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    sys.stdout = sys.stderr  # nothing else may reach the engine's port reader

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()

    async def watch_parent() -> None:
        # The engine is our parent (the wrapper execs); if it dies we are re-parented.
        while os.getppid() == parent:
            await asyncio.sleep(PARENT_POLL_SECONDS)
        logging.getLogger(__name__).debug("engine process %s is gone; stopping", parent)
        stop.set()

    watcher = asyncio.create_task(watch_parent())
    await stop.wait()
    watcher.cancel()
    await server.stop(grace=5)
    await provider.close()


def main() -> None:
    _restore_environment()
    debug_log = os.environ.get("COMMAND_PROVIDER_DEBUG_LOG")
    if debug_log:
        logging.basicConfig(filename=debug_log, level=logging.DEBUG)
        logging.getLogger("grpc").setLevel(logging.INFO)
    else:
        logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(serve(_engine_address(sys.argv[1:])))


if __name__ == "__main__":
    main()
