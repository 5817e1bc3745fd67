"""Weighted combination of several rewards into one.

Usually you pass several rewards to TRL with `reward_weights` and it sums them; a single combined reward is for
places that take one function (the playground, a metric, a cosine schedule on top of a sum), or to log one
curve. None follows TRL's nansum: a reward that returns None for a sample is left out of that sample's sum,
and the sum is None only when every part is None.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rewards.base import Reward, check_number
from rewards.guard import reward_name


def _build_parts(rewards: Any) -> list[tuple[Callable[..., Any], float]]:
    if not isinstance(rewards, (list, tuple)) or not rewards:
        raise ValueError("parameter 'rewards' needs at least one reward: [(name or callable, weight), ...] or "
                         "[{'name': ..., 'weight': ..., 'params': {...}}, ...]")
    from rewards.registry import get

    parts = []
    for i, item in enumerate(rewards):
        params: dict[str, Any] = {}
        if isinstance(item, dict):
            unknown = set(item) - {"name", "weight", "params"}
            if unknown or "name" not in item:
                raise ValueError(f"parameter 'rewards'[{i}]: use keys name, weight, params (got {sorted(item)})")
            fn, weight, params = item["name"], item.get("weight", 1.0), dict(item.get("params") or {})
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            fn, weight = item
        else:
            fn, weight = item, 1.0
        check_number(f"rewards[{i}] weight", weight)
        if isinstance(fn, str):
            fn = get(fn, **params)
        elif params:
            raise ValueError(f"parameter 'rewards'[{i}]: params only apply to a registry name")
        if not callable(fn):
            raise ValueError(f"parameter 'rewards'[{i}] is not a reward: {fn!r}")
        parts.append((fn, float(weight)))
    return parts


class Weighted(Reward):
    """A weighted sum of rewards (see `make_weighted`)."""

    kind = "weighted"
    param_names = ("rewards", "normalize")

    def __init__(self, rewards: Sequence[Any] = (), normalize: bool = False, name: str | None = None):
        super().__init__(name)
        self.parts = _build_parts(rewards)
        self.rewards = [(reward_name(fn), w) for fn, w in self.parts]
        self.normalize = bool(normalize)
        if self.normalize and sum(abs(w) for _, w in self.parts) == 0:
            raise ValueError("parameter 'normalize': the weights sum to 0")

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        totals: list[float | None] = [None] * n
        norms = [0.0] * n
        for fn, weight in self.parts:
            scores = fn(completions=completions, **kwargs)
            if len(scores) != n:
                raise ValueError(f"{reward_name(fn)} returned {len(scores)} scores for {n} completions")
            for i, s in enumerate(scores):
                if s is None or s != s:  # None or NaN: left out, as TRL's nansum does
                    continue
                totals[i] = (totals[i] or 0.0) + weight * float(s)
                norms[i] += abs(weight)
        if self.normalize:
            totals = [None if t is None or not z else t / z for t, z in zip(totals, norms)]
        return [None if t is None else round(t, 9) for t in totals]

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        return self(texts, **kwargs)


def make_weighted(rewards: Sequence[Any] = (), normalize: bool = False, name: str | None = None) -> Weighted:
    """Combine rewards into one: the weighted sum of their scores, skipping None (as TRL's nansum does).

    Args:
        rewards: a list of `(reward, weight)` pairs, where a reward is a registry name or a callable, or of dicts
            `{"name": registry name, "weight": w, "params": {...}}` (the form a YAML run spec uses).
        normalize: divide by the sum of |weights| of the parts that scored the sample (a weighted mean).
        name: `__name__` of the combined reward; default "weighted".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`.

    >>> both = make_weighted([("numeric_answer", 1.0), ("format_tags", 0.5)])
    >>> both(["<reasoning>17 + 25</reasoning><answer>42</answer>", "42", "41"], answer=["42"] * 3)
    [1.5, 1.0, 0.0]
    >>> make_weighted([{"name": "numeric_answer", "weight": 2.0}])(["42", "x"], answer=["42", None])
    [2.0, None]
    """
    return Weighted(rewards, normalize, name)


__all__ = ["Weighted", "make_weighted"]
