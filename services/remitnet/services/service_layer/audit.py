"""Audit: recompute every invariant of the design brief from the raw rows.

Used by the test suite, the chaos checker and `make soak`. It trusts nothing
the hub maintains incrementally: it reads one consistent snapshot of the
stored rows (the `audit_snapshot` read model) and runs every check of
domain/audit.py over it: balances recomputed from ledger entries, positions
and unsettled nets from the legs of transfers, the change feed from the
transfers and cycles it must tell."""

from __future__ import annotations

from dataclasses import dataclass, field

from remitnet.services.domain.audit import AuditSnapshot, run_checks
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork


@dataclass
class AuditReport:
    violations: list[str] = field(default_factory=list)
    transfers: int = 0
    cycles: int = 0
    accounts: int = 0
    entries: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


def audit(db: Transactions) -> AuditReport:
    """Read the snapshot in one read-only transaction and check it."""
    return audit_snapshot(read_snapshot(db))


def read_snapshot(db: Transactions) -> AuditSnapshot:
    return db.read(_snapshot)


def _snapshot(uow: UnitOfWork) -> AuditSnapshot:
    return uow.views.audit_snapshot()


def audit_snapshot(snapshot: AuditSnapshot) -> AuditReport:
    """Every check over `snapshot`, with what it covered."""
    return AuditReport(
        violations=run_checks(snapshot),
        transfers=len(snapshot.transfers),
        cycles=len(snapshot.cycles),
        accounts=len(snapshot.accounts),
        entries=len(snapshot.entries),
    )
