"""`make demo` runs end to end and its checks pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_every_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "demo OK" in out
    assert "FAILED" not in out and "MISMATCH" not in out
    assert out.count("sums to zero") == 1 and out.count(": OK") >= 6
    assert "Hub FX revenue" in out and "cross-currency" in out
