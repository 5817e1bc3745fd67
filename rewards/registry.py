"""The registry of built-in rewards: names (used by run specs, notebooks, the UI) → factories, with docs.

    rewards.available()                      # [RewardInfo(name, description, params, example, ...), ...]
    rewards.get("numeric_answer")            # the reward with default parameters
    rewards.get("format_tags", mode="soft")  # parameters go to its make_… factory and are checked there
"""
from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class RewardNotFound(ValueError, KeyError):
    """No built-in reward has that name; the message lists close names. (A ValueError and a KeyError.)"""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RewardInfo:
    """A built-in reward: its registry name, what it does, its parameters with defaults, and a usage example."""

    name: str
    description: str
    params: dict[str, Any]
    example: str
    category: str = "other"
    param_help: dict[str, str] = field(default_factory=dict)
    factory: Callable[..., Any] | None = field(default=None, repr=False, compare=False)


_REGISTRY: dict[str, RewardInfo] = {}


def _param_help(factory: Callable[..., Any]) -> dict[str, str]:
    """Parameter descriptions from the factory's "Args:" docstring section."""
    doc = inspect.getdoc(factory) or ""
    match = re.search(r"^Args:\n(.*?)(?:\n\S|\Z)", doc, re.DOTALL | re.MULTILINE)
    if not match:
        return {}
    out: dict[str, str] = {}
    current = None
    for line in match.group(1).splitlines():
        item = re.match(r"^    (\w+): (.*)$", line)
        if item:
            current = item.group(1)
            out[current] = item.group(2).strip()
        elif current and line.startswith("        "):
            out[current] += " " + line.strip()
    return out


def _plain_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def register(name: str, factory: Callable[..., Any], description: str, example: str, category: str = "other") -> None:
    """Add a reward factory to the registry (the built-ins are registered in `rewards.builtins`; projects may add
    their own)."""
    params = {
        p.name: _plain_default(p.default)
        for p in inspect.signature(factory).parameters.values()
        if p.name != "name" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    helps = {k: v for k, v in _param_help(factory).items() if k in params}
    _REGISTRY[name] = RewardInfo(name, description, params, example, category, helps, factory)


def exists(name: str) -> bool:
    """Whether `name` is a registered reward."""
    return isinstance(name, str) and name in _REGISTRY


def available() -> list[RewardInfo]:
    """The registered rewards, in registry order (grouped by category)."""
    return list(_REGISTRY.values())


def info(name: str) -> RewardInfo:
    """The RewardInfo of `name`; raises RewardNotFound."""
    if not exists(name):
        raise RewardNotFound(_not_found_message(name))
    return _REGISTRY[name]


# Names other libraries use for the same rewards (TRL, open-r1, Unsloth notebooks): suggested, never guessed.
_ALIASES = {
    "accuracy": "math_equivalence", "accuracy_reward": "math_equivalence", "correctness": "numeric_answer",
    "format": "format_tags", "think_format": "format_tags", "tag_count": "format_tags", "xmlcount": "format_tags",
    "len": "length", "overlong": "length", "soft_overlong_punishment": "length", "cosine": "cosine_length",
    "cosine_scaled": "cosine_length", "repetition_penalty": "repetition", "code": "python_tests",
    "json": "json_valid", "schema": "json_schema", "f1": "similarity", "combined": "weighted", "sum": "weighted",
}


def _close_names(name: str) -> list[str]:
    names = list(_REGISTRY)
    query = name.lower().strip()
    if query in _ALIASES:
        return [_ALIASES[query]]
    scored = sorted(((difflib.SequenceMatcher(None, query, n).ratio(), n) for n in names), reverse=True)
    close = [n for r, n in scored if r >= 0.75]
    if not close and len(query) >= 3:
        close = [n for n in names if query in n]
    if not close:
        close = [n for r, n in scored[:2] if r >= 0.55]
    return close[:3]


def _not_found_message(name: Any) -> str:
    close = _close_names(str(name))
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
    return f"unknown reward {name!r}{hint} Available: {', '.join(_REGISTRY)}"


def get(name: str, /, **params: Any) -> Callable[..., list[float | None]]:
    """The built-in reward `name`, built with `params` (see `available()` for each reward's parameters).

    Raises RewardNotFound (a ValueError) for an unknown name, listing close names, and ValueError naming the
    parameter for an unknown parameter or a bad value. `name=` sets the reward's `__name__` (its metric name).

    >>> get("numeric_answer")(["17 + 25 = 42"], answer=["42"])
    [1.0]
    >>> get("numeric_answr")
    Traceback (most recent call last):
    ...
    rewards.registry.RewardNotFound: unknown reward 'numeric_answr'; did you mean 'numeric_answer'? Available: numeric_answer, numeric_closeness, exact_answer, gsm8k_answer, math_equivalence, format_tags, regex, length, cosine_length, repetition, json_valid, json_schema, python_tests, similarity, weighted, llm_judge, llm_judge_group
    >>> get("numeric_answer", tolerence=0.1)
    Traceback (most recent call last):
    ...
    ValueError: numeric_answer has no parameter 'tolerence' (did you mean 'tolerance'?); its parameters: answer_column, tolerance, rel_tolerance, words, correct, wrong, name
    """
    entry = info(name)
    assert entry.factory is not None
    allowed = [*entry.params, "name"]
    for key in params:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{name} has no parameter {key!r}{hint}; its parameters: {', '.join(allowed)}")
    try:
        return entry.factory(**params)
    except RewardNotFound:  # from a part of a `weighted` reward: already names itself
        raise
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    except TypeError as exc:  # pragma: no cover - guarded by the check above
        raise ValueError(f"{name}: {exc}") from None


__all__ = ["RewardInfo", "RewardNotFound", "register", "exists", "available", "info", "get"]
