"""`remitnet iso20022 return/recall/answer-recall/returns` against a running
hub, as a bank would type them: each answer printed as it came, valid
against its official XSD."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubs import CLI, start_hub

from remitnet.services.entrypoints.cli import EXIT_REFUSED
from tests.iso20022_lifecycle_samples import (
    Ans,
    Cxl,
    Rtr,
    camt029,
    camt056,
    pacs004,
    resolution,
    returns,
)
from tests.iso20022_samples import Tx, pacs008, statuses

US, PH, US_BIC, PH_BIC = "RTNUS01", "RTNPH01", "RTNBUS33", "RTNBPHMM"


def _run(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--target", target, *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("cli_iso_lifecycle") / "cli.db"
    hub = start_hub(f"sqlite:///{db}", wait=30)
    try:
        yield hub.target
    finally:
        assert hub.stop(30) == 0


def test_return_recall_answer_and_pull_returns(target: str, tmp_path: Path) -> None:
    for code, bic in [(US, US_BIC), (PH, PH_BIC)]:
        done = _run(target, "onboard", code, "--name", code, "--region", "us-east1",
                    "--currency", "USD", "--bic", bic)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _run(target, "fund", code, "USD", "100.00").returncode == 0
    first, second = Tx(PH_BIC, "12.50"), Tx(PH_BIC, "2.00")
    file = tmp_path / "pacs008.xml"
    file.write_bytes(pacs008([first, second], instructing_bic=US_BIC))
    assert _run(target, "iso20022", "submit", "--as", US, str(file)).returncode == 0

    rtr = tmp_path / "pacs004.xml"
    rtr.write_bytes(pacs004([Rtr(first.uetr, "12.50", reason="AC04")], instructing_bic=PH_BIC))
    returned = _run(target, "iso20022", "return", "--as", PH, str(rtr))
    assert returned.returncode == 0, returned.stderr
    assert [(s.uetr, s.status) for s in statuses(returned.stdout.encode())] == [
        (first.uetr, "ACSP")
    ]
    again = _run(target, "iso20022", "return", "--as", PH, str(rtr), "--json")
    assert json.loads(again.stdout)["replayed"] is True

    cxl = tmp_path / "camt056.xml"
    cxl.write_bytes(camt056([Cxl(second.uetr)], assigner_bic=US_BIC))
    recalled = _run(target, "iso20022", "recall", "--as", US, str(cxl))
    assert recalled.returncode == 0, recalled.stderr
    assert [r.status for r in resolution(recalled.stdout.encode())[1]] == ["PDCR"]

    ans = tmp_path / "camt029.xml"
    ans.write_bytes(camt029([Ans(second.uetr, reason="CUST")], assigner_bic=PH_BIC))
    answered = _run(target, "iso20022", "answer-recall", "--as", PH, str(ans))
    assert answered.returncode == 0, answered.stderr
    assert [(r.status, r.reason) for r in resolution(answered.stdout.encode())[1]] == [
        ("RJCR", "CUST")
    ]

    pulled = _run(target, "iso20022", "returns", "--as", US)
    assert pulled.returncode == 0, pulled.stderr
    assert [(r.original, r.amount) for r in returns(pulled.stdout.encode())] == [
        (first.uetr, "12.50")
    ]
    by_uetr = _run(target, "iso20022", "returns", "--as", US, second.uetr)
    assert returns(by_uetr.stdout.encode()) == []


def test_a_bad_document_is_one_refusal_line(target: str, tmp_path: Path) -> None:
    file = tmp_path / "bad.xml"
    file.write_bytes(b"<Document><oops></Document>")
    for action in ("return", "recall", "answer-recall"):
        result = _run(target, "iso20022", action, "--as", US, str(file))
        assert result.returncode == EXIT_REFUSED
        assert result.stderr.startswith("refused: INVALID_ARGUMENT MALFORMED_XML")
