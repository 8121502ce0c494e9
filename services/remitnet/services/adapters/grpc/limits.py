"""The hub's wire limits, in one place. Every figure here is part of the
contract: it is stated in the protos' header comments and in the README's
"Limits" section, and the Python SDK (`clients/remitnet/clients/base.py`) uses the same ones.

Sizes. Every gRPC stack's default receive limit is 4 MiB (grpc-java,
grpc-go, grpc-js, the C core), so no message the hub sends or accepts may be
larger: a bank that never raises its own defaults can call everything. The
batch calls are sized so that the largest legal request *and* its answer
fit, with every field at its maximum (a 140-character remittance text of
4-byte UTF-8 characters, 16-character bank codes, int64 amounts): see
`tests/unit/test_limits.py`, which builds those messages. A batch answer
does not echo each transfer's remittance info (GetTransfer returns it);
an item error's message is bounded in bytes, and an item's transfer id is
echoed only when it is short, so no input can inflate an answer past what
its request cost.
"""

from __future__ import annotations

from typing import Final

#: Largest message the hub receives or sends, both directions (4 MiB).
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024

#: Items per SubmitTransfers and per CreateQuotes call. The largest legal
#: SubmitTransfers request at this size is about 3.4 MB (681 bytes per item
#: with every field at its maximum); its answer at most about 2 MB.
MAX_BATCH_ITEMS: Final = 5_000

#: An item error's message, UTF-8 bytes (cut on a character boundary with
#: "…"). The status message of a unary call is bounded in characters in
#: `errors.MAX_MESSAGE_CHARS` (it travels in trailers).
MAX_ITEM_MESSAGE_BYTES: Final = 256

#: A refused item's result echoes the transfer id it was sent with when that
#: id is at most this many UTF-8 bytes, and is empty otherwise (results are
#: in request order, so the position still identifies the item).
MAX_ECHOED_ID_BYTES: Final = 64

# Keepalive. Clients may ping every KEEPALIVE_MIN_CLIENT_INTERVAL_S seconds
# or slower, with or without calls in flight (an idle WatchTransfers stream
# included); the hub enforces half of that as the minimum gap between two
# pings so that timer jitter never counts as a strike, and answers a client
# pinging faster than that, KEEPALIVE_MAX_PING_STRIKES + 1 times in a row,
# with GOAWAY `too_many_pings`. The hub pings an idle connection every
# KEEPALIVE_SERVER_TIME_S and drops it if the ping is not answered within
# KEEPALIVE_SERVER_TIMEOUT_S, so half-open connections (a NAT or load
# balancer that forgot the flow) do not hold streams.
KEEPALIVE_MIN_CLIENT_INTERVAL_S: Final = 20
KEEPALIVE_ENFORCED_MIN_INTERVAL_MS: Final = 10_000
KEEPALIVE_MAX_PING_STRIKES: Final = 2
KEEPALIVE_SERVER_TIME_S: Final = 60
KEEPALIVE_SERVER_TIMEOUT_S: Final = 20

# Connection age: gRPC balances per connection, so connections are closed
# (GOAWAY, then in-flight calls get the grace period) after this long, to
# spread clients over new replicas. A WatchTransfers stream therefore ends
# with UNAVAILABLE at most MAX_CONNECTION_AGE_S + MAX_CONNECTION_AGE_GRACE_S
# after its connection opened; the client resumes from its last token.
MAX_CONNECTION_AGE_S: Final = 300
MAX_CONNECTION_AGE_GRACE_S: Final = 30


def server_options() -> list[tuple[str, int]]:
    """The channel arguments of the hub's main gRPC server."""
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # Bounded connection age lets clients behind a Service spread over
        # new replicas (gRPC balances per connection).
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_S * 1000),
        ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_S * 1000),
        # The keepalive policy (see above). This argument is the *received*
        # ping interval the server enforces (GRPC_ARG_HTTP2_MIN_RECV_PING_
        # INTERVAL_WITHOUT_DATA_MS).
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_ENFORCED_MIN_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", KEEPALIVE_MAX_PING_STRIKES),
        ("grpc.keepalive_time_ms", KEEPALIVE_SERVER_TIME_S * 1000),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_SERVER_TIMEOUT_S * 1000),
        # The hub's own pings keep going on an idle connection (the default
        # stops after two pings without data).
        ("grpc.http2.max_pings_without_data", 0),
    ]


def bounded_bytes(text: str, limit: int) -> str:
    """`text` if its UTF-8 form is at most `limit` bytes, else cut on a
    character boundary and ended with "…" (3 bytes) within the limit."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "…"


def echoed_id(raw: str) -> str:
    """A refused item's transfer id as sent, or "" when it is too long to
    echo (see MAX_ECHOED_ID_BYTES)."""
    if len(raw) * 4 <= MAX_ECHOED_ID_BYTES:
        return raw
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError:
        return ""
    return raw if size <= MAX_ECHOED_ID_BYTES else ""
