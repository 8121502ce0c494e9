"""Domain errors as rich gRPC statuses: google.rpc.Status with ErrorInfo."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from remitnet.clearing.v1.clearing_pb2 import ItemError
from remitnet.services.adapters.grpc.limits import MAX_ITEM_MESSAGE_BYTES, bounded_bytes
from remitnet.services.domain.errors import ERROR_DOMAIN, ErrorKind, RemitnetError

GRPC_CODES: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.ABORTED: grpc.StatusCode.ABORTED,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}

RPC_CODES: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: code_pb2.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    ErrorKind.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    ErrorKind.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
    ErrorKind.ABORTED: code_pb2.ABORTED,
    ErrorKind.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: code_pb2.UNAVAILABLE,
    ErrorKind.INTERNAL: code_pb2.INTERNAL,
}


# A status travels in HTTP/2 trailers, which gRPC caps at 8 KiB by default:
# an error that echoes a huge input value would turn into RESOURCE_EXHAUSTED
# and lose its reason. Messages and metadata values are bounded instead.
MAX_MESSAGE_CHARS = 512
MAX_METADATA_CHARS = 64


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def item_error(err: RemitnetError) -> ItemError:
    """The per-item result of a batch call that refused one item."""
    return ItemError(
        code=RPC_CODES[err.kind],
        reason=err.reason,
        message=bounded_bytes(err.message, MAX_ITEM_MESSAGE_BYTES),
    )


def to_rpc_status(err: RemitnetError) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN)
    for key, value in err.metadata.items():
        info.metadata[key] = bounded(value, MAX_METADATA_CHARS)
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    retry_after = getattr(err, "retry_after_s", None)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return status_pb2.Status(
        code=RPC_CODES[err.kind],
        message=bounded(err.message, MAX_MESSAGE_CHARS),
        details=details,
    )


def to_grpc_status(err: RemitnetError) -> grpc.Status:
    status: grpc.Status = rpc_status.to_status(to_rpc_status(err))
    return status
