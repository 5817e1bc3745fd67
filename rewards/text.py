"""Text helpers shared by the rewards: completion text, answer extraction, number parsing, normalisation.

Everything here is pure and fast (regexes, no model): rewards run on every generated completion.
"""
from __future__ import annotations

import re
import string
import unicodedata
from fractions import Fraction
from functools import lru_cache
from typing import Any

# --- completions and prompts in string or chat form ---------------------------------------------------------------


def _content_text(content: Any) -> str:
    """A message's content: a string, or a list of parts ({"type": "text", "text": ...}) in multimodal chats."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text") or part.get("content") or ""))
            else:
                parts.append(str(part))
        return "".join(parts)
    return str(content)


def completion_text(completion: Any) -> str:
    """The text of a completion in string or chat form.

    Chat-form completions are lists of messages (TRL passes `[{"role": "assistant", "content": ...}]`). With several
    messages (tool calls), the assistant messages are joined with newlines so the final answer is at the end.

    Args:
        completion: a string, a message dict, or a list of message dicts.

    Returns:
        The text ("" for None).

    >>> completion_text("42")
    '42'
    >>> completion_text([{"role": "assistant", "content": "The answer is 42."}])
    'The answer is 42.'
    >>> completion_text(None)
    ''
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        if not messages:
            return "".join(str(m) for m in completion)
        if len(messages) == 1:
            return _content_text(messages[0].get("content"))
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"] or messages
        return "\n".join(_content_text(m.get("content")) for m in assistant)
    return str(completion)


def prompt_text(prompt: Any) -> str:
    """The last user message of a prompt in string or chat form (the question, without the system prompt).

    >>> prompt_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}])
    'What is 2 + 2?'
    >>> prompt_text("What is 2 + 2?")
    'What is 2 + 2?'
    """
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return _content_text(users[-1].get("content"))
        return completion_text(prompt)
    return completion_text(prompt)


# --- unicode ---------------------------------------------------------------------------------------------------------

# Models write the minus sign in several ways; NFKC folds the full-width and small forms but not U+2212.
_MINUS_SIGNS = "\u2212\u2012\u2010\u2011\ufe63\uff0d"
_DASH_AS_MINUS = re.compile(r"(?<![\w)\]])\s?[\u2013\u2014](?=\s?\d)")  # "– 3" or "—3" before a number


def normalize_unicode(text: str) -> str:
    """NFKC-normalise and turn the unicode minus signs into '-' (full-width digits become ASCII digits).

    >>> normalize_unicode("\u22123 and \uff14\uff12")
    '-3 and 42'
    """
    if text.isascii():  # the common case: nothing to fold
        return text
    text = unicodedata.normalize("NFKC", text)
    for ch in _MINUS_SIGNS:
        text = text.replace(ch, "-")
    return _DASH_AS_MINUS.sub(lambda m: m.group(0).replace("\u2013", "-").replace("\u2014", "-"), text)


# --- answer regions ----------------------------------------------------------------------------------------------------

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_MARKER = re.compile(
    r"\b(?:final\s+answer|the\s+answer|answer|result)\s*(?:is\b|:|=|equals\b)\s*(?:[:=]\s*)?|####",
    re.IGNORECASE,
)


def last_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}` (or `\fbox{...}`), with nested braces; None if there is none.

    >>> last_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{3}")
    '3'
    >>> last_boxed(r"\boxed{\frac{1}{2}}")
    '\\frac{1}{2}'
    >>> last_boxed("no box") is None
    True
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: the box was never closed


def answer_region(text: str) -> tuple[str, str]:
    r"""Where the final answer most likely is, and how it was found.

    Checked in order: the last `\boxed{}`, the last `<answer>…</answer>` (or the text after an unclosed
    `<answer>`), the text after the last marker (`####`, "answer is", "answer:", "final answer ="), else the whole
    text. Returns `(region, kind)` with kind in `boxed`, `tag`, `marker`, `text`.

    >>> answer_region("<reasoning>17 + 25</reasoning><answer>42</answer>")
    ('42', 'tag')
    >>> answer_region("Let me think. The answer is 42 (checked 3 times).")
    ('42 (checked 3 times).', 'marker')
    >>> answer_region("17 + 25 = 42")
    ('17 + 25 = 42', 'text')
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip(), "tag"
    opens = list(_ANSWER_OPEN.finditer(text))
    if opens:
        return text[opens[-1].end() :].strip(), "tag"
    markers = list(_MARKER.finditer(text))
    if markers:
        return text[markers[-1].end() :].strip(), "marker"
    return text.strip(), "text"


# --- numbers ---------------------------------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"""
    (?<![\w.])                                   # not glued to a word ("x2") or to another number
    (?P<sign>[-+])?
    (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?         # 1,234,567.89 (thousands separators)
          |\d+(?:\.\d+)?                          # 42, 3.14
          |\.\d+)                                 # .5
    (?:[eE](?P<exp>[-+]?\d+))?                    # 1e-3
    (?:/(?P<den>\d+)(?![\d.]))?                   # 1/2 (a plain fraction, no spaces)
    """,
    re.VERBOSE,
)


def _to_fraction(match: re.Match) -> Fraction | None:
    try:
        value = Fraction(match.group("num").replace(",", ""))
        if match.group("exp"):
            exp = int(match.group("exp"))
            if abs(exp) > 400:  # a "1e999999" would build a huge integer
                return None
            value *= Fraction(10) ** exp
        if match.group("den"):
            den = int(match.group("den"))
            if den == 0:
                return None
            value /= den
        return -value if match.group("sign") == "-" else value
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def find_numbers(text: str) -> list[Fraction]:
    """All numbers in `text`, in order, as exact fractions (commas as thousands separators, unicode minus, 1/2, 1e3).

    >>> [str(x) for x in find_numbers("17 + 25 = 42, not \u221242 or 1,234.5 or 1/2")]
    ['17', '25', '42', '-42', '2469/2', '1/2']
    >>> find_numbers("no digits here")
    []
    """
    text = normalize_unicode(text)
    out = []
    for m in _NUMBER.finditer(text):
        value = _to_fraction(m)
        if value is not None:
            out.append(value)
    return out


_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES)


def words_to_numbers(text: str) -> list[int]:
    """Numbers written in English words ("forty-two", "minus three", "one hundred and five"), in order.

    >>> words_to_numbers("The answer is forty-two.")
    [42]
    >>> words_to_numbers("minus three, then one hundred and five")
    [-3, 105]
    """
    tokens = re.findall(r"[a-z]+", text.lower())
    out: list[int] = []
    i = 0
    while i < len(tokens):
        negative = tokens[i] in ("minus", "negative") and i + 1 < len(tokens) and tokens[i + 1] in _NUMBER_WORDS
        j = i + 1 if negative else i
        if j >= len(tokens) or tokens[j] not in _NUMBER_WORDS:
            i += 1
            continue
        total, current, seen = 0, 0, False
        while j < len(tokens):
            tok = tokens[j]
            if tok in _UNITS:
                current += _UNITS[tok]
            elif tok in _TENS:
                current += _TENS[tok]
            elif tok == "hundred":
                current = max(current, 1) * 100
            elif tok in _SCALES:
                total += max(current, 1) * _SCALES[tok]
                current = 0
            elif tok == "and" and seen and j + 1 < len(tokens) and tokens[j + 1] in _NUMBER_WORDS:
                j += 1
                continue
            else:
                break
            seen = True
            j += 1
        value = total + current
        out.append(-value if negative else value)
        i = j
    return out


def extract_number(text: str, words: bool = True) -> Fraction | None:
    r"""The number a completion gives as its answer, or None.

    Looks in the answer region (see `answer_region`): after a marker such as "the answer is" the *first* number
    counts (so "42 (checked 3 times)" gives 42); elsewhere the *last* one does ("17 + 25 = 42" gives 42). With
    `words=True`, a number written in words is used when the region has no digits ("forty-two").

    >>> extract_number("17 + 25 = 42")
    Fraction(42, 1)
    >>> extract_number("The answer is 42 (checked 3 times).")
    Fraction(42, 1)
    >>> extract_number("\\boxed{\u22123}")
    Fraction(-3, 1)
    >>> extract_number("forty-two")
    Fraction(42, 1)
    >>> extract_number("") is None
    True
    """
    region, kind = answer_region(text)
    numbers = find_numbers(region)
    if not numbers and kind != "text":
        numbers = find_numbers(text)  # an empty <answer></answer> or box: fall back to the whole text
        kind = "text"
    if numbers:
        return numbers[0] if kind == "marker" else numbers[-1]
    if words:
        spelled = words_to_numbers(region) or words_to_numbers(text)
        if spelled:
            return Fraction(spelled[0] if kind == "marker" else spelled[-1])
    return None


def reference_number(ref: Any) -> Fraction | None:
    """A reference answer as a number: 42, "42", "1,234", "#### 72" or a GSM8K solution ending in "#### 72".

    Returns None when the reference holds no number (the reward then does not apply to that sample).

    >>> reference_number("Natalia sold 48/2 = 24 clips in May... #### 72")
    Fraction(72, 1)
    >>> reference_number(42), reference_number("3.5"), reference_number("n/a")
    (Fraction(42, 1), Fraction(7, 2), None)
    """
    if ref is None or isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        return Fraction(ref)
    if isinstance(ref, float):
        return Fraction(ref) if ref == ref and abs(ref) != float("inf") else None
    text = str(ref)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    numbers = find_numbers(text)
    return numbers[-1] if numbers else None


def numbers_match(pred: Fraction, ref: Fraction, abs_tol: float = 1e-6, rel_tol: float = 0.0) -> bool:
    """Whether two numbers are equal within the absolute or relative tolerance (exact for integers).

    >>> numbers_match(Fraction(1, 2), Fraction("0.5"))
    True
    >>> numbers_match(Fraction(101), Fraction(100), rel_tol=0.02)
    True
    """
    if pred == ref:  # the common case, and exact for big integers
        return True
    diff = abs(pred - ref)
    return diff <= _tolerance(abs_tol) or diff <= _tolerance(rel_tol) * abs(ref)


@lru_cache(maxsize=64)
def _tolerance(value: float) -> Fraction:
    # Fraction("1e-06") is 1/1000000; Fraction(1e-06) is a 60-digit binary fraction that slows every comparison
    return Fraction(repr(float(value)))


# --- string normalisation -------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "\u2018\u2019\u201c\u201d\u00ab\u00bb")


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: NFKC, case-fold, drop punctuation and articles, collapse whitespace.

    A decimal point between digits is kept, so "3.5" stays different from "35".

    >>> normalize_answer("  The **Eiffel Tower**. ")
    'eiffel tower'
    >>> normalize_answer("3.5"), normalize_answer("\u22123")
    ('3.5', '-3')
    """
    text = normalize_unicode(text).casefold()
    text = re.sub(r"(?<=\d)\.(?=\d)", "\x00", text)  # protect decimal points
    text = re.sub(r"(?<![\w])-(?=\d)", "\x01", text)  # and leading minus signs
    text = text.translate(_PUNCT).replace("\x00", ".").replace("\x01", "-")
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of `normalize_answer(text)`.

    >>> tokens("The cat sat, on the mat!")
    ['cat', 'sat', 'on', 'mat']
    """
    return normalize_answer(text).split()
