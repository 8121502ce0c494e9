"""The formatting module of the `remitnet` command and the demo: money,
timestamps, enum names, tables, the JSON form and the error line."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients import format as fmt
from remitnet.clients.errors import HubError
from remitnet.common.v1.money_pb2 import Money
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.services.domain.errors import InvalidArgument
from remitnet.settlement.v1 import settlement_pb2 as spb


@pytest.mark.parametrize(
    ("currency", "minor", "text"),
    [
        ("USD", 10_000_000, "100,000.00 USD"),
        ("USD", 0, "0.00 USD"),
        ("USD", -1234, "-12.34 USD"),
        ("JPY", 1_234_567, "1,234,567 JPY"),
        ("KWD", -1, "-0.001 KWD"),
        ("INR", 8_320_000_000, "83,200,000.00 INR"),
        ("XXX", 1234, "1,234 XXX (minor units)"),  # not in the exponent table
    ],
)
def test_money_uses_the_domain_exponents(currency: str, minor: int, text: str) -> None:
    assert fmt.money(currency, minor) == text


def test_money_messages_timestamps_and_enum_names() -> None:
    assert fmt.money_of(Money(currency="PHP", minor_units=5)) == "0.05 PHP"
    assert fmt.money_of(Money()) == "-"
    ts = fxpb.Quote().created_at
    assert fmt.timestamp(ts) == "-"
    ts.FromDatetime(datetime(2026, 12, 1, 21, 2, 57, 123456, tzinfo=UTC))
    assert fmt.timestamp(ts) == "2026-12-01T21:02:57Z"
    assert fmt.enum_name(cpb.TransferStatus, cpb.TRANSFER_STATUS_SETTLED) == "SETTLED"
    assert fmt.enum_name(npb.CycleState, npb.CYCLE_STATE_OPEN) == "OPEN"
    assert fmt.enum_name(spb.EntryKind, spb.ENTRY_KIND_FX_REVENUE) == "FX_REVENUE"
    assert fmt.enum_name(cpb.SettlementMode.DESCRIPTOR, 99) == "99"  # a newer hub's value


def test_table_aligns_text_left_and_numbers_right() -> None:
    rows = [["BANKUS01", "1,000.00 USD"], ["B2", "5.00 USD"]]
    assert fmt.table(rows, ["bank", "net"]) == (
        "bank               net\n"
        "--------  ------------\n"
        "BANKUS01  1,000.00 USD\n"
        "B2            5.00 USD"
    )
    assert fmt.table([["1", "x"]], ["n", "what"], "rl").splitlines()[2] == "1  x"
    assert fmt.fields([("a", "1"), ("long label", "2")]) == "a           1\nlong label  2"


def test_json_has_every_field_in_proto_order() -> None:
    cycle = npb.Cycle(cycle_id="USD-000001", currency="USD", net_value=0)
    cycle.opened_at.FromDatetime(datetime(2026, 12, 1, tzinfo=UTC))
    cycle.positions.add(bank_code="B1")
    out = fmt.to_json(cycle)
    assert list(out) == [f.name for f in npb.Cycle.DESCRIPTOR.fields]
    assert out["opened_at"] == "2026-12-01T00:00:00Z" and out["closed_at"] is None
    assert out["state"] == "CYCLE_STATE_UNSPECIFIED" and out["net_value"] == "0"
    assert out["positions"] == [{"bank_code": "B1", "sent": "0", "received": "0", "net": "0",
                                 "sent_count": "0", "received_count": "0"}]  # fmt: skip
    # A oneof shows the alternative that is set, not the others.
    result = fmt.to_json(cpb.TransferResult(transfer_id="t", error=cpb.ItemError(reason="R")))
    assert "transfer" not in result and result["error"]["code"] == 0
    assert "source_amount" not in fmt.to_json(fxpb.CreateQuoteRequest())


def test_every_layout_renders_an_empty_message() -> None:
    for name in fmt.RENDERERS:
        message = message_factory.GetMessageClass(
            descriptor_pool.Default().FindMessageTypeByName(name)
        )
        assert fmt.render(message())  # zeros, unset times, no rows
    assert fmt.render(spb.GetLedgerBalanceResponse()) == "no ledger entries"


def test_a_message_without_a_layout_prints_generically() -> None:
    quote = fxpb.Quote(
        quote_id="q1",
        source_amount=Money(currency="USD", minor_units=10_000),
        target_amount=Money(currency="PHP", minor_units=561_000),
        rate="56.10",
        spread_bps=50,
    )
    quote.expires_at.FromDatetime(datetime(2026, 12, 1, 21, 0, tzinfo=UTC))
    split = (re.split(r"\s{2,}", ln, maxsplit=1) for ln in fmt.render(quote).splitlines())
    lines = dict(split)
    assert lines["source amount"] == "100.00 USD" and lines["target amount"] == "5,610.00 PHP"
    assert lines["expires at"] == "2026-12-01T21:00:00Z" and lines["created at"] == "-"
    assert lines["fee"] == "-" and lines["bank code"] == "-" and lines["spread bps"] == "50"
    rows = fmt.render(cpb.SubmitTransfersResponse(results=[cpb.TransferResult(transfer_id="t")]))
    assert "accepted count  0" in rows and "results:\n  transfer id  replayed" in rows


def test_money_fields_name_int64_fields_and_their_currency() -> None:
    for name, spec in fmt.MONEY_FIELDS.items():
        fields = descriptor_pool.Default().FindMessageTypeByName(name).fields_by_name
        for field, currency in spec.items():
            assert fields[field].type == FieldDescriptor.TYPE_INT64, (name, field)
            # The currency is the message's own, or its enclosing message's.
            assert currency in fields or currency == "currency", (name, currency)


def test_error_line_and_document() -> None:
    refused = HubError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_LIQUIDITY",
        "amount exceeds\nthe headroom",
        {"currency": "USD", "bank": "BANKUS01", "note": "two words"},
    )
    assert fmt.error_line(refused) == (
        "refused: FAILED_PRECONDITION INSUFFICIENT_LIQUIDITY bank=BANKUS01 currency=USD "
        'note="two words": amount exceeds the headroom'
    )
    assert fmt.error_json(refused)["error"]["outcome"] == "refused"
    no_answer = HubError(grpc.StatusCode.UNAVAILABLE, "", "connection refused", {})
    assert fmt.unreachable(no_answer)
    assert fmt.error_line(no_answer) == "unreachable: UNAVAILABLE: connection refused"
    draining = HubError(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", "retry elsewhere", {})
    assert not fmt.unreachable(draining)  # the hub answered
    local = InvalidArgument("INVALID_AMOUNT", "USD has 2 decimals")
    assert fmt.error_line(local) == "invalid: INVALID_ARGUMENT INVALID_AMOUNT: USD has 2 decimals"
