"""The plaintext health-only listener (`--health-port`) next to an mTLS hub,
as the Kubernetes Deployments run it: kubelet's native gRPC probes cannot
speak TLS, so they ask grpc.health.v1 on a second port that serves nothing
else. Certificates come from scripts/gen_hub_certs.sh, as in production."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from hubs import free_port, start_hub

from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.operator import OperatorClient
from remitnet.services.entrypoints.cli import build_parser
from remitnet.services.entrypoints.server import (
    ROLES,
    SERVICE_NAMES,
    Hub,
    ServerConfig,
    TlsConfig,
)

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def gen_hub_certs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts/gen_hub_certs.sh"), *args],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def make_certs(out: Path, banks: tuple[str, ...]) -> Path:
    """The CAs, the server's and the operator's certificates made by
    scripts/gen_hub_certs.sh, and each bank's through the CSR flow: the bank
    makes its key and request, the operator signs the request. The bank keys
    are written beside the certificates, for the tests' clients."""
    certs = out / "certs"
    gen_hub_certs("--certs-only", "--certs-dir", str(certs), "--ca-dir", str(out / "ca"))
    for code in banks:
        gen_hub_certs("bank-csr", "--bank", code, "--out", str(out / f"bank-{code}"))
        csr = out / f"bank-{code}" / f"client.bank-{code}.csr"
        gen_hub_certs(
            "sign-csr", "--bank", code, "--csr", str(csr),
            "--ca-dir", str(out / "ca"), "--certs-dir", str(certs),
        )  # fmt: skip
        key = out / f"bank-{code}" / f"client.bank-{code}.key"
        (certs / key.name).write_bytes(key.read_bytes())
    return certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CAs, server and client certificates made by scripts/gen_hub_certs.sh."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return make_certs(tmp_path_factory.mktemp("hub-tls"), ("TLSA01", "TLSB01"))


def _config(db_url: str, certs: Path, grace_s: float = 5.0) -> ServerConfig:
    return ServerConfig(
        db_url=db_url,
        port=0,
        health_port=0,
        metrics_port=None,
        tls=TlsConfig(str(certs / "tls.crt"), str(certs / "tls.key"), str(certs / "client-ca.crt")),
        grace_s=grace_s,
    )


def _client(hub: Hub, certs: Path, name: str) -> ClientConfig:
    """mTLS as `name` (client.<name>.crt/.key), checking the server's name."""
    return ClientConfig(
        target=f"localhost:{hub.port}",
        deadline_s=30.0,
        root_certificates=(certs / "server-ca.crt").read_bytes(),
        private_key=(certs / f"client.{name}.key").read_bytes(),
        certificate_chain=(certs / f"client.{name}.crt").read_bytes(),
    )


def _credentials(certs: Path, name: str = "operator") -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        (certs / "server-ca.crt").read_bytes(),
        (certs / f"client.{name}.key").read_bytes(),
        (certs / f"client.{name}.crt").read_bytes(),
    )


@pytest.fixture
async def tls_hub(sqlite_url: str, certs: Path) -> AsyncIterator[Hub]:
    hub = Hub(_config(sqlite_url, certs))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def _check(target: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)


async def test_health_port_answers_in_plaintext(tls_hub: Hub) -> None:
    assert tls_hub.health_port not in (0, tls_hub.port)
    target = f"127.0.0.1:{tls_hub.health_port}"
    # What the probes ask: overall (liveness, startup), per service (readiness).
    for name in ["", *SERVICE_NAMES.values()]:
        assert await _check(target, name) == SERVING, name


def _raw(data: bytes) -> bytes:
    return data


async def test_health_port_serves_nothing_else(tls_hub: Hub) -> None:
    methods = [m for m in ROLES if m.startswith("/remitnet.")]
    assert len(methods) > 20
    methods.append(f"/{reflection.SERVICE_NAME}/ServerReflectionInfo")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_hub.health_port}") as channel:
        for method in methods:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary(method, _raw, _raw)(b"", timeout=5)
            assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED, method


async def test_main_port_is_mtls_with_identity_from_the_certificate(
    tls_hub: Hub, certs: Path
) -> None:
    with pytest.raises(grpc.aio.AioRpcError):  # no plaintext on the main port
        await _check(f"127.0.0.1:{tls_hub.port}")
    async with OperatorClient(_client(tls_hub, certs, "operator")) as op:
        for code in ("TLSA01", "TLSB01"):
            await op.create_bank(code, code, "us-east1", ["USD"])
            await op.deposit(code, "USD", 1_000)
        health = health_pb2_grpc.HealthStub(op.channel)
        response = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert response.status == SERVING
    # The caller is the certificate's SPIFFE URI (spiffe://remitnet/bank/
    # TLSA01), whatever code the client claims; a bank's certificate is not
    # the operator's.
    bank_tls = _client(tls_hub, certs, "bank-TLSA01")
    async with BankClient("TLSB01", bank_tls) as bank:
        response = await bank.submit(instruction("TLSB01", "USD", 100))
        assert response.transfer.debtor_bank == "TLSA01"
    async with OperatorClient(bank_tls) as not_operator:
        with pytest.raises(HubError) as denied:
            await not_operator.create_bank("TLSC01", "TLSC01", "us-east1", ["USD"])
        assert denied.value.code is grpc.StatusCode.PERMISSION_DENIED


async def test_health_port_reports_not_serving_while_draining(sqlite_url: str, certs: Path) -> None:
    hub = Hub(_config(sqlite_url, certs, grace_s=5.0))
    await hub.start()
    health_target = f"127.0.0.1:{hub.health_port}"
    async with (
        grpc.aio.insecure_channel(health_target) as plain,
        grpc.aio.secure_channel(f"localhost:{hub.port}", _credentials(certs)) as tls,
    ):
        watch = health_pb2_grpc.HealthStub(plain).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING
        # A call in flight on the main port (an open reflection stream) keeps
        # the main server draining.
        in_flight = reflection_pb2_grpc.ServerReflectionStub(tls).ServerReflectionInfo()
        await in_flight.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        assert (await in_flight.read()).list_services_response.service
        stopping = asyncio.create_task(hub.stop())
        assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        # The probes' port still answers while the main server drains, and
        # says NOT_SERVING for everything.
        for name in ["", *SERVICE_NAMES.values()]:
            assert await _check(health_target, name) == NOT_SERVING, name
        assert not stopping.done()
        await in_flight.done_writing()
        await asyncio.wait_for(stopping, 30)
    # Stopped with the rest.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _check(health_target)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_health_port_is_off_by_default_and_must_differ_from_port() -> None:
    serve = ["serve", "--insecure"]
    assert build_parser().parse_args(serve).health_port is None
    assert build_parser().parse_args([*serve, "--health-port", "8081"]).health_port == 8081
    assert ServerConfig().health_port is None
    with pytest.raises(SystemExit, match="health-port"):
        Hub(ServerConfig(insecure=True, port=50051, health_port=50051))


async def test_cli_serves_health_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = start_hub(db, metrics=False, health_port=free_port(), only=["fx"], wait=None)
    try:
        await hub.wait_healthy(30, service=SERVICE_NAMES["fx"])  # on the health port
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _check(hub.health_target, SERVICE_NAMES["clearing"])
        assert err.value.code() is grpc.StatusCode.NOT_FOUND  # not served by this process
        exit_code = await asyncio.to_thread(hub.stop, 30)
        assert exit_code == 0, hub.output()
    finally:
        hub.kill()
