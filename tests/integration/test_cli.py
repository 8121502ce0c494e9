"""The `remitnet` command against a running hub, as an operator and a bank
would type it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.test_server import _serve, _wait_serving, free_port


def _cli(target: str, *args: str, ok: bool = True) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "remitnet.services.entrypoints.cli", "--target", target, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
    assert result.returncode != 0
    return result.stderr


async def test_operator_and_bank_commands(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(f"sqlite:///{tmp_path / 'cli.db'}", port, free_port())
    target = f"127.0.0.1:{port}"
    try:
        await _wait_serving(target)
        _cli(
            target,
            "onboard",
            "CLIUS01",
            "--name",
            "US",
            "--region",
            "us-east1",
            "--currency",
            "USD",
        )
        _cli(
            target,
            "onboard",
            "CLIEU01",
            "--name",
            "EU",
            "--region",
            "europe-west1",
            "--currency",
            "USD",
        )
        account = _cli(target, "fund", "CLIUS01", "USD", "1000.00")
        assert account["balance"] == "100000"
        _cli(target, "cap", "CLIUS01", "USD", "50.00")
        sent = _cli(target, "submit", "--as", "CLIUS01", "--to", "CLIEU01", "USD", "12.34")
        tid = sent["transfer"]["transfer_id"]
        assert sent["transfer"]["amount"] == {"currency": "USD", "minor_units": "1234"}
        assert (
            _cli(target, "status", "--as", "CLIEU01", tid)["status"] == "TRANSFER_STATUS_ACCEPTED"
        )
        error = _cli(
            target, "submit", "--as", "CLIUS01", "--to", "CLIEU01", "USD", "5000", ok=False
        )
        assert "INSUFFICIENT_LIQUIDITY" in error
        error = _cli(
            target, "submit", "--as", "CLIUS01", "--to", "CLIEU01", "USD", "1.234", ok=False
        )
        assert "INVALID_AMOUNT" in error
        closed = _cli(target, "close", "USD")["closed"]
        assert closed["transfer_count"] == "1"
        settled = _cli(target, "settle", closed["cycle_id"])
        assert {p["bank_code"]: p["amount"] for p in settled["postings"]} == {
            "CLIEU01": "1234",
            "CLIUS01": "-1234",
        }
        statement = _cli(target, "statement", "--as", "CLIEU01", "CLIEU01", "USD")
        assert statement["closing_balance"]["minor_units"] == "1234"
        assert all(c.get("balance_sum", "0") == "0" for c in _cli(target, "ledger")["currencies"])
        assert _cli(target, "reconcile", closed["cycle_id"])["all_matched"] is True
        assert [c["state"] for c in _cli(target, "cycles", "--currency", "USD")] == [
            "CYCLE_STATE_OPEN",
            "CYCLE_STATE_SETTLED",
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
