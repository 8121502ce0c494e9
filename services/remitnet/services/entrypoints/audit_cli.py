"""`remitnet audit verify`: check the operator audit trail's hash chain
straight from the database (never through the hub, which it checks).

Exit status: 0 the whole chain verifies (and every --anchor is in it);
1 it does not: the first record that breaks it is named, with why; 2 bad
arguments (an --anchor that is not SEQ:HASH, a SQLite file that does not
exist); 3 the database cannot be read."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2
EXIT_UNREADABLE = 3

HELP = "check the operator audit trail's hash chain in the database"
DESCRIPTION = f"""\
Check the operator audit trail's hash chain, reading the database directly
(--db, as `remitnet db upgrade` does): every record's digest and hash, each
record's link to the one before, no gaps. --anchor SEQ:HASH (repeatable) also
checks a chain head kept outside the hub (a bank's audit_chain_head of a
settled cycle), which detects a rewrite that recomputed the later hashes and
a truncated tail.

exit status:
  {EXIT_OK}  the chain verifies
  {EXIT_BROKEN}  it does not: the first broken record is reported
  {EXIT_USAGE}  bad arguments
  {EXIT_UNREADABLE}  the database cannot be read
"""


def _anchor(text: str) -> tuple[int, str]:
    from remitnet.services.domain.audit_trail import parse_anchor

    try:
        return parse_anchor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: Any, default_db: str) -> argparse.ArgumentParser:
    """The `audit` command on the CLI's subparsers."""
    a: argparse.ArgumentParser = sub.add_parser(
        "audit",
        help="operator audit trail: verify",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("action", choices=["verify"], help=HELP)
    a.add_argument("--db", default=default_db, help="the hub's database URL")
    a.add_argument(
        "--anchor",
        action="append",
        default=[],
        type=_anchor,
        metavar="SEQ:HASH",
        help="a chain head kept outside the hub that must be in the chain (repeatable)",
    )
    a.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document instead of a block",
    )
    return a


def _sqlite_file_missing(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    path = parsed.database or ""
    if path in ("", ":memory:") or not os.path.exists(path):
        return path or ":memory:"
    return None


def run(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from remitnet.clients import format as fmt
    from remitnet.services.adapters.db.database import Database
    from remitnet.services.adapters.db.schema import operator_audit_log
    from remitnet.services.adapters.db.unit_of_work import SqlUnitOfWork
    from remitnet.services.domain.audit_trail import Break, Verification, verify
    from remitnet.services.domain.errors import Aborted, Unavailable

    as_json = bool(getattr(args, "json", False))
    missing = _sqlite_file_missing(args.db)
    if missing is not None:
        print(f"invalid: no SQLite database at {missing}", file=sys.stderr)
        return EXIT_USAGE
    anchors = dict(args.anchor)
    db = Database(args.db)
    try:

        def check(uow: SqlUnitOfWork) -> Verification:
            if not inspect(uow.conn).has_table(operator_audit_log.name):
                out = Verification()
                out.broken = Break(
                    0, "the database has no operator_audit_log table (run remitnet db upgrade)"
                )
                return out
            return verify(uow.trail.records(), anchors)

        result = db.read(check)
    # Unavailable: no connection within the retries; Aborted: the database
    # kept dropping the read.
    except (SQLAlchemyError, Aborted, Unavailable) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"unreachable: cannot read the audit trail: {first[:300]}", file=sys.stderr)
        return EXIT_UNREADABLE
    finally:
        db.dispose()

    head = result.head
    broken = result.broken
    if as_json:
        print(
            fmt.dumps(
                {
                    "verified": result.ok,
                    "records_verified": result.rows,
                    # The last record that verified: the chain head when it all does.
                    "head": None if head is None else {"sequence": head.seq, "hash": head.hash},
                    "anchors_checked": result.anchors_checked,
                    "broken": None
                    if broken is None
                    else {"sequence": broken.seq, "reason": broken.reason},
                }
            )
        )
    else:
        pairs = [
            ("records verified", str(result.rows)),
            (
                "head" if broken is None else "last good record",
                "-" if head is None else f"{head.seq} {head.hash}",
            ),
            ("anchors checked", str(result.anchors_checked)),
        ]
        if broken is not None:
            pairs += [("broken at", f"seq {broken.seq}"), ("reason", broken.reason)]
        print(fmt.fields(pairs))
        print()
        if broken is None:
            print("the operator audit trail verifies: OK")
        else:
            print(f"the operator audit trail is broken at seq {broken.seq}: {broken.reason}")
    return EXIT_OK if broken is None else EXIT_BROKEN
