"""The banks repository: participants (banks and FX providers), their
status, roles, home regions and payee-confirmation setting."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.keys import key_in
from remitnet.services.adapters.db.rows import utc
from remitnet.services.adapters.db.schema import HUB_HOME_REGION, banks
from remitnet.services.domain.bank import Bank, ParticipantRole
from remitnet.services.domain.model import HUB, BankStatus
from remitnet.services.service_layer.unit_of_work import Parties

# A bank's columns in Bank's order: rows unpack by position, several times
# cheaper than by name, and ListBanks converts a thousand a page.
_COLUMNS = (
    banks.c.code,
    banks.c.name,
    banks.c.home_region,
    banks.c.status,
    banks.c.created_at,
    banks.c.roles,
    banks.c.requires_confirmation,
    banks.c.bic,
)
# The enums of the stored values, looked up rather than constructed per row.
_STATUSES: dict[int, BankStatus] = {int(s): s for s in BankStatus}
_ROLES: dict[int, ParticipantRole] = {
    v: ParticipantRole(v)
    for v in range(1, int(ParticipantRole.BANK | ParticipantRole.FX_PROVIDER) + 1)
}


def _banks(rows: Iterable[Any]) -> list[Bank]:
    """Rows of _COLUMNS as Banks."""
    statuses, roles = _STATUSES, _ROLES
    return [
        Bank(
            code,
            name,
            region,
            statuses.get(status) or BankStatus(status),
            utc(created),
            roles.get(role) or ParticipantRole(role),
            bool(confirm),
            bic,
        )
        for code, name, region, status, created, role, confirm, bic in rows
    ]


# Built once: a statement built per call (values() with literals, a where
# with a literal) costs more Python to coerce and cache-key than to run, and
# onboarding many banks runs these once per bank.
_GET = select(*_COLUMNS).where(banks.c.code == bindparam("code"))
_PAGE = (
    select(*_COLUMNS)
    .where(banks.c.code > bindparam("after"))
    .order_by(banks.c.code)
    .limit(bindparam("limit"))
)
_INSERT = insert(banks)


class SqlBanks:
    """BankRepository over a Connection."""

    __slots__ = ("conn", "dialect")

    def __init__(self, conn: Connection, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def get(self, code: str) -> Bank | None:
        found = _banks(self.conn.execute(_GET, {"code": code}).all())
        return found[0] if found else None

    def page(self, after: str, limit: int) -> list[Bank]:
        # fetchall: several times cheaper than a fetch per row.
        return _banks(self.conn.execute(_PAGE, {"after": after, "limit": limit}).all())

    def add(self, bank: Bank) -> None:
        self.conn.execute(
            _INSERT,
            {
                "code": bank.code,
                "name": bank.name,
                "home_region": bank.home_region,
                "status": int(bank.status),
                "created_at": bank.created_at,
                "roles": int(bank.roles),
                "requires_confirmation": int(bank.requires_confirmation),
                "bic": bank.bic,
            },
        )

    def codes_by_bic(self, bics: Collection[str]) -> dict[str, str]:
        """The participant code of each of `bics` that one holds."""
        if not bics:
            return {}
        rows = self.conn.execute(
            select(banks.c.bic, banks.c.code).where(key_in(banks.c.bic, bics, self.dialect))
        )
        return dict(rows.tuples().all())

    def set_status(self, code: str, status: BankStatus) -> None:
        self.conn.execute(update(banks).where(banks.c.code == code).values(status=int(status)))

    def regions(self, codes: Collection[str] | None = None) -> dict[str, str]:
        """Home region per bank code: of `codes`, or of every bank."""
        query = select(banks.c.code, banks.c.home_region)
        if codes is not None:
            query = query.where(key_in(banks.c.code, codes, self.dialect))
        return dict(self.conn.execute(query).tuples().all())

    def statuses_and_regions(
        self, codes: Collection[str]
    ) -> tuple[dict[str, BankStatus], dict[str, str]]:
        """Status and home region of each of `codes`, in one query: the
        clearing paths need both (the regions go into the rows they write)."""
        statuses: dict[str, BankStatus] = {}
        regions: dict[str, str] = {}
        rows = self.conn.execute(
            select(banks.c.code, banks.c.status, banks.c.home_region).where(
                key_in(banks.c.code, codes, self.dialect)
            )
        )
        for code, status, region in rows:
            statuses[code] = BankStatus(status)
            regions[code] = region
        return statuses, regions

    def statuses_roles_and_regions(
        self, codes: Collection[str]
    ) -> tuple[dict[str, BankStatus], dict[str, ParticipantRole], dict[str, str]]:
        """Status, roles and home region of each of `codes`, in one query:
        the batch path's read of its parties and its quotes' providers."""
        statuses: dict[str, BankStatus] = {}
        roles: dict[str, ParticipantRole] = {}
        regions: dict[str, str] = {}
        rows = self.conn.execute(
            select(banks.c.code, banks.c.status, banks.c.roles, banks.c.home_region).where(
                key_in(banks.c.code, codes, self.dialect)
            )
        )
        for code, status, role, region in rows:
            statuses[code] = BankStatus(status)
            roles[code] = ParticipantRole(role)
            regions[code] = region
        return statuses, roles, regions

    def parties(self, codes: Collection[str]) -> Parties:
        """`statuses_roles_and_regions` of `codes` and those of them that
        require payee confirmation, in the same one query: the batch path's
        read of its parties and its quotes' providers."""
        statuses: dict[str, BankStatus] = {}
        roles: dict[str, ParticipantRole] = {}
        regions: dict[str, str] = {}
        confirming: list[str] = []
        rows = self.conn.execute(
            select(
                banks.c.code,
                banks.c.status,
                banks.c.roles,
                banks.c.home_region,
                banks.c.requires_confirmation,
            ).where(key_in(banks.c.code, codes, self.dialect))
        )
        for code, status, role, region, confirm in rows:
            statuses[code] = BankStatus(status)
            roles[code] = ParticipantRole(role)
            regions[code] = region
            if confirm:
                confirming.append(code)
        return Parties(statuses, roles, regions, frozenset(confirming))

    def set_requires_confirmation(self, code: str, required: bool) -> None:
        self.conn.execute(
            update(banks).where(banks.c.code == code).values(requires_confirmation=int(required))
        )

    def providers(self) -> list[Bank]:
        """Every participant with the FX_PROVIDER role, by code."""
        # Every combination of roles with the flag (portable: no bitwise SQL).
        every = int(ParticipantRole.BANK | ParticipantRole.FX_PROVIDER)
        flag = int(ParticipantRole.FX_PROVIDER)
        with_flag = [v for v in range(1, every + 1) if v & flag]
        rows = self.conn.execute(
            select(*_COLUMNS).where(banks.c.roles.in_(with_flag)).order_by(banks.c.code)
        )
        return _banks(rows.all())

    def home_regions(
        self, codes: Collection[str], known: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The home_region to write in rows owned by each of `codes`: the
        bank's home region (from `known` when given, else looked up in one
        query), or HUB_HOME_REGION for the hub."""
        out = {HUB: HUB_HOME_REGION}
        if known:
            out.update(known)
        missing = [c for c in codes if c not in out]
        if missing:
            out.update(self.regions(missing))
        unknown = sorted(c for c in codes if c not in out)
        if unknown:
            raise AssertionError(f"rows owned by banks that do not exist: {unknown}")
        return out
