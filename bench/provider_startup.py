"""Start-up time of command-provider candidates: from exec until the plugin prints its port (issue 14).

    python bench/provider_startup.py [--runs 15] [--provider PATH]

The engine starts the provider on every `pulumi up`, a no-op included, and waits for the port
line before it can send a single Check. Candidates, interleaved run by run so drifting load hits
each alike:

- our Go provider (toolchain/command-provider), the binary registered in $PULUMI_HOME (or --provider);
- the floor of any Python provider: this virtualenv's Python importing grpc and the Pulumi SDK's
  provider protobufs and serving on a port, doing nothing else (a real one imports more);
- the upstream Go plugin, when one is installed on this machine (--upstream PATH).

Run it with the toolchain set up (`source toolchain/env.sh`). Prints a table in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
ENGINE_ADDRESS = "127.0.0.1:1"  # never dialled before the port is printed

PYTHON_FLOOR = """
import asyncio, sys
import grpc
from pulumi.runtime.proto import provider_pb2_grpc

async def main():
    server = grpc.aio.server()
    servicer = provider_pb2_grpc.ResourceProviderServicer()
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


def registered_provider() -> Path:
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    return home / "plugins" / "resource-command-v1.2.1" / "pulumi-resource-command"


def time_to_port(command: list[str]) -> float:
    """Seconds from exec until the first stdout line, which must be a port number."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        elapsed = time.perf_counter() - started
        if not line.strip().isdigit():
            raise RuntimeError(f"{command[0]} printed {line!r}, not a port")
        return elapsed
    finally:
        process.terminate()
        process.wait(timeout=10)


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--provider", type=Path, default=None, help="our provider binary")
    parser.add_argument("--upstream", type=Path, default=None, help="an installed upstream plugin, if any")
    args = parser.parse_args()
    ours = args.provider or registered_provider()
    if not ours.is_file():
        print(f"no provider at {ours}: source toolchain/env.sh first, or pass --provider", file=sys.stderr)
        return 2
    candidates = {
        "our Go provider (toolchain/command-provider)": [str(ours), ENGINE_ADDRESS],
        "floor of a Python provider (grpc + SDK protobufs)": [sys.executable, "-c", PYTHON_FLOOR],
    }
    if args.upstream:
        candidates["upstream pulumi-resource-command"] = [str(args.upstream), ENGINE_ADDRESS]
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.runs):
        for name, command in candidates.items():
            times[name].append(time_to_port(command))
    fastest = min(statistics.median(values) for values in times.values())
    print(f"Start-up until the port line, {args.runs} interleaved runs each:\n")
    print("| candidate | min / median / max (s) | x fastest (median) |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {spread(values)} | {statistics.median(values) / fastest:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
