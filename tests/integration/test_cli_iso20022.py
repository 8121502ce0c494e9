"""`remitnet onboard --bic` and `remitnet iso20022 submit/status` against a
running hub, as a bank would type them: the pacs.002 printed as it came."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubs import CLI, start_hub

from remitnet.services.entrypoints.cli import EXIT_REFUSED, EXIT_USAGE
from tests.iso20022_samples import Tx, pacs008, statuses


def _run(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--target", target, *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("cli_iso") / "cli.db"
    hub = start_hub(f"sqlite:///{db}", wait=30)
    try:
        yield hub.target
    finally:
        assert hub.stop(30) == 0


def test_onboard_with_a_bic_submit_a_pacs008_and_ask_its_status(
    target: str, tmp_path: Path
) -> None:
    for code, bic in [("ISOUS01", "ISOBUS33"), ("ISOPH01", "ISOBPHMM")]:
        done = _run(target, "onboard", code, "--name", code, "--region", "us-east1",
                    "--currency", "USD", "--bic", bic)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "ISOB" in done.stdout
    shown = json.loads(_run(target, "bank", "ISOUS01", "--json").stdout)
    assert shown["bic"] == "ISOBUS33"
    assert _run(target, "fund", "ISOUS01", "USD", "100.00").returncode == 0

    ok, broke = Tx("ISOBPHMM", "12.50"), Tx("ISOBPHMM", "500.00")
    file = tmp_path / "pacs008.xml"
    file.write_bytes(pacs008([ok, broke], instructing_bic="ISOBUS33"))
    submitted = _run(target, "iso20022", "submit", "--as", "ISOUS01", str(file))
    assert submitted.returncode == 0, submitted.stderr
    got = statuses(submitted.stdout.encode())  # the pacs.002, valid against its XSD
    assert [(s.uetr, s.status, s.reason) for s in got] == [
        (ok.uetr, "ACSP", ""),
        (broke.uetr, "RJCT", "AM04"),
    ]
    again = _run(target, "iso20022", "submit", "--as", "ISOUS01", str(file), "--json")
    assert json.loads(again.stdout)["replayed"] is True

    status = _run(target, "iso20022", "status", "--as", "ISOUS01", ok.uetr)
    assert status.returncode == 0, status.stderr
    assert [s.status for s in statuses(status.stdout.encode())] == ["ACSP"]


def test_a_bad_document_is_one_refusal_line(target: str, tmp_path: Path) -> None:
    file = tmp_path / "bad.xml"
    file.write_bytes(b"<Document><oops></Document>")
    result = _run(target, "iso20022", "submit", "--as", "ISOUS01", str(file))
    assert result.returncode == EXIT_REFUSED
    assert result.stderr.startswith("refused: INVALID_ARGUMENT MALFORMED_XML")
    missing = _run(target, "iso20022", "submit", "--as", "ISOUS01", str(tmp_path / "none.xml"))
    assert missing.returncode == EXIT_USAGE and "cannot read" in missing.stderr
