"""Numbers as the UI and the tables print them: one definition each."""
from __future__ import annotations


def percent(value: float | None, digits: int = 0) -> str:
    """0.4567 → '46%' (digits=1: '45.7%'); None → '–'."""
    return "–" if value is None else f"{value:.{digits}%}"


def side_by_side_widths(n_models: int, has_references: bool) -> list[str]:
    """Column widths of 4 · Compare's side-by-side table: narrow number, prompt, reference and reward columns,
    wide outputs."""
    share = max(20, 70 // max(n_models, 1))
    widths = ["40px", "18%"] + (["80px"] if has_references else [])
    for _ in range(n_models):
        widths += [f"{share}%", "80px"]
    return widths
