"""Business Identifier Codes (ISO 9362): how ISO 20022 messages name the
agents, and so how the hub maps a message's agents to its participants."""

from __future__ import annotations

import re
from typing import Final

from remitnet.services.domain.errors import InvalidArgument, Reason

# ISO 9362: institution (4 letters), country (2 letters), location (2
# letters or digits), branch (3 letters or digits, optional), upper case.
# Narrower than the schemas' BICFIDec2014Identifier (which lets digits into
# the institution part), so every BIC the hub stores can appear in a valid
# message.
BIC_RE: Final = re.compile(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")


def check_bic(bic: str, *, field: str = "bic") -> str:
    """`bic` if it has the ISO 9362 shape, else INVALID_ARGUMENT INVALID_BIC."""
    if not BIC_RE.fullmatch(bic):
        raise InvalidArgument(
            Reason.INVALID_BIC,
            f"{field} must be a BICFI (ISO 9362): 4 letters, 2 letters of country, "
            f"2 letters or digits, optionally 3 more; got {bic[:40]!r}",
            field=field,
        )
    return bic


def primary(bic: str) -> str:
    """The 8-character form: a BIC11 ending "XXX" names the primary office,
    the same institution as its BIC8, so the two are one participant."""
    return bic[:8] if len(bic) == 11 and bic.endswith("XXX") else bic
