"""The public functions for users' own code (re-exported by :mod:`compare`)."""

from __future__ import annotations

from typing import Any

from compare.output.text import summary, table
from compare.parity.run import check_parity
from compare.parity.verdict import Verdict

__all__ = ["assert_parity", "check_parity"]


def assert_parity(*args: Any, **kwargs: Any) -> Verdict:
    """:func:`check_parity`, raising ``AssertionError`` (message: the verdict line and the
    table) unless parity holds; returns the verdict when it does."""
    verdict = check_parity(*args, **kwargs)
    if not verdict.passed:
        raise AssertionError(f"{summary(verdict)}\n{table(verdict)}")
    return verdict
