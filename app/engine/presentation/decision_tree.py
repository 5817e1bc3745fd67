"""The decision tree (app/engine/advice/decision.py) drawn as a plotly figure, a path highlighted."""
from __future__ import annotations

import plotly.graph_objects as go

from app.engine.advice import decision

PATH_COLOR = "#e4572e"
LEAF_COLOR = "#2e86ab"
IDLE_COLOR = "#b8b8b8"


def _layout() -> dict[str, tuple[float, float]]:
    """(x, y) per node: leaves one unit apart in depth-first order, parents centred over their children, one row
    per depth. Every edge spans one row and sibling subtrees never share x, so boxes and edges do not overlap."""
    positions: dict[str, tuple[float, float]] = {}
    by_id = {node.id: node for node in decision.tree_nodes()}
    next_x = [0.0]

    def place(node_id: str, depth: int) -> float:
        node = by_id[node_id]
        if node.is_leaf:
            x = next_x[0]
            next_x[0] += 1
        else:
            xs = [place(b.target, depth + 1) for b in node.branches]
            x = sum(xs) / len(xs)
        positions[node_id] = (x, -float(depth))
        return x

    place(decision.ROOT, 0)
    return positions


def tree_figure(path: list[str] | None = None) -> go.Figure:
    """The decision tree as a plotly figure; the nodes and edges of `path` (node ids, root first) highlighted."""
    path = path or []
    on_path = set(path)
    path_edges = set(zip(path, path[1:]))
    pos = _layout()
    nodes = decision.tree_nodes()
    fig = go.Figure()
    idle: tuple[list, list] = ([], [])
    chosen: tuple[list, list] = ([], [])
    for node in nodes:
        for branch in node.branches:
            (x0, y0), (x1, y1) = pos[node.id], pos[branch.target]
            highlighted = (node.id, branch.target) in path_edges
            xs, ys = chosen if highlighted else idle
            xs += [x0, x1, None]
            ys += [y0, y1, None]
            fig.add_annotation(
                x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=branch.label, showarrow=False,
                font=dict(size=11, color=PATH_COLOR if highlighted else "#666666"), bgcolor="white",
            )
    fig.add_trace(go.Scatter(x=idle[0], y=idle[1], mode="lines", name="edges", hoverinfo="skip",
                             line=dict(color=IDLE_COLOR, width=1.5)))
    fig.add_trace(go.Scatter(x=chosen[0], y=chosen[1], mode="lines", name="chosen path", hoverinfo="skip",
                             line=dict(color=PATH_COLOR, width=4)))
    for node in nodes:
        x, y = pos[node.id]
        visited = node.id in on_path
        fill = (PATH_COLOR if visited else "white") if not node.is_leaf else (PATH_COLOR if visited else "#e8f1f6")
        fig.add_annotation(
            x=x, y=y, text=f"<b>{node.short}</b>" if visited else node.short, showarrow=False,
            font=dict(size=11, color="white" if visited else "#222222"), align="center",
            bgcolor=fill, bordercolor=PATH_COLOR if visited else (LEAF_COLOR if node.is_leaf else IDLE_COLOR),
            borderwidth=2, borderpad=4,
        )
    fig.add_trace(go.Scatter(  # invisible markers carry the hover text of every node
        x=[pos[n.id][0] for n in nodes], y=[pos[n.id][1] for n in nodes], mode="markers", name="nodes",
        marker=dict(size=28, opacity=0), customdata=[n.id for n in nodes],
        hovertext=[n.question or f"{n.title}: {n.rationale}" for n in nodes], hoverinfo="text",
    ))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    fig.update_layout(
        showlegend=False, plot_bgcolor="white", paper_bgcolor="white", height=120 + 80 * (1 - min(ys)),
        margin=dict(l=10, r=10, t=10, b=10),
        xaxis=dict(visible=False, range=[min(xs) - 0.6, max(xs) + 0.6]),
        yaxis=dict(visible=False, range=[min(ys) - 0.5, 0.5]),
    )
    return fig
