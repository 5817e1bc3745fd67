"""What every tab shares: the UI context (folders, the working RunSpec, the tab switcher), small rendering helpers
(messages, tables, health alerts), and the adapter from engine progress callbacks to `gr.Progress`."""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import gradio as gr
import pandas as pd

from app.engine.core.folders import WorkbenchPaths
from app.engine.core.spec import RunSpec

TAB_IDS = ("decide", "rewards", "train", "compare")


@dataclass
class UIContext:
    """Shared by the tab builders.

    `spec` holds the working RunSpec (as a dict) that every step edits; `spec_push` is a nonce that a tab changes
    when it replaced the spec from outside the Train form (Decide, Rewards, Apply YAML), so the form refills itself
    only then and never fights the user's typing.
    """

    paths: WorkbenchPaths
    spec: gr.State
    spec_push: gr.State
    tabs: gr.Tabs
    components: dict[str, Any] = field(default_factory=dict)

    def register(self, prefix: str, comps: dict[str, Any]) -> dict[str, Any]:
        """Record a tab's components under '<prefix>.<name>' (for wiring and tests)."""
        for name, comp in comps.items():
            self.components[f"{prefix}.{name}"] = comp
        return comps


def default_spec_dict() -> dict[str, Any]:
    """The spec a fresh page starts from: GRPO on the built-in arithmetic task with the numeric_answer reward."""
    spec = RunSpec()
    spec.rewards = []
    from app.engine.core.spec import RewardSpec

    spec.rewards.append(RewardSpec(name="numeric_answer", weight=1.0))
    return spec.to_dict()


def nonce() -> float:
    return time.time()


# -- messages ------------------------------------------------------------------------------------------------------
def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def md_escape(text: Any) -> str:
    """Text shown inside Markdown without being interpreted (HTML-escaped, Markdown punctuation escaped)."""
    out = html.escape(str(text), quote=False)
    for ch in ("\\", "`", "*", "_", "[", "]", "#", "|"):
        out = out.replace(ch, "\\" + ch)
    return out


def ok(text: str) -> str:
    return f"<div class='wb-msg wb-ok'>✓ {text}</div>"


def info(text: str) -> str:
    return f"<div class='wb-msg wb-info'>ℹ {text}</div>"


def warn(text: str) -> str:
    return f"<div class='wb-msg wb-warn'>⚠ {text}</div>"


def error(text: str) -> str:
    return f"<div class='wb-msg wb-error'>✗ {text}</div>"


def pre(text: str) -> str:
    return f"<pre class='wb-pre'>{esc(text)}</pre>"


ALERT_ICONS = {"error": "✗", "warning": "⚠", "info": "ℹ"}


def alerts_html(alerts: Sequence[Any], judged: bool = True) -> str:
    """Health alerts as coloured cards (the engine's Alert objects)."""
    if not alerts:
        text = ("No problems detected in the metrics so far." if judged else
                "Health checks start once the run has logged a few steps.")
        return f"<div class='wb-alert wb-alert-ok'><b>✓ Healthy</b><br>{esc(text)}</div>"
    cards = []
    for a in alerts:
        step = f" <span class='wb-step'>step {a.step}</span>" if a.step is not None else ""
        cards.append(f"<div class='wb-alert wb-alert-{esc(a.level)}'><b>{ALERT_ICONS.get(a.level, '')} "
                     f"{esc(a.title)}</b>{step}<br>{esc(a.detail)}</div>")
    return "".join(cards)


# -- tables --------------------------------------------------------------------------------------------------------
def frame(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """A DataFrame for gr.Dataframe (an empty one keeps its headers)."""
    return pd.DataFrame([list(r) for r in rows], columns=list(headers))


# -- progress --------------------------------------------------------------------------------------------------------
def progress_fn(progress: gr.Progress | None) -> Callable[[float, str], None]:
    """An engine progress callback `(fraction, message)` that drives a gr.Progress bar."""

    def note(fraction: float, message: str) -> None:
        if progress is not None:
            try:
                progress(max(0.0, min(1.0, float(fraction))), desc=message)
            except Exception:  # progress is cosmetic: never fail an event over it
                pass

    return note
