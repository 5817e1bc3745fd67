"""Text similarity to a reference: character ratio (difflib), token F1 (SQuAD) and token Jaccard, all in [0, 1]."""
from __future__ import annotations

import difflib
from collections import Counter
from typing import Any

from rewards.base import Reward, check_choice, column
from rewards.text import answer_region, normalize_answer, tokens

SIMILARITY_METHODS = ("ratio", "token_f1", "jaccard")


def ratio(a: str, b: str) -> float:
    """difflib's similarity ratio 2*M/T of two strings (1.0 when both are empty).

    >>> ratio("kitten", "sitting")
    0.615385
    """
    if not a and not b:
        return 1.0
    return round(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(), 6)


def token_f1(pred: str, ref: str) -> float:
    """SQuAD token F1 between two texts after `normalize_answer` (1.0 when both are empty).

    >>> token_f1("the cat sat on the mat", "a cat sat on a mat")
    1.0
    >>> token_f1("cat sat", "cat sat on mat")
    0.666667
    """
    p, r = tokens(pred), tokens(ref)
    if not p and not r:
        return 1.0
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return round(2 * precision * recall / (precision + recall), 6)


def jaccard(pred: str, ref: str) -> float:
    """Jaccard similarity of the two token sets (1.0 when both are empty).

    >>> jaccard("red green blue", "green blue yellow")
    0.5
    """
    p, r = set(tokens(pred)), set(tokens(ref))
    if not p and not r:
        return 1.0
    return round(len(p & r) / len(p | r), 6)


class Similarity(Reward):
    """Scores similarity of the completion to a reference text (see `make_similarity`)."""

    kind = "similarity"
    param_names = ("method", "reference_column", "extract", "normalize")

    def __init__(self, method: str = "token_f1", reference_column: str = "answer", extract: bool = False,
                 normalize: bool = True, name: str | None = None):
        super().__init__(name)
        check_choice("method", method, SIMILARITY_METHODS)
        if not isinstance(reference_column, str) or not reference_column:
            raise ValueError(f"parameter 'reference_column' must be a column name, got {reference_column!r}")
        self.method, self.reference_column = method, reference_column
        self.extract, self.normalize = bool(extract), bool(normalize)

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        refs = column(kwargs, self.reference_column, len(texts), self.__name__, "reference_column")
        out: list[float | None] = []
        for text, ref in zip(texts, refs):
            if ref is None:
                out.append(None)
                continue
            if self.extract:
                text = answer_region(text)[0]
            ref = str(ref)
            if self.method == "ratio":
                a, b = (normalize_answer(text), normalize_answer(ref)) if self.normalize else (text, ref)
                out.append(ratio(a, b))
            elif self.method == "token_f1":
                out.append(token_f1(text, ref))
            else:
                out.append(jaccard(text, ref))
        return out


def make_similarity(method: str = "token_f1", reference_column: str = "answer", extract: bool = False,
                    normalize: bool = True, name: str | None = None) -> Similarity:
    """Reward for closeness to a reference text, in [0, 1].

    Methods:
        token_f1: SQuAD's token F1 (overlap of normalised words, order ignored). Good for short free-text answers.
        ratio: difflib's character-level similarity ratio (order matters). Good for near-copies, rewrites.
        jaccard: shared distinct words / all distinct words.

    Args:
        method: "token_f1", "ratio" or "jaccard".
        reference_column: dataset column holding the reference text.
        extract: compare only the answer region (`<answer>`, `\\boxed{}`, after "the answer is").
        normalize: for "ratio", normalise both texts first (token methods always normalise).
        name: `__name__` of the reward; default "similarity".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`; None where the reference is None.

    >>> reward = make_similarity()
    >>> reward(["The Eiffel Tower in Paris", "a tower", "London"], answer=["Eiffel Tower"] * 3)
    [0.666667, 0.666667, 0.0]
    >>> make_similarity(method="ratio")(["colour"], answer=["color"])
    [0.909091]
    """
    return Similarity(method, reference_column, extract, normalize, name)


__all__ = ["Similarity", "make_similarity", "ratio", "token_f1", "jaccard", "SIMILARITY_METHODS"]
