"""A CreateQuotes answer is built in place with the times its quotes
share (`fill_quote`): it must read exactly as each quote built on its
own, field by field (the stated rates too: 56.10 is not 56.1 there);
and the Timestamps answers share are what FromDatetime would build."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from remitnet.common.v1.money_pb2 import Money
from remitnet.fx.v1 import fx_pb2 as pb
from remitnet.services.adapters.grpc.convert import set_stamp, shared_stamp
from remitnet.services.adapters.grpc.fx import fill_quote, quote_message
from remitnet.services.domain.fx import Quote, QuoteTerms

NOW = datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=UTC)


def _ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def _by_hand(q: Quote) -> pb.Quote:
    t = q.terms
    return pb.Quote(
        quote_id=q.quote_id,
        bank_code=q.bank,
        source_amount=Money(currency=t.source_currency, minor_units=t.source_amount),
        target_amount=Money(currency=t.target_currency, minor_units=t.target_amount),
        rate=str(t.rate),
        mid_rate=str(t.mid_rate),
        spread_bps=t.spread_bps,
        fee=Money(currency=t.target_currency, minor_units=t.fee),
        derivation=t.derivation,
        created_at=_ts(q.created_at),
        expires_at=_ts(q.expires_at),
        used_by_transfer_id=q.used_by or "",
        provider=q.provider or "",
    )


def test_quotes_filled_in_place_with_shared_parts_read_as_built_alone() -> None:
    usd_eur = QuoteTerms(
        "USD", "EUR", 10_000, 9_150, Decimal("0.92"), Decimal("0.9154"), 50, 46, "USD/EUR"
    )
    usd_php = QuoteTerms(
        "USD", "PHP", 500, 28_050, Decimal("56.10"), Decimal("56.1"), 0, 0, "USD/PHP"
    )
    later = NOW + timedelta(minutes=1)
    quotes = [
        Quote("0b8f6c1e-3f5a-4c2e-9d7b-2a1c5e6f7a8b", "BANKUS01", usd_eur, NOW, later, None, "FXA"),
        Quote("1b8f6c1e-3f5a-4c2e-9d7b-2a1c5e6f7a8b", "BANKUS01", usd_php, NOW, later, None, None),
        Quote(
            "2b8f6c1e-3f5a-4c2e-9d7b-2a1c5e6f7a8b",
            "BANKUS01",
            usd_eur,
            NOW,
            later,
            "3b8f6c1e-3f5a-4c2e-9d7b-2a1c5e6f7a8b",
            "FXB",
        ),
    ]
    answer = pb.CreateQuotesResponse()
    stamps: dict[datetime, Timestamp] = {}
    for q in quotes:
        fill_quote(answer.results.add().quote, q, stamps)
    expected = pb.CreateQuotesResponse(results=[pb.QuoteResult(quote=_by_hand(q)) for q in quotes])
    assert answer == expected
    assert answer.SerializeToString() == expected.SerializeToString()
    assert len(stamps) == 2  # built once each
    assert all(quote_message(q) == _by_hand(q) for q in quotes)


def test_the_fast_stamp_reads_as_from_datetime() -> None:
    """set_stamp (ListBanks, every shared answer time) must give what
    FromDatetime gives: aware in any zone, naive (UTC), before 1970."""
    tokyo = timezone(timedelta(hours=9))
    for at in (
        NOW,
        NOW.astimezone(tokyo),
        NOW.replace(tzinfo=None),
        datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
    ):
        stamp = Timestamp()
        set_stamp(stamp, at)
        assert stamp == _ts(at), at
        stamps: dict[datetime, Timestamp] = {}
        assert shared_stamp(stamps, at) is shared_stamp(stamps, at) == _ts(at)
