"""Sizes that fit every stack: the largest legal batch request and its
answer, built with every field at its maximum encoded size, fit the 4 MiB
that grpc-java, grpc-go, grpc-js and the C core accept by default. The
answers are built with the hub's own code (`convert.fill_transfer`,
`item_error`, `echoed_id`, `quote_message`), so that a change there, or a
new field in a message, is measured too: a field this test does not know
fails it until its maximum is stated here."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients import base as sdk
from remitnet.common.v1.money_pb2 import Money
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.services.adapters.grpc import limits
from remitnet.services.adapters.grpc.clearing import MAX_BATCH_ITEMS
from remitnet.services.adapters.grpc.convert import fill_transfer
from remitnet.services.adapters.grpc.errors import item_error
from remitnet.services.adapters.grpc.fx import quote_message
from remitnet.services.domain.errors import FailedPrecondition, Reason
from remitnet.services.domain.fx import Quote, QuoteTerms
from remitnet.services.domain.model import MAX_REMITTANCE_INFO, StoredTransfer, TransferStatus
from remitnet.services.service_layer.fx import MAX_RATES

FOUR_MIB = 4 * 1024 * 1024
INT64_WIDEST = -(2**63)  # a negative int64 takes the most bytes (10)
WIDE_CHAR = "\U0001f4b8"  # 4 bytes in UTF-8
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

# The most UTF-8 bytes each string field of these messages can hold, as the
# hub checks or stores it (ids are canonical UUIDs, bank codes 3-16 ASCII,
# cycle ids VARCHAR(24), stated rates VARCHAR(48), derivations VARCHAR(120)).
LONGEST_REASON = max(len(v) for k, v in vars(Reason).items() if k.isupper())
STRING_BYTES = {
    "transfer_id": 36,
    "quote_id": 36,
    "used_by_transfer_id": 36,
    "return_of_transfer_id": 36,
    "returned_by_transfer_id": 36,
    "creditor_bank": 16,
    "debtor_bank": 16,
    "bank_code": 16,
    "provider": 16,
    "currency": 3,
    "source_currency": 3,
    "target_currency": 3,
    "cycle_id": 24,
    "creditor_cycle_id": 24,
    "rate": 48,
    "mid_rate": 48,
    "derivation": 120,
    "reason": LONGEST_REASON,
    "message": limits.MAX_ITEM_MESSAGE_BYTES,
    "remittance_info": 4 * MAX_REMITTANCE_INFO,
    "purpose": 4,  # ExternalPurpose1Code (make_instruction)
}


def saturate(message: Message, *, skip: frozenset[str] = frozenset()) -> None:
    """Set every field of `message` not yet set (and not in `skip`) to its
    widest value, recursively; a string field without a stated maximum, or
    a repeated field inside an item, fails the test."""
    for field in message.DESCRIPTOR.fields:
        if field.name in skip:
            continue
        assert not field.is_repeated, f"{message.DESCRIPTOR.name}.{field.name}: bound it here"
        if field.containing_oneof is not None and message.WhichOneof(
            field.containing_oneof.name
        ) not in (None, field.name):
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            sub = getattr(message, field.name)
            if isinstance(sub, Timestamp):
                if not message.HasField(field.name):
                    sub.FromDatetime(LATEST)
                continue
            saturate(sub)
            continue
        current = getattr(message, field.name)
        if current:
            continue
        if field.type == FieldDescriptor.TYPE_STRING:
            assert field.name in STRING_BYTES, (
                f"{message.DESCRIPTOR.name}.{field.name}: state its maximum in STRING_BYTES"
            )
            setattr(message, field.name, "x" * STRING_BYTES[field.name])
        elif field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
            setattr(message, field.name, INT64_WIDEST)
        elif field.type == FieldDescriptor.TYPE_INT32:
            setattr(message, field.name, -1)  # 10 bytes, the widest int32
        elif field.type == FieldDescriptor.TYPE_BOOL:
            setattr(message, field.name, True)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            setattr(message, field.name, max(v.number for v in field.enum_type.values))
        else:
            raise AssertionError(f"{message.DESCRIPTOR.name}.{field.name}: unhandled type")


def widest_instruction() -> cpb.TransferInstruction:
    item = cpb.TransferInstruction(
        transfer_id="0" * 36,
        creditor_bank="B" * 16,
        amount=Money(currency="USD", minor_units=INT64_WIDEST),
        remittance_info=WIDE_CHAR * MAX_REMITTANCE_INFO,
        quote_id="0" * 36,
        settlement_mode=cpb.SETTLEMENT_MODE_GROSS,
    )
    saturate(item)
    assert len(item.remittance_info.encode()) == 560
    return item


def widest_stored() -> StoredTransfer:
    return StoredTransfer(
        "0" * 36,
        "D" * 16,
        "C" * 16,
        "USD",
        2**63 - 1,
        WIDE_CHAR * MAX_REMITTANCE_INFO,
        TransferStatus.ACCEPTED,
        "USD-" + "9" * 20,
        LATEST,
        "0" * 36,
        "PHP",
        2**63 - 1,
        "PHP-" + "9" * 20,
        2**63 - 1,
    )


# What batch answers leave out of a transfer: free text (remittance_info,
# an operator's cancel reason) and the recall.
BATCH_SKIPS = frozenset({"remittance_info", "recall"})


def widest_batch_transfer(message: cpb.Transfer) -> None:
    stored = widest_stored()._replace(
        deadline=LATEST,
        resolved_at=LATEST,
        reason="x" * 140,  # an operator's reason: left out
        return_of="0" * 36,
        returned_by="0" * 36,
    )
    fill_transfer(message, stored, TransferStatus.CANCELLED, {}, remittance_info=False)
    assert message.remittance_info == "" and message.reason == ""
    assert not message.HasField("recall")
    message.reason = "AC01"  # what a batch answer may carry: an ISO code
    saturate(message, skip=BATCH_SKIPS)


def accepted_result() -> cpb.TransferResult:
    result = cpb.TransferResult(transfer_id="0" * 36, replayed=True)
    widest_batch_transfer(result.transfer)
    return result


def refused_result() -> cpb.TransferResult:
    too_long = FailedPrecondition("X" * LONGEST_REASON, WIDE_CHAR * 5_000)
    result = cpb.TransferResult(transfer_id=limits.echoed_id("é" * 32), error=item_error(too_long))
    assert len(result.transfer_id.encode()) == limits.MAX_ECHOED_ID_BYTES
    assert limits.echoed_id("é" * 33) == ""
    assert len(result.error.message.encode()) <= limits.MAX_ITEM_MESSAGE_BYTES
    result.error.code = -1  # the widest int32, whatever code it is
    return result


def test_the_documented_limits_are_the_ones_in_force() -> None:
    assert limits.MAX_MESSAGE_BYTES == FOUR_MIB
    assert sdk.MAX_MESSAGE_BYTES == limits.MAX_MESSAGE_BYTES
    assert sdk.MAX_BATCH_ITEMS == MAX_BATCH_ITEMS == limits.MAX_BATCH_ITEMS == 5_000
    options = dict(limits.server_options())
    assert options["grpc.max_receive_message_length"] == FOUR_MIB
    assert options["grpc.max_send_message_length"] == FOUR_MIB


def test_the_largest_submit_transfers_request_fits_4_mib() -> None:
    request = cpb.SubmitTransfersRequest(transfers=[widest_instruction()] * MAX_BATCH_ITEMS)
    size = request.ByteSize()
    assert size <= FOUR_MIB, size
    # And with room to spare for gRPC's own framing and future fields.
    assert size < 0.85 * FOUR_MIB, size


def test_the_largest_submit_transfers_answer_fits_4_mib() -> None:
    for result in (accepted_result(), refused_result()):
        response = cpb.SubmitTransfersResponse(
            results=[result] * MAX_BATCH_ITEMS, accepted_count=-1, rejected_count=-1
        )
        size = response.ByteSize()
        assert size < 0.6 * FOUR_MIB, (result.WhichOneof("outcome"), size)
    # An answer never costs more per item than its request did: no input
    # inflates it past what the request paid for.
    assert max(accepted_result().ByteSize(), refused_result().ByteSize()) < (
        widest_instruction().ByteSize()
    )


def test_the_largest_confirm_transfers_request_and_answer_fit_4_mib() -> None:
    item = cpb.ConfirmTransferRequest(transfer_id="0" * 36, reason="X" * LONGEST_REASON)
    saturate(item)
    request = cpb.ConfirmTransfersRequest(confirmations=[item] * MAX_BATCH_ITEMS)
    assert request.ByteSize() < 0.1 * FOUR_MIB, request.ByteSize()
    answered = cpb.ConfirmationResult(transfer_id="0" * 36, replayed=True)
    widest_batch_transfer(answered.transfer)
    refused = cpb.ConfirmationResult(
        transfer_id=refused_result().transfer_id, error=refused_result().error
    )
    for result in (answered, refused):
        response = cpb.ConfirmTransfersResponse(
            results=[result] * MAX_BATCH_ITEMS, accepted_count=-1, rejected_count=-1
        )
        size = response.ByteSize()
        assert size < 0.6 * FOUR_MIB, (result.WhichOneof("outcome"), size)


def widest_quote() -> fxpb.Quote:
    terms = QuoteTerms(
        "USD",
        "PHP",
        2**63 - 1,
        2**63 - 1,
        Decimal("1.2345678901234567890E-9"),
        Decimal("1.234567890123456789012345678901234E-9"),
        9_999,
        -(2**63),
        "1/(USD/PHP) x 1/(EUR/USD) (cross via USD)",
    )
    quote = quote_message(
        Quote("0" * 36, "B" * 16, terms, LATEST, LATEST, "0" * 36)  # used
    )
    for name, stated in (("rate", quote.rate), ("mid_rate", quote.mid_rate)):
        assert len(stated) <= STRING_BYTES[name], (name, stated)
    quote.rate = "9" * STRING_BYTES["rate"]
    quote.mid_rate = "9" * STRING_BYTES["mid_rate"]
    quote.derivation = "x" * STRING_BYTES["derivation"]
    saturate(quote)
    return quote


def test_the_largest_create_quotes_request_and_answer_fit_4_mib() -> None:
    ask = fxpb.CreateQuoteRequest(source_currency="USD", target_currency="PHP")
    ask.source_amount = INT64_WIDEST
    request = fxpb.CreateQuotesRequest(quotes=[ask] * MAX_BATCH_ITEMS)
    assert request.ByteSize() <= FOUR_MIB
    issued = fxpb.QuoteResult(quote=widest_quote())
    refused = fxpb.QuoteResult(error=refused_result().error)
    for result in (issued, refused):
        response = fxpb.CreateQuotesResponse(
            results=[result] * MAX_BATCH_ITEMS, issued_count=-1, refused_count=-1
        )
        assert response.ByteSize() < 0.75 * FOUR_MIB, (result, response.ByteSize())


def test_the_largest_update_rates_request_fits_4_mib() -> None:
    rate = fxpb.Rate(base_currency="USD", quote_currency="PHP", mid_rate="9" * 48)
    rate.as_of.FromDatetime(LATEST)
    request = fxpb.UpdateRatesRequest(rates=[rate] * MAX_RATES)
    assert request.ByteSize() <= FOUR_MIB


def test_item_messages_are_cut_on_a_character_boundary() -> None:
    cut = limits.bounded_bytes(WIDE_CHAR * 100, 256)
    assert len(cut.encode()) <= 256 and cut.endswith("…")
    assert cut[:-1] == WIDE_CHAR * len(cut[:-1])
    assert limits.bounded_bytes("short", 256) == "short"


def test_keepalive_policy_permits_client_pings_every_20_s() -> None:
    """The server side of the keepalive contract: a client may ping every
    20 s (or slower), with or without calls in flight; the enforced minimum
    is below that, so timer jitter never counts as a strike."""
    options = dict(limits.server_options())
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= 20_000 / 2
    assert options["grpc.http2.max_ping_strikes"] >= 2
    assert options["grpc.keepalive_time_ms"] >= 20_000
    assert options["grpc.http2.max_pings_without_data"] == 0
    # The SDK pings within that policy.
    assert sdk.KEEPALIVE_TIME_MS >= limits.KEEPALIVE_MIN_CLIENT_INTERVAL_S * 1000
