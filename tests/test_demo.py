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
    assert "'NOT_A_BANK': 1" in out  # an FX provider named as a creditor
    # FX providers: published as themselves, best price wins each corridor.
    assert re.search(r"^  FXPALPHA\s+USD/PHP\s+56\.10?\s+25 bps$", out, re.M)
    assert re.search(
        r"^spread kept by the providers .*: FXPALPHA [\d,.]+ NGN, [\d,.]+ PHP; ", out, re.M
    )
    for corridor, winner in (("USD->PHP", "FXPALPHA"), ("EUR->INR", "FXPBETA")):
        assert re.search(rf"^  {corridor} .* {winner}: delivers the most$", out, re.M)
    assert "FXHUB quotes these corridors too" in out
    # FXPALPHA runs out of PHP: refused at clearing and at quote time, FXPBETA takes over.
    assert "FXPALPHA can now deliver 0.00 PHP" in out
    assert "refused when it clears, FX_PROVIDER_INSUFFICIENT_LIQUIDITY" in out
    assert "refused at quote time, FX_PROVIDER_INSUFFICIENT_LIQUIDITY" in out
    assert "asks any provider: FXPBETA takes over" in out
    assert re.search(r"^    USD->PHP: FXPALPHA 1, FXPBETA 121 ", out, re.M)
    assert re.search(r"^    GBP->NGN: FXPALPHA 60$", out, re.M)
    # The hub carries no position: the providers do, and settle like banks.
    assert "no HUB position in any cycle" in out and not re.search(r"^  HUB ", out, re.M)
    assert re.search(
        r"^  FXPALPHA\s+PHP\s+500,000\.00 PHP\s+-500,000\.00 PHP\s+0\.00 PHP$", out, re.M
    )
    assert re.search(r"^  FXPALPHA\s+PHP\s+0\.00 PHP\s+2\s+0\.00 PHP\s+OK$", out, re.M)
    assert "remitnet statement --as fxp:FXPALPHA FXPALPHA PHP" in out
    # The scheme lifecycle: payee confirmation, hub-enforced expiry, returns, recalls.
    assert "BANKPH01 require confirmation" in out and "all RESERVED" in out
    assert re.search(r"^    B\s+rejected AC04 .* REJECTED\s+AC04 ClosedAccountNumber ", out, re.M)
    assert re.search(r"^    C\s+expired .* EXPIRED\s+AB05 TimeoutCreditorAgent ", out, re.M)
    assert re.search(
        r"^    RD\s+the return of D .* ACCEPTED\s+AC01 IncorrectAccountNumber", out, re.M
    )
    assert re.search(r"^    F\s+.*REJECTED DUPL -> NOAS$", out, re.M)
    assert "refused TRANSFER_NOT_CANCELLABLE" in out and "refused RETURN_QUOTE_REQUIRED" in out
    for event in ("transfer  A            RESERVED", "recall    E            REQUESTED",
                  "transfer  C            EXPIRED"):  # fmt: skip
        assert event in out, event
    assert re.search(r"^after settlement \(GetTransfer\): A SETTLED, .*: OK$", out, re.M)
    assert "hub stopped on SIGTERM (exit code 0)" in out
