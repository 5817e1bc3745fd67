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

from rewards.answers import make_exact_answer, make_gsm8k_answer, make_math_equivalence, make_numeric_answer
from rewards.code import make_python_tests
from rewards.combine import make_weighted
from rewards.format import make_format_tags, make_regex
from rewards.length import make_cosine_length, make_length, make_repetition
from rewards.similarity import make_similarity
from rewards.structured import make_json_schema, make_json_valid


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
    """Add a reward factory to the registry (built-ins are registered below; projects may add their own)."""
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
    rewards.registry.RewardNotFound: unknown reward 'numeric_answr'; did you mean 'numeric_answer'? Available: numeric_answer, exact_answer, gsm8k_answer, math_equivalence, format_tags, regex, length, cosine_length, repetition, json_valid, json_schema, python_tests, similarity, weighted
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


# --- the built-ins ------------------------------------------------------------------------------------------------

register(
    "numeric_answer", make_numeric_answer,
    "1.0 if the completion's final number equals the reference number (within a tolerance), else 0.0. Reads the "
    r"last \boxed{}, <answer> tag, number after 'the answer is', or else the last number; understands 1,234, "
    "unicode minus, 1/2 and number words.",
    '>>> rewards.get("numeric_answer")(["17 + 25 = 42", "43", ""], answer=["42", "42", "42"])\n[1.0, 0.0, 0.0]',
    "answer",
)
register(
    "exact_answer", make_exact_answer,
    "1.0 if the answer (tag, box, or sentence after 'the answer is') equals the reference string after SQuAD-style "
    "normalisation (case, punctuation, articles, spaces); the reference may list several accepted answers.",
    '>>> rewards.get("exact_answer")(["The answer is Paris.", "Lyon"], answer=["paris", "Paris"])\n[1.0, 0.0]',
    "answer",
)
register(
    "gsm8k_answer", make_gsm8k_answer,
    "GSM8K correctness: the number after the completion's '####' (or its final number) against the reference "
    "solution's '#### n', compared as numbers.",
    '>>> rewards.get("gsm8k_answer")(["... so 72 in all.\\n#### 72"], answer=["48 + 24 = 72\\n#### 72"])\n[1.0]',
    "answer",
)
register(
    "math_equivalence", make_math_equivalence,
    r"Mathematical equivalence checked by math-verify: LaTeX, \boxed{}, fractions, 0.5 vs 1/2 vs \frac{1}{2}. "
    "None when the reference does not parse.",
    '>>> rewards.get("math_equivalence")([r"$\\boxed{\\frac{1}{2}}$", "0.4"], answer=["0.5", "0.5"])\n[1.0, 0.0]',
    "answer",
)
register(
    "format_tags", make_format_tags,
    "Required tagged sections in order, e.g. <reasoning>…</reasoning><answer>…</answer>: strict (nothing else), "
    "soft (text around allowed) or partial credit. Sections may span lines; repeated or nested tags fail.",
    '>>> rewards.get("format_tags")(["<reasoning>\\n17 + 25\\n</reasoning>\\n<answer>42</answer>", "42"])\n[1.0, 0.0]',
    "format",
)
register(
    "regex", make_regex,
    "match_score if the completion matches a regular expression (search, match, fullmatch or count), else "
    "miss_score. DOTALL by default.",
    '>>> rewards.get("regex", pattern=r"^<think>.+</think>", mode="match")(["<think>\\nhm\\n</think> 42", "42"])\n'
    "[1.0, 0.0]",
    "format",
)
register(
    "length", make_length,
    "Length shaping: DAPO's soft too-long penalty (0 until max_length - buffer, down to -1 at max_length) or "
    "closeness to a target length. In chars, words or tokens.",
    '>>> rewards.get("length", max_length=100, buffer=20)(["x" * 50, "x" * 90, "x" * 200])\n[0.0, -0.5, -1.0]',
    "length",
)
register(
    "cosine_length", make_cosine_length,
    "Correctness scaled by length on a cosine schedule (open-r1): short correct answers 1.0, long correct 0.5, "
    "short wrong -1.0, long wrong -0.5. Orderings are checked (open-r1's config flips them).",
    '>>> rewards.get("cosine_length", max_len=100, correctness="numeric_answer")(["42", "41"], answer=["42", "42"])\n'
    "[0.999507, -0.999507]",
    "length",
)
register(
    "repetition", make_repetition,
    "Penalty for repeated n-grams: (1 - unique/total n-grams) * max_penalty, from 0 (no repeats) to max_penalty.",
    '>>> rewards.get("repetition", ngram_size=2)(["the cat sat on the mat", "go go go go go"])\n[0.0, -0.75]',
    "quality",
)
register(
    "json_valid", make_json_valid,
    "1.0 if the completion holds valid JSON (in a ```json fence, the whole text, or the {...} span), else 0.0.",
    '>>> rewards.get("json_valid")([\'{"a": 1}\', "{a: 1}"])\n[1.0, 0.0]',
    "structured",
)
register(
    "json_schema", make_json_schema,
    "1.0 if the completion's JSON validates against a JSON Schema (given once, or per row in a column), else 0.0.",
    '>>> schema = {"type": "object", "required": ["age"], "properties": {"age": {"type": "integer"}}}\n'
    '>>> rewards.get("json_schema", schema=schema)([\'{"age": 36}\', \'{"age": "36"}\'])\n[1.0, 0.0]',
    "structured",
)
register(
    "python_tests", make_python_tests,
    "Share of the row's test cases (asserts or stdin/stdout pairs from a column) passed by the completion's "
    "fenced Python code, each completion run in a fresh sandboxed process.",
    '>>> code = "```python\\ndef add(a, b):\\n    return a + b\\n```"\n'
    '>>> rewards.get("python_tests")([code], tests=[["assert add(1, 2) == 3", "assert add(2, 2) == 4"]])\n[1.0]',
    "code",
)
register(
    "similarity", make_similarity,
    "Similarity to a reference text in [0, 1]: token F1 (SQuAD), difflib character ratio, or token Jaccard.",
    '>>> rewards.get("similarity")(["The Eiffel Tower", "London"], answer=["Eiffel Tower", "Eiffel Tower"])\n'
    "[1.0, 0.0]",
    "similarity",
)
register(
    "weighted", make_weighted,
    "Weighted sum of other rewards (None parts skipped, as TRL's nansum does), for places that take one function.",
    '>>> both = rewards.get("weighted", rewards=[("numeric_answer", 1.0), ("format_tags", 0.5)])\n'
    '>>> both(["<reasoning>x</reasoning><answer>42</answer>", "42"], answer=["42", "42"])\n[1.5, 1.0]',
    "combine",
)

__all__ = ["RewardInfo", "RewardNotFound", "register", "exists", "available", "info", "get"]
