"""Answer-correctness rewards: numeric, exact/normalised string, GSM8K `#### n`, and math equivalence.

All read the reference answer from a dataset column, `answer` by default (`answer_column=` to change it), and
return `correct` (1.0) or `wrong` (0.0) per completion, or `None` when the reference itself holds no usable answer
(TRL then leaves that sample out of this reward, as its own `accuracy_reward` does; open-r1 gives such samples 1.0,
which rewards every completion of an unverifiable prompt).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from rewards.base import Reward, check_number, column
from rewards.text import (
    answer_region,
    extract_number,
    find_numbers,
    normalize_answer,
    normalize_unicode,
    numbers_match,
    reference_number,
)


class NumericAnswer(Reward):
    """Scores whether the completion's final number equals the reference number (see `make_numeric_answer`)."""

    kind = "numeric_answer"
    param_names = ("answer_column", "tolerance", "rel_tolerance", "words", "correct", "wrong")

    def __init__(self, answer_column: str = "answer", tolerance: float = 1e-6, rel_tolerance: float = 0.0,
                 words: bool = True, correct: float = 1.0, wrong: float = 0.0, name: str | None = None):
        super().__init__(name)
        if not isinstance(answer_column, str) or not answer_column:
            raise ValueError(f"parameter 'answer_column' must be a column name, got {answer_column!r}")
        check_number("tolerance", tolerance, low=0)
        check_number("rel_tolerance", rel_tolerance, low=0)
        check_number("correct", correct)
        check_number("wrong", wrong)
        self.answer_column, self.tolerance, self.rel_tolerance = answer_column, tolerance, rel_tolerance
        self.words, self.correct, self.wrong = bool(words), float(correct), float(wrong)

    def predicted(self, text: str) -> Fraction | None:
        """The number this reward reads from a completion."""
        return extract_number(text, words=self.words)

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        refs = column(kwargs, self.answer_column, len(texts), self.__name__, "answer_column")
        golds: dict[Any, Fraction | None] = {}  # the G completions of a prompt share one reference
        out: list[float | None] = []
        for text, ref in zip(texts, refs):
            key = ref if isinstance(ref, (str, int, float)) else repr(ref)
            if key not in golds:
                golds[key] = reference_number(ref)
            gold = golds[key]
            if gold is None:
                out.append(None)  # nothing to check against: not applicable
                continue
            pred = self.predicted(text)
            if pred is None:
                out.append(self.wrong)
            elif numbers_match(pred, gold, self.tolerance, self.rel_tolerance):
                out.append(self.correct)
            else:
                out.append(self.wrong_score(pred, gold))
        return out

    def wrong_score(self, pred: Fraction, gold: Fraction) -> float:
        """The score of a number that does not match the reference (subclasses may give partial credit)."""
        return self.wrong


def make_numeric_answer(answer_column: str = "answer", tolerance: float = 1e-6, rel_tolerance: float = 0.0,
                        words: bool = True, correct: float = 1.0, wrong: float = 0.0,
                        name: str | None = None) -> NumericAnswer:
    r"""Reward for a numeric answer: the completion's final number against the reference number.

    The number is read from the answer region: the last `\boxed{}`, else the last `<answer>…</answer>`, else the
    first number after a marker ("the answer is", "answer:", "####"), else the last number of the completion, so
    "17 + 25 = 42" counts as 42. Thousands separators, the unicode minus, `1/2`, `1e3` and (with `words=True`,
    when there are no digits) English number words are understood. The reference may be a number, a string such
    as "42" or "1,234", or a GSM8K solution ending in "#### 72".

    Args:
        answer_column: dataset column holding the reference answer.
        tolerance: absolute tolerance (|pred - ref| <= tolerance counts as equal).
        rel_tolerance: relative tolerance (|pred - ref| <= rel_tolerance * |ref| counts as equal).
        words: also read answers written in words ("forty-two") when the completion has no digits.
        correct: score of a correct completion.
        wrong: score of a wrong completion, or of one with no number.
        name: `__name__` of the reward (metric `rewards/<name>/mean`); default "numeric_answer".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`; None where the reference has no number.

    >>> reward = make_numeric_answer()
    >>> reward(["42", "17 + 25 = 42", "43", "", "forty-two"], answer=["42"] * 5)
    [1.0, 1.0, 0.0, 0.0, 1.0]
    >>> reward([[{"role": "assistant", "content": "\u221242"}]], answer=[-42])
    [1.0]
    >>> make_numeric_answer(rel_tolerance=0.01)(["The answer is 99.5"], answer=["100"])
    [1.0]
    """
    return NumericAnswer(answer_column, tolerance, rel_tolerance, words, correct, wrong, name)


class NumericCloseness(NumericAnswer):
    """Partial credit for a numeric answer (see `make_numeric_closeness`)."""

    kind = "numeric_closeness"
    param_names = ("answer_column", "mode", "scale", "partial", "words", "correct", "wrong")
    MODES = ("digits", "distance")

    def __init__(self, answer_column: str = "answer", mode: str = "digits", scale: float = 10.0,
                 partial: float = 0.5, words: bool = True, correct: float = 1.0, wrong: float = 0.0,
                 name: str | None = None):
        super().__init__(answer_column, 1e-6, 0.0, words, correct, wrong, name)
        if mode not in self.MODES:
            raise ValueError(f"parameter 'mode' must be one of {', '.join(self.MODES)}, got {mode!r}")
        check_number("scale", scale, low=0)
        if not scale:
            raise ValueError("parameter 'scale' must be > 0")
        check_number("partial", partial)
        self.mode, self.scale, self.partial = mode, float(scale), float(partial)

    def closeness(self, pred: Fraction, gold: Fraction) -> float:
        """How close a wrong number is to the reference, in [0, 1]."""
        if self.mode == "distance":
            return max(0.0, 1.0 - float(abs(pred - gold)) / self.scale)
        if pred.denominator != 1 or gold.denominator != 1 or (pred < 0) != (gold < 0):
            return 0.0
        a, b = str(abs(pred.numerator))[::-1], str(abs(gold.numerator))[::-1]  # units first
        return sum(x == y for x, y in zip(a, b)) / max(len(a), len(b))

    def wrong_score(self, pred: Fraction, gold: Fraction) -> float:
        return self.wrong + (self.partial - self.wrong) * self.closeness(pred, gold)


def make_numeric_closeness(answer_column: str = "answer", mode: str = "digits", scale: float = 10.0,
                           partial: float = 0.5, words: bool = True, correct: float = 1.0, wrong: float = 0.0,
                           name: str | None = None) -> NumericCloseness:
    """Partial credit for a numeric answer: `correct` for the right number, and for a wrong one a score between
    `wrong` and `partial` by how close it is, so that a group of all-wrong completions still ranks its members
    (a graded reward gives GRPO a signal where a 0/1 answer reward gives none). The number is read as
    `numeric_answer` reads it; no number scores `wrong`.

    Args:
        answer_column: dataset column holding the reference answer.
        mode: "digits": the share of digit positions (aligned from the units) that match the reference's, for
            integers of the same sign (arithmetic: "44" for 54 gets half); "distance": 1 − |pred − ref| / scale,
            at least 0.
        scale: the distance at which "distance" gives nothing.
        partial: the score of a wrong answer that is as close as it can be (below `correct`).
        words: also read answers written in words when the completion has no digits.
        correct: score of a correct completion.
        wrong: score of a completion with no number, or with nothing right.
        name: `__name__` of the reward; default "numeric_closeness".

    Use it beside `numeric_answer` (which stays the run's accuracy), not instead of it.

    >>> reward = make_numeric_closeness()
    >>> reward(["26 + 28 = 54", "26 + 28 = 44", "55", "154", "no idea"], answer=["54"] * 5)
    [1.0, 0.25, 0.25, 0.3333333333333333, 0.0]
    >>> make_numeric_closeness(mode="distance", scale=10)(["52", "70"], answer=["54", "54"])
    [0.4, 0.0]
    """
    return NumericCloseness(answer_column, mode, scale, partial, words, correct, wrong, name)


class Gsm8kAnswer(NumericAnswer):
    """Scores GSM8K-style answers (see `make_gsm8k_answer`)."""

    kind = "gsm8k_answer"
    param_names = ("answer_column", "strict", "tolerance", "correct", "wrong")

    def __init__(self, answer_column: str = "answer", strict: bool = False, tolerance: float = 1e-6,
                 correct: float = 1.0, wrong: float = 0.0, name: str | None = None):
        super().__init__(answer_column, tolerance, 0.0, False, correct, wrong, name)
        self.strict = bool(strict)

    def predicted(self, text: str) -> Fraction | None:
        if "####" in text:
            numbers = find_numbers(text.rsplit("####", 1)[1])
            return numbers[0] if numbers else None
        if self.strict:
            return None  # the GSM8K format was asked for and not produced
        return extract_number(text, words=False)


def make_gsm8k_answer(answer_column: str = "answer", strict: bool = False, tolerance: float = 1e-6,
                      correct: float = 1.0, wrong: float = 0.0, name: str | None = None) -> Gsm8kAnswer:
    """Reward for GSM8K: the number after the completion's last `####` against the reference's `#### n`.

    The reference is GSM8K's `answer` field (a worked solution ending in `#### 72`) or a bare number. Numbers are
    compared as numbers, so "#### 1,000" matches "1000" (Unsloth's notebook compares strings and misses that).
    Without a `####` in the completion, the answer region rules of `numeric_answer` apply, unless `strict=True`,
    which scores such completions as wrong.

    Args:
        answer_column: dataset column holding the GSM8K answer.
        strict: require `#### n` in the completion.
        tolerance: absolute tolerance.
        correct: score of a correct completion (Unsloth's notebook uses 2.0).
        wrong: score of a wrong one.
        name: `__name__` of the reward; default "gsm8k_answer".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`.

    >>> gold = "She sold 48 / 2 = 24 clips in May, 48 + 24 = 72 in all.\\n#### 72"
    >>> make_gsm8k_answer()(["48 + 24 = 72\\n#### 72", "#### 7,2", "The total is 72."], answer=[gold] * 3)
    [1.0, 0.0, 1.0]
    >>> make_gsm8k_answer(strict=True)(["The total is 72."], answer=[gold])
    [0.0]
    """
    return Gsm8kAnswer(answer_column, strict, tolerance, correct, wrong, name)


class ExactAnswer(Reward):
    """Scores whether the completion's answer equals the reference string (see `make_exact_answer`)."""

    kind = "exact_answer"
    param_names = ("answer_column", "normalize", "extract", "contains", "correct", "wrong")

    def __init__(self, answer_column: str = "answer", normalize: bool = True, extract: bool = True,
                 contains: bool = False, correct: float = 1.0, wrong: float = 0.0, name: str | None = None):
        super().__init__(name)
        if not isinstance(answer_column, str) or not answer_column:
            raise ValueError(f"parameter 'answer_column' must be a column name, got {answer_column!r}")
        check_number("correct", correct)
        check_number("wrong", wrong)
        self.answer_column, self.normalize, self.extract = answer_column, bool(normalize), bool(extract)
        self.contains, self.correct, self.wrong = bool(contains), float(correct), float(wrong)

    def candidate(self, text: str) -> str:
        """The part of a completion compared with the reference."""
        if not self.extract:
            return text.strip()
        region, kind = answer_region(text)
        if kind == "marker":  # "The answer is Paris. It is the capital." -> "Paris"
            region = re.split(r"\n|\.(?=\s|$)", region, maxsplit=1)[0]
        return region.strip()

    def _norm(self, text: str) -> str:
        return normalize_answer(text) if self.normalize else text.strip()

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        refs = column(kwargs, self.answer_column, len(texts), self.__name__, "answer_column")
        out: list[float | None] = []
        for text, ref in zip(texts, refs):
            options = ref if isinstance(ref, (list, tuple)) else [ref]  # several accepted answers
            golds = [self._norm(str(r)) for r in options if r is not None]
            golds = [g for g in golds if g]
            if not golds:
                out.append(None)
                continue
            cand = self._norm(self.candidate(text))
            ok = cand in golds
            if not ok and self.contains:
                padded = f" {self._norm(text)} "
                ok = any(f" {g} " in padded or f" {g} " in f" {cand} " for g in golds)
            out.append(self.correct if ok else self.wrong)
        return out


def make_exact_answer(answer_column: str = "answer", normalize: bool = True, extract: bool = True,
                      contains: bool = False, correct: float = 1.0, wrong: float = 0.0,
                      name: str | None = None) -> ExactAnswer:
    """Reward for a string answer: exact match after normalisation.

    With `extract=True` the answer region is compared (the last `\\boxed{}` or `<answer>…</answer>`, or the sentence
    after "the answer is"), else the whole completion. With `normalize=True` both sides are NFKC-normalised,
    case-folded, stripped of punctuation, articles and extra spaces (SQuAD style). The reference may be a list of
    accepted answers. With `contains=True` the reference may also appear as whole words anywhere in the completion.

    Args:
        answer_column: dataset column holding the reference (a string or a list of strings).
        normalize: normalise both sides before comparing; False compares stripped strings exactly.
        extract: compare the answer region rather than the whole completion.
        contains: also accept the reference as a whole-word substring.
        correct: score of a match.
        wrong: score of a mismatch.
        name: `__name__` of the reward; default "exact_answer".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`; None where the reference is empty.

    >>> reward = make_exact_answer()
    >>> reward(["The answer is Paris.", "<answer>the eiffel tower</answer>", "London"],
    ...        answer=["paris", "Eiffel Tower", ["Paris", "Lyon"]])
    [1.0, 1.0, 0.0]
    >>> make_exact_answer(normalize=False)(["paris"], answer=["Paris"])
    [0.0]
    >>> make_exact_answer(contains=True)(["I am sure it is Paris, France"], answer=["Paris"])
    [1.0]
    """
    return ExactAnswer(answer_column, normalize, extract, contains, correct, wrong, name)


# --- math equivalence via math-verify ----------------------------------------------------------------------------------

_FRAC_SHORT = re.compile(r"\\([dt]?frac)\s*(\d)\s*(\d)")  # \frac12 -> \frac{1}{2}; latex2sympy misreads the short form


def _prepare_math(text: str) -> str:
    text = normalize_unicode(text)
    return _FRAC_SHORT.sub(r"\\\1{\2}{\3}", text)


# Only text that looks like LaTeX is retried inside $...$: math-verify reads "no idea" as the product n*o*i*d*e*a.
_LATEXISH = re.compile(r"\\[a-zA-Z]+|\^|_\{")

class MathEquivalence(Reward):
    """Scores mathematical equivalence with math-verify (see `make_math_equivalence`)."""

    kind = "math_equivalence"
    param_names = ("answer_column", "correct", "wrong", "float_rounding", "timeout_s")

    def __init__(self, answer_column: str = "answer", correct: float = 1.0, wrong: float = 0.0,
                 float_rounding: int = 6, timeout_s: int = 5, name: str | None = None):
        super().__init__(name)
        if not isinstance(answer_column, str) or not answer_column:
            raise ValueError(f"parameter 'answer_column' must be a column name, got {answer_column!r}")
        check_number("correct", correct)
        check_number("wrong", wrong)
        check_number("float_rounding", float_rounding, low=0, high=15, integer=True)
        check_number("timeout_s", timeout_s, low=1, integer=True)
        self.answer_column, self.correct, self.wrong = answer_column, float(correct), float(wrong)
        self.float_rounding, self.timeout_s = float_rounding, timeout_s

    def _configs(self) -> list[Any]:
        from latex2sympy2_extended import NormalizationConfig
        from math_verify import ExprExtractionConfig, LatexExtractionConfig

        # \boxed{} first; plain expressions ("0.5", "1/2") are also accepted, unlike TRL's accuracy_reward
        return [
            LatexExtractionConfig(normalization_config=NormalizationConfig(units=True), boxed_match_priority=0),
            ExprExtractionConfig(),
        ]

    def parse_gold(self, ref: Any, timeout: int | None) -> list[Any]:
        """The parsed reference, [] if it does not parse."""
        from math_verify import parse

        text = _prepare_math(str(ref))
        if "####" in text:
            text = text.rsplit("####", 1)[1]
        gold = parse(text, parsing_timeout=timeout)
        if not gold and "$" not in text and _LATEXISH.search(text):
            gold = parse(f"${text.strip()}$", parsing_timeout=timeout)  # bare LaTeX such as \frac{\sqrt{2}}{2}
        return gold

    def parse_answer(self, text: str, timeout: int | None) -> list[Any]:
        """The parsed answer of a completion, [] if none is found."""
        from math_verify import parse

        region = _prepare_math(text)
        tagged, kind = answer_region(region)
        if kind == "tag":
            region = tagged
        configs = self._configs()
        pred = parse(region, extraction_config=configs, extraction_mode="first_match", parsing_timeout=timeout)
        if not pred and region.strip():
            last_line = region.strip().splitlines()[-1]
            if len(last_line) < 300 and "$" not in last_line and _LATEXISH.search(last_line):  # bare LaTeX
                pred = parse(f"${last_line}$", extraction_config=configs, parsing_timeout=timeout)
        return pred

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        from math_verify import verify

        refs = column(kwargs, self.answer_column, len(texts), self.__name__, "answer_column")
        # math-verify's timeouts use SIGALRM, which only works in the main thread. Elsewhere (the app's event
        # threads) one answer such as \boxed{10^{10^{10}}} would hold the GIL for minutes: score in a worker process.
        if threading.current_thread() is not threading.main_thread():
            return self._score_in_worker(texts, refs)
        timeout = self.timeout_s
        golds: dict[str, list[Any]] = {}  # the G completions of a prompt share one reference
        out: list[float | None] = []
        for text, ref in zip(texts, refs):
            if ref is None or str(ref).strip() == "":
                out.append(None)
                continue
            key = str(ref)
            if key not in golds:
                try:
                    golds[key] = self.parse_gold(ref, timeout)
                except Exception:
                    golds[key] = []
            gold = golds[key]
            if not gold:
                out.append(None)  # unparseable reference: not applicable (open-r1 gives 1.0 here)
                continue
            try:
                pred = self.parse_answer(text, timeout)
                ok = bool(pred) and verify(gold, pred, float_rounding=self.float_rounding, timeout_seconds=timeout)
            except Exception:  # a parse/verify timeout or a sympy error on odd input: not a correct answer
                ok = False
            out.append(self.correct if ok else self.wrong)
        return out

    def _score_in_worker(self, texts: list[str], refs: list[Any]) -> list[float | None]:
        """score_texts in a warm sandboxed process (main thread there, so the per-answer timeouts work); a batch
        that still overruns is killed and scores `wrong`."""
        from rewards.sandbox import SandboxedReward

        params = dict(answer_column="answer", correct=self.correct, wrong=self.wrong,
                      float_rounding=self.float_rounding, timeout_s=self.timeout_s)
        source = _WORKER_SOURCE.format(params=repr(params))
        with _workers_lock:
            worker = _workers.get(source)
            if worker is None:
                worker = _workers[source] = SandboxedReward(source, "math_equivalence_worker", name=self.__name__,
                                                            timeout_s=30 + 2 * self.timeout_s * len(texts))
            worker.timeout_s = max(worker.timeout_s, 30 + 2 * self.timeout_s * len(texts))
        scores, errors = worker.score_with_errors(texts, answer=[None if r is None else str(r) for r in refs])
        return [self.wrong if e is not None else s for s, e in zip(scores, errors)]


# The worker-process side of MathEquivalence._score_in_worker (one warm sandboxed process per parameter set).
_WORKER_SOURCE = '''
from rewards.answers import MathEquivalence

_REWARD = MathEquivalence(**{params})


def math_equivalence_worker(completions, answer, **kwargs):
    return _REWARD.score_texts(list(completions), {{"answer": answer}})
'''
_workers: dict[str, Any] = {}
_workers_lock = threading.Lock()


def make_math_equivalence(answer_column: str = "answer", correct: float = 1.0, wrong: float = 0.0,
                          float_rounding: int = 6, timeout_s: int = 5,
                          name: str | None = None) -> MathEquivalence:
    r"""Reward for math answers checked for equivalence by `math-verify` (LaTeX, `\boxed{}`, fractions, sets, …).

    The completion's answer is the first `\boxed{}` (then other LaTeX, then a plain expression) inside
    `<answer>…</answer>` if present, else in the whole completion; so `\frac{1}{2}`, `\frac12`, `1/2` and `0.5`
    all match a reference of "0.5". The reference may be LaTeX with or without `$…$`, a number, or end in `#### n`.

    Args:
        answer_column: dataset column holding the reference answer.
        correct: score of an equivalent answer.
        wrong: score of a wrong or missing answer (also when math-verify times out on it).
        float_rounding: decimal places used when comparing floats.
        timeout_s: math-verify's parse and verify time limit per answer. Its timeouts use SIGALRM, so off the
            main thread (e.g. in the app) the batch is scored in a sandboxed worker process instead.
        name: `__name__` of the reward; default "math_equivalence".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`; None where the reference does not parse.

    >>> reward = make_math_equivalence()
    >>> reward([r"The answer is $\boxed{\frac{1}{2}}$", "0.5", "1/2", r"\boxed{\frac{1}{3}}"], answer=["0.5"] * 4)
    [1.0, 1.0, 1.0, 0.0]
    >>> reward(["x = 3"], answer=["no idea"])
    [None]
    """
    return MathEquivalence(answer_column, correct, wrong, float_rounding, timeout_s, name)


# Ready-made instances with default parameters: `reward_funcs=[rewards.numeric_answer]`.
numeric_answer = make_numeric_answer()
exact_answer = make_exact_answer()
gsm8k_answer = make_gsm8k_answer()
math_equivalence = make_math_equivalence()

CORRECTNESS_KINDS: dict[str, type] = {
    "numeric_answer": NumericAnswer,
    "exact_answer": ExactAnswer,
    "gsm8k_answer": Gsm8kAnswer,
    "math_equivalence": MathEquivalence,
}


def correctness_reward(kind: str, answer_column: str = "answer") -> Reward:
    """An answer reward by registry name (used by `cosine_length`)."""
    if kind not in CORRECTNESS_KINDS:
        raise ValueError(f"parameter 'correctness' must be one of {', '.join(CORRECTNESS_KINDS)}, got {kind!r}")
    return CORRECTNESS_KINDS[kind](answer_column=answer_column)


__all__: Sequence[str] = [
    "NumericAnswer", "ExactAnswer", "Gsm8kAnswer", "MathEquivalence", "make_numeric_answer", "make_exact_answer",
    "make_gsm8k_answer", "make_math_equivalence", "numeric_answer", "exact_answer", "gsm8k_answer",
    "math_equivalence", "correctness_reward",
]
