"""Live charts: metrics records → plotly figures, legible with few points, explanatory when empty."""
from __future__ import annotations

import json

import pytest

from app.engine import methods
from app.engine.presentation import charts


def grpo_records(steps: int = 4, with_eval: bool = True) -> list[dict]:
    records = []
    if with_eval:
        records.append({"step": 0, "eval/accuracy": 0.25, "eval/reward": 0.4, "eval/rewards/numeric_answer": 0.25})
    for s in range(1, steps + 1):
        records.append({
            "step": s, "loss": 0.1 / s, "reward": 0.2 * s, "reward_std": 0.1,
            "rewards/numeric_answer/mean": 0.1 * s, "rewards/numeric_answer/std": 0.05,
            "rewards/length/mean": 0.2, "rewards/length/std": 0.02,
            "kl": None, "entropy": 1.5 - 0.1 * s, "completions/mean_length": 8.0 + s,
            "completions/clipped_ratio": 0.5, "learning_rate": 2e-4, "step_time": 4.0 + s % 2,
        })
    if with_eval:
        records.append({"step": steps, "eval/accuracy": 0.5, "eval/reward": 0.7, "final": True})
    return records


def trace_names(fig) -> list[str]:
    return [t.name for t in fig.data]


def test_series_skips_missing_and_non_finite_values_and_keeps_the_last_value_per_step():
    records = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": None}, {"step": 3, "loss": float("nan")},
               {"step": 4}, {"step": 5, "loss": "x"}, {"step": 6, "loss": 0.5}, {"step": 6, "loss": 0.4},
               {"loss": 9.0}]
    assert charts.series(records, "loss") == ([1, 6], [1.0, 0.4])


def test_train_and_eval_records_are_split_by_eval_keys():
    records = grpo_records(3)
    assert [r["step"] for r in charts.eval_records(records)] == [0, 3]
    assert [r["step"] for r in charts.train_records(records)] == [1, 2, 3]


def test_reward_names_in_first_seen_order():
    assert charts.reward_names(grpo_records(2)) == ["numeric_answer", "length"]
    assert charts.eval_reward_names(grpo_records(2)) == ["numeric_answer"]


def test_reward_figure_has_total_each_reward_with_bands_and_held_out_points():
    fig = charts.reward_figure(grpo_records(4))
    names = trace_names(fig)
    assert {"numeric_answer", "length", "total (weighted)", "held-out (greedy)"} <= set(names)
    total = next(t for t in fig.data if t.name == "total (weighted)")
    assert list(total.x) == [1, 2, 3, 4] and list(total.y) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    bands = [t for t in fig.data if t.fill == "tonexty"]
    assert len(bands) == 3  # numeric_answer, length, total
    lower = next(t for t in bands if t.name == "total −std")
    assert list(lower.y) == pytest.approx([0.1, 0.3, 0.5, 0.7])
    held = next(t for t in fig.data if t.name == "held-out (greedy)")
    assert list(held.x) == [0, 4] and held.mode == "markers"


def test_single_reward_with_weight_one_is_not_drawn_twice():
    records = [{"step": s, "reward": 0.5, "reward_std": 0.1, "rewards/numeric_answer/mean": 0.5,
                "rewards/numeric_answer/std": 0.1} for s in (1, 2)]
    fig = charts.reward_figure(records)
    lines = [t for t in fig.data if t.fill != "tonexty" and t.showlegend is not False]
    assert [t.name for t in lines] == ["numeric_answer (= total)"]


def test_one_point_is_legible_markers_and_a_padded_integer_axis():
    fig = charts.reward_figure(grpo_records(1, with_eval=False))
    line = next(t for t in fig.data if t.name == "numeric_answer")
    assert "markers" in line.mode
    lo, hi = fig.layout.xaxis.range
    assert lo < 1 < hi and fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tickformat == "d"


def test_long_series_drop_markers():
    records = [{"step": s, "reward": 0.1, "rewards/r/mean": 0.1} for s in range(1, charts.MARKERS_UP_TO + 5)]
    fig = charts.reward_figure(records)
    assert all(t.mode == "lines" for t in fig.data if t.name == "r (= total)")


def test_empty_states_explain_themselves():
    fig = charts.reward_figure([])
    assert "Waiting for the first" in fig.layout.annotations[0].text
    sft = [{"step": 1, "loss": 1.0, "mean_token_accuracy": 0.5}]
    assert "SFT/DFT" in charts.reward_figure(sft).layout.annotations[0].text.replace("<br>", " ")
    assert "No evaluation yet" in charts.eval_figure(sft).layout.annotations[0].text
    assert not charts.empty_figure("t", "m").data


def test_eval_figure_labels_accuracy_in_percent():
    fig = charts.eval_figure(grpo_records(2))
    acc = next(t for t in fig.data if t.name == "accuracy")
    assert list(acc.x) == [0, 2] and list(acc.text) == ["25%", "50%"]
    assert fig.layout.yaxis.range[0] <= 0 and fig.layout.yaxis.range[1] >= 1


def test_dynamics_figure_panels_and_why_kl_is_empty():
    fig = charts.dynamics_figure(grpo_records(3), "grpo")
    titles = [a.text for a in fig.layout.annotations]
    for title in ("Loss", "KL to reference", "Completion length (tokens)", "Entropy", "Learning rate",
                  "Step time (s)"):
        assert title in titles
    assert any("beta = 0" in a.text for a in fig.layout.annotations)  # kl was None throughout
    names = trace_names(fig)
    assert "kl" not in names and {"loss", "entropy", "learning_rate", "step_time", "completions/mean_length"} <= set(names)
    length = next(t for t in fig.data if t.name == "completions/mean_length")
    assert list(length.customdata) == [0.5, 0.5, 0.5]  # truncated share in the hover


def test_sft_dashboard_uses_loss_and_token_accuracy():
    records = [{"step": s, "loss": 2.0 / s, "mean_token_accuracy": 0.3 + 0.1 * s, "learning_rate": 2e-4,
                "grad_norm": 1.0, "entropy": 1.0, "step_time": 2.0} for s in (1, 2, 3)]
    figs = charts.dashboard(records, "sft")
    assert set(figs) == {"reward", "eval", "dynamics", "method"} and figs["method"] is None
    assert figs["reward"].layout.title.text == "Training loss"
    titles = [a.text for a in figs["dynamics"].layout.annotations]
    assert "Token accuracy" in titles and "KL to reference" not in titles


def test_every_figure_serialises_to_json():
    for method, records in (("grpo", grpo_records(3)), ("grpo", []), ("sft", [{"step": 1, "loss": 1.0}])):
        for fig in charts.dashboard(records, method).values():
            if fig is not None:
                json.loads(fig.to_json())


def test_latest_values():
    values = charts.latest_values(grpo_records(3), ["reward", "kl", "loss"])
    assert values["reward"] == pytest.approx(0.6) and values["kl"] is None and values["loss"] == pytest.approx(0.1 / 3)


def test_dpo_dashboard_shows_implicit_rewards_and_preference_accuracy():
    records = [{"step": 0, "eval/preference_accuracy": 0.55, "eval/accuracy": 0.3}]
    records += [{"step": s, "loss": 0.69 - 0.05 * s, "rewards/chosen": 0.01 * s, "rewards/rejected": -0.01 * s,
                 "rewards/margins": 0.02 * s, "rewards/accuracies": 0.5 + 0.1 * s, "logps/chosen": -20.0,
                 "logps/rejected": -22.0 - s,
                 "grad_norm": 1.0, "learning_rate": 5e-5, "step_time": 3.0} for s in (1, 2, 3)]
    records.append({"step": 3, "eval/preference_accuracy": 0.8, "eval/accuracy": 0.4})
    figs = charts.dashboard(records, "dpo")
    assert trace_names(figs["reward"]) == ["chosen", "rejected", "margin (chosen − rejected)"]
    assert charts.reward_names(records) == []  # DPO's rewards/chosen is not a reward function
    pref = next(t for t in figs["eval"].data if t.name == "preference accuracy")
    assert list(pref.x) == [0, 3] and list(pref.text) == ["55%", "80%"]
    titles = [a.text for a in figs["dynamics"].layout.annotations]
    assert "Preference accuracy (train batch)" in titles
    assert {"logps/chosen", "logps/rejected"} <= set(trace_names(figs["dynamics"]))  # one panel, both lines
    assert "Waiting" in charts.main_figure([], methods.get("dpo").charts).layout.annotations[0].text


def test_prefix_rft_dashboard_adds_the_prefix_panels():
    records = [{"step": s, "loss": 0.1, "reward": 0.5, "prefix/fraction_low": 0.9 - 0.1 * s, "prefix/fraction": 0.92,
                "prefix/reward_prefixed": 0.8, "prefix/reward_on_policy": 0.4, "prefix/tokens_updated_share": 0.2}
               for s in (1, 2, 3)]
    fig = charts.dashboard(records, "prefix_rft")["method"]
    assert set(trace_names(fig)) == {"prefix/fraction_low", "prefix/fraction", "prefix/reward_prefixed",
                                     "prefix/reward_on_policy", "prefix/tokens_updated_share"}
    assert "No Prefix-RFT metrics" in charts.dashboard([{"step": 1, "loss": 0.1}], "prefix_rft")["method"] \
        .layout.annotations[0].text
