"""The principal a call sets is undone where it was set, and undoing it from
another context (an async generator finalised elsewhere after the client cut
its stream) is no error."""

from __future__ import annotations

import contextvars

from remitnet.services.adapters.grpc.identity import (
    Principal,
    current_principal,
    reset_principal,
    set_principal,
)


def test_reset_from_another_context_is_no_error() -> None:
    call = contextvars.copy_context()
    token = call.run(set_principal, Principal.parse("bank:BANKUS01"))
    reset_principal(token)  # here, not in `call`: a different context
    assert call.run(current_principal) == Principal.parse("bank:BANKUS01")


def test_reset_in_the_same_context_restores_the_previous_principal() -> None:
    def call() -> Principal:
        outer = set_principal(Principal.parse("bank:BANKUS01"))
        inner = set_principal(Principal.parse("bank:BANKPH01"))
        reset_principal(inner)
        seen = current_principal()
        reset_principal(outer)
        return seen

    assert contextvars.copy_context().run(call) == Principal.parse("bank:BANKUS01")
