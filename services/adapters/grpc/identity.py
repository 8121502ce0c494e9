"""Who is calling. Resolved once per call by the interceptor, from the peer's
certificate (mTLS) or, only when the server runs with --insecure, from
request metadata; servicers read it from `current_principal()`."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import grpc

from remitnet.services.domain.errors import PermissionDenied, Reason, Unauthenticated
from remitnet.services.domain.model import BANK_CODE_RE

PRINCIPAL_HEADER = "x-remitnet-principal"
OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Principal:
    """The operator (bank is None) or one bank."""

    bank: str | None

    @property
    def is_operator(self) -> bool:
        return self.bank is None

    @classmethod
    def parse(cls, text: str) -> Principal:
        if text == OPERATOR:
            return cls(None)
        if text.startswith("bank:") and BANK_CODE_RE.fullmatch(text[5:]):
            return cls(text[5:])
        raise Unauthenticated(Reason.MISSING_IDENTITY, f"unrecognised principal {text[:40]!r}")

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
    """mTLS: the client certificate's common name is 'operator' or
    'bank:<CODE>'."""

    def resolve(self, context: grpc.aio.ServicerContext[object, object]) -> Principal:
        names = list(context.auth_context().get("x509_common_name") or [])
        if not names:
            raise Unauthenticated(Reason.MISSING_IDENTITY, "no client certificate")
        return Principal.parse(names[0].decode())


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
