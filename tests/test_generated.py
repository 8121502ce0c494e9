"""Generated code and migrations match their sources."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from remitnet.services.adapters.db import migrate
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import metadata

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def test_generated_protobuf_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = sorted(
        p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.name.endswith(SUFFIXES)
    )
    committed = sorted(
        p.relative_to(ROOT / "protos")
        for p in (ROOT / "protos").rglob("*")
        if p.name.endswith(SUFFIXES)
    )
    assert fresh == committed, "generated files differ: run `make protos`"
    stale = [
        str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / "protos" / p, shallow=False)
    ]
    assert not stale, f"stale generated code {stale}: run `make protos`"


def test_migrations_build_exactly_the_schema(db_url: str) -> None:
    db = Database(db_url)
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    db.dispose()
    assert diff == [], f"schema.py and the migrations disagree: {diff}"


def test_rows_every_batch_updates_have_room_on_their_page_on_postgresql(postgres_url: str) -> None:
    # Migration 0012: half of each page free keeps those updates HOT (no new
    # index entries, pruned in place), which is what keeps close and
    # settlement from walking tens of thousands of dead rows.
    from sqlalchemy import text

    db = Database(postgres_url)
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT relname, reloptions FROM pg_class WHERE relname IN "
                    "('accounts', 'positions', 'feed_heads', 'transfers')"
                )
            ).all()
    finally:
        db.dispose()
    options = {name: opts or [] for name, opts in rows}
    assert options == {
        "accounts": ["fillfactor=50"],
        "positions": ["fillfactor=50"],
        "feed_heads": ["fillfactor=50"],
        "transfers": [],  # inserted once, updated rarely: full pages
    }
