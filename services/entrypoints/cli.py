"""`remitnet`: run the hub, migrate its database, and act as the operator or
a bank against a running hub."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.operator import OperatorClient
from remitnet.services.domain.errors import RemitnetError
from remitnet.services.domain.money import Money
from remitnet.services.entrypoints.server import (
    SERVICES,
    ServerConfig,
    TlsConfig,
    parse_services,
    serve,
)
from remitnet.services.service_layer.engine import EngineConfig
from remitnet.services.service_layer.fx import FxConfig

DEFAULT_DB = os.environ.get("REMITNET_DB_URL", "sqlite:///remitnet.db")
DEFAULT_TARGET = os.environ.get("REMITNET_TARGET", "127.0.0.1:50051")


def _print(message: Message | list[Message]) -> None:
    if isinstance(message, list):
        out: Any = [MessageToDict(m, preserving_proto_field_name=True) for m in message]
    else:
        out = MessageToDict(message, preserving_proto_field_name=True)
    print(json.dumps(out, indent=2))


def _minor(currency: str, amount: str) -> int:
    return Money.parse(currency, amount).minor_units


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remitnet", description=__doc__)
    p.add_argument("--target", default=DEFAULT_TARGET, help="hub address (client commands)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the hub")
    s.add_argument(
        "--db", default=DEFAULT_DB, help="sqlite:///file, postgresql://..., cockroachdb://..."
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=50051)
    s.add_argument("--metrics-port", type=int, default=9464, help="-1 disables /metrics")
    s.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="also serve grpc.health.v1 alone, in plaintext, on this port "
        "(for kubelet's gRPC probes when --port is mTLS); off by default",
    )
    s.add_argument("--only", action="append", default=[], help=f"subset of {','.join(SERVICES)}")
    s.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, caller identity from x-remitnet-principal metadata (dev only)",
    )
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    s.add_argument("--tls-client-ca")
    s.add_argument("--no-migrate", action="store_true", help="do not upgrade the schema at start")
    s.add_argument(
        "--cycle-seconds",
        type=float,
        default=0.0,
        help="close every currency's cycle this often (0: on demand only)",
    )
    s.add_argument("--auto-settle", action="store_true", help="settle closed cycles at once")
    s.add_argument("--max-batch", type=int, default=EngineConfig().max_batch)
    s.add_argument("--grace", type=float, default=10.0, help="seconds to drain on SIGTERM")
    s.add_argument("--fx-rates", help="CSV or JSON file of mid rates loaded at start")
    s.add_argument("--fx-spread-bps", type=int, default=FxConfig().default_spread_bps)
    s.add_argument(
        "--fx-corridor",
        action="append",
        default=[],
        help="per-corridor spread, e.g. USD:PHP=75 (basis points)",
    )
    s.add_argument("--fx-quote-ttl", type=float, default=60.0, help="quote validity, seconds")
    s.add_argument(
        "--fx-max-rate-age",
        type=float,
        default=600.0,
        help="refuse quotes on rates older than this, seconds",
    )
    s.add_argument("--fx-base", default="USD", help="currency cross rates go through")

    d = sub.add_parser("db", help="database schema")
    d.add_argument("action", choices=["upgrade", "current"])
    d.add_argument("--db", default=DEFAULT_DB)
    d.add_argument(
        "--regions",
        default=os.environ.get("REMITNET_DB_REGIONS", ""),
        help="CockroachDB only: comma-separated regions, primary first",
    )

    o = sub.add_parser("onboard", help="operator: create a bank")
    o.add_argument("code")
    o.add_argument("--name", required=True)
    o.add_argument("--region", required=True)
    o.add_argument("--currency", action="append", default=[])

    f = sub.add_parser("fund", help="operator: deposit prefunded liquidity")
    f.add_argument("code")
    f.add_argument("currency")
    f.add_argument("amount", help="major units, e.g. 1000.00")
    f.add_argument("--id", help="deposit UUID (idempotency key)")

    w = sub.add_parser("withdraw", help="operator: withdraw liquidity")
    w.add_argument("code")
    w.add_argument("currency")
    w.add_argument("amount")
    w.add_argument("--id")

    c = sub.add_parser("cap", help="operator: set a net debit cap")
    c.add_argument("code")
    c.add_argument("currency")
    c.add_argument("amount")

    for name in ("suspend", "resume", "bank"):
        b = sub.add_parser(name, help=f"operator: {name} a bank")
        b.add_argument("code")
    sub.add_parser("banks", help="operator: list banks")

    t = sub.add_parser("submit", help="bank: submit a transfer")
    t.add_argument("--as", dest="bank", required=True)
    t.add_argument("--to", dest="creditor", required=True)
    t.add_argument("currency")
    t.add_argument("amount")
    t.add_argument("--id", help="transfer UUID (UETR); generated if absent")
    t.add_argument("--info", default="")

    st = sub.add_parser("status", help="bank: show a transfer")
    st.add_argument("--as", dest="bank", required=True)
    st.add_argument("transfer_id")

    x = sub.add_parser("cancel", help="bank: cancel a transfer in an open cycle")
    x.add_argument("--as", dest="bank", required=True)
    x.add_argument("transfer_id")

    cy = sub.add_parser("cycles", help="list settlement cycles")
    cy.add_argument("--currency", default="")
    g = sub.add_parser("cycle", help="show one cycle with its net positions")
    g.add_argument("cycle_id")
    cl = sub.add_parser("close", help="operator: close the open cycle of a currency")
    cl.add_argument("currency")
    se = sub.add_parser("settle", help="operator: settle a closed cycle")
    se.add_argument("cycle_id")
    sm = sub.add_parser("statement", help="a bank's statement in a currency")
    sm.add_argument("--as", dest="bank", help="as this bank (default: operator)")
    sm.add_argument("code")
    sm.add_argument("currency")
    sub.add_parser("ledger", help="operator: per-currency ledger totals (all zero)")
    rc = sub.add_parser("reconcile", help="operator: a cycle's reconciliation report")
    rc.add_argument("cycle_id")
    return p


def _corridors(values: list[str]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for value in values:
        pair, _, bps = value.partition("=")
        source, _, target = pair.partition(":")
        out[(source.upper(), target.upper())] = int(bps)
    return out


def _serve(args: argparse.Namespace) -> int:
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        tls = TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca)
    config = ServerConfig(
        db_url=args.db,
        host=args.host,
        port=args.port,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        health_port=args.health_port,
        only=parse_services(args.only),
        insecure=args.insecure,
        tls=tls,
        migrate=not args.no_migrate,
        cycle_seconds=args.cycle_seconds,
        auto_settle=args.auto_settle,
        grace_s=args.grace,
        engine=EngineConfig(max_batch=args.max_batch),
        fx=FxConfig(
            base_currency=args.fx_base,
            default_spread_bps=args.fx_spread_bps,
            corridor_spread_bps=_corridors(args.fx_corridor),
            quote_ttl=timedelta(seconds=args.fx_quote_ttl),
            max_rate_age=timedelta(seconds=args.fx_max_rate_age),
        ),
        rates_file=args.fx_rates,
    )
    asyncio.run(serve(config))
    return 0


def _db(args: argparse.Namespace) -> int:
    from remitnet.services.adapters.db import migrate
    from remitnet.services.adapters.db.database import Database

    db = Database(args.db)
    if args.action == "upgrade":
        migrate.upgrade(db, regions=args.regions)
    print(migrate.current(db))
    return 0


async def _client_command(args: argparse.Namespace) -> None:
    cfg = ClientConfig(target=args.target)
    cmd = args.command
    if cmd in ("submit", "status", "cancel") or (cmd == "statement" and args.bank):
        async with BankClient(args.bank, cfg) as bank:
            if cmd == "submit":
                item = instruction(
                    args.creditor,
                    args.currency,
                    _minor(args.currency, args.amount),
                    transfer_id=args.id,
                    remittance_info=args.info,
                )
                _print(await bank.submit(item))
            elif cmd == "status":
                _print(await bank.get(args.transfer_id))
            elif cmd == "cancel":
                _print(await bank.cancel(args.transfer_id))
            else:
                _print(await bank.statement(args.currency))
        return
    async with OperatorClient(cfg) as op:
        actions: dict[str, Callable[[], Awaitable[Any]]] = {
            "onboard": lambda: op.create_bank(args.code, args.name, args.region, args.currency),
            "fund": lambda: op.deposit(
                args.code, args.currency, _minor(args.currency, args.amount), args.id
            ),
            "withdraw": lambda: op.withdraw(
                args.code, args.currency, _minor(args.currency, args.amount), args.id
            ),
            "cap": lambda: op.set_cap(args.code, args.currency, _minor(args.currency, args.amount)),
            "suspend": lambda: op.suspend(args.code),
            "resume": lambda: op.resume(args.code),
            "bank": lambda: op.get_bank(args.code),
            "banks": op.list_banks,
            "cycles": lambda: op.list_cycles(args.currency),
            "cycle": lambda: op.get_cycle(args.cycle_id),
            "close": lambda: op.close_cycle(args.currency),
            "settle": lambda: op.settle_cycle(args.cycle_id),
            "statement": lambda: op.statement(args.code, args.currency),
            "ledger": op.ledger_balance,
            "reconcile": lambda: op.reconciliation(args.cycle_id),
        }
        _print(await actions[cmd]())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "db":
            return _db(args)
        asyncio.run(_client_command(args))
        return 0
    except HubError as err:
        print(f"error: {err.code.name} {err.reason}: {err.message}", file=sys.stderr)
        return 1
    except RemitnetError as err:
        print(f"error: {err.reason}: {err.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
