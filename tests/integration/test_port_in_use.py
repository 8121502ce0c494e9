"""A hub started on a port another hub serves must fail to start: gRPC's
default SO_REUSEPORT would let it bind too and take a share of the first
hub's connections (and of its banks' calls) without either noticing."""

from __future__ import annotations

from pathlib import Path

from hubs import start_hub


def test_second_hub_on_a_port_in_use_fails_to_start(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    with start_hub(db, metrics=False, log=tmp_path / "first.log") as first:
        second = start_hub(
            db,
            port=first.port,
            metrics=False,
            extra=["--no-migrate"],
            log=tmp_path / "second.log",
            wait=None,
        )
        try:
            code = second.proc.wait(timeout=60)
        finally:
            second.stop(5)
        assert code != 0
        assert first.proc.poll() is None
        assert "bind" in (tmp_path / "second.log").read_text().lower()
