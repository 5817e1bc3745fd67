"""The base class of the built-in rewards and the column helpers they share.

A built-in reward is an instance of a small class rather than a closure: instances pickle (TRL's async rollout
worker and the engine's child processes need that), carry their parameters for display, and have a per-instance
`__name__`, which TRL turns into the metric name `rewards/<name>/mean`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rewards.text import completion_text

# Keys TRL adds to the reward kwargs that are not dataset columns.
TRAINER_KEYS = ("trainer_state", "log_extra", "log_metric", "environments", "completion_ids", "prompts", "completions")


class MissingColumnError(ValueError):
    """A reward needs a dataset column the batch does not have (the message names the column and the parameter)."""


def column(kwargs: dict[str, Any], key: str, n: int, reward: str, param: str | None = None) -> list[Any]:
    """The values of dataset column `key` for a batch of `n` completions; raises MissingColumnError if absent.

    A scalar (not a list) is repeated for every completion, so `reward(["42"], answer="42")` works in a notebook.

    >>> column({"answer": ["42", "7"]}, "answer", 2, "numeric_answer")
    ['42', '7']
    >>> column({"answer": 42}, "answer", 2, "numeric_answer")
    [42, 42]
    >>> column({}, "answer", 1, "numeric_answer", "answer_column")
    Traceback (most recent call last):
    ...
    rewards.base.MissingColumnError: numeric_answer needs the column 'answer' (set answer_column=... to read another one); the batch has: (none)
    """
    if key not in kwargs or kwargs[key] is None:
        have = sorted(k for k in kwargs if k not in TRAINER_KEYS)
        hint = f" (set {param}=... to read another one)" if param else ""
        raise MissingColumnError(
            f"{reward} needs the column {key!r}{hint}; the batch has: {', '.join(have) if have else '(none)'}"
        )
    values = kwargs[key]
    if isinstance(values, (str, bytes, dict, int, float)) or not isinstance(values, Sequence):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{reward}: column {key!r} has {len(values)} values for {n} completions")
    return values


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                 integer: bool = False, allow_none: bool = False) -> None:
    """Raise ValueError naming parameter `name` unless `value` is a finite number in [low, high]."""
    if value is None and allow_none:
        return
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ValueError(f"parameter {name!r} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"parameter {name!r} must be finite, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"parameter {name!r} must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"parameter {name!r} must be <= {high}, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """Raise ValueError naming parameter `name` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"parameter {name!r} must be one of {', '.join(map(repr, choices))}, got {value!r}")


class Reward:
    """Base of the built-in rewards: a picklable callable `reward(completions, **columns) -> list[float | None]`.

    Subclasses set `kind` (the registry name), store their parameters as attributes listed in `param_names`, and
    implement `score_texts(texts, kwargs)`. The instance's `__name__` is `name` if given, else `kind`.
    """

    kind: str = "reward"
    param_names: tuple[str, ...] = ()

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"parameter 'name' must be a non-empty string, got {name!r}")
        self.__name__ = name or self.kind

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        return self.score_texts(texts, kwargs)

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:  # pragma: no cover
        raise NotImplementedError

    @property
    def params(self) -> dict[str, Any]:
        """The parameters this reward was built with (as passed to its factory)."""
        return {k: getattr(self, k) for k in self.param_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"<reward {self.__name__}: {self.kind}({args})>"
