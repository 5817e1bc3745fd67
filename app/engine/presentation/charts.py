"""Live training charts: pure functions from metrics records (the lines of a run's `metrics.jsonl`) to plotly figures.

    records, _ = runs.read_jsonl(run_dir / "metrics.jsonl")
    figs = dashboard(records, method="grpo")   # {"reward": Figure, "eval": Figure, "dynamics": Figure}

Training records carry TRL's keys (`reward`, `reward_std`, `rewards/<name>/mean`, `rewards/<name>/std`, `loss`,
`kl`, `entropy`, `completions/mean_length`, `learning_rate`, `step_time`, ...). Evaluation records carry
`eval/accuracy`, `eval/reward`, `eval/rewards/<name>`, `eval/mean_length`. Any key may be missing or None (JSON has
no NaN): every function skips what is not there and returns an explanatory empty-state figure rather than an empty
axis. Figures stay legible with one or two points (markers, integer step ticks, padded ranges).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.engine import methods
from app.engine.methods.base import MethodCharts

Record = dict[str, Any]

# Colours: the total reward stands out; per-reward lines take the rest of a colour-blind-safe palette.
TOTAL_COLOR = "#1f3b73"
EVAL_COLOR = "#e4572e"
PALETTE = ("#2e86ab", "#3bb273", "#f18f01", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d35400")
MARKERS_UP_TO = 40  # draw point markers while a series has at most this many points
BAND_ALPHA = 0.15  # opacity of the ±std bands
REWARD_HEIGHT = 360
EVAL_HEIGHT = 300
DYNAMICS_HEIGHT = 520
FONT = dict(family="Inter, system-ui, -apple-system, Segoe UI, sans-serif", size=13)

# Why a dynamics panel can be empty, shown inside it.
EMPTY_REASONS = {
    "kl": "not computed: grpo.beta = 0 (no reference model)",
    "entropy": "not logged",
}


# -- reading records --------------------------------------------------------------------------------------------
def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def is_eval_record(record: Record) -> bool:
    """Whether a metrics line is a held-out evaluation (it has `eval/...` keys)."""
    return any(str(k).startswith("eval/") for k in record)


def train_records(records: Iterable[Record]) -> list[Record]:
    """The per-step training lines (not evaluations), in file order."""
    return [r for r in records if not is_eval_record(r) and "step" in r]


def eval_records(records: Iterable[Record]) -> list[Record]:
    """The held-out evaluation lines, in file order."""
    return [r for r in records if is_eval_record(r)]


def series(records: Iterable[Record], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key`, skipping lines where it is missing, None or not finite; one value per step (the
    last one written wins, e.g. after a resume)."""
    by_step: dict[int, float] = {}
    for r in records:
        value = _finite(r.get(key))
        step = r.get("step")
        if value is None or not isinstance(step, (int, float)):
            continue
        by_step[int(step)] = value
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def reward_names(records: Iterable[Record]) -> list[str]:
    """Reward function names found as `rewards/<name>/mean` keys, in first-seen order."""
    names: list[str] = []
    for r in records:
        for key in r:
            if key.startswith("rewards/") and key.endswith("/mean"):
                name = key[len("rewards/") : -len("/mean")]
                if name not in names:
                    names.append(name)
    return names


def eval_reward_names(records: Iterable[Record]) -> list[str]:
    """Reward names found as `eval/rewards/<name>` keys, in first-seen order."""
    names: list[str] = []
    for r in records:
        for key in r:
            if key.startswith("eval/rewards/"):
                name = key[len("eval/rewards/") :]
                if name not in names:
                    names.append(name)
    return names


def has_metric(records: Iterable[Record], key: str) -> bool:
    return any(_finite(r.get(key)) is not None for r in records)


# -- figure helpers -----------------------------------------------------------------------------------------------
def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _mode(n: int) -> str:
    return "lines+markers" if n <= MARKERS_UP_TO else "lines"


def _step_axis(steps: Sequence[int]) -> dict[str, Any]:
    """An x axis of whole steps, padded so that one or two points sit inside the plot, not on its edge."""
    axis: dict[str, Any] = dict(title=dict(text="step"), tickformat="d", zeroline=False)
    if steps:
        lo, hi = min(steps), max(steps)
        span = max(hi - lo, 1)
        pad = max(0.5, span * 0.04)
        axis["range"] = [lo - pad, hi + pad]
        if span <= 10:
            axis["dtick"] = 1
    return axis


def _layout(fig: go.Figure, title: str, height: int, y_title: str = "", legend: bool = True) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.01, xanchor="left", font=dict(size=16)),
        template="plotly_white",
        height=height,
        margin=dict(l=60, r=20, t=50, b=50),
        font=FONT,
        hovermode="x unified",
        showlegend=legend,
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
    )
    if y_title:
        fig.update_yaxes(title_text=y_title)
    return fig


def _wrap(text: str, width: int = 48) -> str:
    """Break a message into lines of about `width` characters (plotly annotations do not wrap)."""
    import textwrap

    return "<br>".join(textwrap.wrap(text, width)) or text


def empty_figure(title: str = "", message: str = "Waiting for the first training step…",
                 height: int = REWARD_HEIGHT) -> go.Figure:
    """A blank figure that says why it is blank (no run selected, no points yet, metric not logged)."""
    fig = go.Figure()
    fig.add_annotation(
        text=_wrap(message), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
        font=dict(size=15, color="#666666"),
    )
    fig.update_layout(
        title=dict(text=title, x=0.01, xanchor="left", font=dict(size=16)), template="plotly_white", height=height,
        margin=dict(l=40, r=20, t=50, b=40), font=FONT,
        xaxis=dict(visible=False), yaxis=dict(visible=False),
    )
    return fig


def _band(fig: go.Figure, steps: list[int], means: list[float], stds: dict[int, float], color: str, name: str,
          group: str, **subplot: Any) -> None:
    """A shaded mean ± std band (skipped where no std was logged)."""
    pts = [(s, m, stds[s]) for s, m in zip(steps, means) if s in stds]
    if len(pts) < 1:
        return
    xs = [p[0] for p in pts]
    upper = [p[1] + p[2] for p in pts]
    lower = [p[1] - p[2] for p in pts]
    fig.add_trace(go.Scatter(x=xs, y=upper, mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False,
                             legendgroup=group, name=f"{name} +std"), **subplot)
    fig.add_trace(go.Scatter(
        x=xs, y=lower, mode="lines", line=dict(width=0), fill="tonexty", fillcolor=_rgba(color, BAND_ALPHA),
        hoverinfo="skip", showlegend=False, legendgroup=group, name=f"{name} −std",
    ), **subplot)


# -- the figures ----------------------------------------------------------------------------------------------------
def reward_figure(records: Sequence[Record], title: str = "Reward (mean ± std over the step's completions)") -> go.Figure:
    """Total reward and each reward function per step, mean lines with ±std bands, plus held-out reward points."""
    train = train_records(records)
    names = reward_names(train)
    steps, totals = series(train, "reward")
    if not steps and not names:
        message = ("Waiting for the first step…" if not train else
                   "This run logs no reward (SFT/DFT learn from labels): see the loss and the held-out evaluation.")
        return empty_figure(title, message, REWARD_HEIGHT)
    fig = go.Figure()
    all_steps: list[int] = list(steps)
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        s, m = series(train, f"rewards/{name}/mean")
        sd = dict(zip(*series(train, f"rewards/{name}/std")))
        _band(fig, s, m, sd, color, name, name)
        fig.add_trace(go.Scatter(
            x=s, y=m, mode=_mode(len(s)), name=name, legendgroup=name, line=dict(color=color, width=2),
            marker=dict(size=7), hovertemplate="%{y:.3f}",
        ))
        all_steps += s
    if steps and (len(names) != 1 or any(abs(t - m) > 1e-9 for t, m in
                                         zip(totals, series(train, f"rewards/{names[0]}/mean")[1]))):
        # The weighted total differs from the single reward (weight ≠ 1) or there are several rewards.
        sd = dict(zip(*series(train, "reward_std")))
        _band(fig, steps, totals, sd, TOTAL_COLOR, "total", "total")
        fig.add_trace(go.Scatter(
            x=steps, y=totals, mode=_mode(len(steps)), name="total (weighted)", legendgroup="total",
            line=dict(color=TOTAL_COLOR, width=3), marker=dict(size=8), hovertemplate="%{y:.3f}",
        ))
    elif steps and names:
        fig.data[-1].name = f"{names[0]} (= total)"
    ev_steps, ev_reward = series(eval_records(records), "eval/reward")
    if ev_steps:
        fig.add_trace(go.Scatter(
            x=ev_steps, y=ev_reward, mode="markers", name="held-out (greedy)",
            marker=dict(symbol="diamond", size=12, color=EVAL_COLOR, line=dict(color="white", width=1)),
            hovertemplate="held-out %{y:.3f}",
        ))
        all_steps += ev_steps
    _layout(fig, title, REWARD_HEIGHT, "reward")
    fig.update_xaxes(**_step_axis(all_steps))
    return fig


def eval_figure(records: Sequence[Record], title: str = "Held-out evaluation (greedy)") -> go.Figure:
    """Held-out accuracy (share correct, labelled in %) and mean reward at each evaluation, on one axis that always
    spans 0..1 (both are usually in it), so a flat 0 % and a flat 0.0 reward sit on the same line."""
    evals = eval_records(records)
    acc_steps, acc = series(evals, "eval/accuracy")
    rew_steps, rew = series(evals, "eval/reward")
    pref_steps, pref = series(evals, "eval/preference_accuracy")
    if not acc_steps and not rew_steps and not pref_steps:
        return empty_figure(title, "No evaluation yet: the base model is evaluated before step 1, the trained "
                                   "model at the end (and every logging.eval_every steps).", EVAL_HEIGHT)
    fig = go.Figure()
    if acc_steps:
        fig.add_trace(go.Scatter(
            x=acc_steps, y=acc, mode="lines+markers+text", name="accuracy", line=dict(color=EVAL_COLOR, width=3),
            marker=dict(size=10), text=[f"{a:.0%}" for a in acc], textposition="top center",
            hovertemplate="accuracy %{y:.1%}",
        ))
    if rew_steps:
        fig.add_trace(go.Scatter(
            x=rew_steps, y=rew, mode="lines+markers", name="mean reward", line=dict(color=TOTAL_COLOR, dash="dot"),
            marker=dict(size=8, symbol="diamond"), hovertemplate="reward %{y:.3f}",
        ))
    if pref_steps:
        fig.add_trace(go.Scatter(
            x=pref_steps, y=pref, mode="lines+markers+text", name="preference accuracy",
            line=dict(color=PALETTE[3], width=3), marker=dict(size=9, symbol="square"),
            text=[f"{a:.0%}" for a in pref], textposition="bottom center", hovertemplate="prefers chosen %{y:.1%}",
        ))
    _layout(fig, title, EVAL_HEIGHT)
    values = acc + rew + pref
    lo, hi = min(values + [0.0]), max(values + [1.0])
    fig.update_yaxes(range=[lo - 0.05 * (hi - lo), hi + 0.15 * (hi - lo)])
    fig.update_xaxes(**_step_axis(acc_steps + rew_steps + pref_steps))
    return fig


def metric_figure(records: Sequence[Record], key: str, title: str, y_title: str = "", y_format: str = "",
                  height: int = 280, color: str = TOTAL_COLOR) -> go.Figure:
    """One training metric per step (any key of the training lines)."""
    steps, values = series(train_records(records), key)
    if not steps:
        return empty_figure(title, f"'{key}' {EMPTY_REASONS.get(key, 'not logged yet')}", height)
    fig = go.Figure(go.Scatter(x=steps, y=values, mode=_mode(len(steps)), name=key, line=dict(color=color, width=2),
                               marker=dict(size=7)))
    _layout(fig, title, height, y_title, legend=False)
    fig.update_xaxes(**_step_axis(steps))
    if y_format:
        fig.update_yaxes(tickformat=y_format)
    return fig


def dynamics_figure(records: Sequence[Record], method: str = "grpo", title: str = "Training dynamics") -> go.Figure:
    """A 2×3 grid of the other per-step metrics, the panels the method names (`MethodCharts.dynamics`: GRPO's loss,
    KL, completion length, entropy, learning rate, step time; SFT's loss, token accuracy, …). Empty panels say why."""
    train = train_records(records)
    spec = methods.get(method).charts
    panels = spec.dynamics
    if not train:
        return empty_figure(title, "Waiting for the first training step…", DYNAMICS_HEIGHT)
    fig = make_subplots(rows=2, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.08,
                        vertical_spacing=0.2)
    for i, (key, _label, fmt) in enumerate(panels):
        row, col = i // 3 + 1, i % 3 + 1
        steps, values = series(train, key)
        if not steps:
            sub = fig.get_subplot(row, col)
            fig.add_annotation(text=EMPTY_REASONS.get(key, "not logged").replace(": ", ":<br>"), showarrow=False,
                               font=dict(color="#888888", size=12), xref="paper", yref="paper",
                               x=sum(sub.xaxis.domain) / 2, y=sum(sub.yaxis.domain) / 2)
            fig.update_xaxes(visible=False, row=row, col=col)
            fig.update_yaxes(visible=False, row=row, col=col)
            continue
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=steps, y=values, mode=_mode(len(steps)), name=key, showlegend=False,
                                 line=dict(color=color, width=2), marker=dict(size=6),
                                 hovertemplate=f"{key} %{{y:.4g}}<extra></extra>"), row=row, col=col)
        if key in spec.companions:
            (other, label), other_color = spec.companions[key], PALETTE[4]
            o_steps, o_values = series(train, other)
            if o_steps:
                fig.data[-1].hovertemplate = f"{key.split('/')[-1]} %{{y:.4g}}<extra></extra>"
                fig.add_trace(go.Scatter(x=o_steps, y=o_values, mode=_mode(len(o_steps)), name=other,
                                         showlegend=False, line=dict(color=other_color, width=2, dash="dot"),
                                         marker=dict(size=6), hovertemplate=f"{label} %{{y:.4g}}<extra></extra>"),
                              row=row, col=col)
        if key == "completions/mean_length":
            c_steps, clipped = series(train, "completions/clipped_ratio")
            if c_steps:  # truncated share as hover text on the length line
                share = dict(zip(c_steps, clipped))
                fig.data[-1].customdata = [share.get(s) for s in steps]
                fig.data[-1].hovertemplate = "length %{y:.1f}, truncated %{customdata:.0%}<extra></extra>"
        fig.update_xaxes(**{k: v for k, v in _step_axis(steps).items() if k != "title"}, row=row, col=col)
        fig.update_yaxes(tickformat=fmt or None, exponentformat="e", row=row, col=col)
        if key == "learning_rate" and len(set(values)) == 1:
            v = values[0]
            fig.update_yaxes(range=[v * 0.5, v * 1.5] if v else [-1, 1], row=row, col=col)
    _layout(fig, title, DYNAMICS_HEIGHT, legend=False)
    fig.update_layout(hovermode="closest")
    for annotation in fig.layout.annotations:  # subplot titles a bit smaller than the figure title
        if annotation.text in {p[1] for p in panels}:
            annotation.font = dict(size=13)
    return fig


def lines_figure(records: Sequence[Record], charts: MethodCharts) -> go.Figure:
    """The method's headline metrics on one plot (`MethodCharts.main_lines`; DPO: the implicit rewards of the chosen
    and rejected replies and their margin), per step; the last line is drawn as the summary (dotted)."""
    train = train_records(records)
    colors = (PALETTE[1], PALETTE[4], TOTAL_COLOR, PALETTE[2], PALETTE[3])
    fig = go.Figure()
    all_steps: list[int] = []
    last = len(charts.main_lines) - 1
    for i, (key, name) in enumerate(charts.main_lines):
        steps, values = series(train, key)
        if steps:
            fig.add_trace(go.Scatter(x=steps, y=values, mode=_mode(len(steps)), name=name,
                                     line=dict(color=colors[i % len(colors)], width=3 if i == last else 2,
                                               dash="dot" if i == last and i > 0 else "solid"),
                                     marker=dict(size=7), hovertemplate="%{y:.4f}"))
            all_steps += steps
    if not all_steps:
        return empty_figure(charts.main_title, "Waiting for the first step…" if not train else
                            "This run logs none of these metrics yet.", REWARD_HEIGHT)
    _layout(fig, charts.main_title, REWARD_HEIGHT, charts.main_y_title)
    fig.update_xaxes(**_step_axis(all_steps))
    return fig


EXTRA_HEIGHT = 320


def extra_figure(records: Sequence[Record], charts: MethodCharts) -> go.Figure:
    """One row of the method's own panels (`MethodCharts.extra`; Prefix-RFT: the prefix-fraction schedule with the
    fraction used, the prefixed vs on-policy reward, the share of prefix tokens the entropy mask kept), each with
    its companion line."""
    train = train_records(records)
    title = charts.extra_title
    if not any(has_metric(train, key) for key, _t, _f in charts.extra):
        return empty_figure(title, charts.extra_empty or "None of this method's metrics yet.", EXTRA_HEIGHT)
    fig = make_subplots(rows=1, cols=len(charts.extra), subplot_titles=[t for _k, t, _f in charts.extra],
                        horizontal_spacing=0.08)
    for col, (key, _title, fmt) in enumerate(charts.extra, start=1):
        for j, name in enumerate((key, charts.extra_companions.get(key))):
            steps, values = series(train, name) if name else ([], [])
            if steps:
                fig.add_trace(go.Scatter(x=steps, y=values, mode=_mode(len(steps)), name=name,
                                         line=dict(color=PALETTE[(2 * col + j) % len(PALETTE)], width=2)),
                              row=1, col=col)
        fig.update_xaxes(**{k: v for k, v in _step_axis(series(train, key)[0]).items() if k != "title"},
                         row=1, col=col)
        if fmt:
            fig.update_yaxes(tickformat=fmt, row=1, col=col)
    _layout(fig, title, EXTRA_HEIGHT)
    return fig


def main_figure(records: Sequence[Record], charts: MethodCharts) -> go.Figure:
    """The headline chart the method asks for: the rollouts' reward, the training loss, or its own lines."""
    if charts.main == "reward":
        return reward_figure(records, charts.main_title)
    if charts.main == "lines":
        return lines_figure(records, charts)
    return metric_figure(records, "loss", charts.main_title, charts.main_y_title or "loss", height=REWARD_HEIGHT)


def dashboard(records: Sequence[Record], method: str = "grpo") -> dict[str, go.Figure | None]:
    """Every live chart of a run: {"reward", "eval", "dynamics", "method"}, as the method's `MethodCharts` say;
    "method" is the method's own row of panels (Prefix-RFT's prefix schedule and rewards), None without one."""
    spec = methods.get(method).charts
    return {"reward": main_figure(records, spec), "eval": eval_figure(records),
            "dynamics": dynamics_figure(records, method),
            "method": extra_figure(records, spec) if spec.extra else None}


def latest_values(records: Sequence[Record], keys: Sequence[str]) -> dict[str, float | None]:
    """The most recent finite value of each key among the training lines (None if never logged)."""
    train = train_records(records)
    out: dict[str, float | None] = {}
    for key in keys:
        _, values = series(train, key)
        out[key] = values[-1] if values else None
    return out


__all__ = [
    "dashboard", "main_figure", "reward_figure", "lines_figure", "extra_figure", "eval_figure", "dynamics_figure",
    "metric_figure", "empty_figure",
    "series", "reward_names", "eval_reward_names", "train_records", "eval_records", "is_eval_record",
    "latest_values", "has_metric",
]
