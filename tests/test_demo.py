"""`make demo` runs end to end and its checks pass."""

from __future__ import annotations

import re
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
    # The ledger table is `remitnet ledger`'s: per currency, both sums zero.
    ledger = re.findall(r"^  ([A-Z]{3})\s+[\d,]+\s+0(?:\.0+)? \1\s+0(?:\.0+)? \1\s+yes$", out, re.M)
    assert ledger == ["EUR", "GBP", "INR", "NGN", "PHP", "USD"]
    assert "the ledger sums to zero in every currency: OK" in out
    # Money in major units with separators; the onboarding table is `remitnet banks`'.
    assert re.search(
        r"^  BANKUS01 .* USD\s+2,000,000\.00 USD\s+200,000\.00 USD\s+0\.00 USD", out, re.M
    )
    assert "opening balance  0.00 PHP" in out and "closing balance" in out
    assert "cross-currency" in out and "replayed=True, original returned: True" in out
    for reason in ("INSUFFICIENT_LIQUIDITY", "UNKNOWN_PARTICIPANT", "DUPLICATE_WITH_DIFFERENT"):
        assert reason in out
    assert "hub stopped on SIGTERM (exit code 0)" in out
