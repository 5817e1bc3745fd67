"""Health alerts: one test per alert (fires at its threshold, stays silent below it), plus healthy runs."""
from __future__ import annotations

import pytest

from app.engine.advice import health
from app.engine.core.spec import RewardSpec, RunSpec


def run(n: int, **series) -> list[dict]:
    """n training records; each keyword is a constant or a function of the step (1-based)."""
    out = []
    for s in range(1, n + 1):
        rec = {"step": s, "loss": 0.1, "learning_rate": 2e-4}
        for key, value in series.items():
            rec[key.replace("__", "/")] = value(s) if callable(value) else value
        out.append(rec)
    return out


def keys(alerts) -> list[str]:
    return [a.key for a in alerts]


SPEC = RunSpec(rewards=[RewardSpec(name="numeric_answer", weight=1.0), RewardSpec(name="length", weight=0.5)])


def test_healthy_run_has_no_alerts():
    records = run(10, reward=lambda s: 0.1 * s, reward_std=0.3, frac_reward_zero_std=0.2,
                  completions__clipped_ratio=0.1, completions__mean_length=lambda s: 10 + s, kl=0.01,
                  reward_errors__numeric_answer=0, rewards__numeric_answer__mean=lambda s: 0.1 * s)
    assert health.health_alerts(records, SPEC) == []
    assert health.summarize([]) == "healthy"


def test_too_short_or_empty_runs_are_not_judged():
    assert health.health_alerts([], SPEC) == []
    assert health.health_alerts(run(2, reward=0.0, frac_reward_zero_std=1.0), SPEC) == []
    assert health.health_alerts([{"step": 0, "eval/accuracy": 0.0}], SPEC) == []


def test_reward_flat_at_zero():
    flat = run(health.FLAT_ZERO_STEPS, reward=0.0, frac_reward_zero_std=1.0)
    alerts = health.health_alerts(flat, SPEC)
    assert keys(alerts) == ["reward_flat_zero"]  # zero variance is implied, not repeated
    assert alerts[0].level == "warning" and alerts[0].step == health.FLAT_ZERO_STEPS
    recovering = run(health.FLAT_ZERO_STEPS, reward=lambda s: 0.0 if s < health.FLAT_ZERO_STEPS else 0.1)
    assert "reward_flat_zero" not in keys(health.health_alerts(recovering, SPEC))


def test_most_groups_with_zero_variance():
    n = health.ZERO_STD_WINDOW
    high = run(n, reward=0.5, frac_reward_zero_std=health.ZERO_STD_FRACTION + 0.05)
    assert keys(health.health_alerts(high, SPEC)) == ["zero_variance"]
    at_threshold = run(n, reward=0.5, frac_reward_zero_std=health.ZERO_STD_FRACTION)
    assert health.health_alerts(at_threshold, SPEC) == []


def test_completions_mostly_truncated_names_the_limit():
    spec = RunSpec(generation=RunSpec().generation)
    spec.generation.max_completion_length = 8
    records = run(health.TRUNCATED_WINDOW, completions__clipped_ratio=0.9, reward=0.5)
    alerts = health.health_alerts(records, spec)
    assert keys(alerts) == ["truncated"] and "8 tokens" in alerts[0].detail
    ok = run(health.TRUNCATED_WINDOW, completions__clipped_ratio=health.TRUNCATED_FRACTION, reward=0.5)
    assert health.health_alerts(ok, spec) == []


def test_length_blowing_up():
    n = 2 * health.LENGTH_WINDOW
    grow = run(n, reward=0.5, completions__mean_length=lambda s: 20 if s <= health.LENGTH_WINDOW else 60)
    alerts = health.health_alerts(grow, SPEC)
    assert keys(alerts) == ["length_growth"] and "20 to 60" in alerts[0].detail
    small = run(n, reward=0.5, completions__mean_length=lambda s: 3 if s <= health.LENGTH_WINDOW else 9)
    assert health.health_alerts(small, SPEC) == []  # 3× longer but only 6 tokens more


def test_reward_errors_warn_then_error_above_the_rate():
    spec = RunSpec(rewards=SPEC.rewards)
    spec.training.per_device_train_batch_size = 10
    few = run(3, reward=0.5, reward_errors__numeric_answer=lambda s: 1 if s == 3 else 0)
    alerts = health.health_alerts(few, spec)
    assert keys(alerts) == ["reward_errors"] and alerts[0].level == "warning"
    assert "'numeric_answer'" in alerts[0].title and "10%" in alerts[0].detail
    many = run(3, reward=0.5, reward_errors__numeric_answer=lambda s: 5)
    alerts = health.health_alerts(many, spec)
    assert alerts[0].level == "error" and "15 so far" in alerts[0].detail
    fixed = run(3, reward=0.5, reward_errors__numeric_answer=lambda s: 4 if s == 1 else 0)
    assert health.health_alerts(fixed, spec) == []  # only the latest step counts


def test_kl_exploding_and_growing():
    high = run(3, reward=0.5, kl=lambda s: health.KL_HIGH + s)
    alerts = health.health_alerts(high, SPEC)
    assert keys(alerts) == ["kl_high"] and alerts[0].level == "error"
    n = 2 * health.KL_WINDOW
    growing = run(n, reward=0.5, kl=lambda s: 0.01 if s <= health.KL_WINDOW else 0.2)
    assert keys(health.health_alerts(growing, SPEC)) == ["kl_growth"]
    steady = run(n, reward=0.5, kl=0.2)
    assert health.health_alerts(steady, SPEC) == []


def samples(step: int, pairs: list[tuple[float, float]]) -> list[dict]:
    return [{"step": step, "index": i, "rewards": {"numeric_answer": c, "length": l}} for i, (c, l) in enumerate(pairs)]


def test_reward_hacking_from_samples_wrong_answers_with_high_reward():
    records = run(3, reward=0.5, rewards__numeric_answer__mean=0.1, rewards__length__mean=0.9)
    # 4 wrong answers earn the full length bonus (0.5 × 1.0), the best total is 1.5 (right and short).
    hacked = samples(3, [(0.0, 1.0)] * 4 + [(1.0, 1.0)])
    alerts = health.health_alerts(records, SPEC, hacked)
    assert keys(alerts) == ["reward_hacking"] and "4 of 4" in alerts[0].detail
    honest = samples(3, [(0.0, 0.0)] * 4 + [(1.0, 1.0)])
    assert health.health_alerts(records, SPEC, honest) == []


def test_reward_hacking_from_trend_when_no_samples():
    n = 2 * health.HACK_TREND_WINDOW
    records = run(n, reward=lambda s: 0.1 if s <= health.HACK_TREND_WINDOW else 0.5,
                  rewards__numeric_answer__mean=0.1, rewards__length__mean=lambda s: 0.0 if s <= 5 else 0.8)
    alerts = health.health_alerts(records, SPEC)
    assert keys(alerts) == ["reward_hacking"] and "numeric_answer" in alerts[0].detail
    learning = run(n, reward=lambda s: 0.1 if s <= health.HACK_TREND_WINDOW else 0.5,
                   rewards__numeric_answer__mean=lambda s: 0.1 if s <= health.HACK_TREND_WINDOW else 0.4)
    assert health.health_alerts(learning, SPEC) == []


def test_no_hacking_check_without_a_correctness_reward_or_with_one_reward():
    records = run(3, reward=0.5, rewards__length__mean=0.9, rewards__format_tags__mean=0.1)
    spec = RunSpec(rewards=[RewardSpec(name="length"), RewardSpec(name="format_tags")])
    assert health.correctness_reward(spec, ["length", "format_tags"]) is None
    assert health.health_alerts(records, spec, samples(3, [(0.0, 1.0)] * 5)) == []
    only = RunSpec(rewards=[RewardSpec(name="numeric_answer")])
    assert health.health_alerts(run(3, reward=0.5, rewards__numeric_answer__mean=0.5), only,
                                samples(3, [(0.0, 1.0)] * 5)) == []


def test_correctness_reward_accepts_dicts_renamed_rewards_and_no_spec():
    spec = {"rewards": [{"name": "length"}, {"name": "exact_answer", "params": {"name": "exact"}}]}
    assert health.correctness_reward(spec, []) == "exact"
    assert health.correctness_reward(None, ["length", "numeric_answer"]) == "numeric_answer"


def test_not_finite_loss_is_an_error_and_alerts_sort_by_severity():
    records = run(5, reward=0.0, frac_reward_zero_std=1.0, completions__clipped_ratio=0.9)
    records[-1]["loss"] = None
    alerts = health.health_alerts(records, SPEC)
    assert [a.level for a in alerts] == ["error", "warning", "warning"]
    assert alerts[0].key == "not_finite"
    assert health.summarize(alerts) == "1 error, 2 warnings"
    assert alerts[0].to_dict()["title"] == "Loss is not a number"


@pytest.mark.parametrize("name", ["FLAT_ZERO_STEPS", "ZERO_STD_FRACTION", "TRUNCATED_FRACTION", "LENGTH_GROWTH",
                                  "REWARD_ERROR_RATE", "KL_HIGH", "KL_GROWTH", "HACK_TOTAL_SHARE"])
def test_thresholds_are_named_positive_constants(name):
    assert getattr(health, name) > 0
