"""Who is calling. Resolved once per call by the interceptor, from the peer's
certificate (mTLS) or, only when the server runs with --insecure, from
request metadata; servicers read it from `current_principal()`.

With mTLS the identity is the client certificate's SPIFFE URI SAN, never its
common name: `spiffe://remitnet/operator`, `spiffe://remitnet/bank/<CODE>`
or `spiffe://remitnet/fxp/<CODE>` (an FX provider: parsed, but refused until
FX providers have a role). The server trusts client certificates from its
own client CA only (`--tls-client-ca`), which issues nothing else. Reserved
codes (HUB, the hub's own accounts) are never principals, whichever resolver
reads them."""

from __future__ import annotations

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
    """The operator (bank is None) or one bank."""

    bank: str | None

    @property
    def is_operator(self) -> bool:
        return self.bank is None

    @classmethod
    def parse(cls, text: str) -> Principal:
        """The metadata form: `operator` or `bank:<CODE>`."""
        if text == OPERATOR:
            return cls(None)
        if text.startswith("bank:"):
            return cls(_participant_code(text[5:], text))
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
            _participant_code(code, uri)
            raise Unauthenticated(
                Reason.MISSING_IDENTITY, f"FX provider {code} has no role at the hub yet"
            )
        raise Unauthenticated(Reason.MISSING_IDENTITY, f"unrecognised principal {uri[:60]!r}")

    def render(self) -> str:
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
            Reason.MISSING_IDENTITY, f"send metadata {PRINCIPAL_HEADER}: operator or bank:<CODE>"
        )


class CertificateResolver:
    """mTLS: the client certificate carries exactly one remitnet SPIFFE URI
    SAN (`spiffe://remitnet/operator`, `.../bank/<CODE>`); its common name
    is ignored. gRPC has already verified the chain against the client CA."""

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
                f"({SPIFFE_PREFIX}operator or {SPIFFE_PREFIX}bank/<CODE>); it has {len(uris)}",
            )
        return Principal.from_spiffe(uris[0])


_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("remitnet_caller")


def set_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _CALLER.set(principal)


def reset_principal(token: contextvars.Token[Principal]) -> None:
    _CALLER.reset(token)


def current_principal() -> Principal:
    return _CALLER.get()


def calling_bank() -> str:
    principal = current_principal()
    if principal.bank is None:
        raise PermissionDenied(Reason.BANK_ONLY, "this call is made by a bank, not the operator")
    return principal.bank


def authorize(role: Role, principal: Principal) -> None:
    if role is Role.OPERATOR and not principal.is_operator:
        raise PermissionDenied(Reason.OPERATOR_ONLY, "this call is for the hub operator")
    if role is Role.BANK and principal.is_operator:
        raise PermissionDenied(Reason.BANK_ONLY, "this call is made by a bank, not the operator")
