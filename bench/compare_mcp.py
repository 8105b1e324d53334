"""MCP tool-call latency over stdio: ``execute_code`` on our server against the reference's, side by side.

Run from the repository root::

    .venv/bin/python bench/compare_mcp.py [--reps 10] [--code "print('hi')"]

One MCP client (the official SDK, this venv's) starts both servers over stdio, as an assistant would: ours
(``python -m llm_sandbox.mcp``, its Python pool warmed at start) and the reference's ``llm-sandbox-mcp`` (0.3.46,
in ``.bench/ref-venv``, with the ``mcp`` package installed there if missing), both on Docker. After two warm-up
calls each, it calls ``execute_code`` on one then the other, ``--reps`` times, alternating which goes first, and
times each call from request to reply. Every reply must end with the expected stdout (the reference puts a set-up
line of its own before it).

The reference's server has no image option: it creates every sandbox from its default image
``ghcr.io/vndee/sandbox-python-311-bullseye``, which no registry here can serve, so that name is given to our
Python image for the run (and removed afterwards when the bench made it). Ratio = reference / ours.
Exit code 0 when the measurement completed; 1 when a reply was wrong or a server failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import docker
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import TextContent

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_support import ensure_reference_venv, log  # noqa: E402

OUR_IMAGE = "llm-sandbox/python:bookworm"
REFERENCE_IMAGE = "ghcr.io/vndee/sandbox-python-311-bullseye"
REFERENCE_VENV = ROOT / ".bench" / "ref-venv"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=10, help="measured calls per server (default 10)")
    parser.add_argument("--code", default="print('hi')", help="the code each call runs")
    parser.add_argument("--expect", default="hi\n", help="the stdout each call must return")
    return parser.parse_args(argv)


def servers() -> dict[str, StdioServerParameters]:
    python = ensure_reference_venv(REFERENCE_VENV)
    done = subprocess.run([str(python), "-c", "import mcp"], check=False, capture_output=True)
    if done.returncode != 0:
        log("installing the mcp package into the reference's venv (its server needs it)")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "mcp>=2.3,<3"], check=True)
    return {
        "ours": StdioServerParameters(
            command=sys.executable, args=["-m", "llm_sandbox.mcp", "--warm", "python", "--log-level", "warning"]
        ),
        "reference": StdioServerParameters(
            command=str(python.with_name("llm-sandbox-mcp")), env={"BACKEND": "docker", "KEEP_TEMPLATE": "true"}
        ),
    }


async def call(session: ClientSession, code: str, expect: str) -> float:
    started = time.perf_counter()
    result = await session.call_tool("execute_code", {"code": code, "language": "python"})
    seconds = time.perf_counter() - started
    text = next(block.text for block in result.content if isinstance(block, TextContent))
    stdout = str(json.loads(text).get("stdout"))
    # The reference's runs print a set-up line of its own ahead of the program's output.
    if not stdout.endswith(expect):
        raise RuntimeError(f"wrong reply {text[:300]!r}")
    return seconds


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    async with AsyncExitStack() as stack:
        sessions: dict[str, ClientSession] = {}
        for side, parameters in servers().items():
            read, write = await stack.enter_async_context(stdio_client(parameters))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            sessions[side] = session
        await anyio.sleep(3)  # our pool's first sandboxes get ready, as they would between an assistant's calls
        for side, session in sessions.items():
            for _ in range(2):
                log(f"{side}: warm-up call {await call(session, args.code, args.expect):.3f} s")
        timings = {side: [] for side in sessions}
        order = list(sessions)
        for rep in range(args.reps):
            for side in order if rep % 2 == 0 else order[::-1]:
                timings[side].append(await call(sessions[side], args.code, args.expect))
            log(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{s} {t[-1] * 1000:.0f} ms" for s, t in timings.items()))
    return timings


def report(timings: dict[str, list[float]], args: argparse.Namespace) -> None:
    medians = {side: statistics.median(values) * 1000 for side, values in timings.items()}
    print(f"\nexecute_code({args.code!r}) over stdio, {args.reps} calls each, alternating")
    print(f"{'server':<10} {'median':>10} {'min':>10} {'max':>10}")
    for side, values in timings.items():
        low, high = min(values) * 1000, max(values) * 1000
        print(f"{side:<10} {medians[side]:>8.1f} ms {low:>7.1f} ms {high:>7.1f} ms")
    print(f"ratio (reference / ours, medians): {medians['reference'] / medians['ours']:.1f}x")


def reference_containers(client: Any) -> set[str]:
    return {container.id for container in client.containers.list(all=True, filters={"ancestor": REFERENCE_IMAGE})}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client: Any = docker.from_env()
    made_tag = False
    before = reference_containers(client)
    try:
        try:
            client.images.get(REFERENCE_IMAGE)
        except docker.errors.ImageNotFound:
            client.images.get(OUR_IMAGE).tag(REFERENCE_IMAGE)
            made_tag = True
        timings = anyio.run(measure, args)
    except Exception as error:
        log(f"failed: {type(error).__name__}: {error}")
        return 1
    finally:
        # The reference's sandboxes carry no label: the ones its image gained during the bench are its server's.
        for container_id in reference_containers(client) - before:
            try:
                client.containers.get(container_id).remove(force=True)
            except docker.errors.NotFound:
                pass  # its server removed it meanwhile
        if made_tag:
            client.images.remove(REFERENCE_IMAGE, noprune=True)
        client.close()
    report(timings, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
