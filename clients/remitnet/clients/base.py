"""Channel set-up, deadlines and retries shared by the bank and operator
clients."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from remitnet.clients.errors import HubError

PRINCIPAL_HEADER = "x-remitnet-principal"
Resp = TypeVar("Resp")

# Codes worth retrying with the same request: the call may not have reached
# the hub (UNAVAILABLE) or the hub gave up on a contended commit (ABORTED).
# Safe because every mutating request carries its idempotency key.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})

# The hub's documented limits (README "Limits", the protos' header comments):
# no message either way is larger than 4 MiB, the default of every gRPC
# stack, and a batch call holds at most MAX_BATCH_ITEMS items.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_BATCH_ITEMS = 5_000
# Keepalive: the hub permits a ping every 20 s or slower, with or without
# calls in flight. The SDK pings every 30 s, also on an idle WatchTransfers
# stream, and gives up on a connection whose ping goes unanswered for 10 s.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class ClientConfig:
    target: str = "127.0.0.1:50051"
    deadline_s: float = 10.0
    max_attempts: int = 5
    backoff_s: float = 0.05
    # mTLS; None means plaintext with identity from metadata (dev hubs only).
    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None


def open_channel(config: ClientConfig) -> grpc.aio.Channel:
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        # Keep pinging while a stream idles (the default stops after two
        # pings without data).
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if config.root_certificates is None:
        return grpc.aio.insecure_channel(config.target, options=options)
    creds = grpc.ssl_channel_credentials(
        config.root_certificates, config.private_key, config.certificate_chain
    )
    return grpc.aio.secure_channel(config.target, creds, options=options)


class HubClient:
    def __init__(self, principal: str, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        self.channel = open_channel(self.config)
        self._metadata: tuple[tuple[str, str], ...] = (
            ((PRINCIPAL_HEADER, principal),) if self.config.root_certificates is None else ()
        )

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self,
        method: Callable[..., Awaitable[Resp]],
        request: object,
        *,
        retry: bool = True,
        deadline_s: float | None = None,
    ) -> Resp:
        """One RPC with a deadline; retried with the same request on
        UNAVAILABLE and ABORTED with jittered backoff, and on
        RESOURCE_EXHAUSTED when the hub sent a RetryInfo (a per-bank bound,
        such as BANK_QUEUE_FULL) after the delay it asked for. Other errors
        raise HubError with the hub's reason code."""
        attempts = self.config.max_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return await method(
                    request,
                    timeout=deadline_s or self.config.deadline_s,
                    metadata=self._metadata,
                    wait_for_ready=retry,
                )
            except grpc.aio.AioRpcError as err:
                told = HubError.from_rpc_error(err)
                throttled = (
                    err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    and told.retry_after_s is not None
                )
                if (err.code() not in RETRYABLE and not throttled) or attempt == attempts:
                    raise told from None
                delay = self.config.backoff_s * 2 ** (attempt - 1)
                if throttled and told.retry_after_s is not None:
                    delay = max(delay, told.retry_after_s)
                await asyncio.sleep(delay if throttled else random.uniform(delay / 2, delay))
        raise AssertionError("unreachable")
