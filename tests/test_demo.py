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
    assert out.count("ledger sums to zero: OK") == 6  # EUR GBP INR NGN PHP USD
    assert "cross-currency" in out and "replayed=True, original returned: True" in out
    for reason in ("INSUFFICIENT_LIQUIDITY", "UNKNOWN_PARTICIPANT", "DUPLICATE_WITH_DIFFERENT"):
        assert reason in out
    assert "hub stopped on SIGTERM (exit code 0)" in out
