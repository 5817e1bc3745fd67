"""Run health: alerts computed from a run's metrics (and its latest samples) that say what is going wrong and what
to change, shown beside the live charts.

    alerts = health_alerts(records, spec, samples=samples)
    for a in alerts:
        print(a.level, a.title, a.detail)

Every threshold is a named constant below. Checks look at the most recent logged steps (a window), so an alert
clears once the run recovers. Each check needs enough steps to judge; before that it stays silent.

Alerts (key → what it means):
  reward_flat_zero       the total reward has been 0 for FLAT_ZERO_STEPS steps: no completion earns anything
  zero_variance          most groups have identical rewards: GRPO's advantages are 0, the step teaches nothing
  truncated              most completions hit max_completion_length: answers are cut off before they end
  length_growth          completion length grew LENGTH_GROWTH× since the start of the run (and keeps growing)
  reward_errors          a reward raised / timed out / returned junk on some samples (error level above a rate)
  kl_high / kl_growth    the policy drifts far (KL above KL_HIGH) or fast (KL_GROWTH× its early level)
  reward_hacking         samples the correctness reward marks wrong still get a high total reward, or the reward
                         rises while correctness does not
  not_finite             loss or gradient norm became NaN/inf (logged as null)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any, Iterable, Sequence

from app.engine.presentation.charts import series, train_records

LEVELS = ("error", "warning", "info")

FLAT_ZERO_STEPS = 5  # consecutive logged steps with total reward ≈ 0 before "no reward signal"
ZERO_EPS = 1e-9  # |reward| below this counts as zero
ZERO_STD_WINDOW = 5  # steps averaged for the zero-variance check
ZERO_STD_FRACTION = 0.75  # mean share of groups with zero reward std above this → no learning signal
TRUNCATED_WINDOW = 3  # steps averaged for the truncation check
TRUNCATED_FRACTION = 0.5  # share of completions cut at max_completion_length above this → warning
LENGTH_WINDOW = 3  # steps averaged at the start and at the end for the length check
LENGTH_GROWTH = 2.0  # recent mean length / early mean length at or above this → "length blowing up"
LENGTH_MIN_INCREASE = 16  # ... and at least this many tokens longer (growth from 3 to 7 tokens is no blow-up)
REWARD_ERROR_RATE = 0.2  # share of a step's completions with a reward error at or above this → error level
KL_HIGH = 1.0  # KL to the reference above this → the policy has drifted far
KL_GROWTH = 10.0  # latest KL / early KL at or above this (with KL ≥ KL_MIN_FOR_GROWTH) → KL exploding
KL_MIN_FOR_GROWTH = 0.1
KL_WINDOW = 3  # early and recent steps averaged for the KL growth check
HACK_SAMPLE_STEPS = 3  # recent sample steps looked at for reward hacking
HACK_TOTAL_SHARE = 0.5  # a wrong answer earning this share of a correct answer's correctness reward looks "rewarded"
HACK_MIN_WRONG = 4  # at least this many wrong answers needed to judge
HACK_WRONG_SHARE = 0.5  # share of wrong answers that are highly rewarded at or above this → reward hacking
HACK_TREND_WINDOW = 5  # steps averaged at the start and end for the trend version of the check
HACK_REWARD_RISE = 0.2  # total reward rose by this much (absolute) ...
HACK_CORRECT_RISE = 0.02  # ... while the correctness reward rose by less than this → reward hacking


@dataclass(frozen=True)
class Alert:
    """One health finding: `level` (error, warning, info), a short `title`, and a `detail` saying why and what to do."""

    level: str
    title: str
    detail: str
    key: str = ""
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- helpers ------------------------------------------------------------------------------------------------------
def _get(spec: Any, path: str, default: Any = None) -> Any:
    """`spec.a.b` for a RunSpec, a dict, or None."""
    obj = spec
    for part in path.split("."):
        if obj is None:
            return default
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
    return default if obj is None else obj


def correctness_reward(spec: Any, names: Sequence[str]) -> str | None:
    """The reward (metric name) that judges correctness: the spec's first correctness built-in, else a logged
    reward whose name is a correctness built-in. None when the run has no such reward."""
    from app.engine.evaluation.evaluate import CORRECTNESS_REWARDS

    rewards = _get(spec, "rewards", []) or []
    for r in rewards:
        name = r.get("name") if isinstance(r, dict) else getattr(r, "name", None)
        params = (r.get("params") if isinstance(r, dict) else getattr(r, "params", None)) or {}
        if name in CORRECTNESS_REWARDS:
            return params.get("name") or name
    for name in names:
        if name in CORRECTNESS_REWARDS:
            return name
    return None


def _weights(spec: Any, names: Sequence[str]) -> dict[str, float]:
    """Reward weights by metric name (1.0 where the spec does not say)."""
    out = {n: 1.0 for n in names}
    rewards = _get(spec, "rewards", []) or []
    for r in rewards:
        get = (lambda k: r.get(k)) if isinstance(r, dict) else (lambda k: getattr(r, k, None))
        label = (get("params") or {}).get("name") or get("name")
        if not label and get("file"):
            label = str(get("file")).rsplit("/", 1)[-1].removesuffix(".py")
        if label in out and get("weight") is not None:
            out[label] = float(get("weight"))
    return out


# -- the checks -----------------------------------------------------------------------------------------------------
def _reward_flat_zero(train: list[dict[str, Any]]) -> list[Alert]:
    steps, rewards = series(train, "reward")
    if len(rewards) < FLAT_ZERO_STEPS:
        return []
    recent = rewards[-FLAT_ZERO_STEPS:]
    if all(abs(r) <= ZERO_EPS for r in recent):
        return [Alert(
            "warning", "Reward flat at zero",
            f"The total reward has been 0 for the last {FLAT_ZERO_STEPS} steps: no sampled completion earns any "
            "reward, so there is nothing to learn from. Check the reward on a few rows in the Rewards tab, make the "
            "task easier, allow longer completions, or start from SFT so the model sometimes gets it right.",
            "reward_flat_zero", steps[-1])]
    return []


def _zero_variance(train: list[dict[str, Any]]) -> list[Alert]:
    steps, fracs = series(train, "frac_reward_zero_std")
    if len(fracs) < ZERO_STD_WINDOW:
        return []
    share = fmean(fracs[-ZERO_STD_WINDOW:])
    if share > ZERO_STD_FRACTION:
        return [Alert(
            "warning", "Most groups have zero reward variance",
            f"{share:.0%} of prompt groups over the last {ZERO_STD_WINDOW} steps gave every completion the same "
            "reward, so their GRPO advantages are 0 and they teach nothing. Use more completions per prompt "
            "(generation.num_generations), a higher temperature, a graded (partial-credit) reward, or prompts of "
            "mixed difficulty.", "zero_variance", steps[-1])]
    return []


def _truncated(train: list[dict[str, Any]], spec: Any) -> list[Alert]:
    steps, clipped = series(train, "completions/clipped_ratio")
    if len(clipped) < TRUNCATED_WINDOW:
        return []
    share = fmean(clipped[-TRUNCATED_WINDOW:])
    if share > TRUNCATED_FRACTION:
        limit = _get(spec, "generation.max_completion_length")
        limit_text = f" ({limit} tokens)" if limit else ""
        return [Alert(
            "warning", "Completions mostly truncated",
            f"{share:.0%} of completions over the last {TRUNCATED_WINDOW} steps hit max_completion_length"
            f"{limit_text} and were cut off, so many answers never reach their end. Raise "
            "generation.max_completion_length, ask for shorter answers in the prompt, add a length reward, or set "
            "grpo.mask_truncated_completions.", "truncated", steps[-1])]
    return []


def _length_growth(train: list[dict[str, Any]]) -> list[Alert]:
    steps, lengths = series(train, "completions/mean_length")
    if len(lengths) < 2 * LENGTH_WINDOW:
        return []
    early = fmean(lengths[:LENGTH_WINDOW])
    recent = fmean(lengths[-LENGTH_WINDOW:])
    if early > 0 and recent >= LENGTH_GROWTH * early and recent - early >= LENGTH_MIN_INCREASE:
        return [Alert(
            "warning", "Completion length blowing up",
            f"Mean completion length grew from {early:.0f} to {recent:.0f} tokens ({recent / early:.1f}×). Rambling "
            "or repetition often earns reward by accident; check the samples, add a length or repetition penalty, or "
            "use loss_type dr_grpo/dapo (no length bias).", "length_growth", steps[-1])]
    return []


def _reward_errors(train: list[dict[str, Any]], spec: Any) -> list[Alert]:
    keys = sorted({k for r in train for k in r if k.startswith("reward_errors/")})
    if not keys:
        return []
    per_step = _get(spec, "training.per_device_train_batch_size", 0) * _get(
        spec, "training.gradient_accumulation_steps", 1) * _get(spec, "logging.logging_steps", 1)
    alerts = []
    for key in keys:
        steps, counts = series(train, key)
        if not counts or counts[-1] <= 0:
            continue
        name = key.split("/", 1)[1]
        total = int(sum(counts))
        latest = int(counts[-1])
        rate = latest / per_step if per_step else None
        severe = rate is not None and rate >= REWARD_ERROR_RATE
        rate_text = f" ({rate:.0%} of the step's completions)" if rate is not None else ""
        alerts.append(Alert(
            "error" if severe else "warning", f"Reward '{name}' is failing",
            f"{latest} completions at step {steps[-1]}{rate_text}, {total} so far, got no score from '{name}': it "
            "raised an error, timed out, or returned something other than a number. Those samples are left out. "
            "Try the reward on the run's samples in the Rewards tab; the run stops if it fails in more than "
            f"{_get(spec, 'reward_max_failure_rate', 0.2):.0%} of calls.", "reward_errors", steps[-1]))
    return alerts


def _kl(train: list[dict[str, Any]]) -> list[Alert]:
    steps, kls = series(train, "kl")
    if not kls:
        return []
    latest = kls[-1]
    if latest > KL_HIGH:
        return [Alert(
            "error", "KL exploding",
            f"KL to the reference model is {latest:.2f} (above {KL_HIGH:g}): the policy has drifted far from the "
            "base model and outputs may degrade. Lower the learning rate, raise grpo.beta, or stop and use an earlier "
            "checkpoint.", "kl_high", steps[-1])]
    if len(kls) >= 2 * KL_WINDOW:
        early = fmean(kls[:KL_WINDOW])
        recent = fmean(kls[-KL_WINDOW:])
        if recent >= KL_MIN_FOR_GROWTH and recent >= KL_GROWTH * max(early, 1e-6):
            return [Alert(
                "warning", "KL growing fast",
                f"KL rose from {early:.3f} to {recent:.3f} ({recent / max(early, 1e-6):.0f}×). If rewards are not "
                "improving with it, lower the learning rate or raise grpo.beta.", "kl_growth", steps[-1])]
    return []


def _not_finite(train: list[dict[str, Any]]) -> list[Alert]:
    if not train:
        return []
    last = train[-1]
    bad = [k for k in ("loss", "grad_norm") if k in last and last[k] is None]
    if bad:
        return [Alert(
            "error", "Loss is not a number",
            f"{' and '.join(bad)} became NaN or infinite at step {last.get('step')}: training has diverged. Lower "
            "the learning rate, keep gradient clipping (training.max_grad_norm), and resume from an earlier "
            "checkpoint.", "not_finite", last.get("step"))]
    return []


def _hacking_from_samples(samples: Sequence[dict[str, Any]], correct: str, weights: dict[str, float]) -> list[Alert]:
    """Wrong answers (correctness below its best) whose weighted total reaches HACK_TOTAL_SHARE of what a correct
    answer earns from the correctness reward alone: the other rewards pay about as much as being right."""
    steps = sorted({s.get("step") for s in samples if isinstance(s.get("step"), int)})[-HACK_SAMPLE_STEPS:]
    recent = [s for s in samples if s.get("step") in steps]
    scored = []
    for s in recent:
        scores = s.get("rewards") or {}
        if not isinstance(scores.get(correct), (int, float)):
            continue
        parts = [weights.get(k, 1.0) * v for k, v in scores.items() if isinstance(v, (int, float))]
        scored.append((float(scores[correct]), sum(parts)))
    if not scored:
        return []
    right_score = max(1.0, max(c for c, _ in scored))
    correct_pay = weights.get(correct, 1.0) * right_score
    wrong = [(c, total) for c, total in scored if c < right_score - 1e-9]
    if len(wrong) < HACK_MIN_WRONG or correct_pay <= 0:
        return []
    rewarded = [w for w in wrong if w[1] >= HACK_TOTAL_SHARE * correct_pay]
    share = len(rewarded) / len(wrong)
    if share >= HACK_WRONG_SHARE:
        return [Alert(
            "warning", "Possible reward hacking",
            f"{len(rewarded)} of {len(wrong)} recent answers that '{correct}' marks wrong still earn a total reward of "
            f"at least {HACK_TOTAL_SHARE:.0%} of what a correct answer gets from '{correct}' ({correct_pay:g}): the "
            "other rewards pay for something other than being right. Read those samples, lower the other rewards' "
            "weights, or make them conditional on correctness.", "reward_hacking", steps[-1] if steps else None)]
    return []


def _hacking_from_trend(train: list[dict[str, Any]], correct: str) -> list[Alert]:
    steps, totals = series(train, "reward")
    c_steps, corrects = series(train, f"rewards/{correct}/mean")
    n = HACK_TREND_WINDOW
    if len(totals) < 2 * n or len(corrects) < 2 * n:
        return []
    reward_rise = fmean(totals[-n:]) - fmean(totals[:n])
    correct_rise = fmean(corrects[-n:]) - fmean(corrects[:n])
    if reward_rise >= HACK_REWARD_RISE and correct_rise < HACK_CORRECT_RISE:
        return [Alert(
            "warning", "Reward rises, correctness does not",
            f"The total reward rose by {reward_rise:+.2f} since the start while '{correct}' changed by "
            f"{correct_rise:+.2f}: the model is learning to please the other rewards, not to be right (reward "
            "hacking). Check the samples and the other rewards' weights.", "reward_hacking", steps[-1])]
    return []


def health_alerts(records: Iterable[dict[str, Any]], spec: Any = None,
                  samples: Sequence[dict[str, Any]] | None = None) -> list[Alert]:
    """Alerts for a run from its metrics records (and optionally its samples.jsonl records), most severe first.

    `spec` (a RunSpec, its dict, or None) supplies limits and reward weights; without it the checks that need
    them are less specific. Returns [] for a healthy run or one too short to judge.
    """
    train = train_records(list(records))
    if not train:
        return []
    alerts: list[Alert] = []
    alerts += _not_finite(train)
    alerts += _reward_errors(train, spec)
    alerts += _kl(train)
    alerts += _reward_flat_zero(train)
    if not any(a.key == "reward_flat_zero" for a in alerts):  # flat zero implies zero variance: say it once
        alerts += _zero_variance(train)
    alerts += _truncated(train, spec)
    alerts += _length_growth(train)
    names = sorted({k[len("rewards/"):-len("/mean")] for r in train for k in r
                    if k.startswith("rewards/") and k.endswith("/mean")})
    correct = correctness_reward(spec, names)
    if correct and len(names) > 1:
        hacking = _hacking_from_samples(samples or [], correct, _weights(spec, names))
        alerts += hacking or _hacking_from_trend(train, correct)
    order = {level: i for i, level in enumerate(LEVELS)}
    return sorted(alerts, key=lambda a: order.get(a.level, len(LEVELS)))


def alert_line(alert: Alert) -> str:
    """One line for a terminal: level, step, title and what to do."""
    at = f" at step {alert.step}" if alert.step is not None else ""
    return f"[health] {alert.level}{at}: {alert.title}. {' '.join(alert.detail.split())}"


class AlertWatcher:
    """Follows a run folder's metrics.jsonl and samples.jsonl as they grow; `poll()` returns the alerts that fire
    for the first time (one per key and title), so a CLI can print each once, as the app shows them."""

    SAMPLE_RECORDS_KEPT = 4096  # the sample checks look at the last few steps only

    def __init__(self, run_dir: Any, spec: Any = None):
        from pathlib import Path

        self.run_dir = Path(run_dir)
        self.spec = spec
        self.records: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self._offsets = {"metrics.jsonl": 0, "samples.jsonl": 0}
        self.seen: set[tuple[str, str]] = set()

    def _read(self, name: str) -> list[dict[str, Any]]:
        from app.engine.core.runs import read_jsonl

        new, self._offsets[name] = read_jsonl(self.run_dir / name, self._offsets[name])
        return new

    def poll(self) -> list[Alert]:
        self.records += self._read("metrics.jsonl")
        self.samples = (self.samples + self._read("samples.jsonl"))[-self.SAMPLE_RECORDS_KEPT:]
        fresh = []
        for alert in health_alerts(self.records, self.spec, samples=self.samples):
            key = (alert.key, alert.title)
            if key not in self.seen:
                self.seen.add(key)
                fresh.append(alert)
        return fresh


def summarize(alerts: Sequence[Alert]) -> str:
    """One line: 'healthy' or the count per level."""
    if not alerts:
        return "healthy"
    counts = {level: sum(a.level == level for a in alerts) for level in LEVELS}
    return ", ".join(f"{n} {level}{'s' if n > 1 else ''}" for level, n in counts.items() if n)


__all__ = ["Alert", "AlertWatcher", "alert_line", "health_alerts", "summarize", "correctness_reward", "LEVELS"]
