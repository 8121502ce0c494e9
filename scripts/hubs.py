"""Hubs in processes of their own, for the tools in scripts/ and for the
tests (`import hubs`): a free port, the wait until a hub answers the gRPC
health check SERVING, and `remitnet serve` started behind a handle that
stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The `remitnet` command of this interpreter (the console script, run as a module).
CLI = (sys.executable, "-m", "remitnet.services.entrypoints.cli")
CRASH_AT = "REMITNET_CRASH_AT"  # the hub's crash-injection variable


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HubExited(RuntimeError):
    """The hub's process ended before it answered SERVING."""


@dataclass
class HubProcess:
    """A `remitnet serve` process. `stop()` (or leaving a `with` block) ends it."""

    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int | None  # None: /metrics is off
    health_port: int | None = None  # the plaintext health-only listener, if any
    log: Path | None = None  # where its output goes; None: `output()`
    killed: bool = False  # stop() had to SIGKILL it
    terminated: bool = False  # SIGTERM sent

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def health_target(self) -> str:
        """Where it answers grpc.health.v1 in plaintext."""
        return f"127.0.0.1:{self.health_port}" if self.health_port else self.target

    def seen_in(self) -> str:
        """How an error message points at what the hub said."""
        return f"; see {self.log}" if self.log else ""

    async def wait_healthy(self, timeout_s: float = 60.0, service: str = "") -> None:
        await wait_healthy(self.health_target, timeout_s, service=service, hub=self)

    def output(self) -> str:
        """What it wrote, once it has exited (started without a log)."""
        return self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def metrics(self) -> dict[str, float]:
        """Its /metrics, sample by sample."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        out: dict[str, float] = {}
        with urllib.request.urlopen(url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("#") or " " not in line:
                    continue
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def terminate(self) -> None:
        """SIGTERM, once (the hub drains what is in flight); does not wait."""
        if self.proc.poll() is None and not self.terminated:
            self.proc.send_signal(signal.SIGTERM)
            self.terminated = True

    def kill(self) -> int:
        """SIGKILL if it still runs; its exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait, SIGKILL after `timeout` seconds; its exit status."""
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.killed = True
            return self.kill()

    def __enter__(self) -> HubProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def wait_healthy(
    target: str,
    timeout_s: float = 60.0,
    *,
    service: str = "",
    hub: HubProcess | None = None,
    interval: float = 0.2,
) -> None:
    """Until `target` answers the health check of `service` ("": the whole
    server) SERVING. TimeoutError after `timeout_s` seconds; HubExited at once
    if `hub` is given and its process ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            if hub is not None and hub.proc.poll() is not None:
                raise HubExited(f"the hub exited with {hub.proc.returncode}{hub.seen_in()}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(interval)
    seen = hub.seen_in() if hub else ""
    raise TimeoutError(f"{target} did not report SERVING within {timeout_s:g} s{seen}")


def wait_healthy_blocking(
    target: str, timeout_s: float = 60.0, *, service: str = "", hub: HubProcess | None = None
) -> None:
    """wait_healthy for code that is not async, or that may block the event
    loop it runs in: it waits in a thread (and an event loop) of its own."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, wait_healthy(target, timeout_s, service=service, hub=hub)).result()


def start_hub(
    db: str,
    *,
    port: int | None = None,
    metrics: bool = True,
    health_port: int | None = None,
    only: Sequence[str] = (),
    extra: Sequence[str] = (),
    log: Path | None = None,
    crash_at: str = "",
    cwd: Path | None = None,
    python: str = sys.executable,
    wait: float | None = 60.0,
) -> HubProcess:
    """`remitnet serve --insecure` on loopback, on `db`.

    port: the gRPC port (None: a free one); metrics: /metrics on a free port
    (False: `--metrics-port -1`); health_port: `--health-port`; only: one
    `--only` each; extra: further `serve` flags. Output (stdout and stderr)
    is appended to `log`, or kept for `output()`. crash_at sets
    REMITNET_CRASH_AT, which is otherwise never passed on. python: the
    interpreter, cwd: the folder (another checkout's, for an A/B). wait: block
    until it is healthy, at most this many seconds (None: return at once and
    `await hub.wait_healthy()`)."""
    port = free_port() if port is None else port
    metrics_port = free_port() if metrics else None
    command = [
        python, *CLI[1:], "serve", "--insecure", "--db", db, "--port", str(port),
        "--metrics-port", str(metrics_port if metrics_port is not None else -1),
    ]  # fmt: skip
    if health_port is not None:
        command += ["--health-port", str(health_port)]
    for services in only:
        command += ["--only", services]
    command += extra
    env = {k: v for k, v in os.environ.items() if k != CRASH_AT}
    if crash_at:
        env[CRASH_AT] = crash_at
    sink: int | BinaryIO = subprocess.PIPE if log is None else log.open("ab")
    try:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    finally:
        if not isinstance(sink, int):
            sink.close()
    hub = HubProcess(proc, port, metrics_port, health_port, log)
    if wait is not None:
        try:
            wait_healthy_blocking(hub.health_target, wait, hub=hub)
        except BaseException:
            hub.stop()
            raise
    return hub
