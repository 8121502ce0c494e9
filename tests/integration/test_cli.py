"""The `remitnet` command against a running hub, as an operator and a bank
would type it: the human form by default, `--json` for scripts, one error
line and a distinct exit status for refused, invalid and unreachable."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hubs import CLI, free_port, start_hub

from remitnet.services.entrypoints.cli import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from remitnet.services.entrypoints.server import SERVICES

ISO_UTC = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b")


def _run(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--target", target, *args], capture_output=True, text=True, timeout=60
    )


def _cli(target: str, *args: str) -> str:
    """The human form of a command that succeeds."""
    result = _run(target, *args)
    assert result.returncode == 0, result.stderr
    assert "{" not in result.stdout, result.stdout  # no JSON unless asked
    return result.stdout


def _json(target: str, *args: str) -> Any:
    """The --json form (given after the command, as people type it)."""
    result = _run(target, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # exactly one document


def _row(out: str, first: str) -> list[str]:
    """The cells of the table row (or block line) that starts with `first`;
    cells are two or more spaces apart."""
    (line,) = [ln for ln in out.splitlines() if ln.split("  ")[0].strip() == first]
    return re.split(r"\s{2,}", line.strip())


def _value(out: str, label: str) -> str:
    """The value of a `label  value` line."""
    (line,) = [ln for ln in out.splitlines() if re.match(rf"{re.escape(label)}\s{{2,}}", ln)]
    return line[len(label) :].strip()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("cli") / "cli.db"
    hub = start_hub(f"sqlite:///{db}", wait=30)
    try:
        yield hub.target
    finally:
        assert hub.stop(30) == 0


def test_help_names_every_command_and_documents_exit_codes() -> None:
    result = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    out = result.stdout
    assert "bank a bank" not in out and "operator: show a bank and its accounts" in out
    for command in ("onboard", "fund", "submit", "statement", "ledger", "reconcile"):
        assert re.search(rf"^\s+{command}\s+\S", out, re.M), command
    assert "--json" in out and "exit status:" in out
    for code, word in [(EXIT_REFUSED, "refused"), (EXIT_USAGE, "bad arguments"),
                       (EXIT_UNREACHABLE, "unreachable")]:  # fmt: skip
        assert re.search(rf"^\s+{code}\s+{word}", out, re.M), word
    serve = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert all(name in serve.stdout for name in SERVICES)


def test_operator_and_bank_commands_in_both_forms(target: str) -> None:
    out = _cli(target, "onboard", "CLIUS01", "--name", "US", "--region", "us-east1",
               "--currency", "USD")  # fmt: skip
    assert _value(out, "status") == "ACTIVE"
    assert ISO_UTC.fullmatch(_value(out, "created at"))
    assert _row(out, "USD") == ["USD", *["0.00 USD"] * 5]  # ... unsettled net, reserved, headroom
    assert _value(out, "requires confirmation") == "no"
    bank = _json(target, "onboard", "CLIEU01", "--name", "EU", "--region", "europe-west1",
                 "--currency", "USD", "--currency", "EUR")  # fmt: skip
    assert bank["status"] == "BANK_STATUS_ACTIVE"
    assert {a["currency"]: a["balance"] for a in bank["accounts"]} == {"EUR": "0", "USD": "0"}

    out = _cli(target, "fund", "CLIUS01", "USD", "100000.00")
    assert _value(out, "balance") == "100,000.00 USD"
    assert _value(out, "unsettled net") == "0.00 USD"  # zeros shown
    account = _json(target, "cap", "CLIUS01", "USD", "50.00")
    assert account == {
        "bank_code": "CLIUS01",
        "currency": "USD",
        "balance": "10000000",
        "net_debit_cap": "5000",
        "unsettled_net": "0",
        "headroom": "10005000",
        "reserved": "0",
    }

    out = _cli(target, "submit", "--as", "CLIUS01", "--to", "CLIEU01", "USD", "12.34")
    tid = _value(out, "transfer")
    assert _value(out, "amount") == "12.34 USD"
    assert (_value(out, "status"), _value(out, "replayed")) == ("ACCEPTED", "no")
    sent = _json(target, "submit", "--as", "CLIUS01", "--to", "CLIEU01", "USD", "12.34",
                 "--id", tid)  # fmt: skip
    assert sent["replayed"] is True
    assert sent["transfer"]["amount"] == {"currency": "USD", "minor_units": "1234"}
    assert sent["transfer"]["status"] == "TRANSFER_STATUS_ACCEPTED"
    assert sent["transfer"]["remittance_info"] == ""  # empty fields are there too
    assert sent["transfer"]["quote_id"] == ""
    out = _cli(target, "status", "--as", "CLIEU01", tid)
    assert _value(out, "status") == "ACCEPTED" and "TRANSFER_STATUS" not in out

    # Before any settlement: the EUR account has no entries, its sums are zero.
    out = _cli(target, "ledger")
    assert _row(out, "EUR") == ["EUR", "0", "0.00 EUR", "0.00 EUR", "yes"]
    assert _row(out, "USD") == ["USD", "2", "0.00 USD", "0.00 USD", "yes"]
    assert "the ledger sums to zero in every currency: OK" in out
    totals = {t["currency"]: t for t in _json(target, "ledger")["currencies"]}
    assert totals["EUR"] == {"currency": "EUR", "balance_sum": "0", "entry_sum": "0",
                             "entry_count": "0"}  # fmt: skip

    out = _cli(target, "close", "USD")
    cycle_id = _value(out, "cycle")
    assert _value(out, "state") == "CLOSED" and _value(out, "settled at") == "-"
    assert _row(out, "CLIUS01")[1:4] == ["12.34 USD", "0.00 USD", "-12.34 USD"]
    out = _cli(target, "settle", cycle_id)
    assert _value(out, "already settled") == "no"
    assert _row(out, "CLIEU01") == ["CLIEU01", "12.34 USD"]
    settled = _json(target, "settle", cycle_id)
    assert settled["already_settled"] is True
    # The settled cycle names the operator trail's head, as banks can keep it.
    assert re.fullmatch(r"#\d+ [0-9a-f]{64}", _value(_cli(target, "cycle", cycle_id),
                                                      "audit chain head"))  # fmt: skip
    assert {p["bank_code"]: p["amount"] for p in settled["postings"]} == {
        "CLIEU01": "1234",
        "CLIUS01": "-1234",
    }

    out = _cli(target, "statement", "--as", "CLIEU01", "CLIEU01", "USD")
    assert _value(out, "opening balance") == "0.00 USD"
    (entry,) = [r for r in out.splitlines() if "SETTLEMENT" in r]
    cells = re.split(r"\s{2,}", entry.strip())
    assert cells[0] == "1" and ISO_UTC.fullmatch(cells[1])
    assert cells[2:] == ["SETTLEMENT", cycle_id, "12.34 USD", "12.34 USD"]  # running balance
    assert _value(out, "closing balance") == "12.34 USD"
    statement = _json(target, "statement", "CLIUS01", "USD")  # as the operator
    assert statement["opening_balance"] == {"currency": "USD", "minor_units": "0"}
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in statement["entries"]] == [
        ("ENTRY_KIND_DEPOSIT", "10000000", "10000000"),
        ("ENTRY_KIND_SETTLEMENT", "-1234", "9998766"),
    ]
    assert statement["closing_balance"] == {"currency": "USD", "minor_units": "9998766"}

    out = _cli(target, "reconcile", cycle_id)
    assert _value(out, "all matched") == "yes"
    assert _row(out, "CLIUS01")[-2:] == ["-12.34 USD", "yes"]
    assert _json(target, "reconcile", cycle_id)["all_matched"] is True

    out = _cli(target, "cycles", "--currency", "USD")
    assert [_row(out, c)[2] for c in (cycle_id, "USD-000002")] == ["SETTLED", "OPEN"]
    cycles = _json(target, "cycles", "--currency", "USD")["cycles"]
    assert [c["state"] for c in cycles] == ["CYCLE_STATE_OPEN", "CYCLE_STATE_SETTLED"]
    assert cycles[0]["gross_value"] == "0" and cycles[0]["settled_at"] is None
    assert [c["cycle_id"] for c in _json(target, "cycles", "--state", "settled")["cycles"]] == [
        cycle_id
    ]
    out = _cli(target, "banks")
    assert _row(out, "CLIUS01")[4:6] == ["USD", "99,987.66 USD"]
    # --target and --json also work before the command
    result = subprocess.run([*CLI, "--json", "--target", target, "ledger"], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and json.loads(result.stdout)["currencies"]


def test_a_refusal_is_one_line_with_the_reason_and_its_metadata(target: str) -> None:
    _cli(target, "onboard", "CLIRF01", "--name", "R", "--region", "us-east1", "--currency", "USD")
    _cli(target, "onboard", "CLIRF02", "--name", "S", "--region", "us-east1", "--currency", "USD")
    _cli(target, "fund", "CLIRF01", "USD", "10.00")
    too_much = ["submit", "--as", "CLIRF01", "--to", "CLIRF02", "USD", "5000"]
    result = _run(target, *too_much)
    assert result.returncode == EXIT_REFUSED and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("refused: "), line
    head, message = line.removeprefix("refused: ").split(": ", 1)
    words = head.split()
    assert words[:2] == ["FAILED_PRECONDITION", "INSUFFICIENT_LIQUIDITY"], line
    metadata = dict(w.split("=", 1) for w in words[2:])  # ErrorInfo metadata, key=value
    assert {"bank": "CLIRF01", "currency": "USD"}.items() <= metadata.items()
    result = _run(target, *too_much, "--json")
    assert result.returncode == EXIT_REFUSED
    assert json.loads(result.stdout)["error"] == {
        "outcome": "refused",
        "code": "FAILED_PRECONDITION",
        "reason": "INSUFFICIENT_LIQUIDITY",
        "metadata": metadata,
        "message": message,
    }
    result = _run(target, "bank", "NOSUCH01")
    assert result.returncode == EXIT_REFUSED
    assert result.stderr.startswith("refused: NOT_FOUND UNKNOWN_PARTICIPANT")
    # Refused before anything is sent: more decimals than USD has.
    result = _run(target, "submit", "--as", "CLIRF01", "--to", "CLIRF02", "USD", "1.234")
    assert result.returncode == EXIT_USAGE
    assert result.stderr.startswith("invalid: INVALID_ARGUMENT INVALID_AMOUNT: ")
    assert _run(target, "submit", "--as", "CLIRF01", "USD", "1").returncode == EXIT_USAGE


def test_an_unreachable_hub_has_its_own_exit_status() -> None:
    nobody = f"127.0.0.1:{free_port()}"
    tid = "3f6c2a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f"
    result = _run(nobody, "--deadline", "0.5", "submit", "--as", "A", "--to", "B", "USD", "1",
                  "--id", tid)  # fmt: skip
    assert result.returncode == EXIT_UNREACHABLE
    (line,) = result.stderr.splitlines()
    assert line.startswith("unreachable: DEADLINE_EXCEEDED"), line
    assert f"no answer from {nobody} within 0.5 s" in line and f"--id {tid} is safe" in line
    result = _run(nobody, "close", "USD", "--json")  # not retried: fails at once
    assert result.returncode == EXIT_UNREACHABLE
    assert result.stderr.startswith("unreachable: UNAVAILABLE")
    assert json.loads(result.stdout)["error"]["outcome"] == "unreachable"


def test_a_bank_sees_its_position_and_follows_its_status_stream(target: str) -> None:
    for code in ("CLIPOS01", "CLIPOS02"):
        _cli(target, "onboard", code, "--name", code, "--region", "us-east1", "--currency", "USD")
    _cli(target, "fund", "CLIPOS01", "USD", "1000.00")
    sent = _json(target, "submit", "--as", "CLIPOS01", "--to", "CLIPOS02", "USD", "250.00")
    position = _json(target, "position", "--as", "CLIPOS01", "USD")["positions"][0]
    assert (position["balance"], position["unsettled_net"], position["headroom"]) == (
        "100000",
        "-25000",
        "75000",
    )
    out = _cli(target, "position", "--as", "CLIPOS01")
    assert "750.00 USD" in out  # the headroom, formatted
    events = _json(target, "watch", "--as", "CLIPOS02", "--since", "2000-01-01T00:00:00",
                   "--count", "1", "--seconds", "5")["events"]  # fmt: skip
    assert [e["transfer"]["transfer_id"] for e in events] == [sent["transfer"]["transfer_id"]]
    # Resuming after the only event: nothing more within a quiet second.
    token = events[0]["resume_token"]
    again = _json(target, "watch", "--as", "CLIPOS02", "--token", token, "--seconds", "1")
    assert again["events"] == []


def test_an_fx_provider_is_onboarded_publishes_and_is_quoted(
    target: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    onboard = ["--region", "us-east1", "--currency", "USD", "--currency", "PHP"]
    out = _cli(target, "onboard", "CLIFX01", "--name", "FX", *onboard, "--provider")
    assert _value(out, "roles") == "FX_PROVIDER"
    both = _json(target, "onboard", "CLIFX02", "--name", "FX2", *onboard, "--provider", "--bank")
    assert both["roles"] == ["PARTICIPANT_ROLE_BANK", "PARTICIPANT_ROLE_FX_PROVIDER"]
    _cli(target, "onboard", "CLIQB01", "--name", "Q", "--region", "us-east1", "--currency", "USD")
    _cli(target, "fund", "CLIQB01", "USD", "1000.00")
    for code in ("CLIFX01", "CLIFX02"):
        _cli(target, "fund", code, "PHP", "100000.00")
    out = _cli(target, "rates", "publish", "--as", "fxp:CLIFX01", "USD/PHP=56.10@30")
    assert (_value(out, "updated"), _value(out, "provider")) == ("1", "CLIFX01")
    # A rates file (as --fx-rates, with an optional spread column).
    path = tmp_path_factory.mktemp("rates") / "rates.csv"
    path.write_text("base,quote,rate,as_of,spread_bps\nUSD,PHP,56.10,2026-01-01T00:00:00Z,40\n")
    now = datetime.now(UTC).isoformat()
    published = _json(target, "rates", "publish", "--as", "fxp:CLIFX02", str(path), "--as-of", now)
    assert published == {"updated": 1, "provider": "CLIFX02"}
    out = _cli(target, "rates", "list", "--as", "fxp:CLIFX01")
    assert _row(out, "CLIFX01")[1:4] == ["USD/PHP", "56.1", "30"]
    assert "CLIFX02" not in out  # a provider lists its own rates only
    # The quote names the provider that won: CLIFX01's 30 bps beat 40.
    out = _cli(target, "quote", "--as", "CLIQB01", "USD", "PHP", "--sell", "100.00")
    assert _value(out, "provider") == "CLIFX01"
    assert _value(out, "target amount") == "5,593.17 PHP"
    named = _json(target, "quote", "--as", "CLIQB01", "USD", "PHP", "--deliver", "100.00",
                  "--provider", "CLIFX02")  # fmt: skip
    assert named["quote"]["provider"] == "CLIFX02"
    # Its own position, and the calls it may not make.
    position = _json(target, "position", "--as", "fxp:CLIFX01", "PHP")
    assert position["bank_code"] == "CLIFX01"
    result = _run(target, "rates", "publish", "--as", "fxp:CLIFX01", "--provider", "CLIFX02",
                  "USD/PHP=56")  # fmt: skip
    assert result.returncode == EXIT_REFUSED
    assert result.stderr.startswith("refused: PERMISSION_DENIED PROVIDER_NOT_ALLOWED")
    result = _run(target, "quote", "--as", "CLIQB01", "USD", "PHP", "--sell", "1",
                  "--provider", "CLIQB01")  # fmt: skip
    assert result.stderr.startswith("refused: FAILED_PRECONDITION NOT_AN_FX_PROVIDER")
    for bad in (["USDPHP=56"], ["USD/PHP=56@x"], ["--as", "CLIQB01", "USD/PHP=56"]):
        result = _run(target, "rates", "publish", *bad)
        assert result.returncode == EXIT_USAGE, (bad, result.stderr)
        assert result.stderr.startswith("invalid: INVALID_ARGUMENT INVALID_RATE")
    out = _cli(target, "banks")  # a row per account, the roles last
    roles = {ln.split()[0]: {ln.split()[-1]} for ln in out.splitlines()[2:]}
    assert (roles["CLIFX01"], roles["CLIQB01"]) == ({"FX_PROVIDER"}, {"BANK"})


def _wait_status(target: str, bank: str, tid: str, status: str, seconds: float = 15.0) -> Any:
    """The transfer once it has `status` (the hub moves it on its own)."""
    import time

    stop = time.monotonic() + seconds
    while True:
        t = _json(target, "status", "--as", bank, tid)
        if t["status"] == status or time.monotonic() > stop:
            return t
        time.sleep(0.2)


def test_payee_confirmation_accept_reject_expire_and_cancel(target: str) -> None:
    usd = ["--region", "us-east1", "--currency", "USD"]
    _cli(target, "onboard", "CLILC01", "--name", "Debtor", *usd)
    out = _cli(target, "onboard", "CLILC02", "--name", "Payee", *usd, "--require-confirmation")
    assert _value(out, "requires confirmation") == "yes"
    _cli(target, "onboard", "CLILC03", "--name", "Other", *usd)
    _cli(target, "fund", "CLILC01", "USD", "1000.00")
    pay = ["submit", "--as", "CLILC01", "--to", "CLILC02", "USD"]

    out = _cli(target, *pay, "100.00")  # the creditor requires it: RESERVED
    a = _value(out, "transfer")
    assert (_value(out, "status"), _value(out, "cycle")) == ("RESERVED", "-")
    assert ISO_UTC.fullmatch(_value(out, "confirm by"))
    assert _value(out, "resolved at") == "-" and _value(out, "reason") == "-"
    b = _json(target, *pay, "20.00")["transfer"]["transfer_id"]
    # The debtor asks for it, with 1 s to confirm, of a creditor that does not require it.
    c = _json(target, "submit", "--as", "CLILC01", "--to", "CLILC03", "USD", "5.00",
              "--confirm", "--timeout", "1")["transfer"]  # fmt: skip
    assert c["status"] == "TRANSFER_STATUS_RESERVED" and c["cycle_id"] == ""
    position = _json(target, "position", "--as", "CLILC01", "USD")["positions"][0]
    assert (position["reserved"], position["headroom"]) == ("12500", "87500")
    out = _cli(target, "position", "--as", "CLILC01", "USD")
    assert "125.00 USD" in out  # reserved, formatted

    out = _cli(target, "transfers", "list", "--as", "CLILC02", "--status", "reserved")
    assert {_row(out, tid)[4] for tid in (a, b)} == {"RESERVED"}
    assert c["transfer_id"] not in out  # CLILC02 is no party to it

    out = _cli(target, "confirm", "--as", "CLILC02", a)
    assert _value(out, "status") == "ACCEPTED" and _value(out, "cycle").startswith("USD-")
    assert ISO_UTC.fullmatch(_value(out, "resolved at")) and _value(out, "replayed") == "no"
    assert _json(target, "confirm", "--as", "CLILC02", a)["replayed"] is True
    out = _cli(target, "confirm", "--as", "CLILC02", b, "--reject", "AC04")
    assert (_value(out, "status"), _value(out, "reason")) == (
        "REJECTED",
        "AC04 ClosedAccountNumber",
    )
    for args, reason in [
        ([b], "TRANSFER_REJECTED"),  # accepting after rejecting
        ([a, "--reject", "AC04"], "TRANSFER_ALREADY_ACCEPTED"),
        ([a, "--reject", "ZZ99"], "UNKNOWN_REASON_CODE"),
    ]:
        result = _run(target, "confirm", "--as", "CLILC02", *args)
        assert result.returncode == EXIT_REFUSED, result.stderr
        assert result.stderr.split()[2] == reason, result.stderr
    result = _run(target, "confirm", "--as", "CLILC01", a)  # the debtor
    assert "NOT_TRANSFER_CREDITOR" in result.stderr

    # Nobody answers C: the hub expires it by itself (AB05), releasing it.
    expired = _wait_status(target, "CLILC01", c["transfer_id"], "TRANSFER_STATUS_EXPIRED")
    assert (expired["status"], expired["reason"]) == ("TRANSFER_STATUS_EXPIRED", "AB05")
    out = _cli(target, "status", "--as", "CLILC03", c["transfer_id"])
    assert _value(out, "reason") == "AB05 TimeoutCreditorAgent"
    result = _run(target, "confirm", "--as", "CLILC03", c["transfer_id"])
    assert result.stderr.startswith("refused: FAILED_PRECONDITION TRANSFER_EXPIRED")
    position = _json(target, "position", "--as", "CLILC01", "USD")["positions"][0]
    assert (position["reserved"], position["headroom"]) == ("0", "90000")  # A stands

    # The debtor cancels a reserved transfer, not a netted one; the operator can.
    d = _json(target, *pay, "1.00")["transfer"]["transfer_id"]
    assert _value(_cli(target, "cancel", "--as", "CLILC01", d), "status") == "CANCELLED"
    result = _run(target, "cancel", "--as", "CLILC01", a)
    assert result.returncode == EXIT_REFUSED and "TRANSFER_NOT_CANCELLABLE" in result.stderr
    assert _run(target, "cancel", a).returncode == EXIT_USAGE  # the operator gives a reason
    assert _run(target, "cancel", "--as", "CLILC01", a, "--reason", "x").returncode == EXIT_USAGE
    out = _cli(target, "cancel", "--as", "operator", a, "--reason", "sent twice, ticket 7")
    assert (_value(out, "status"), _value(out, "reason")) == ("CANCELLED", "sent twice, ticket 7")

    # Several answers in one call: a row each, in order, refusals included.
    e = _json(target, *pay, "2.00")["transfer"]["transfer_id"]
    out = _cli(target, "confirm", "--as", "CLILC02", e, b, "--reject", "AM05")
    assert (_value(out, "answered"), _value(out, "refused")) == ("2", "0")  # b: a replay
    assert _row(out, e)[1:] == ["REJECTED", "AM05 Duplication", "no"]
    assert _row(out, b)[1:] == ["REJECTED", "AC04 ClosedAccountNumber", "yes"]
    out = _cli(target, "transfers", "list", "--as", "CLILC01", "--status", "rejected")
    assert {ln.split()[0] for ln in out.splitlines()[2:]} == {b, e}
    assert len(_json(target, "transfers", "list", "--as", "CLILC01", "--status", "expired",
                     "--limit", "5")["transfers"]) == 1  # fmt: skip

    # The operator's setting, off again: transfers to it are netted at once.
    out = _cli(target, "require-confirmation", "CLILC02", "--off")
    assert _value(out, "requires confirmation") == "no"
    assert _value(_cli(target, *pay, "1.00"), "status") == "ACCEPTED"
    # The creditor's stream had the RESERVED events, its cue to confirm.
    events = _json(target, "watch", "--as", "CLILC02", "--since", "2000-01-01T00:00:00",
                   "--seconds", "2")["events"]  # fmt: skip
    moved = [ev["transfer"] for ev in events if ev.get("transfer")]
    reserved = {t["transfer_id"] for t in moved if t["status"] == "TRANSFER_STATUS_RESERVED"}
    assert {a, b, d, e} <= reserved
    out = _cli(target, "watch", "--as", "CLILC02", "--since", "2000-01-01T00:00:00",
               "--seconds", "2")  # fmt: skip
    assert re.search(
        rf"transfer\s+{a}\s+RESERVED\s+CLILC01 -> CLILC02 100.00 USD, confirm by ", out
    )


def test_returns_and_recalls(target: str) -> None:
    usd = ["--region", "us-east1", "--currency", "USD"]
    _cli(target, "onboard", "CLIRT01", "--name", "Sender", *usd)
    _cli(target, "onboard", "CLIRT02", "--name", "Receiver", *usd)
    _cli(target, "fund", "CLIRT01", "USD", "1000.00")
    _cli(target, "fund", "CLIRT02", "USD", "1000.00")
    pay = ["submit", "--as", "CLIRT01", "--to", "CLIRT02", "USD"]
    p, q, r = (_json(target, *pay, amount)["transfer"]["transfer_id"]
               for amount in ("10.00", "20.00", "30.00"))  # fmt: skip

    out = _cli(target, "return", "--as", "CLIRT02", p, "--reason", "AC01")
    rp = _value(out, "transfer")
    assert (_value(out, "debtor"), _value(out, "creditor")) == ("CLIRT02", "CLIRT01")
    assert (_value(out, "return of"), _value(out, "status")) == (p, "ACCEPTED")
    assert _value(out, "reason") == "AC01 IncorrectAccountNumber"
    assert _value(out, "amount") == "10.00 USD"
    again = _json(target, "return", "--as", "CLIRT02", p, "--reason", "AC01", "--id", rp)
    assert again["replayed"] is True and again["return_transfer"]["transfer_id"] == rp
    result = _run(target, "return", "--as", "CLIRT02", p, "--reason", "AC01")
    assert result.stderr.startswith("refused: FAILED_PRECONDITION ALREADY_RETURNED")
    assert f"return_id={rp}" in result.stderr
    result = _run(target, "return", "--as", "CLIRT01", q, "--reason", "AC01")
    assert "NOT_TRANSFER_CREDITOR" in result.stderr
    assert _value(_cli(target, "status", "--as", "CLIRT01", p), "returned by") == rp

    out = _cli(target, "recall", "--as", "CLIRT01", q, "--reason", "DUPL", "--info", "paid twice")
    assert (_value(out, "state"), _value(out, "reason")) == ("REQUESTED", "DUPL DuplicatePayment")
    assert _value(out, "additional info") == "paid twice" and _value(out, "replayed") == "no"
    assert ISO_UTC.fullmatch(_value(out, "answer by"))
    _cli(target, "recall", "--as", "CLIRT01", r, "--reason", "TECH")
    result = _run(target, "recall", "--as", "CLIRT01", r, "--reason", "TECH")
    assert result.stderr.startswith("refused: ALREADY_EXISTS RECALL_EXISTS")
    result = _run(target, "recall", "--as", "CLIRT02", q, "--reason", "DUPL")
    assert "NOT_TRANSFER_DEBTOR" in result.stderr
    out = _cli(target, "transfers", "list", "--as", "CLIRT02", "--recall", "requested")
    assert {ln.split()[0] for ln in out.splitlines()[2:]} == {q, r}
    assert _row(out, q)[-1] == "REQUESTED DUPL"

    out = _cli(target, "answer-recall", "--as", "CLIRT02", q, "--accept")
    assert _value(out, "state") == "ACCEPTED"
    rq = _value(out, "return")  # the recall's return_transfer_id
    assert f"return:\n  transfer         {rq}" in out
    assert "FOCR FollowingCancellationRequest" in out
    out = _cli(target, "answer-recall", "--as", "CLIRT02", r, "--reject", "NOAS")
    assert _value(out, "state") == "REJECTED"
    assert _value(out, "answer reason") == "NOAS NoAnswerFromCustomer"
    result = _run(target, "answer-recall", "--as", "CLIRT02", r, "--accept")
    assert result.stderr.startswith("refused: FAILED_PRECONDITION RECALL_NOT_OPEN")
    result = _run(target, "answer-recall", "--as", "CLIRT02", p, "--accept", "--reject", "NOAS")
    assert result.returncode == EXIT_USAGE
    assert _run(target, "answer-recall", "--as", "CLIRT02", p).returncode == EXIT_USAGE

    listed = {
        flags: {t["transfer_id"] for t in _json(target, "transfers", "list", "--as", "CLIRT01",
                                                *flags.split())["transfers"]}
        for flags in ("--kind return", "--kind payment", "--returned", "--recall rejected")
    }  # fmt: skip
    assert listed == {"--kind return": {rp, rq}, "--kind payment": {p, q, r},
                      "--returned": {p, q}, "--recall rejected": {r}}  # fmt: skip
    out = _cli(target, "transfers", "list", "--as", "CLIRT01", "--returned")
    assert _row(out, q)[-2:] == [f"returned by {rq}", "ACCEPTED DUPL"]
    out = _cli(target, "status", "--as", "CLIRT01", r)
    assert "\n\nrecall:\n  recall " in out  # an indented section
    recall = [ln[2:] for ln in out.split("recall:\n", 1)[1].splitlines()]
    assert _value("\n".join(recall), "answer reason") == "NOAS NoAnswerFromCustomer"
    # Both parties' streams carry the recall's states.
    events = _json(target, "watch", "--as", "CLIRT02", "--since", "2000-01-01T00:00:00",
                   "--seconds", "2")["events"]  # fmt: skip
    states = [(e["recall"]["transfer_id"], e["recall"]["state"]) for e in events if e.get("recall")]
    assert states == [(q, "RECALL_STATE_REQUESTED"), (r, "RECALL_STATE_REQUESTED"),
                      (q, "RECALL_STATE_ACCEPTED"), (r, "RECALL_STATE_REJECTED")]  # fmt: skip


def test_onboard_file_onboards_and_funds_a_scheme_and_is_safe_to_repeat(
    target: str, tmp_path: Any
) -> None:
    scheme = tmp_path / "banks.csv"
    scheme.write_text(
        "code,name,region,currencies,fund,bic\n"
        "CLIOF01,File One,us-east1,USD EUR,USD=1000.00 EUR=5,\n"
        "CLIOF02,File Two,europe-west1,EUR,,\n"
        "CLIOF03,File Three,us-east1,USD,USD=0.25,CLOFUS33\n"
    )
    out = _cli(target, "onboard-file", str(scheme), "--in-flight", "2")
    assert all(code in out for code in ("CLIOF01", "CLIOF02", "CLIOF03"))
    listed = _json(target, "onboard-file", str(scheme))  # again: nothing changes
    balances = {
        b["code"]: {a["currency"]: a["balance"] for a in b["accounts"]} for b in listed["banks"]
    }
    assert balances == {
        "CLIOF01": {"EUR": "500", "USD": "100000"},
        "CLIOF02": {"EUR": "0"},
        "CLIOF03": {"USD": "25"},
    }
    assert [b["bic"] for b in listed["banks"]] == ["", "", "CLOFUS33"]
    assert _json(target, "bank", "CLIOF01")["accounts"][1]["balance"] == "100000"

    # A row the hub refuses is named on stderr; the others are onboarded.
    scheme.write_text(
        "code,name,region,currencies\nCLIOF04,Four,us-east1,USD\nCLIOF02,Renamed,us-east1,EUR\n"
    )
    result = _run(target, "onboard-file", str(scheme))
    assert result.returncode == EXIT_REFUSED
    first, last = result.stderr.splitlines()
    assert first.startswith("row 3 CLIOF02: refused: ALREADY_EXISTS BANK_EXISTS"), first
    assert last.startswith("refused: ALREADY_EXISTS BANK_EXISTS") and "1 of 2 rows" in last
    assert _json(target, "bank", "CLIOF04")["code"] == "CLIOF04"

    # Checked before anything is sent: a missing column, funding in a
    # currency the bank does not hold, more decimals than the currency has.
    for text in (
        "code,name,region\nCLIOF05,Five,us-east1\n",
        "code,name,region,currencies,fund\nCLIOF05,Five,us-east1,USD,EUR=1\n",
        "code,name,region,currencies,fund\nCLIOF05,Five,us-east1,USD,USD=1.234\n",
    ):
        scheme.write_text(text)
        result = _run(target, "onboard-file", str(scheme))
        assert result.returncode == EXIT_USAGE, result.stderr
        assert result.stderr.startswith("invalid: INVALID_ARGUMENT"), result.stderr
    assert _run(target, "bank", "CLIOF05").returncode == EXIT_REFUSED
    assert _run(target, "onboard-file", str(scheme), "--in-flight", "129").returncode == EXIT_USAGE
