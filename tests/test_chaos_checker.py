"""The chaos checker's own logic: a checker that cannot fail proves nothing."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from chaos import moved_backwards


def test_forward_reads_pass() -> None:
    assert moved_backwards([(0.0, 1.0, 1), (2.0, 3.0, 2), (4.0, 5.0, 2), (6.0, 7.0, 3)]) is None


def test_a_later_read_that_sees_an_older_status_is_caught() -> None:
    assert moved_backwards([(0.0, 1.0, 3), (2.0, 3.0, 1)]) == (3, 1)
    assert moved_backwards([(0.0, 1.0, 1), (1.5, 2.0, 3), (2.5, 3.0, 2)]) == (3, 2)


def test_overlapping_reads_may_see_either_order() -> None:
    # The second read began before the first ended: its snapshot may be older.
    assert moved_backwards([(0.0, 2.0, 3), (1.0, 3.0, 1)]) is None
