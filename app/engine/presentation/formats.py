"""Numbers as the UI and the tables print them: one definition each."""
from __future__ import annotations


def percent(value: float | None, digits: int = 0) -> str:
    """0.4567 → '46%' (digits=1: '45.7%'); None → '–'."""
    return "–" if value is None else f"{value:.{digits}%}"
