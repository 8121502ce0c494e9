"""Errors a hub client raises: the gRPC code plus the hub's reason code."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class HubError(Exception):
    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        metadata: dict[str, str],
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata
        # From google.rpc.RetryInfo: the hub says when to try again (a
        # per-bank bound was reached); None when it did not say.
        self.retry_after_s = retry_after_s

    @classmethod
    def from_rpc_error(cls, err: grpc.aio.AioRpcError) -> HubError:
        reason = ""
        metadata: dict[str, str] = {}
        retry_after: float | None = None
        for key, value in err.trailing_metadata() or ():
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    info = error_details_pb2.ErrorInfo()
                    retry = error_details_pb2.RetryInfo()
                    if detail.Unpack(info):
                        reason = info.reason
                        metadata = dict(info.metadata)
                    elif detail.Unpack(retry):
                        retry_after = retry.retry_delay.ToTimedelta().total_seconds()
        return cls(err.code(), reason, err.details() or "", metadata, retry_after)
