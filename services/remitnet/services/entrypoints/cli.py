"""`remitnet`: run the hub, migrate its database, and act as the operator or
a bank against a running hub."""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients import format as fmt
from remitnet.clients.bank import BankClient, acceptance, instruction, rejection
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.iso20022 import Iso20022Client
from remitnet.clients.operator import (
    HUB_MAX_STREAMS,
    ONBOARD_IN_FLIGHT,
    Onboarding,
    OperatorClient,
)
from remitnet.clients.provider import ProviderClient, rates_request
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.services.domain import lifecycle
from remitnet.services.domain.errors import InvalidArgument, Reason, RemitnetError
from remitnet.services.domain.money import Money
from remitnet.services.entrypoints import audit_cli
from remitnet.settlement.v1 import settlement_pb2 as spb

DEFAULT_DB = os.environ.get("REMITNET_DB_URL", "sqlite:///remitnet.db")
DEFAULT_TARGET = os.environ.get("REMITNET_TARGET", "127.0.0.1:50051")
DEFAULT_DEADLINE_S = 10.0

# Exit status of every command (documented in --help and the README).
EXIT_OK = 0
EXIT_REFUSED = 1  # the hub answered with an error status
EXIT_USAGE = 2  # bad arguments or input refused before anything was sent (argparse's 2)
EXIT_UNREACHABLE = 3  # no answer: UNAVAILABLE / DEADLINE_EXCEEDED without the hub's status

EPILOG = """\
output:
  Client commands print tables and "label  value" blocks: money in major units
  with its currency's decimals and thousands separators (100,000.00 USD), zeros
  shown, timestamps in UTC ISO 8601, statuses without their enum prefix.
  --json prints one JSON document instead: the answer with every field, zeros
  included, names as in the .proto files, money as minor units plus currency
  (int64 values as strings, enums by full name: the proto3 JSON mapping).

exit status:
  0  done
  1  refused: the hub answered with an error status. stderr has one line,
     "refused: CODE REASON key=value ...: message", e.g.
     refused: FAILED_PRECONDITION INSUFFICIENT_LIQUIDITY bank=BANKUS01 currency=USD: ...
  2  bad arguments, or input refused before anything was sent ("invalid: ...",
     e.g. an amount with more decimals than its currency has)
  3  unreachable: no answer from the hub (UNAVAILABLE or DEADLINE_EXCEEDED with
     no status from the hub, after --deadline; "unreachable: ..."). A change may
     or may not have been applied; submit, fund, withdraw, return, recall and
     answer-recall --accept name the id they sent, and repeating the command
     with that --id is safe (confirm and require-confirmation are safe to
     repeat as they are).
  With --json, an error is also written to stdout as {"error": {"outcome": ...,
  "code": ..., "reason": ..., "metadata": {...}, "message": ...}}.
"""

Handler = Callable[["Session", argparse.Namespace], Awaitable[Message]]
# `--as fxp:CODE`: act as FX provider CODE.
PROVIDER_PREFIX = "fxp:"
# `--as operator` (where a command takes a bank or the operator): the operator.
OPERATOR = "operator"


class Session:
    """The clients one command uses, opened on first use."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._operator: OperatorClient | None = None
        self._banks: dict[str, BankClient] = {}
        self._providers: dict[str, ProviderClient] = {}

    def operator(self) -> OperatorClient:
        if self._operator is None:
            self._operator = OperatorClient(self.config)
        return self._operator

    def bank(self, code: str) -> BankClient:
        if code not in self._banks:
            self._banks[code] = BankClient(code, self.config)
        return self._banks[code]

    def provider(self, code: str) -> ProviderClient:
        if code not in self._providers:
            self._providers[code] = ProviderClient(code, self.config)
        return self._providers[code]

    def acting(self, bank: str | None) -> OperatorClient | BankClient | ProviderClient:
        """As the bank given with --as (an FX provider: --as fxp:CODE), else
        as the operator."""
        if bank and bank.startswith(PROVIDER_PREFIX):
            return self.provider(bank.removeprefix(PROVIDER_PREFIX))
        return self.bank(bank) if bank else self.operator()

    async def close(self) -> None:
        for client in [self._operator, *self._banks.values(), *self._providers.values()]:
            if client is not None:
                await client.close()


def _minor(currency: str, amount: str) -> int:
    return Money.parse(currency, amount).minor_units


def _idempotency_key(args: argparse.Namespace, what: str) -> str:
    """The id a mutating command sends (given with --id, or new), kept for
    the hint an unanswered call prints."""
    key: str = args.id or str(uuid.uuid4())
    args.hint = f"{what} id {key}: repeating the command with --id {key} is safe"
    return key


# -- commands: each returns the answer message; main prints it -------------


async def _onboard(s: Session, a: argparse.Namespace) -> Message:
    roles: list[ppb.ParticipantRole.ValueType] = []
    if a.bank_role or not a.provider:
        roles.append(ppb.PARTICIPANT_ROLE_BANK)
    if a.provider:
        roles.append(ppb.PARTICIPANT_ROLE_FX_PROVIDER)
    return await s.operator().create_bank(
        a.code, a.name, a.region, a.currency, roles=roles,
        requires_confirmation=a.require_confirmation, bic=a.bic,
    )  # fmt: skip


# onboard-file's CSV columns: these first, then any of the optional ones.
ONBOARD_COLUMNS = ("code", "name", "region", "currencies")
ONBOARD_OPTIONAL = ("fund", "bic")
ONBOARD_FILE_HELP = """\
The CSV file has a header row naming its columns, in any order:
  code        participant code, e.g. BANKUS01
  name        its name
  region      its home region, e.g. us-east1
  currencies  the currencies it holds an account in, space-separated: "USD EUR"
  fund        (optional) its initial funding, space-separated CURRENCY=AMOUNT in
              major units: "USD=1000000.00 EUR=250000"; each a currency it holds
  bic         (optional) its BIC (ISO 9362), as onboard --bic
The file's columns and amounts are checked before anything is sent (exit 2,
naming the row); the hub checks the rest. Banks go a window at a time
(--in-flight), each one's deposits right after its own creation. Repeating the
file is safe: a bank already onboarded as its row says is left as it is, and
each deposit's id is derived from its bank and currency, so it is made once.
A refused row is reported on stderr ("row N CODE: refused: ...") and the others
go on; the exit status is then 1.
"""


def _onboard_rows(path: str) -> list[Onboarding]:
    """onboard-file's rows, every one checked (exit 2 before anything is
    sent, naming the row)."""
    try:
        with sys.stdin if path == "-" else open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, skipinitialspace=True))
            header = [c.strip() for c in rows[0]] if rows else []
    except OSError as exc:
        raise _invalid("FILE", f"cannot be read: {exc.strerror}") from None
    missing = [c for c in ONBOARD_COLUMNS if c not in header]
    unknown = [c for c in header if c not in ONBOARD_COLUMNS + ONBOARD_OPTIONAL]
    if not rows:
        raise _invalid("FILE", "has no rows (a header and a row per bank)")
    if missing:
        raise _invalid("FILE", f"lacks the columns {', '.join(missing)}")
    if unknown:
        raise _invalid("FILE", f"has columns onboard-file does not know: {', '.join(unknown)}")
    out: list[Onboarding] = []
    for n, raw in enumerate(rows, start=2):  # row 1 is the header
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        currencies = row["currencies"].split()
        deposits: dict[str, int] = {}
        for item in row.get("fund", "").split():
            currency, _, amount = item.partition("=")
            if currency not in currencies or not amount or currency in deposits:
                raise _invalid(
                    "FILE", f"row {n}: fund {item!r} is not CURRENCY=AMOUNT of its currencies, once"
                )
            try:
                deposits[currency] = _minor(currency, amount)
            except RemitnetError as err:
                raise _invalid("FILE", f"row {n}: fund {item!r}: {err.message}") from None
        bank = Onboarding(
            row["code"], row["name"], row["region"], currencies, deposits, bic=row.get("bic", "")
        )
        out.append(bank)
    return out


async def _onboard_file(s: Session, a: argparse.Namespace) -> Message:
    if not 1 <= a.in_flight <= HUB_MAX_STREAMS:
        raise _invalid("--in-flight", f"must be between 1 and {HUB_MAX_STREAMS}")
    banks = _onboard_rows(a.file)
    answers = await s.operator().onboard_many(banks, in_flight=a.in_flight)
    refused = [
        (n, b, err)
        for n, (b, err) in enumerate(zip(banks, answers, strict=True), start=2)
        if isinstance(err, HubError)
    ]
    for n, b, err in refused:
        print(f"row {n} {b.code}: {fmt.error_line(err)}", file=sys.stderr)
    if refused:
        n, b, first = refused[0]
        raise HubError(
            first.code,
            first.reason,
            f"{len(refused)} of {len(banks)} rows refused (the first: row {n} {b.code}); "
            "the others are onboarded, and repeating the file is safe",
            first.metadata,
        )
    return ppb.ListBanksResponse(banks=[b for b in answers if isinstance(b, ppb.Bank)])


async def _require_confirmation(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().set_confirmation_required(a.code, not a.off)


async def _fund(s: Session, a: argparse.Namespace) -> Message:
    minor = _minor(a.currency, a.amount)
    return await s.operator().deposit(a.code, a.currency, minor, _idempotency_key(a, "deposit"))


async def _withdraw(s: Session, a: argparse.Namespace) -> Message:
    minor = _minor(a.currency, a.amount)
    key = _idempotency_key(a, "withdrawal")
    return await s.operator().withdraw(a.code, a.currency, minor, key)


async def _cap(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().set_cap(a.code, a.currency, _minor(a.currency, a.amount))


async def _suspend(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().suspend(a.code)


async def _resume(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().resume(a.code)


async def _bank(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().get_bank(a.code)


async def _banks(s: Session, a: argparse.Namespace) -> Message:
    return ppb.ListBanksResponse(banks=await s.operator().list_banks())


async def _submit(s: Session, a: argparse.Namespace) -> Message:
    minor = _minor(a.currency, a.amount)
    tid = _idempotency_key(a, "transfer")
    item = instruction(a.creditor, a.currency, minor, transfer_id=tid, remittance_info=a.info)
    if a.timeout is not None and a.timeout <= 0:
        raise _invalid("--timeout", "must be a positive number of seconds")
    return await s.bank(a.bank).submit(
        item, require_confirmation=a.confirm, confirmation_timeout=a.timeout
    )


async def _status(s: Session, a: argparse.Namespace) -> Message:
    return await s.bank(a.bank).get(a.transfer_id)


async def _position(s: Session, a: argparse.Namespace) -> Message:
    client = s.acting(a.bank)  # a bank, or an FX provider (--as fxp:CODE)
    assert not isinstance(client, OperatorClient)
    return await client.position(a.currency)


async def _watch(s: Session, a: argparse.Namespace) -> Message:
    """The bank's status events, until --count of them or --seconds of
    quiet; the last event's resume_token continues where this stopped."""
    since = datetime.fromisoformat(a.since) if a.since else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    out = cpb.WatchTransfersResponse()
    stream = s.bank(a.bank).watch(a.token, since=since).__aiter__()
    while len(out.events) < a.count:
        try:
            event = await asyncio.wait_for(stream.__anext__(), a.seconds)
        except (TimeoutError, StopAsyncIteration):
            break
        out.events.append(event)
    return out


def _invalid(field: str, why: str) -> RemitnetError:
    from remitnet.services.domain.errors import InvalidArgument, Reason

    return InvalidArgument(Reason.INVALID_ARGUMENT, f"{field} {why}", field=field.lstrip("-"))


def _as_operator(bank: str | None) -> bool:
    return not bank or bank == OPERATOR


async def _cancel(s: Session, a: argparse.Namespace) -> Message:
    """The debtor cancels its RESERVED transfer; the operator (no --as, or
    --as operator) cancels a reserved or netted one with a reason."""
    if _as_operator(a.bank):
        if not a.reason:
            raise _invalid("--reason", "is required when the operator cancels a transfer")
        return await s.operator().cancel_transfer(a.transfer_id, a.reason)
    if a.reason:
        raise _invalid("--reason", "is the operator's: a bank cancels without one")
    return await s.bank(a.bank).cancel(a.transfer_id)


async def _confirm(s: Session, a: argparse.Namespace) -> Message:
    """One transfer: ConfirmTransfer; several: one ConfirmTransfers call."""
    bank = s.bank(a.bank)
    if len(a.transfer_ids) == 1:
        (tid,) = a.transfer_ids
        return await bank.confirm(tid, accept=a.reject is None, reason=a.reject or "")
    answers = [
        acceptance(tid) if a.reject is None else rejection(tid, a.reject) for tid in a.transfer_ids
    ]
    return await bank.confirm_many(answers)


async def _return(s: Session, a: argparse.Namespace) -> Message:
    key = _idempotency_key(a, "return")
    return await s.bank(a.bank).return_transfer(
        a.transfer_id, a.reason, return_id=key, quote_id=a.quote, remittance_info=a.info
    )


async def _recall(s: Session, a: argparse.Namespace) -> Message:
    key = _idempotency_key(a, "recall")
    return await s.bank(a.bank).recall(
        a.transfer_id, a.reason, recall_id=key, additional_info=a.info
    )


async def _answer_recall(s: Session, a: argparse.Namespace) -> Message:
    if a.reject is not None:
        if a.quote or a.id:
            raise _invalid("--reject", "takes no --quote or --id (nothing is returned)")
        return await s.bank(a.bank).answer_recall(a.transfer_id, accept=False, reason=a.reject)
    key = _idempotency_key(a, "return")
    return await s.bank(a.bank).answer_recall(
        a.transfer_id, accept=True, return_id=key, quote_id=a.quote
    )


TRANSFER_STATUSES = {
    fmt.enum_name(cpb.TransferStatus, v.number).lower(): cpb.TransferStatus.ValueType(v.number)
    for v in cpb.TransferStatus.DESCRIPTOR.values
    if v.number
}
RECALL_STATES = {
    fmt.enum_name(cpb.RecallState, v.number).lower(): cpb.RecallState.ValueType(v.number)
    for v in cpb.RecallState.DESCRIPTOR.values
    if v.number
}
TRANSFER_KINDS = {"payment": cpb.TRANSFER_KIND_PAYMENT, "return": cpb.TRANSFER_KIND_RETURN}


async def _iso20022(s: Session, a: argparse.Namespace) -> Message:
    """`iso20022 submit FILE` (a pacs.008; prints the pacs.002),
    `iso20022 status UETR...` (a pacs.028 built here; prints the pacs.002),
    `iso20022 statement CCY` (prints the camt.053) and `iso20022
    notifications CCY` (prints the camt.054)."""
    if a.iso_command == "submit":
        try:
            document = await asyncio.to_thread(Path(a.file).read_bytes)
        except OSError as err:
            raise InvalidArgument(
                Reason.INVALID_ARGUMENT, f"cannot read {a.file}: {err.strerror}"
            ) from None
        # A repeated MsgId is answered as the first time: repeating is safe.
        a.hint = f"the same file again is safe (its MsgId is the idempotency key): {a.file}"
    client = Iso20022Client(a.bank, s.config)
    try:
        if a.iso_command == "submit":
            return await client.submit_pacs008(document)
        if a.iso_command == "statement":
            return await client.statement(
                a.currency.upper(),
                cycle_id=a.cycle,
                from_date=a.from_date,
                to_date=a.to_date,
                after_sequence=a.after,
            )
        if a.iso_command == "notifications":
            return await client.notifications(a.currency.upper(), a.after)
        return await client.status(a.uetr)
    finally:
        await client.close()


# `remitnet iso20022 ACTION FILE.xml` for returns and recalls: which call
# each takes its document to.
ISO_LIFECYCLE_FILES = {
    "return": "submit_pacs004",
    "recall": "submit_camt056",
    "answer-recall": "submit_camt029",
}


async def _iso20022_lifecycle(s: Session, a: argparse.Namespace) -> Message:
    """`iso20022 return|recall|answer-recall FILE` (a pacs.004, camt.056 or
    camt.029; prints the pacs.002 or camt.029 answer) and `iso20022
    returns [UETR...]` (prints the pacs.004 of the returns received)."""
    client = Iso20022Client(a.bank, s.config)
    try:
        if a.iso_command == "returns":
            return await client.returns(a.uetr, a.limit)
        try:
            document = await asyncio.to_thread(Path(a.file).read_bytes)
        except OSError as err:
            raise InvalidArgument(
                Reason.INVALID_ARGUMENT, f"cannot read {a.file}: {err.strerror}"
            ) from None
        a.hint = f"the same file again is safe (its message id is the idempotency key): {a.file}"
        send: Callable[[bytes], Awaitable[Message]] = getattr(
            client, ISO_LIFECYCLE_FILES[a.iso_command]
        )
        return await send(document)
    finally:
        await client.close()


async def _transfers_list(s: Session, a: argparse.Namespace) -> Message:
    """One page, newest first; the filters combine."""
    return await s.bank(a.bank).list(
        status=TRANSFER_STATUSES.get(a.status or "", cpb.TRANSFER_STATUS_UNSPECIFIED),
        cycle_id=a.cycle,
        counterparty=a.counterparty,
        kind=TRANSFER_KINDS.get(a.kind or "", cpb.TRANSFER_KIND_UNSPECIFIED),
        returned_only=a.returned,
        recall_state=RECALL_STATES.get(a.recall or "", cpb.RECALL_STATE_UNSPECIFIED),
        page_size=a.limit,
        page_token=a.page_token,
    )


async def _quote(s: Session, a: argparse.Namespace) -> Message:
    """A quote from the named provider or the best one; the answer names
    the provider that won."""
    source, target = a.source_currency, a.target_currency
    bank = s.bank(a.bank)
    if a.sell is not None:
        quote = await bank.quote(
            source, target, source_amount=_minor(source, a.sell), provider=a.provider
        )
    else:
        quote = await bank.quote(
            source, target, target_amount=_minor(target, a.deliver), provider=a.provider
        )
    return fxpb.CreateQuoteResponse(quote=quote)


def _invalid_rate(text: str, why: str) -> RemitnetError:
    from remitnet.services.domain.errors import InvalidArgument, Reason

    return InvalidArgument(Reason.INVALID_RATE, f"{text!r}: {why}", field="rates")


def _inline_rates(
    items: list[str],
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], int]]:
    """BASE/QUOTE=RATE[@SPREAD_BPS] arguments (USD/PHP=56.10@40)."""
    rates: dict[tuple[str, str], str] = {}
    spreads: dict[tuple[str, str], int] = {}
    for item in items:
        pair, eq, rest = item.partition("=")
        base, slash, quote = pair.partition("/")
        mid, at, bps = rest.partition("@")
        if not (eq and slash and base and quote and mid) or (at and not bps.isdigit()):
            raise _invalid_rate(item, "write BASE/QUOTE=RATE or BASE/QUOTE=RATE@SPREAD_BPS")
        key = (base.strip().upper(), quote.strip().upper())
        if key in rates:
            raise _invalid_rate(item, f"{key[0]}/{key[1]} is given twice")
        rates[key] = mid.strip()
        if at:
            spreads[key] = int(bps)
    return rates, spreads


def _rates_request(a: argparse.Namespace) -> fxpb.UpdateRatesRequest:
    """A rates file (one argument naming a .csv or .json file, read as the
    hub reads --fx-rates, as_of per row) or BASE/QUOTE=RATE[@BPS] arguments
    observed at --as-of (default now)."""
    as_of = None
    if a.as_of:
        as_of = datetime.fromisoformat(a.as_of)
        if as_of.tzinfo is None:
            raise _invalid_rate(a.as_of, "--as-of needs its UTC offset (...Z or ...+00:00)")
    if len(a.rates) == 1 and "=" not in a.rates[0]:
        from pathlib import Path

        from remitnet.services.service_layer.fx import load_rates_file

        request = fxpb.UpdateRatesRequest()
        for row in load_rates_file(Path(a.rates[0])):
            rate = request.rates.add(base_currency=row[0], quote_currency=row[1], mid_rate=row[2])
            stamp = as_of or row[3]
            if stamp is not None:
                rate.as_of.FromDatetime(stamp)
            if len(row) == 5 and row[4] is not None:
                rate.spread_bps = row[4]
        return request
    rates, spreads = _inline_rates(a.rates)
    return rates_request(rates, as_of=as_of, spreads=spreads)


async def _rates_publish(s: Session, a: argparse.Namespace) -> Message:
    request = _rates_request(a)
    client = s.acting(a.bank)
    if isinstance(client, BankClient):
        raise _invalid_rate(a.bank, "rates are published by an FX provider (--as fxp:CODE) "
                            "or the operator (no --as)")  # fmt: skip
    request.provider = a.provider
    return await client.call(client.fx.UpdateRates, request)


async def _rates_list(s: Session, a: argparse.Namespace) -> Message:
    client = s.acting(a.bank)
    return await client.call(client.fx.ListRates, fxpb.ListRatesRequest(provider=a.provider))


CYCLE_STATES = {
    fmt.enum_name(npb.CycleState, v.number).lower(): npb.CycleState.ValueType(v.number)
    for v in npb.CycleState.DESCRIPTOR.values
    if v.number
}


async def _cycles(s: Session, a: argparse.Namespace) -> Message:
    state = CYCLE_STATES.get(a.state, npb.CYCLE_STATE_UNSPECIFIED)
    found = await s.operator().list_cycles(a.currency, state)
    return npb.ListCyclesResponse(cycles=found)


async def _cycle(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().get_cycle(a.cycle_id)


async def _close(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().close_cycle(a.currency)


async def _settle(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().settle_cycle(a.cycle_id)


async def _statement(s: Session, a: argparse.Namespace) -> Message:
    """Every page from --after on, as one statement: the first page's
    opening balance, all entries, the last page's closing balance."""
    client = s.acting(a.bank)
    request = spb.GetStatementRequest(bank_code=a.code, currency=a.currency, after_sequence=a.after)
    out = page = await client.call(client.settlement.GetStatement, request)
    while page.next_after_sequence:
        request.after_sequence = page.next_after_sequence
        page = await client.call(client.settlement.GetStatement, request)
        out.entries.extend(page.entries)
        out.closing_balance.CopyFrom(page.closing_balance)
    out.next_after_sequence = 0
    return out


async def _ledger(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().ledger_balance()


async def _reconcile(s: Session, a: argparse.Namespace) -> Message:
    return await s.operator().reconciliation(a.cycle_id)


# -- the command line ------------------------------------------------------


def _client_options(defaults: bool) -> argparse.ArgumentParser:
    """--target, --deadline and --json, accepted before the command and
    after it (`remitnet --json ledger` and `remitnet ledger --json`)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("hub and output")

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    g.add_argument(
        "--target",
        default=default(DEFAULT_TARGET),
        help="hub address, host:port (default: $REMITNET_TARGET or 127.0.0.1:50051)",
    )
    g.add_argument(
        "--deadline",
        type=float,
        default=default(DEFAULT_DEADLINE_S),
        metavar="SECONDS",
        help=f"give up on an unanswered call after this long (default {DEFAULT_DEADLINE_S:g})",
    )
    g.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document (every field, money in minor units) instead of tables",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="remitnet",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_client_options(defaults=True)],
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_client_options(defaults=False)]

    def client(name: str, help: str, handler: Handler) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help, parents=common)
        cmd.set_defaults(handler=handler, hint="")
        return cmd

    def as_bank(cmd: argparse.ArgumentParser, required: bool = True) -> None:
        cmd.add_argument(
            "--as",
            dest="bank",
            required=required,
            metavar="BANK",
            help="act as this bank" + ("" if required else " (default: as the operator)"),
        )

    s = sub.add_parser("serve", help="run the hub", description="Run the hub.")
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
    s.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only these services, comma-separated or repeated: participants, clearing, "
        "fx, netting, settlement (default: all)",
    )
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
    s.add_argument("--max-batch", type=int, default=None, help="largest netting batch")
    s.add_argument("--grace", type=float, default=10.0, help="seconds to drain on SIGTERM")
    s.add_argument(
        "--max-streams-per-bank",
        type=int,
        default=8,
        help="WatchTransfers streams one bank may hold open on this replica",
    )
    s.add_argument("--fx-rates", help="CSV or JSON file of mid rates loaded at start")
    s.add_argument("--fx-spread-bps", type=int, default=None, help="default FX spread")
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
    s.add_argument(
        "--confirmation-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a creditor has to confirm a reserved transfer unless it asks for less",
    )
    s.add_argument(
        "--max-confirmation-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="the longest confirmation timeout a transfer may ask for",
    )
    s.add_argument(
        "--recall-window",
        type=float,
        default=86_400.0,
        metavar="SECONDS",
        help="how long a creditor has to answer a recall",
    )

    d = sub.add_parser("db", help="database schema", description="Database schema.")
    d.add_argument("action", choices=["upgrade", "current"])
    d.add_argument("--db", default=DEFAULT_DB)
    d.add_argument(
        "--regions",
        default=os.environ.get("REMITNET_DB_REGIONS", ""),
        help="CockroachDB only: comma-separated regions, primary first",
    )
    audit_cli.add_parser(sub, DEFAULT_DB)

    o = client(
        "onboard",
        "operator: create a bank (or an FX provider: --provider) with its currency accounts",
        _onboard,
    )
    o.add_argument("code", help="participant code, e.g. BANKUS01")
    o.add_argument("--name", required=True)
    o.add_argument("--region", required=True, help="home region, e.g. us-east1")
    o.add_argument(
        "--currency", action="append", default=[], help="open an account in it (repeatable)"
    )
    o.add_argument(
        "--provider",
        action="store_true",
        help="an FX provider: funds conversions from its own liquidity and publishes its own "
        "rates (rates publish --as fxp:CODE); fund it in every currency it sells",
    )
    o.add_argument(
        "--bank",
        dest="bank_role",
        action="store_true",
        help="also a bank (the default without --provider): sends and receives transfers",
    )
    o.add_argument(
        "--require-confirmation",
        action="store_true",
        help="transfers to it await its confirmation (remitnet confirm) from the start",
    )
    o.add_argument(
        "--bic",
        default="",
        metavar="BICFI",
        help="its BIC (ISO 9362, e.g. BANKUS33): how ISO 20022 messages name it",
    )
    of = client(
        "onboard-file",
        "operator: onboard and fund the banks of a CSV file (a scheme's), many at a time",
        _onboard_file,
    )
    of.formatter_class = argparse.RawDescriptionHelpFormatter
    of.epilog = ONBOARD_FILE_HELP
    of.add_argument("file", metavar="FILE", help="the CSV file (- for stdin)")
    of.add_argument(
        "--in-flight",
        type=int,
        default=ONBOARD_IN_FLIGHT,
        metavar="N",
        help=f"banks being onboarded at a time, at most {HUB_MAX_STREAMS} "
        f"(default {ONBOARD_IN_FLIGHT})",
    )
    rq = client(
        "require-confirmation",
        "operator: make transfers to a bank await its confirmation (payee confirmation), "
        "or with --off net them at once again",
        _require_confirmation,
    )
    rq.add_argument("code", help="bank code")
    rq.add_argument("--off", action="store_true", help="no longer require confirmation")

    for name, what, handler, key in [
        ("fund", "deposit prefunded liquidity", _fund, "deposit"),
        ("withdraw", "withdraw liquidity", _withdraw, "withdrawal"),
    ]:
        f = client(name, f"operator: {what}", handler)
        f.add_argument("code", help="bank code")
        f.add_argument("currency")
        f.add_argument("amount", help="major units, e.g. 1000.00")
        f.add_argument("--id", help=f"{key} UUID (the idempotency key); new if absent")

    c = client("cap", "operator: set a bank's net debit cap in a currency", _cap)
    c.add_argument("code", help="bank code")
    c.add_argument("currency")
    c.add_argument("amount", help="major units, e.g. 25000.00")

    for name, what, handler in [
        ("suspend", "suspend a bank (its new transfers are refused)", _suspend),
        ("resume", "resume a suspended bank", _resume),
        ("bank", "show a bank and its accounts", _bank),
    ]:
        client(name, f"operator: {what}", handler).add_argument("code", help="bank code")
    client("banks", "operator: list banks and their accounts", _banks)

    t = client("submit", "bank: submit a transfer", _submit)
    as_bank(t)
    t.add_argument("--to", dest="creditor", required=True, metavar="BANK", help="creditor bank")
    t.add_argument("currency")
    t.add_argument("amount", help="major units, e.g. 125.50")
    t.add_argument("--id", help="transfer UUID (UETR, the idempotency key); new if absent")
    t.add_argument("--info", default="", help="remittance information")
    t.add_argument(
        "--confirm",
        action="store_true",
        help="await the creditor's confirmation: RESERVED until it accepts or rejects it "
        "(remitnet confirm) or the hub expires it (as for a creditor that requires it)",
    )
    t.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long the creditor has to confirm (implies --confirm; default: the hub's, "
        "30 s unless set otherwise; at most the hub's maximum)",
    )

    st = client("status", "bank: show a transfer", _status)
    as_bank(st)
    st.add_argument("transfer_id")

    po = client(
        "position",
        "bank or FX provider (--as fxp:CODE): balance, cap, unsettled net, headroom and "
        "open cycle per currency",
        _position,
    )
    as_bank(po)
    po.add_argument("currency", nargs="?", default="", help="one currency (default: all)")

    w = client("watch", "bank: follow the status stream (WatchTransfers)", _watch)
    as_bank(w)
    w.add_argument("--since", default="", help="replay from this UTC time (ISO 8601)")
    w.add_argument("--token", default="", help="resume after this event's resume_token")
    w.add_argument("--count", type=int, default=100, help="stop after this many events")
    w.add_argument("--seconds", type=float, default=5.0, help="stop after this long quiet")

    x = client(
        "cancel",
        "bank: cancel a transfer of its own awaiting confirmation (RESERVED); operator "
        "(no --as, or --as operator): cancel a reserved or netted one, with --reason",
        _cancel,
    )
    as_bank(x, required=False)
    x.add_argument("transfer_id")
    x.add_argument(
        "--reason", default="", help="operator: why (required; recorded with the transfer)"
    )

    cf = client(
        "confirm",
        "bank: accept (or --reject) transfers awaiting its confirmation, as their creditor",
        _confirm,
    )
    as_bank(cf)
    cf.add_argument("transfer_ids", nargs="+", metavar="TRANSFER_ID",
                    help="one, or several (one ConfirmTransfers call, a result each)")  # fmt: skip
    cf.add_argument(
        "--reject",
        metavar="REASON",
        help="reject with an ISO 20022 ExternalStatusReason1Code: "
        + ", ".join(sorted(lifecycle.REJECT_REASONS)),
    )

    rt = client(
        "return",
        "bank: return a transfer it received, whole (a transfer of its own, netted at once)",
        _return,
    )
    as_bank(rt)
    rt.add_argument("transfer_id", help="the transfer returned")
    rt.add_argument(
        "--reason",
        required=True,
        metavar="CODE",
        help="ISO 20022 ExternalReturnReason1Code: " + ", ".join(sorted(lifecycle.RETURN_REASONS)),
    )
    rt.add_argument("--quote", default="", metavar="QUOTE_ID",
                    help="a converted transfer: a NEW quote from what was received back "
                    "into the original's currency (remitnet quote)")  # fmt: skip
    rt.add_argument("--id", help="the return's UUID (the idempotency key); new if absent")
    rt.add_argument("--info", default="", help="remittance information for the original debtor")

    rl = client(
        "recall",
        "bank: ask the creditor of a transfer it sent for it back (answered within the "
        "hub's recall window, 24 h by default)",
        _recall,
    )
    as_bank(rl)
    rl.add_argument("transfer_id")
    rl.add_argument(
        "--reason",
        required=True,
        metavar="CODE",
        help="ISO 20022 ExternalCancellationReason1Code: "
        + ", ".join(sorted(lifecycle.RECALL_REASONS)),
    )
    rl.add_argument("--info", default="", help="additional information, at most 105 characters")
    rl.add_argument("--id", help="the recall's UUID (the idempotency key); new if absent")

    ar = client(
        "answer-recall",
        "bank: answer the recall of a transfer it received: --accept returns it, --reject refuses",
        _answer_recall,
    )
    as_bank(ar)
    ar.add_argument("transfer_id", help="the recalled transfer")
    answer = ar.add_mutually_exclusive_group(required=True)
    answer.add_argument("--accept", action="store_true",
                        help="return the transfer (return reason FOCR)")  # fmt: skip
    answer.add_argument(
        "--reject",
        metavar="CODE",
        help="ISO 20022 ExternalPaymentCancellationRejection1Code: "
        + ", ".join(sorted(lifecycle.RECALL_REJECT_REASONS)),
    )
    ar.add_argument(
        "--quote",
        default="",
        metavar="QUOTE_ID",
        help="--accept of a converted transfer: a NEW quote for the return",
    )
    ar.add_argument("--id", help="--accept: the return's UUID (the idempotency key); new if absent")

    qu = client(
        "quote",
        "bank: a locked FX quote, from the best FX provider (or --provider); it names the provider",
        _quote,
    )
    as_bank(qu)
    # Not `target`: that is --target, the hub's address.
    qu.add_argument("source_currency", metavar="SOURCE", help="the currency the bank pays")
    qu.add_argument("target_currency", metavar="TARGET", help="the currency the creditor receives")
    amount = qu.add_mutually_exclusive_group(required=True)
    amount.add_argument("--sell", metavar="AMOUNT", help="source amount, major units")
    amount.add_argument("--deliver", metavar="AMOUNT", help="target amount, major units")
    qu.add_argument("--provider", default="", help="quote from this FX provider only")

    ra = sub.add_parser("rates", help="FX rates: publish, list", description="FX rates.")
    rsub = ra.add_subparsers(dest="rates_command", required=True, metavar="ACTION")

    def rates_client(name: str, help: str, handler: Handler) -> argparse.ArgumentParser:
        cmd = rsub.add_parser(name, help=help, description=help, parents=common)
        cmd.set_defaults(handler=handler, hint="")
        cmd.add_argument(
            "--as",
            dest="bank",
            metavar="fxp:CODE",
            help="act as FX provider CODE (default: as the operator)",
        )
        return cmd

    rp = rates_client(
        "publish",
        "FX provider or operator: set a provider's mid rates, all or nothing",
        _rates_publish,
    )
    rp.add_argument(
        "rates",
        nargs="+",
        metavar="FILE|BASE/QUOTE=RATE[@BPS]",
        help="a CSV or JSON rates file (as --fx-rates), or pairs such as USD/PHP=56.10@40 "
        "(@BPS: the provider's spread in basis points; without it the hub's corridor spread)",
    )
    rp.add_argument("--as-of", default="", help="when the rates were observed, ISO 8601 "
                    "with offset (default now; overrides a file's as_of)")  # fmt: skip
    rp.add_argument(
        "--provider",
        default="",
        help="operator: whose rates (default FXHUB, the hub's default provider)",
    )
    rl = rates_client("list", "the stored rates, per provider", _rates_list)
    rl.add_argument("--provider", default="", help="only this provider's")

    tr = sub.add_parser("transfers", help="a bank's transfers: list", description="Transfers.")
    tsub = tr.add_subparsers(dest="transfers_command", required=True, metavar="ACTION")
    tl = tsub.add_parser(
        "list",
        help="bank: its transfers (as debtor or creditor), newest first; filters combine",
        description="A bank's transfers (as debtor or creditor), newest first; the filters "
        "combine. --status reserved lists those awaiting confirmation (as creditor: those to "
        "answer with remitnet confirm); --recall requested the recalls to answer.",
        parents=common,
    )
    tl.set_defaults(handler=_transfers_list, hint="")
    as_bank(tl)
    tl.add_argument("--status", choices=list(TRANSFER_STATUSES), help="only in this status")
    tl.add_argument("--kind", choices=list(TRANSFER_KINDS), help="payments or returns only")
    tl.add_argument("--returned", action="store_true", help="only transfers that were returned")
    tl.add_argument("--recall", choices=list(RECALL_STATES),
                    help="only transfers whose recall is in this state")  # fmt: skip
    tl.add_argument("--counterparty", default="", metavar="BANK", help="only with this bank")
    tl.add_argument("--cycle", default="", metavar="CYCLE_ID", help="only in this cycle")
    tl.add_argument("--limit", type=int, default=100, help="at most this many (1,000 a page)")
    tl.add_argument("--page-token", default="", help="the next page (printed after a full one)")

    iso = sub.add_parser(
        "iso20022",
        help="a bank speaking ISO 20022: pacs.008 in, pacs.028 status, camt.053/054 out",
        description="ISO 20022 messages (remitnet.iso20022.v1); each prints the document "
        "the hub answers with.",
    )
    isub = iso.add_subparsers(dest="iso_command", required=True, metavar="ACTION")
    isu = isub.add_parser(
        "submit",
        help="bank: clear a pacs.008.001.08 file; prints the pacs.002.001.10",
        description="Clear the transfers of a pacs.008.001.08 document; prints the "
        "pacs.002.001.10 answer (a RJCT per refused transaction, the others cleared).",
        parents=common,
    )
    isu.set_defaults(handler=_iso20022, hint="")
    as_bank(isu)
    isu.add_argument("file", metavar="FILE.xml", help="the pacs.008.001.08 document")
    ist = isub.add_parser(
        "status",
        help="bank: the status of transfers by UETR (pacs.028 -> pacs.002)",
        description="The current status of transfers by UETR: sends a pacs.028.001.03, "
        "prints the pacs.002.001.10 answer.",
        parents=common,
    )
    ist.set_defaults(handler=_iso20022, hint="")
    as_bank(ist)
    ist.add_argument("uetr", nargs="+", metavar="UETR", help="transfer id (UETR)")
    ism = isub.add_parser(
        "statement",
        help="bank: a camt.053.001.08 statement of an account (a settled cycle or a period)",
        description="A camt.053.001.08 of your account in CCY: opening and closing balances "
        "and the entries, of one settled cycle (--cycle), of UTC booking days (--from, --to) "
        "or of all entries; 1,000 entries a page (LastPgInd false: the next with --after).",
        parents=common,
    )
    ism.set_defaults(handler=_iso20022, hint="")
    as_bank(ism)
    ism.add_argument("currency", metavar="CCY", help="currency of the account")
    ism.add_argument("--cycle", default="", metavar="CYCLE_ID", help="that settled cycle only")
    ism.add_argument("--from", dest="from_date", default="", metavar="YYYY-MM-DD",
                     help="first booking day (UTC)")  # fmt: skip
    ism.add_argument("--to", dest="to_date", default="", metavar="YYYY-MM-DD",
                     help="last booking day (UTC)")  # fmt: skip
    ism.add_argument("--after", type=int, default=0, metavar="SEQ",
                     help="entries after this sequence number (the next page)")  # fmt: skip
    isn = isub.add_parser(
        "notifications",
        help="bank: camt.054.001.08 credit and debit notifications since an entry",
        description="A camt.054.001.08 of the credits and debits booked on your CCY account "
        "after entry --after (1,000 at most); pull again after the last NtryRef printed.",
        parents=common,
    )
    isn.set_defaults(handler=_iso20022, hint="")
    as_bank(isn)
    isn.add_argument("currency", metavar="CCY", help="currency of the account")
    isn.add_argument("--after", type=int, default=0, metavar="SEQ",
                     help="entries after this sequence number")  # fmt: skip
    for action, what, reply in [
        ("return", "return transfers with a pacs.004.001.09 (reason FOCR accepts a recall)",
         "pacs.002.001.10"),
        ("recall", "recall transfers with a camt.056.001.08", "camt.029.001.09"),
        ("answer-recall", "reject recalls with a camt.029.001.09 (TxCxlSts RJCR)",
         "camt.029.001.09"),
    ]:  # fmt: skip
        ilc = isub.add_parser(
            action,
            help=f"bank: {what}; prints the {reply}",
            description=f"{what[0].upper()}{what[1:]}; prints the hub's {reply} answer, "
            "one status per transaction.",
            parents=common,
        )
        ilc.set_defaults(handler=_iso20022_lifecycle, hint="")
        as_bank(ilc)
        ilc.add_argument("file", metavar="FILE.xml", help="the document")
    irs = isub.add_parser(
        "returns",
        help="bank: the returns you received, as a pacs.004.001.09",
        description="The returns of transfers you sent, as a pacs.004.001.09: of the "
        "original UETRs given, else the newest --limit.",
        parents=common,
    )
    irs.set_defaults(handler=_iso20022_lifecycle, hint="")
    as_bank(irs)
    irs.add_argument("uetr", nargs="*", metavar="UETR", help="original transfer id (UETR)")
    irs.add_argument("--limit", type=int, default=0, help="without UETRs: how many (100)")

    cy = client("cycles", "operator: list settlement cycles", _cycles)
    cy.add_argument("--currency", default="", help="only this currency")
    cy.add_argument("--state", choices=sorted(CYCLE_STATES), help="only cycles in this state")
    g = client("cycle", "operator: show a cycle with its net positions", _cycle)
    g.add_argument("cycle_id", help="e.g. USD-000001")
    cl = client("close", "operator: close the open cycle of a currency", _close)
    cl.add_argument("currency")
    se = client("settle", "operator: settle a closed cycle", _settle)
    se.add_argument("cycle_id")
    sm = client(
        "statement",
        "bank or operator: a statement of an account, opening balance, entries with "
        "running balance, closing balance",
        _statement,
    )
    as_bank(sm, required=False)
    sm.add_argument("code", help="bank code (HUB: the hub's FX revenue)")
    sm.add_argument("currency")
    sm.add_argument(
        "--after", type=int, default=0, metavar="SEQ", help="start after this entry sequence"
    )
    client(
        "ledger",
        "operator: per-currency ledger totals and whether they sum to zero",
        _ledger,
    )
    rc = client("reconcile", "operator: a cycle's reconciliation report", _reconcile)
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
    # The server and the service layer load only here: client commands start
    # in a fraction of the time without them.
    from remitnet.services.entrypoints.server import (
        ServerConfig,
        TlsConfig,
        parse_services,
        serve,
    )
    from remitnet.services.service_layer.engine import EngineConfig
    from remitnet.services.service_layer.fx import FxConfig
    from remitnet.services.service_layer.lifecycle import LifecycleConfig
    from remitnet.services.service_layer.watch import WatchConfig

    if args.max_streams_per_bank < 1:
        raise SystemExit("--max-streams-per-bank must be at least 1")
    default_ms = round(args.confirmation_timeout * 1000)
    max_ms = round(args.max_confirmation_timeout * 1000)
    if not 0 < default_ms <= max_ms:
        raise SystemExit(
            "--confirmation-timeout must be positive and at most --max-confirmation-timeout"
        )
    if args.recall_window <= 0:
        raise SystemExit("--recall-window must be positive")
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        tls = TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca)
    engine = EngineConfig() if args.max_batch is None else EngineConfig(max_batch=args.max_batch)
    spread = FxConfig().default_spread_bps if args.fx_spread_bps is None else args.fx_spread_bps
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
        engine=engine,
        watch=WatchConfig(max_streams_per_bank=args.max_streams_per_bank),
        fx=FxConfig(
            base_currency=args.fx_base,
            default_spread_bps=spread,
            corridor_spread_bps=_corridors(args.fx_corridor),
            quote_ttl=timedelta(seconds=args.fx_quote_ttl),
            max_rate_age=timedelta(seconds=args.fx_max_rate_age),
        ),
        rates_file=args.fx_rates,
        lifecycle=LifecycleConfig(
            default_timeout_ms=default_ms,
            max_timeout_ms=max_ms,
            recall_window_s=args.recall_window,
        ),
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


async def _client_command(args: argparse.Namespace) -> Message:
    session = Session(ClientConfig(target=args.target, deadline_s=args.deadline))
    try:
        handler: Handler = args.handler
        return await handler(session, args)
    finally:
        await session.close()


def _report(err: HubError | RemitnetError, args: argparse.Namespace) -> int:
    line = fmt.error_line(err)
    if isinstance(err, HubError) and fmt.unreachable(err):
        hint = getattr(args, "hint", "")
        line += f" (no answer from {args.target} within {args.deadline:g} s"
        line += f"; {hint})" if hint else ")"
    print(line, file=sys.stderr)
    if getattr(args, "json", False):
        print(fmt.dumps(fmt.error_json(err)))
    if isinstance(err, RemitnetError):
        return EXIT_USAGE
    return EXIT_UNREACHABLE if fmt.unreachable(err) else EXIT_REFUSED


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.insecure:
        from remitnet.services.entrypoints.server import insecure_host_refusal, is_loopback

        if not is_loopback(args.host):
            parser.error(insecure_host_refusal(args.host))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "db":
            return _db(args)
        if args.command == "audit":
            return audit_cli.run(args)
        answer = asyncio.run(_client_command(args))
    except (HubError, RemitnetError) as err:
        return _report(err, args)
    fmt.print_message(answer, json=args.json)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
