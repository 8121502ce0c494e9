"""Who is calling. Resolved once per call by the interceptor, from the peer's
certificate (mTLS) or, only when the server runs with --insecure, from
request metadata; servicers read it from `current_principal()`.

With mTLS the identity is the client certificate's SPIFFE URI SAN, never its
common name: `spiffe://remitnet/operator`, `spiffe://remitnet/bank/<CODE>`
or `spiffe://remitnet/fxp/<CODE>` (an FX provider). The development header
says the same as `operator`, `bank:<CODE>` or `fxp:<CODE>`. The server
trusts client certificates from its own client CA only (`--tls-client-ca`),
which issues nothing else. Reserved codes (HUB, the hub's own accounts) are
never principals, whichever resolver reads them.

An FX provider principal may make only the calls listed for it (the
server's PROVIDER_METHODS: publishing and listing its own rates, and the
reads a bank makes of itself: its position, statements, cycles and
reconciliations, showing its own rows only); any other call is
PERMISSION_DENIED PROVIDER_NOT_ALLOWED, whatever the call's role. Whether
the code is a known, active participant with the FX_PROVIDER role is the
call's own check (UpdateRates: FX_PROVIDER_UNKNOWN, NOT_AN_FX_PROVIDER,
FX_PROVIDER_SUSPENDED)."""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import grpc

from remitnet.services.domain.errors import PermissionDenied, Reason, Unauthenticated
from remitnet.services.domain.model import BANK_CODE_RE, HUB

PRINCIPAL_HEADER = "x-remitnet-principal"
OPERATOR = "operator"
# The SPIFFE trust domain of remitnet's certificates and the URI SAN prefix.
TRUST_DOMAIN = "remitnet"
SPIFFE_PREFIX = f"spiffe://{TRUST_DOMAIN}/"
# Codes that name the hub itself, never a caller.
RESERVED_CODES = frozenset({HUB})


def _participant_code(code: str, text: str) -> str:
    if not BANK_CODE_RE.fullmatch(code):
        raise Unauthenticated(Reason.MISSING_IDENTITY, f"unrecognised principal {text[:60]!r}")
    if code in RESERVED_CODES:
        raise Unauthenticated(
            Reason.MISSING_IDENTITY, f"{code} is reserved for the hub and is not a principal"
        )
    return code


@dataclass(frozen=True, slots=True)
class Principal:
    """The operator (bank and provider None), one bank (`bank`) or one FX
    provider (`provider`, bank None): never both."""

    bank: str | None
    provider: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.bank is None and self.provider is None

    @property
    def is_provider(self) -> bool:
        return self.provider is not None

    @property
    def participant(self) -> str | None:
        """The participant whose own rows the caller reads (the bank or the
        provider), None for the operator, who reads everyone's."""
        return self.bank if self.provider is None else self.provider

    @classmethod
    def parse(cls, text: str) -> Principal:
        """The metadata form: `operator`, `bank:<CODE>` or `fxp:<CODE>`."""
        if text == OPERATOR:
            return cls(None)
        if text.startswith("bank:"):
            return cls(_participant_code(text[5:], text))
        if text.startswith("fxp:"):
            return cls(None, _participant_code(text[4:], text))
        raise Unauthenticated(Reason.MISSING_IDENTITY, f"unrecognised principal {text[:40]!r}")

    @classmethod
    def from_spiffe(cls, uri: str) -> Principal:
        """The certificate form: a SPIFFE id of the remitnet trust domain."""
        if not uri.startswith(SPIFFE_PREFIX):
            raise Unauthenticated(
                Reason.MISSING_IDENTITY, f"{uri[:60]!r} is not a {SPIFFE_PREFIX} identity"
            )
        path = uri[len(SPIFFE_PREFIX) :]
        if path == OPERATOR:
            return cls(None)
        kind, _, code = path.partition("/")
        if kind == "bank":
            return cls(_participant_code(code, uri))
        if kind == "fxp":
            return cls(None, _participant_code(code, uri))
        raise Unauthenticated(Reason.MISSING_IDENTITY, f"unrecognised principal {uri[:60]!r}")

    def render(self) -> str:
        """The metadata form, as the audit trail records the actor."""
        if self.provider is not None:
            return f"fxp:{self.provider}"
        return OPERATOR if self.bank is None else f"bank:{self.bank}"


class Role(Enum):
    PUBLIC = "public"  # health, reflection
    OPERATOR = "operator"
    BANK = "bank"
    ANY = "any"  # operator or bank


class IdentityResolver(Protocol):
    def resolve(self, context: grpc.aio.ServicerContext[object, object]) -> Principal: ...


class InsecureMetadataResolver:
    """Development only: trusts the x-remitnet-principal header."""

    def resolve(self, context: grpc.aio.ServicerContext[object, object]) -> Principal:
        for key, value in context.invocation_metadata() or ():
            if key == PRINCIPAL_HEADER:
                return Principal.parse(value if isinstance(value, str) else value.decode())
        raise Unauthenticated(
            Reason.MISSING_IDENTITY,
            f"send metadata {PRINCIPAL_HEADER}: operator, bank:<CODE> or fxp:<CODE>",
        )


class CertificateResolver:
    """mTLS: the client certificate carries exactly one remitnet SPIFFE URI
    SAN (`spiffe://remitnet/operator`, `.../bank/<CODE>`, `.../fxp/<CODE>`);
    its common name is ignored. gRPC has already verified the chain against the client CA."""

    def resolve(self, context: grpc.aio.ServicerContext[object, object]) -> Principal:
        auth = context.auth_context()
        if not auth.get("x509_subject"):
            raise Unauthenticated(Reason.MISSING_IDENTITY, "no client certificate")
        uris = [
            u.decode(errors="replace")
            for u in auth.get("peer_uri") or []
            if u.startswith(b"spiffe://")
        ]
        if len(uris) != 1:
            raise Unauthenticated(
                Reason.MISSING_IDENTITY,
                "the client certificate must carry exactly one SPIFFE URI "
                f"({SPIFFE_PREFIX}operator, {SPIFFE_PREFIX}bank/<CODE> or "
                f"{SPIFFE_PREFIX}fxp/<CODE>); it has {len(uris)}",
            )
        return Principal.from_spiffe(uris[0])


_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("remitnet_caller")


def set_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _CALLER.set(principal)


def reset_principal(token: contextvars.Token[Principal]) -> None:
    # A streaming handler is an async generator; when the client cuts the
    # stream, grpc.aio may finalise it from another context, where this token
    # was never set. There is nothing to undo there (each call runs in a
    # context of its own), and raising would turn the client's cancel into an
    # INTERNAL error on the way out.
    with contextlib.suppress(ValueError):
        _CALLER.reset(token)


def current_principal() -> Principal:
    return _CALLER.get()


def calling_bank() -> str:
    principal = current_principal()
    if principal.bank is None:
        raise PermissionDenied(Reason.BANK_ONLY, "this call is made by a bank, not the operator")
    return principal.bank


def provider_refusal(principal: Principal) -> PermissionDenied:
    return PermissionDenied(
        Reason.PROVIDER_NOT_ALLOWED,
        f"FX provider {principal.provider} may publish and list its own rates and read its "
        "own position, statements and cycles; this call is not one of those",
        provider=principal.provider or "",
    )


def authorize(role: Role, principal: Principal, *, provider_allowed: bool = False) -> None:
    """`role` admits `principal`. An FX provider principal is admitted to
    the calls open to it (`provider_allowed`) only, whatever their role."""
    if principal.is_provider:
        if not provider_allowed:
            raise provider_refusal(principal)
        return
    if role is Role.OPERATOR and not principal.is_operator:
        raise PermissionDenied(Reason.OPERATOR_ONLY, "this call is for the hub operator")
    if role is Role.BANK and principal.is_operator:
        raise PermissionDenied(Reason.BANK_ONLY, "this call is made by a bank, not the operator")
