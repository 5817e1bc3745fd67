"""Length rewards (target length, too-long penalty, cosine scaling by correctness) and the n-gram repetition penalty.

Length is counted in characters by default: it needs no tokenizer, so scores are the same in the playground, in
notebooks and in training. `unit="tokens"` uses the `completion_ids` TRL passes during training (and returns None
where they are missing, e.g. when scoring text in the playground); `unit="words"` counts whitespace-separated words.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rewards.answers import CORRECTNESS_KINDS, correctness_reward
from rewards.base import Reward, check_choice, check_number

UNITS = ("chars", "words", "tokens")
LENGTH_MODES = ("overlong", "target")


def _lengths(texts: list[str], kwargs: dict[str, Any], unit: str) -> list[int | None]:
    if unit == "chars":
        return [len(t) for t in texts]
    if unit == "words":
        return [len(t.split()) for t in texts]
    ids = kwargs.get("completion_ids")
    if ids is None or len(ids) != len(texts):
        return [None] * len(texts)  # no token ids outside training: not applicable
    return [len(i) for i in ids]


class Length(Reward):
    """Scores completion length against a target or a limit (see `make_length`)."""

    kind = "length"
    param_names = ("mode", "max_length", "buffer", "target", "unit")

    def __init__(self, mode: str = "overlong", max_length: int = 1000, buffer: int = 200, target: int = 200,
                 unit: str = "chars", name: str | None = None):
        super().__init__(name)
        check_choice("mode", mode, LENGTH_MODES)
        check_choice("unit", unit, UNITS)
        check_number("max_length", max_length, low=1, integer=True)
        check_number("buffer", buffer, low=0, high=max_length, integer=True)
        check_number("target", target, low=1, integer=True)
        self.mode, self.max_length, self.buffer, self.target, self.unit = mode, max_length, buffer, target, unit

    def score_length(self, n: int) -> float:
        if self.mode == "target":  # 1 at the target, falling linearly to 0 at 0 and at twice the target
            return max(0.0, 1.0 - abs(n - self.target) / self.target)
        # DAPO's soft overlong punishment (Eq. 13)
        free = self.max_length - self.buffer
        if n <= free:
            return 0.0
        if n <= self.max_length:
            return (free - n) / self.buffer
        return -1.0

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        return [None if n is None else self.score_length(n) for n in _lengths(texts, kwargs, self.unit)]


def make_length(mode: str = "overlong", max_length: int = 1000, buffer: int = 200, target: int = 200,
                unit: str = "chars", name: str | None = None) -> Length:
    """Reward on completion length: a too-long penalty (default) or closeness to a target length.

    Modes:
        overlong: DAPO's soft overlong punishment: 0 up to `max_length - buffer`, then falling linearly to -1 at
            `max_length`, and -1 beyond. It never rewards being short, only penalises running long.
        target: 1.0 at exactly `target`, falling linearly to 0 at length 0 and at twice the target.

    Args:
        mode: "overlong" or "target".
        max_length: the limit (overlong mode).
        buffer: length of the linear penalty zone before `max_length` (overlong mode; 0 = hard -1 past the limit).
        target: the wanted length (target mode).
        unit: "chars", "words", or "tokens" (from TRL's `completion_ids`; None where absent).
        name: `__name__` of the reward; default "length".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`.

    >>> overlong = make_length(max_length=100, buffer=20)
    >>> overlong(["x" * 50, "x" * 90, "x" * 150])
    [0.0, -0.5, -1.0]
    >>> make_length(mode="target", target=4, unit="words")(["one two three four", "one two", ""])
    [1.0, 0.5, 0.0]
    >>> make_length(unit="tokens", max_length=10, buffer=0)(["a", "b"], completion_ids=[[1] * 5, [1] * 11])
    [0.0, -1.0]
    """
    return Length(mode, max_length, buffer, target, unit, name)


class CosineLength(Reward):
    """Correctness scaled by length on a cosine schedule (see `make_cosine_length`)."""

    kind = "cosine_length"
    param_names = ("max_len", "unit", "min_value_wrong", "max_value_wrong", "min_value_correct", "max_value_correct",
                   "correctness", "answer_column")

    def __init__(self, max_len: int = 1000, unit: str = "chars", min_value_wrong: float = -1.0,
                 max_value_wrong: float = -0.5, min_value_correct: float = 0.5, max_value_correct: float = 1.0,
                 correctness: str = "math_equivalence", answer_column: str = "answer", name: str | None = None):
        super().__init__(name)
        check_number("max_len", max_len, low=1, integer=True)
        check_choice("unit", unit, UNITS)
        for key, value in (("min_value_wrong", min_value_wrong), ("max_value_wrong", max_value_wrong),
                           ("min_value_correct", min_value_correct), ("max_value_correct", max_value_correct)):
            check_number(key, value)
        # open-r1's configs.py sets cosine_min_value_wrong=0.0 above max_value_wrong=-0.5, which flips the schedule:
        # short wrong answers then get 0 and long ones -0.5. Refuse such orderings instead of training on them.
        if min_value_wrong > max_value_wrong:
            raise ValueError(
                f"parameter 'min_value_wrong' ({min_value_wrong}) must be <= max_value_wrong ({max_value_wrong}): "
                "min_value_wrong is the score of a short wrong answer and should be the harshest"
            )
        if min_value_correct > max_value_correct:
            raise ValueError(
                f"parameter 'min_value_correct' ({min_value_correct}) must be <= max_value_correct "
                f"({max_value_correct}): a short correct answer should score highest"
            )
        if max_value_wrong > min_value_correct:
            raise ValueError(
                f"parameter 'max_value_wrong' ({max_value_wrong}) must be <= min_value_correct "
                f"({min_value_correct}): no wrong answer should outscore a correct one"
            )
        if correctness not in CORRECTNESS_KINDS:
            raise ValueError(f"parameter 'correctness' must be one of {', '.join(CORRECTNESS_KINDS)}, "
                             f"got {correctness!r}")
        self.max_len, self.unit = max_len, unit
        self.min_value_wrong, self.max_value_wrong = float(min_value_wrong), float(max_value_wrong)
        self.min_value_correct, self.max_value_correct = float(min_value_correct), float(max_value_correct)
        self.correctness, self.answer_column = correctness, answer_column
        self._judge = correctness_reward(correctness, answer_column)

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        verdicts = self._judge.score_texts(texts, kwargs)
        out: list[float | None] = []
        for verdict, n in zip(verdicts, _lengths(texts, kwargs, self.unit)):
            if verdict is None or n is None:
                out.append(None)
                continue
            # clamp: cos is periodic, so past max_len the schedule would climb back up
            cosine = math.cos(min(n / self.max_len, 1.0) * math.pi)
            if verdict >= self._judge.correct:
                lo, hi = self.min_value_correct, self.max_value_correct
            else:  # bounds swapped: a short wrong answer gets the harshest score, a long one less harsh
                lo, hi = self.max_value_wrong, self.min_value_wrong
            out.append(round(lo + 0.5 * (hi - lo) * (1.0 + cosine), 6))
        return out


def make_cosine_length(max_len: int = 1000, unit: str = "chars", min_value_wrong: float = -1.0,
                       max_value_wrong: float = -0.5, min_value_correct: float = 0.5, max_value_correct: float = 1.0,
                       correctness: str = "math_equivalence", answer_column: str = "answer",
                       name: str | None = None) -> CosineLength:
    """Correctness reward scaled by length on a cosine schedule (open-r1 / "Demystifying Long CoT", App. C.1).

    `r = lo + 0.5 * (hi - lo) * (1 + cos(pi * min(len / max_len, 1)))`. Correct answers use
    (lo, hi) = (min_value_correct, max_value_correct): short ones get 1.0, long ones 0.5. Wrong answers use the
    swapped bounds: short ones get -1.0, long ones -0.5 (thinking longer on a failure is penalised less). The
    orderings are checked, which catches open-r1's `configs.py` default that flips the wrong-answer schedule.

    Args:
        max_len: length at which the schedule reaches its long end (clamped beyond).
        unit: "chars" (open-r1), "words", or "tokens" (TRL; from `completion_ids`).
        min_value_wrong: score of a short wrong answer.
        max_value_wrong: score of a long wrong answer.
        min_value_correct: score of a long correct answer.
        max_value_correct: score of a short correct answer.
        correctness: the answer reward that decides correctness: "math_equivalence", "numeric_answer",
            "exact_answer" or "gsm8k_answer".
        answer_column: dataset column holding the reference answer.
        name: `__name__` of the reward; default "cosine_length".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`; None where correctness does not apply.

    >>> reward = make_cosine_length(max_len=100, correctness="numeric_answer")
    >>> reward(["42", "x" * 47 + " 42", "x" * 200 + " 42", "41", "x" * 200 + " 41"], answer=["42"] * 5)
    [0.999507, 0.75, 0.5, -0.999507, -0.5]
    >>> make_cosine_length(min_value_wrong=0.0)
    Traceback (most recent call last):
    ...
    ValueError: parameter 'min_value_wrong' (0.0) must be <= max_value_wrong (-0.5): min_value_wrong is the score of a short wrong answer and should be the harshest
    """
    return CosineLength(max_len, unit, min_value_wrong, max_value_wrong, min_value_correct, max_value_correct,
                        correctness, answer_column, name)


class Repetition(Reward):
    """Penalty for repeated n-grams (see `make_repetition`)."""

    kind = "repetition"
    param_names = ("ngram_size", "max_penalty", "unit")

    def __init__(self, ngram_size: int = 3, max_penalty: float = -1.0, unit: str = "words", name: str | None = None):
        super().__init__(name)
        check_number("ngram_size", ngram_size, low=1, integer=True)
        check_number("max_penalty", max_penalty, high=0)
        check_choice("unit", unit, UNITS)
        self.ngram_size, self.max_penalty, self.unit = ngram_size, float(max_penalty), unit

    def _items(self, text: str, ids: Sequence[int] | None) -> Sequence[Any] | None:
        if self.unit == "words":
            return text.lower().split()
        if self.unit == "chars":
            return text
        return ids

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        all_ids = kwargs.get("completion_ids")
        if all_ids is not None and len(all_ids) != len(texts):
            all_ids = None
        out: list[float | None] = []
        for i, text in enumerate(texts):
            items = self._items(text, all_ids[i] if all_ids is not None else None)
            if items is None:
                out.append(None)
                continue
            n = self.ngram_size
            if len(items) < n:
                out.append(0.0)
                continue
            grams = [tuple(items[j : j + n]) for j in range(len(items) - n + 1)]
            repeated = 1.0 - len(set(grams)) / len(grams)
            out.append(round(repeated * self.max_penalty, 9) if repeated else 0.0)
        return out


def make_repetition(ngram_size: int = 3, max_penalty: float = -1.0, unit: str = "words",
                    name: str | None = None) -> Repetition:
    """Penalty for repeated n-grams: `(1 - unique n-grams / all n-grams) * max_penalty`, in [max_penalty, 0].

    A completion with no repeated n-gram scores 0; one that repeats a phrase over and over approaches
    `max_penalty`. Completions shorter than n items score 0.

    Args:
        ngram_size: n.
        max_penalty: the most negative score (must be <= 0).
        unit: "words" (lower-cased, whitespace-split; open-r1), "chars" (for text without spaces), or "tokens"
            (TRL's `completion_ids`; None where absent).
        name: `__name__` of the reward; default "repetition".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`.

    >>> reward = make_repetition(ngram_size=2)
    >>> reward(["the cat sat on the mat", "go go go go go", "hi"])
    [0.0, -0.75, 0.0]
    >>> make_repetition(max_penalty=0.5)
    Traceback (most recent call last):
    ...
    ValueError: parameter 'max_penalty' must be <= 0, got 0.5
    """
    return Repetition(ngram_size, max_penalty, unit, name)


__all__ = ["Length", "CosineLength", "Repetition", "make_length", "make_cosine_length", "make_repetition",
           "UNITS", "LENGTH_MODES"]
