"""The hub's gRPC server: all services in one process by default, or a
subset (`--only`), all against the same database."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from remitnet.clearing.v1 import clearing_pb2, clearing_pb2_grpc
from remitnet.fx.v1 import fx_pb2, fx_pb2_grpc
from remitnet.iso20022.v1 import iso20022_pb2, iso20022_pb2_grpc
from remitnet.netting.v1 import netting_pb2, netting_pb2_grpc
from remitnet.participants.v1 import participants_pb2, participants_pb2_grpc
from remitnet.services.adapters import collector, metrics
from remitnet.services.adapters.db import faults, migrate
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import limits
from remitnet.services.adapters.grpc.clearing import ClearingServicer
from remitnet.services.adapters.grpc.fx import FxServicer
from remitnet.services.adapters.grpc.identity import (
    CertificateResolver,
    IdentityResolver,
    InsecureMetadataResolver,
    Role,
)
from remitnet.services.adapters.grpc.interceptor import HubInterceptor
from remitnet.services.adapters.grpc.iso20022 import Iso20022Servicer
from remitnet.services.adapters.grpc.netting import NettingServicer
from remitnet.services.adapters.grpc.participants import ParticipantsServicer
from remitnet.services.adapters.grpc.reflection_v1 import SERVICE_NAME as REFLECTION_V1
from remitnet.services.adapters.grpc.reflection_v1 import add_reflection_v1
from remitnet.services.adapters.grpc.settlement import SettlementServicer
from remitnet.services.adapters.observe import MetricsObserver
from remitnet.services.domain.errors import RemitnetError
from remitnet.services.service_layer import cycles, fx, lifecycle, settlement
from remitnet.services.service_layer.engine import EngineConfig, NettingEngine
from remitnet.services.service_layer.fx import FxConfig
from remitnet.services.service_layer.lifecycle import LifecycleConfig
from remitnet.services.service_layer.results import (
    CycleClosed,
    CycleSettled,
    ExpiryRan,
    Observer,
)
from remitnet.services.service_layer.watch import FeedReader, WatchConfig
from remitnet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

log = logging.getLogger("remitnet.server")

SERVICES = ("participants", "clearing", "fx", "netting", "settlement")
MAX_CONCURRENT_STREAMS = 128
# The documented limits (services/remitnet/services/adapters/grpc/limits.py, README "Limits").
MAX_MESSAGE_BYTES = limits.MAX_MESSAGE_BYTES

SERVICE_NAMES = {
    "participants": participants_pb2.DESCRIPTOR.services_by_name["ParticipantsService"].full_name,
    "clearing": clearing_pb2.DESCRIPTOR.services_by_name["ClearingService"].full_name,
    "netting": netting_pb2.DESCRIPTOR.services_by_name["NettingService"].full_name,
    "settlement": settlement_pb2.DESCRIPTOR.services_by_name["SettlementService"].full_name,
    "fx": fx_pb2.DESCRIPTOR.services_by_name["FxService"].full_name,
    # Served with clearing (its engine and feed): the ISO 20022 edge.
    "iso20022": iso20022_pb2.DESCRIPTOR.services_by_name["Iso20022Service"].full_name,
}

# Who may call what. Anything not listed (health, reflection) is public.
ROLES: dict[str, Role] = {}
for _m in participants_pb2.DESCRIPTOR.services_by_name["ParticipantsService"].methods:
    ROLES[f"/{SERVICE_NAMES['participants']}/{_m.name}"] = Role.OPERATOR
for _m in clearing_pb2.DESCRIPTOR.services_by_name["ClearingService"].methods:
    ROLES[f"/{SERVICE_NAMES['clearing']}/{_m.name}"] = Role.BANK
for _m in iso20022_pb2.DESCRIPTOR.services_by_name["Iso20022Service"].methods:
    ROLES[f"/{SERVICE_NAMES['iso20022']}/{_m.name}"] = Role.BANK
ROLES[f"/{SERVICE_NAMES['netting']}/ListCycles"] = Role.ANY
ROLES[f"/{SERVICE_NAMES['netting']}/GetCycle"] = Role.ANY
ROLES[f"/{SERVICE_NAMES['netting']}/CloseCycle"] = Role.OPERATOR
# A bank reads its own position; the operator any bank's.
ROLES[f"/{SERVICE_NAMES['netting']}/GetPosition"] = Role.ANY
# The operator cancels any transfer (a reserved one, or a netted one the
# debtor can no longer cancel), with a reason; banks use ClearingService.
ROLES[f"/{SERVICE_NAMES['netting']}/CancelTransfer"] = Role.OPERATOR
ROLES[f"/{SERVICE_NAMES['settlement']}/SettleCycle"] = Role.OPERATOR
ROLES[f"/{SERVICE_NAMES['settlement']}/GetStatement"] = Role.ANY
ROLES[f"/{SERVICE_NAMES['settlement']}/GetLedgerBalance"] = Role.OPERATOR
ROLES[f"/{SERVICE_NAMES['settlement']}/GetReconciliation"] = Role.ANY
ROLES[f"/{SERVICE_NAMES['fx']}/UpdateRates"] = Role.OPERATOR
ROLES[f"/{SERVICE_NAMES['fx']}/ListRates"] = Role.ANY
ROLES[f"/{SERVICE_NAMES['fx']}/CreateQuote"] = Role.BANK
ROLES[f"/{SERVICE_NAMES['fx']}/CreateQuotes"] = Role.BANK
ROLES[f"/{SERVICE_NAMES['fx']}/GetQuote"] = Role.ANY
# What an FX provider principal (fxp:CODE) may call: its own rates, and the
# reads a bank makes of itself (each answers the provider's own rows only).
# Any other call is PERMISSION_DENIED PROVIDER_NOT_ALLOWED for it.
PROVIDER_METHODS: frozenset[str] = frozenset(
    {
        f"/{SERVICE_NAMES['fx']}/UpdateRates",
        f"/{SERVICE_NAMES['fx']}/ListRates",
        f"/{SERVICE_NAMES['netting']}/GetPosition",
        f"/{SERVICE_NAMES['netting']}/ListCycles",
        f"/{SERVICE_NAMES['netting']}/GetCycle",
        f"/{SERVICE_NAMES['settlement']}/GetStatement",
        f"/{SERVICE_NAMES['settlement']}/GetReconciliation",
    }
)


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1): the only hosts
    an --insecure hub may listen on. Any other name is refused, whatever it
    resolves to today."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def insecure_host_refusal(host: str) -> str:
    return (
        f"refusing --insecure on {host!r}: without TLS anyone who reaches the port can claim "
        "any identity, so an insecure hub listens on loopback only (127.0.0.1, ::1, localhost)"
    )


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: str
    key_file: str
    client_ca_file: str


@dataclass(frozen=True, slots=True)
class ServerConfig:
    db_url: str = "sqlite:///remitnet.db"
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = 9464
    # Plaintext listener serving only grpc.health.v1 (kubelet's native gRPC
    # probes cannot speak TLS); None: off, 0: any free port.
    health_port: int | None = None
    only: tuple[str, ...] = SERVICES
    insecure: bool = False
    tls: TlsConfig | None = None
    migrate: bool = True
    cycle_seconds: float = 0.0
    auto_settle: bool = False
    grace_s: float = 10.0
    engine: EngineConfig = field(default_factory=EngineConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    fx: FxConfig = field(default_factory=FxConfig)
    rates_file: str | None = None
    # Payee confirmation and recalls: reservation deadlines, the recall
    # window, and how the expirer (in processes that run clearing) works.
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)


class Hub:
    """A running hub server and its background tasks."""

    def __init__(self, config: ServerConfig, db: Database | None = None) -> None:
        if config.tls is None and not config.insecure:
            raise SystemExit(
                "refusing to start without TLS: pass --tls-cert/--tls-key/--tls-client-ca, "
                "or --insecure for development (caller identity from metadata)"
            )
        if config.insecure and not is_loopback(config.host):
            raise SystemExit(insecure_host_refusal(config.host))
        if config.health_port and config.health_port == config.port:
            raise SystemExit(f"--health-port {config.health_port} is the gRPC --port")
        unknown = set(config.only) - set(SERVICES)
        if unknown:
            raise SystemExit(f"unknown services {sorted(unknown)}; choose from {SERVICES}")
        self.config = config
        self.db = db or Database(config.db_url)
        faults.install_from_env(self.db)
        self.engine: NettingEngine | None = None
        self.feed: FeedReader | None = None
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.health_server: grpc.aio.Server | None = None
        self.health_port = 0
        self._health = health.aio.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        # What the engine, the servicers and the background loops report
        # happened becomes the hub's metrics here, once.
        self.observer: Observer = MetricsObserver()

    async def start(self) -> int:
        cfg = self.config
        if cfg.migrate:
            await asyncio.to_thread(migrate.upgrade_at_start, self.db)
        if "fx" in cfg.only and cfg.rates_file:
            # Before anything starts: a bad rates file stops the start-up
            # with nothing running.
            rows = fx.load_rates_file(Path(cfg.rates_file))
            # A rate the database holds newer (the feed updated it since the
            # file was written) is kept, not replaced by the file's.
            await asyncio.to_thread(partial(fx.update_rates, keep_newer=True), self.db, rows)
        resolver: IdentityResolver = (
            InsecureMetadataResolver() if cfg.tls is None else CertificateResolver()
        )
        server = grpc.aio.server(
            interceptors=[HubInterceptor(resolver, ROLES, provider_methods=PROVIDER_METHODS)],
            options=[
                # Message sizes, connection age and the keepalive policy.
                *limits.server_options(),
                # Streams (calls) in flight per connection: beyond it a client
                # queues its calls instead of the server holding them all.
                ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
                # gRPC sets SO_REUSEPORT by default: a second hub started on a
                # port in use would bind it too and take a share of its
                # connections. Starting fails instead.
                ("grpc.so_reuseport", 0),
            ],
        )
        names: list[str] = []
        if "participants" in cfg.only:
            participants_pb2_grpc.add_ParticipantsServiceServicer_to_server(
                ParticipantsServicer(self.db), server
            )
            names.append(SERVICE_NAMES["participants"])
        if "clearing" in cfg.only:
            # The batch path reserves with the operator's default deadline.
            engine_config = replace(cfg.engine, default_timeout_ms=cfg.lifecycle.default_timeout_ms)
            self.engine = NettingEngine(self.db, engine_config, observer=self.observer)
            await self.engine.start()
            self.feed = FeedReader(self.db, cfg.watch)
            await self.feed.start()
            clearing_pb2_grpc.add_ClearingServiceServicer_to_server(
                ClearingServicer(
                    self.db, self.engine, self.feed, self.observer, lifecycle=cfg.lifecycle
                ),
                server,
            )
            names.append(SERVICE_NAMES["clearing"])
            iso20022_pb2_grpc.add_Iso20022ServiceServicer_to_server(
                Iso20022Servicer(
                    self.db, self.engine, self.feed, self.observer, lifecycle=cfg.lifecycle
                ),
                server,
            )
            names.append(SERVICE_NAMES["iso20022"])
        if "fx" in cfg.only:
            fx_pb2_grpc.add_FxServiceServicer_to_server(
                FxServicer(self.db, cfg.fx, self.observer), server
            )
            names.append(SERVICE_NAMES["fx"])
        if "netting" in cfg.only:
            netting_pb2_grpc.add_NettingServiceServicer_to_server(
                NettingServicer(self.db, self.observer, engine=self.engine, feed=self.feed),
                server,
            )
            names.append(SERVICE_NAMES["netting"])
        if "settlement" in cfg.only:
            settlement_pb2_grpc.add_SettlementServiceServicer_to_server(
                SettlementServicer(self.db, self.observer), server
            )
            names.append(SERVICE_NAMES["settlement"])
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        # Reflection in both versions, each listing both.
        listed = [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
            REFLECTION_V1,
        ]
        reflection.enable_server_reflection(listed, server)
        add_reflection_v1(listed, server)
        address = f"{cfg.host}:{cfg.port}"
        if cfg.tls is None:
            self.port = server.add_insecure_port(address)
        else:
            creds = grpc.ssl_server_credentials(
                [(_read(cfg.tls.key_file), _read(cfg.tls.cert_file))],
                root_certificates=_read(cfg.tls.client_ca_file),
                require_client_auth=True,
            )
            self.port = server.add_secure_port(address, creds)
        await server.start()
        self.server = server
        for name in names:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        if cfg.health_port is not None:
            # Only once the main server listens: the servicer has said SERVING
            # for "" since its creation, so an earlier listener would pass the
            # probes too soon.
            self.health_server, self.health_port = await self._start_health_server(
                f"{cfg.host}:{cfg.health_port}"
            )
        if cfg.metrics_port is not None:
            start_http_server(cfg.metrics_port, addr=cfg.host)
        metrics.BUILD_INFO.info({"version": "0.1.0", "services": ",".join(cfg.only)})
        metrics.CYCLE_SCHEDULE.set(cfg.cycle_seconds)
        metrics.precreate()
        # The gauges collector: in the processes that close or settle cycles
        # (they also count those per currency, pre-created at zero from the
        # currencies the collector reads). Clearing replicas set no gauges.
        if {"netting", "settlement"} & set(cfg.only):
            self._spawn(self._gauges_loop(), "gauges")
        if "clearing" in cfg.only:
            self._spawn(self._expiry_loop(), "expirer")
        if "netting" in cfg.only and cfg.cycle_seconds > 0:
            self._spawn(self._schedule_loop(), "cycle-schedule")
        if "settlement" in cfg.only and cfg.auto_settle:
            self._spawn(self._settle_loop(), "auto-settle")
        log.info("remitnet serving %s on %s:%d", ",".join(cfg.only), cfg.host, self.port)
        return self.port

    async def _start_health_server(self, address: str) -> tuple[grpc.aio.Server, int]:
        """Plaintext, grpc.health.v1 only: no other service, no reflection, no
        identity. Shares the main server's HealthServicer, so per-service
        status and NOT_SERVING during shutdown show here too."""
        server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", 4096), ("grpc.so_reuseport", 0)]
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        port = server.add_insecure_port(address)
        await server.start()
        log.info("grpc.health.v1 (plaintext, health only) on %s, port %d", address, port)
        return server, port

    def _spawn(self, coro: object, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))  # type: ignore[arg-type]

    async def stop(self) -> None:
        """Graceful: report NOT_SERVING, stop taking calls, let in-flight calls
        finish (the engine commits what they queued), then stop the engine.
        The health listener stops after the main server, so probes see
        NOT_SERVING (not a refused connection) while it drains."""
        await self._health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.feed is not None:
            self.feed.close_streams()
        if self.server is not None:
            await self.server.stop(self.config.grace_s)
        if self.health_server is not None:
            await self.health_server.stop(1.0)
        if self.engine is not None:
            await self.engine.stop()
        if self.feed is not None:
            await self.feed.stop()
        self.db.dispose()

    async def wait(self) -> None:
        assert self.server is not None
        await self.server.wait_for_termination()

    async def _schedule_loop(self) -> None:
        period = self.config.cycle_seconds
        while True:
            await asyncio.sleep(min(1.0, period / 4))
            try:
                for cycle in await asyncio.to_thread(cycles.open_cycles, self.db):
                    if time.time() - cycle.opened_at.timestamp() >= period:
                        closed, opened = await asyncio.to_thread(
                            partial(cycles.close_cycle, expected=cycle.id), self.db, cycle.currency
                        )
                        self.observer.observe(CycleClosed.of(closed, opened, "schedule"))
            except RemitnetError as exc:
                log.warning("scheduled close failed: %s", exc)
            except Exception:
                log.exception("scheduled close failed")

    async def _settle_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                for cycle in await asyncio.to_thread(cycles.unsettled, self.db):
                    started = time.perf_counter()
                    result = await asyncio.to_thread(settlement.settle_cycle, self.db, cycle.id)
                    seconds = time.perf_counter() - started
                    self.observer.observe(CycleSettled.of(result, seconds))
            except Exception:
                log.exception("auto-settle failed")

    async def _expiry_loop(self) -> None:
        """Expire reservations and recalls past their deadline, with no
        request arriving: every expiry_interval_s, from the database's state
        (so after a restart everything overdue is expired once, and several
        hub processes may run this: a row expired is no longer due), a
        transaction of at most expiry_batch rows each after the other until
        one finds fewer. On the netting thread, between batches."""
        assert self.engine is not None and self.feed is not None
        engine, feed = self.engine, self.feed
        cfg = self.config.lifecycle
        expire = partial(lifecycle.expire_due, self.db, limit=cfg.expiry_batch)
        while True:
            await asyncio.sleep(cfg.expiry_interval_s)
            try:
                while True:
                    started = time.perf_counter()
                    result = await engine.run_serial(expire)
                    if not (result.transfers or result.recalls):
                        break
                    log.debug(
                        "expired %d reservations, %d recalls", result.transfers, result.recalls
                    )
                    seconds = time.perf_counter() - started
                    self.observer.observe(ExpiryRan.of(result, seconds))
                    feed.poke()
                    if max(result.transfers, result.recalls) < cfg.expiry_batch:
                        break
            except RemitnetError as exc:  # the database is away, shutting down, ...
                log.warning("expiry failed: %s", exc)
            except Exception:
                log.exception("expiry failed")

    async def _gauges_loop(self) -> None:
        """Gauges that describe the database, not this process: refreshed
        from it, so any replica reports the same values."""
        await collector.run(self.db)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    hub = Hub(config)
    await hub.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight calls (grace %.0fs)", config.grace_s)
    await hub.stop()
    log.info("stopped")


def parse_services(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return tuple(out) or SERVICES
