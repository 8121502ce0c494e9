"""Identities cannot be minted (issue 18, item 4): the caller is the client
certificate's SPIFFE URI SAN (never its common name), vouched for by a client
CA that issues nothing else; banks keep their own keys (CSR flow); reserved
codes are never principals; an --insecure hub listens on loopback only; and
the interceptor refuses every handler kind it does not check."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from hubs import CLI

from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.operator import OperatorClient
from remitnet.clients.provider import ProviderClient
from remitnet.services.adapters.grpc.identity import (
    InsecureMetadataResolver,
    Principal,
    Role,
)
from remitnet.services.adapters.grpc.interceptor import HubInterceptor
from remitnet.services.domain.errors import Reason, Unauthenticated
from remitnet.services.entrypoints import cli
from remitnet.services.entrypoints.server import Hub, ServerConfig, is_loopback
from tests.integration.test_health_port import _config, gen_hub_certs, make_certs
from tests.support import start_hub

ROOT = Path(__file__).resolve().parents[2]
BANKS = ("IDBANKA1", "IDBANKB1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output of scripts/gen_hub_certs.sh (hub, bank-csr, sign-csr):
    PKI/certs holds the certificates, PKI/ca the two CAs."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    out = tmp_path_factory.mktemp("pki")
    make_certs(out, BANKS)
    return out


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def issue(pki: Path, ca: str, name: str, subject: str, san: str | None) -> str:
    """A client certificate PKI/certs/client.NAME.{crt,key} signed by the
    given CA of PKI/ca (client-ca or server-ca), with any subject and SAN:
    what someone holding that CA's key could make."""
    certs, cas = pki / "certs", pki / "ca"
    key, csr, crt = (certs / f"client.{name}.{ext}" for ext in ("key", "csr", "crt"))
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext = certs / f"client.{name}.ext"
    lines = ["basicConstraints = critical,CA:FALSE", "extendedKeyUsage = clientAuth"]
    if san:
        lines.append(f"subjectAltName = {san}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(cas / f"{ca}.crt"),
        "-CAkey", str(cas / f"{ca}.key"), "-set_serial", str(abs(hash(name)) % 10**12 + 2),
        "-days", "2", "-extfile", str(ext), "-out", str(crt),
    )  # fmt: skip
    return name


@pytest.fixture
async def tls_hub(sqlite_url: str, pki: Path) -> AsyncIterator[Hub]:
    hub = Hub(_config(sqlite_url, pki / "certs"))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


def as_(hub: Hub, pki: Path, name: str) -> ClientConfig:
    certs = pki / "certs"
    return ClientConfig(
        target=f"localhost:{hub.port}",
        deadline_s=10.0,
        root_certificates=(certs / "server-ca.crt").read_bytes(),
        private_key=(certs / f"client.{name}.key").read_bytes(),
        certificate_chain=(certs / f"client.{name}.crt").read_bytes(),
    )


async def onboard(hub: Hub, pki: Path) -> None:
    async with OperatorClient(as_(hub, pki, "operator")) as op:
        for code in BANKS:
            await op.create_bank(code, code, "us-east1", ["USD"])
            await op.deposit(code, "USD", 10_000)


# The scripts ------------------------------------------------------------------


def test_banks_keep_their_keys_and_the_cas_are_separate(pki: Path) -> None:
    certs = pki / "certs"
    # The hub's run made no bank key: each came from the bank's own run.
    for code in BANKS:
        assert (pki / f"bank-{code}" / f"client.bank-{code}.key").exists()
        assert not (pki / f"bank-{code}" / f"client.bank-{code}.crt").exists()
        text = subprocess.run(
            ["openssl", "x509", "-in", str(certs / f"client.bank-{code}.crt"), "-noout", "-text"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        assert f"URI:spiffe://remitnet/bank/{code}" in text
        assert "TLS Web Client Authentication" in text
    assert (certs / "client-ca.crt").read_bytes() != (certs / "server-ca.crt").read_bytes()

    def verify(ca: str, cert: str) -> bool:
        done = subprocess.run(
            ["openssl", "verify", "-CAfile", str(certs / ca), str(certs / cert)],
            capture_output=True,
        )
        return done.returncode == 0

    assert verify("client-ca.crt", "client.operator.crt")
    assert verify("client-ca.crt", f"client.bank-{BANKS[0]}.crt")
    assert not verify("client-ca.crt", "tls.crt")  # the server's CA is not the clients'
    assert verify("server-ca.crt", "tls.crt")
    assert not verify("server-ca.crt", "client.operator.crt")


def test_the_operator_signs_only_what_it_names(pki: Path, tmp_path: Path) -> None:
    gen_hub_certs("bank-csr", "--bank", "IDBANKC1", "--out", str(tmp_path))
    csr = str(tmp_path / "client.bank-IDBANKC1.csr")
    sign = ["sign-csr", "--csr", csr, "--ca-dir", str(pki / "ca"), "--certs-dir", str(tmp_path)]
    # A request for one bank is not signed as another's, nor as the hub's.
    for code in ("IDBANKA1", "HUB", "bad code"):
        with pytest.raises(subprocess.CalledProcessError):
            gen_hub_certs(*sign, "--bank", code)
    # The hub command makes no bank keys any more.
    with pytest.raises(subprocess.CalledProcessError) as err:
        gen_hub_certs("--certs-only", "--certs-dir", str(tmp_path / "c"), "--bank", "IDBANKC1")
    assert "bank-csr" in err.value.stderr
    gen_hub_certs(*sign, "--bank", "IDBANKC1")
    assert (tmp_path / "client.bank-IDBANKC1.crt").exists()


def test_certificate_folders_are_ignored_by_git() -> None:
    for path in (".hub-certs/tls.key", ".hub-ca/ca.key", ".bank-certs/client.bank-X.key"):
        done = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", path], capture_output=True
        )
        assert done.returncode == 0, path
    script = (ROOT / "scripts/gen_hub_certs.sh").read_text()
    assert 'ca_dir="${HOME:-.}/.remitnet/hub-ca"' in script  # the CA keys: outside the repo


# Identity from the certificate ------------------------------------------------


async def test_identity_is_the_spiffe_uri_not_the_common_name(tls_hub: Hub, pki: Path) -> None:
    await onboard(tls_hub, pki)
    # A bank's certificate whose CN says "operator": still that bank.
    name = issue(
        pki, "client-ca", "cn-operator", "/CN=operator", f"URI:spiffe://remitnet/bank/{BANKS[0]}"
    )
    async with OperatorClient(as_(tls_hub, pki, name)) as client:
        with pytest.raises(HubError) as err:
            await client.create_bank("IDBANKZ1", "Z", "us-east1", ["USD"])
        assert err.value.code is grpc.StatusCode.PERMISSION_DENIED
    async with BankClient(BANKS[1], as_(tls_hub, pki, name)) as bank:
        sent = await bank.submit(instruction(BANKS[1], "USD", 100))
        assert sent.transfer.debtor_bank == BANKS[0]
    # The old form (CN "operator" or "bank:<CODE>", no URI) is no identity.
    for subject in ("/CN=operator", f"/CN=bank:{BANKS[0]}"):
        legacy = issue(pki, "client-ca", f"legacy-{subject[4:9]}", subject, None)
        async with OperatorClient(as_(tls_hub, pki, legacy)) as client:
            with pytest.raises(HubError) as err:
                await client.list_banks()
            assert (err.value.code, err.value.reason) == (
                grpc.StatusCode.UNAUTHENTICATED,
                Reason.MISSING_IDENTITY,
            )


@pytest.mark.parametrize(
    "san",
    [
        "URI:spiffe://remitnet/bank/HUB",  # reserved: the hub's own accounts
        "URI:spiffe://remitnet/fxp/HUB",  # reserved, as an FX provider too
        "URI:spiffe://other/operator",  # another trust domain
        "URI:spiffe://remitnet/bank/lower",
        "URI:spiffe://remitnet/operator,URI:spiffe://remitnet/bank/IDBANKA1",  # two identities
    ],
)
async def test_certificates_that_name_no_usable_principal(
    tls_hub: Hub, pki: Path, san: str
) -> None:
    name = issue(pki, "client-ca", f"bad-{abs(hash(san))}", "/CN=operator", san)
    async with BankClient("HUB", as_(tls_hub, pki, name)) as client:
        with pytest.raises(HubError) as err:
            await client.statement("USD")
        assert (err.value.code, err.value.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            Reason.MISSING_IDENTITY,
        )


async def test_an_fx_provider_certificate_is_a_provider_principal(tls_hub: Hub, pki: Path) -> None:
    """spiffe://remitnet/fxp/CODE publishes and reads its own rates and
    position; any other call is PERMISSION_DENIED PROVIDER_NOT_ALLOWED."""
    async with OperatorClient(as_(tls_hub, pki, "operator")) as op:
        await op.create_provider("IDFXP001", "P", "us-east1", ["USD", "PHP"])
    name = issue(
        pki, "client-ca", "fxp-IDFXP001", "/CN=operator", "URI:spiffe://remitnet/fxp/IDFXP001"
    )
    async with ProviderClient("IDFXP001", as_(tls_hub, pki, name)) as fxp:
        published = await fxp.publish_rates({("USD", "PHP"): "56.1"})
        assert (published.updated, published.provider) == (1, "IDFXP001")
        assert [(r.provider, r.mid_rate) for r in await fxp.rates()] == [("IDFXP001", "56.1")]
        assert (await fxp.position()).bank_code == "IDFXP001"
    async with OperatorClient(as_(tls_hub, pki, name)) as client:
        with pytest.raises(HubError) as err:
            await client.list_banks()
        assert (err.value.code, err.value.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            Reason.PROVIDER_NOT_ALLOWED,
        )


async def test_a_certificate_from_the_server_ca_is_no_client(tls_hub: Hub, pki: Path) -> None:
    name = issue(
        pki, "server-ca", "from-server-ca", "/CN=operator", "URI:spiffe://remitnet/operator"
    )
    config = as_(tls_hub, pki, name)
    async with OperatorClient(
        ClientConfig(
            target=config.target,
            deadline_s=3.0,
            root_certificates=config.root_certificates,
            private_key=config.private_key,
            certificate_chain=config.certificate_chain,
        )
    ) as client:
        with pytest.raises(HubError) as err:
            await client.list_banks()
        assert err.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# Reserved codes from metadata (development hubs) --------------------------------


def test_principals_refuse_reserved_codes() -> None:
    assert Principal.parse("bank:BANKUS01") == Principal("BANKUS01")
    assert Principal.from_spiffe("spiffe://remitnet/bank/BANKUS01") == Principal("BANKUS01")
    assert Principal.from_spiffe("spiffe://remitnet/operator").is_operator
    # An FX provider: its own principal, neither a bank nor the operator.
    provider = Principal(None, "FXPROV01")
    assert Principal.parse("fxp:FXPROV01") == provider
    assert Principal.from_spiffe("spiffe://remitnet/fxp/FXPROV01") == provider
    assert provider.is_provider and not provider.is_operator and provider.bank is None
    assert (provider.participant, provider.render()) == ("FXPROV01", "fxp:FXPROV01")
    for bad in ("bank:HUB", "bank:", "bank:hub", "operator ", "HUB", "fxp:HUB", "fxp:", "fxp:x"):
        with pytest.raises(Unauthenticated):
            Principal.parse(bad)
    for bad in (
        "spiffe://remitnet/bank/HUB",
        "spiffe://remitnet/fxp/HUB",
        "spiffe://remitnet/fxp/lower",
        "spiffe://remitnet/bank/BANKUS01/x",
        "spiffe://remitnet/operator/x",
        "spiffe://remitnetx/operator",
        "https://remitnet/operator",
    ):
        with pytest.raises(Unauthenticated):
            Principal.from_spiffe(bad)


async def test_bank_hub_in_metadata_cannot_read_the_hub_statement(sqlite_url: str) -> None:
    handle = await start_hub(sqlite_url)
    try:
        await handle.onboard({"BANKUS01": "us-east1"}, ["USD"])
        with pytest.raises(HubError) as err:
            await handle.bank("HUB").statement("USD")
        assert (err.value.code, err.value.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            Reason.MISSING_IDENTITY,
        )
        # The operator still reads it.
        await handle.operator.statement("HUB", "USD")
    finally:
        await handle.stop()


# --insecure on loopback only ------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "remitnet.example", "", "[::]"])
def test_insecure_is_refused_off_loopback(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(SystemExit) as err:
        Hub(ServerConfig(insecure=True, host=host, db_url="sqlite://"))
    assert "refusing --insecure" in str(err.value.code)
    with pytest.raises(SystemExit) as parsed:
        cli.main(["serve", "--insecure", "--host", host, "--db", "sqlite://"])
    assert parsed.value.code == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_insecure_is_allowed_on_loopback(host: str) -> None:
    assert is_loopback(host)
    Hub(ServerConfig(insecure=True, host=host, db_url="sqlite://", metrics_port=None))


def test_the_cli_refuses_insecure_off_loopback_before_starting() -> None:
    done = subprocess.run(
        [*CLI, "serve", "--insecure", "--host", "0.0.0.0", "--db", "sqlite://",
         "--metrics-port", "-1"],
        capture_output=True, timeout=60, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 2
    assert b"refusing --insecure on '0.0.0.0'" in done.stderr


# Handler kinds the interceptor does not wrap ---------------------------------------

TEST_SERVICE = "remitnet.test.v1.Kinds"


async def _kinds_server() -> tuple[grpc.aio.Server, int, list[str]]:
    ran: list[str] = []

    async def upload(requests: AsyncIterator[bytes], context: object) -> bytes:
        ran.append("upload")
        return b"".join([r async for r in requests])

    async def chat(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
        ran.append("chat")
        async for r in requests:
            yield r

    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        "Upload": grpc.stream_unary_rpc_method_handler(upload),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    }
    roles = {f"/{TEST_SERVICE}/Chat": Role.OPERATOR}
    server = grpc.aio.server(interceptors=[HubInterceptor(InsecureMetadataResolver(), roles)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(TEST_SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, ran


async def test_client_streaming_handlers_are_refused_not_run() -> None:
    server, port, ran = await _kinds_server()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            upload: grpc.aio.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(
                f"/{TEST_SERVICE}/Upload"
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await upload(
                    iter([b"a", b"b"]),
                    metadata=(("x-remitnet-principal", "operator"),),
                    timeout=5,
                )
            assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)
    assert ran == []


async def test_bidirectional_handlers_are_checked() -> None:
    server, port, ran = await _kinds_server()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            chat: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
                f"/{TEST_SERVICE}/Chat"
            )
            for metadata, code in (
                ((), grpc.StatusCode.UNAUTHENTICATED),
                ((("x-remitnet-principal", "bank:HUB"),), grpc.StatusCode.UNAUTHENTICATED),
                ((("x-remitnet-principal", "bank:BANKUS01"),), grpc.StatusCode.PERMISSION_DENIED),
            ):
                call = chat(iter([b"x"]), metadata=metadata, timeout=5)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in call:
                        pass
                assert err.value.code() is code
            assert ran == []
            call = chat(iter([b"x", b"y"]), metadata=(("x-remitnet-principal", "operator"),))
            assert [m async for m in call] == [b"x", b"y"]
    finally:
        await server.stop(0)
    assert ran == ["chat"]
