"""One server interceptor for every remitnet service: caller identity and
authorization, RED metrics, and domain errors as rich statuses. Keeping
these here keeps servicers to translation and use-case calls."""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any, cast

import grpc

from remitnet.services.adapters import metrics
from remitnet.services.adapters.grpc.admission import Admission
from remitnet.services.adapters.grpc.errors import to_grpc_status
from remitnet.services.adapters.grpc.identity import (
    IdentityResolver,
    Role,
    authorize,
    reset_principal,
    set_principal,
)
from remitnet.services.domain.errors import RemitnetError

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


class HubInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        resolver: IdentityResolver,
        roles: Mapping[str, Role],
        admission: Admission | None = None,
        provider_methods: Collection[str] = (),
    ) -> None:
        self._resolver = resolver
        self._roles = roles
        # The methods an FX provider principal may call (every other one is
        # PERMISSION_DENIED PROVIDER_NOT_ALLOWED for it).
        self._provider_methods = frozenset(provider_methods)
        # Per-bank bound on concurrent unary calls (fair share).
        self._admission = admission or Admission()
        # Wrapped handlers per method: built once, not on every call.
        self._wrapped: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, handler: Any, method: str) -> Any:
        service, _, name = method.lstrip("/").rpartition("/")
        # Fail closed: a hub method someone forgot to list is the operator's,
        # never public. Health and reflection are not the hub's and stay open.
        default = Role.OPERATOR if service.startswith("remitnet.") else Role.PUBLIC
        role = self._roles.get(method, default)
        provider_ok = method in self._provider_methods
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(cast(Any, handler.unary_unary), service, name, role, provider_ok),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(cast(Any, handler.unary_stream), service, name, role, provider_ok),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            # Bidirectional: server reflection's one method. Checked like a
            # server stream (identity and role before the first message).
            return grpc.stream_stream_rpc_method_handler(
                self._stream(
                    cast(Any, handler.stream_stream),
                    service,
                    name,
                    role,
                    provider_ok,
                    "bidi_stream",
                ),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # Fail closed: a handler kind this interceptor does not wrap (client
        # streaming, or one gRPC adds) would run unchecked; it is refused.
        return _refused(handler, method)

    def _unary(
        self,
        inner: Callable[[Any, Context], Awaitable[Any]],
        service: str,
        name: str,
        role: Role,
        provider_ok: bool = False,
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        labels = ("unary", service, name)
        started_total = metrics.GRPC_STARTED.labels(*labels)
        handled_ok = metrics.GRPC_HANDLED.labels(*labels, "OK")
        seconds = metrics.GRPC_HANDLING_SECONDS.labels(*labels)

        async def behavior(request: Any, context: Context) -> Any:
            started_total.inc()
            started = time.perf_counter()
            code = "OK"
            bank: str | None = None
            try:
                token = None
                if role is not Role.PUBLIC:
                    principal = self._resolver.resolve(context)
                    authorize(role, principal, provider_allowed=provider_ok)
                    token = set_principal(principal)
                    bank = principal.participant
                try:
                    with self._admission.admit(bank):
                        return await inner(request, context)
                finally:
                    if token is not None:
                        reset_principal(token)
            except RemitnetError as err:
                code = err.kind.value
                await context.abort_with_status(to_grpc_status(err))
            except Exception as exc:
                code = _code_of(context, exc)
                if code == "UNKNOWN":
                    code = "INTERNAL"
                    log.exception("%s/%s failed", service, name)
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                raise
            finally:
                handled = handled_ok if code == "OK" else metrics.GRPC_HANDLED.labels(*labels, code)
                handled.inc()
                seconds.observe(time.perf_counter() - started)

        return behavior

    def _stream(
        self,
        inner: Callable[[Any, Context], Any],
        service: str,
        name: str,
        role: Role,
        provider_ok: bool = False,
        grpc_type: str = "server_stream",
    ) -> Callable[[Any, Context], Any]:
        """A server-streaming (or bidirectional: the first argument is then
        the request iterator) handler is an async generator (ours,
        reflection's) or a coroutine that writes with context.write
        (grpcio-health's Watch); the wrapper keeps the handler's kind."""
        labels = (grpc_type, service, name)

        @contextlib.asynccontextmanager
        async def guarded(context: Context) -> AsyncIterator[None]:
            metrics.GRPC_STARTED.labels(*labels).inc()
            started = time.perf_counter()
            code = "OK"
            try:
                token = None
                if role is not Role.PUBLIC:
                    principal = self._resolver.resolve(context)
                    authorize(role, principal, provider_allowed=provider_ok)
                    token = set_principal(principal)
                try:
                    yield
                finally:
                    if token is not None:
                        reset_principal(token)
            except RemitnetError as err:
                code = err.kind.value
                await context.abort_with_status(to_grpc_status(err))
            except Exception as exc:
                code = _code_of(context, exc)
                if code == "UNKNOWN":
                    code = "INTERNAL"
                    log.exception("%s/%s failed", service, name)
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                raise
            finally:
                metrics.GRPC_HANDLED.labels(*labels, code).inc()
                metrics.GRPC_HANDLING_SECONDS.labels(*labels).observe(time.perf_counter() - started)

        if inspect.isasyncgenfunction(inner):

            async def generate(request: Any, context: Context) -> AsyncIterator[Any]:
                async with guarded(context):
                    async for item in inner(request, context):
                        yield item

            return generate

        async def write(request: Any, context: Context) -> None:
            async with guarded(context):
                await inner(request, context)

        return write


def _refused(handler: Any, method: str) -> Any:
    """A handler of the same kind that answers UNIMPLEMENTED without running
    the method."""

    async def refuse(_request: Any, context: Context) -> Any:
        log.warning("refused %s: a handler kind the interceptor does not check", method)
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "the hub serves no calls of this kind (client streaming)"
        )

    return grpc.stream_unary_rpc_method_handler(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _code_of(context: Context, exc: BaseException) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(exc, grpc.aio.AbortError):
        return "ABORTED_BY_HANDLER"
    return "UNKNOWN"
