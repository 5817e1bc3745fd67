"""Statistics the workbench reports over runs: training time of the steps kept, and results over several seeds
with confidence intervals.

An arm (a method, a recipe setting) is run once per seed on the same held-out rows. Its score varies with the seed
(training, sampling and data order) and with which questions happen to be held out; `summarize_arm` reports the
mean, standard deviation, min and max over seeds, and a 95 % interval from a two-level bootstrap: seeds are
resampled, and the held-out rows are resampled jointly for all of them (the same questions in every seed), so the
interval covers both sources of noise. With one seed the interval covers only the rows, and the result says so.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from statistics import fmean
from typing import Any, Sequence

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95
Outcomes = Sequence[float | None]  # one score per held-out row (1.0 correct, 0.0 wrong, None: not scored)


def kept_step_seconds(records: list[dict[str, Any]]) -> float:
    """Training time of a run: the optimizer-step time of the steps it kept. Each log line covers the steps since
    the line before it (`step_time` is their mean); a run resumed from an older checkpoint logs the redone steps
    again, so a line replaces every earlier line at or after its step.

    >>> kept_step_seconds([{"step": 1, "step_time": 2.0}, {"step": 2, "step_time": 2.0}, {"step": 2, "step_time": 3.0}])
    5.0
    """
    kept: dict[int, float] = {}  # step of a line → seconds of the steps it covers
    for r in records:
        step, value = r.get("step"), r.get("step_time")
        if not isinstance(step, int) or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            continue
        for redone in [s for s in kept if s >= step]:
            del kept[redone]
        covered = step - max(kept, default=0)
        kept[step] = float(value) * max(covered, 1)
    return sum(kept.values())


def parse_seeds(text: str | Sequence[int] | None, default: int = 42) -> list[int]:
    """Seeds from '42,7,1234' (or a list); raises ValueError with one sentence for a non-integer or a repeat.

    >>> parse_seeds("42, 7,1234")
    [42, 7, 1234]
    """
    if text is None or text == "":
        return [default]
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    seeds = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"--seeds: {item!r} is not an integer; give them as 42,7,1234")
        try:
            seed = int(item) if isinstance(item, (int, str)) and str(item).strip().lstrip("-").isdigit() else None
        except ValueError:
            seed = None
        if seed is None:
            raise ValueError(f"--seeds: {item!r} is not an integer; give them as 42,7,1234")
        if seed in seeds:
            raise ValueError(f"--seeds: seed {seed} is listed twice; each seed runs once per arm")
        seeds.append(seed)
    if not seeds:
        raise ValueError("--seeds: give at least one seed, e.g. 42,7,1234")
    return seeds


@dataclass
class ArmSummary:
    """One arm's score over seeds."""

    n_seeds: int
    mean: float | None
    std: float | None  # sample standard deviation over seeds (None with one seed)
    min: float | None
    max: float | None
    ci_low: float | None  # 95 % bootstrap interval of the mean
    ci_high: float | None
    n_rows: int | None  # held-out rows per seed (None when only per-seed scores were known)
    interval: str  # what the interval covers: "seeds × rows", "rows (single seed)", "seeds" or "none"
    per_seed: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def single_seed(self) -> bool:
        return self.n_seeds == 1

    def text(self, pct: bool = True) -> str:
        """'62.5 % [55.1, 70.3] (3 seeds, sd 4.1)' — or '… (single seed)'."""
        if self.mean is None:
            return "–"
        f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
        out = f"{f(self.mean)}{' %' if pct else ''}"
        if self.ci_low is not None and self.ci_high is not None:
            out += f" [{f(self.ci_low)}, {f(self.ci_high)}]"
        if self.single_seed:
            return out + " (single seed)"
        spread = f", sd {f(self.std)}" if self.std is not None else ""
        return out + f" ({self.n_seeds} seeds{spread})"


def _std(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    m = fmean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _quantiles(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    values = sorted(values)
    lo = (1 - confidence) / 2
    pick = lambda q: values[min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))]  # noqa: E731
    return pick(lo), pick(1 - lo)


def _matrix(per_seed_outcomes: Sequence[Outcomes]) -> Any:
    import numpy as np

    return np.array([[np.nan if v is None else float(v) for v in o] for o in per_seed_outcomes], dtype=float)


def _nanmean_rows(values: Any) -> Any:
    """Mean over the last axis ignoring NaN (NaN where a row set has no scored row), without numpy's warning."""
    import numpy as np

    counts = (~np.isnan(values)).sum(axis=-1)
    sums = np.nansum(values, axis=-1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def bootstrap_means(per_seed_outcomes: Sequence[Outcomes], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
                    ) -> list[float]:
    """Bootstrap replicates of the mean score: seeds resampled, rows resampled jointly across seeds."""
    import numpy as np

    m = _matrix(per_seed_outcomes)
    rng = np.random.default_rng(seed)
    n_seeds, n_rows = m.shape
    seeds = rng.integers(0, n_seeds, size=(samples, n_seeds))
    rows = rng.integers(0, n_rows, size=(samples, n_rows))
    per_seed = _nanmean_rows(m[seeds[:, :, None], rows[:, None, :]])  # (samples, n_seeds)
    means = _nanmean_rows(per_seed)
    return [float(v) for v in means if not np.isnan(v)]


def summarize_arm(per_seed: dict[Any, float | None], outcomes: dict[Any, Outcomes] | None = None,
                  samples: int = BOOTSTRAP_SAMPLES) -> ArmSummary:
    """Mean, sd, min/max over seeds and a 95 % interval. `outcomes` (seed → per-row scores on the same rows) gives
    the two-level bootstrap; without them (or with rows of different lengths) the interval resamples seeds only."""
    scores = {str(k): v for k, v in per_seed.items()}
    values = [v for v in scores.values() if v is not None]
    if not values:
        return ArmSummary(len(per_seed), None, None, None, None, None, None, None, "none", scores)
    usable = [list(o) for k, o in (outcomes or {}).items() if per_seed.get(k) is not None and o]
    ci: tuple[float, float] | None = None
    n_rows = None
    if usable and len(usable) == len(values) and len({len(o) for o in usable}) == 1:
        reps = bootstrap_means(usable, samples)
        ci = _quantiles(reps) if reps else None
        n_rows = len(usable[0])
        kind = "rows (single seed)" if len(values) == 1 else "seeds × rows"
    elif len(values) > 1:
        rng = random.Random(0)
        reps = [fmean([rng.choice(values) for _ in values]) for _ in range(samples)]
        ci = _quantiles(reps)
        kind = "seeds"
    else:
        kind = "none"
    return ArmSummary(len(values), fmean(values), _std(values), min(values), max(values),
                      ci[0] if ci else None, ci[1] if ci else None, n_rows, kind, scores)


def bootstrap_difference(a: Sequence[Outcomes], b: Sequence[Outcomes], samples: int = BOOTSTRAP_SAMPLES,
                         seed: int = 0) -> tuple[float, float, float] | None:
    """Mean difference (a − b) of two arms evaluated on the same rows, with its 95 % interval: seeds resampled
    within each arm, rows resampled jointly for both (a paired comparison on the questions). None without data."""
    import numpy as np

    if not a or not b or len({len(o) for o in list(a) + list(b)}) != 1:
        return None
    ma, mb = _matrix(a), _matrix(b)
    point = float(np.nanmean(_nanmean_rows(ma)) - np.nanmean(_nanmean_rows(mb)))
    rng = np.random.default_rng(seed)
    n_rows = ma.shape[1]
    rows = rng.integers(0, n_rows, size=(samples, n_rows))
    sa = rng.integers(0, ma.shape[0], size=(samples, ma.shape[0]))
    sb = rng.integers(0, mb.shape[0], size=(samples, mb.shape[0]))
    diff = _nanmean_rows(_nanmean_rows(ma[sa[:, :, None], rows[:, None, :]])) - _nanmean_rows(
        _nanmean_rows(mb[sb[:, :, None], rows[:, None, :]]))
    diffs = [float(v) for v in diff if not np.isnan(v)]
    if not diffs or np.isnan(point):
        return None
    lo, hi = _quantiles(diffs)
    return point, lo, hi


def resolvable_difference(n_rows: int, n_seeds: int, p: float = 0.5, seed_sd: float = 0.0) -> float:
    """The smallest difference in accuracy between two arms that a setup resolves at 95 % (two-sided), taken
    conservatively: 1.96 × the standard error of a difference of two independent arms, each with the binomial
    noise of `n_rows` questions (worst case p = 0.5; the same questions for every seed, so seeds do not average it
    away) plus the between-seed spread `seed_sd` averaged over `n_seeds`. A paired bootstrap on the same rows
    (`bootstrap_difference`) is usually tighter.

    >>> round(resolvable_difference(128, 3), 3), round(resolvable_difference(64, 1), 3)
    (0.122, 0.173)
    """
    var_arm = p * (1 - p) / max(n_rows, 1) + seed_sd ** 2 / max(n_seeds, 1)
    return 1.96 * math.sqrt(2 * var_arm)


def intervals_overlap(a: ArmSummary, b: ArmSummary) -> bool:
    """Whether two arms' 95 % intervals overlap (then the data do not order them)."""
    if None in (a.ci_low, a.ci_high, b.ci_low, b.ci_high):
        return True
    return not (a.ci_high < b.ci_low or b.ci_high < a.ci_low)  # type: ignore[operator]


__all__ = ["kept_step_seconds", "parse_seeds", "ArmSummary", "summarize_arm", "bootstrap_means",
           "bootstrap_difference", "resolvable_difference", "intervals_overlap", "BOOTSTRAP_SAMPLES"]
