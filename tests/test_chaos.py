"""The chaos run inside the test suite: 60 seconds of faults against the
hub's processes and PostgreSQL, then every invariant checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_chaos_for_sixty_seconds_breaks_no_invariant(pg_template: str) -> None:
    # pg_template: needs PostgreSQL (fails under CI=true if it does not answer)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--seconds", "60"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, result.stdout[-5000:]
    assert summary["violations"] == 0
    assert summary["acknowledged"] > 1_000
    assert summary["transfers_stored"] >= summary["acknowledged"]
    faults = summary["faults"]
    for kind in ("kill_clearing", "kill_core", "restart_postgres", "crash_batch_before_commit"):
        assert faults.get(kind, 0) >= 1, faults
