"""Helpers for Jupyter / Colab notebooks (imports IPython; the engine itself does not).

    view = LiveOutput()          # an output area shown once...
    view.show(figure)            # ...and redrawn in place: plotly figures, DataFrames, or text
"""
from __future__ import annotations

import json
from typing import Any


class LiveOutput:
    """An output shown once and redrawn in place through display ids (Jupyter, Colab, VS Code), so a polling loop
    can update charts while a run trains without stacking a new output per refresh."""

    def __init__(self) -> None:
        from IPython.display import display

        self.handle = display({"text/plain": "…"}, raw=True, display_id=True)

    def show(self, obj: Any) -> None:
        """Replace the output with `obj`: a plotly Figure (plotly's mimetype where supported, else HTML), a pandas
        DataFrame (an HTML table) or anything else as text."""
        bundle: dict[str, Any]
        if hasattr(obj, "to_plotly_json"):
            title = getattr(getattr(obj.layout, "title", None), "text", None) or "figure"
            bundle = {"application/vnd.plotly.v1+json": json.loads(obj.to_json()),
                      "text/html": obj.to_html(full_html=False, include_plotlyjs="cdn"),
                      "text/plain": f"<figure: {title}>"}
        elif hasattr(obj, "to_html") and hasattr(obj, "to_string"):  # a DataFrame
            bundle = {"text/html": obj.to_html(index=False), "text/plain": obj.to_string(index=False)}
        else:
            bundle = {"text/plain": str(obj)}
        self.handle.update(bundle, raw=True)
