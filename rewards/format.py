"""Format rewards: required tags in order (strict, soft or partial credit) and any regular expression.

Every pattern here spans lines (DOTALL). The Unsloth GSM8K notebook's `soft_format_reward_func` and
`strict_format_reward_func` match without DOTALL, so a `<reasoning>` section of more than one line never matches
and the reward is 0 for exactly the completions it was meant to reward.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rewards.base import Reward, check_choice, check_number

_TAG_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")
FORMAT_MODES = ("strict", "soft", "partial")


def _parse_tags(tags: Any) -> tuple[str, ...]:
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,\s]+", tags) if t]
    if not isinstance(tags, (list, tuple)) or not tags:
        raise ValueError(f"parameter 'tags' must be a non-empty list of tag names, got {tags!r}")
    names = []
    for tag in tags:
        name = str(tag).strip().strip("<>/").strip()
        if not _TAG_NAME.match(name):
            raise ValueError(f"parameter 'tags': {tag!r} is not a valid tag name (letters, digits, _ . -)")
        names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"parameter 'tags' lists a tag twice: {names}")
    return tuple(names)


class FormatTags(Reward):
    """Scores whether the completion is made of the required tagged sections (see `make_format_tags`)."""

    kind = "format_tags"
    param_names = ("tags", "mode", "allow_empty")

    def __init__(self, tags: Sequence[str] | str = ("reasoning", "answer"), mode: str = "strict",
                 allow_empty: bool = False, name: str | None = None):
        super().__init__(name)
        self.tags = _parse_tags(tags)
        check_choice("mode", mode, FORMAT_MODES)
        self.mode, self.allow_empty = mode, bool(allow_empty)

    def _sections(self, text: str) -> list[tuple[int, int, int, int] | None]:
        """Per tag: (open start, open end, close start, close end) if it opens and closes exactly once, in order."""
        out = []
        for tag in self.tags:
            opens = [m.span() for m in re.finditer(f"<{re.escape(tag)}>", text)]
            closes = [m.span() for m in re.finditer(f"</{re.escape(tag)}>", text)]
            if len(opens) == 1 and len(closes) == 1 and opens[0][1] <= closes[0][0]:
                out.append((*opens[0], *closes[0]))
            else:
                out.append(None)
        return out

    def _well_formed(self, text: str, sections: list[tuple[int, int, int, int] | None]) -> bool:
        if any(s is None for s in sections):
            return False
        spans = [s for s in sections if s is not None]
        if any(a[3] > b[0] for a, b in zip(spans, spans[1:])):  # out of order, or one section inside another
            return False
        if not self.allow_empty and any(not text[s[1] : s[2]].strip() for s in spans):
            return False
        return True

    def score_text(self, text: str) -> float:
        sections = self._sections(text)
        ok = self._well_formed(text, sections)
        if self.mode == "soft":
            return 1.0 if ok else 0.0
        if self.mode == "strict":
            if not ok:
                return 0.0
            spans = [s for s in sections if s is not None]
            gaps = [text[: spans[0][0]], text[spans[-1][3] :]] + [text[a[3] : b[0]] for a, b in zip(spans, spans[1:])]
            return 1.0 if all(not g.strip() for g in gaps) else 0.0
        # partial: per tag 0.5 for a single opening and 0.5 for a single closing after it, plus 0.2 for the whole
        # structure being right, scaled so a well-formed completion scores 1.0
        per_tag = []
        for tag in self.tags:
            n_open = text.count(f"<{tag}>")
            n_close = text.count(f"</{tag}>")
            score = 0.5 * (n_open == 1) + 0.5 * (n_close == 1)
            if n_open == 1 and n_close == 1 and text.index(f"<{tag}>") > text.index(f"</{tag}>"):
                score = 0.5  # closed before it was opened
            per_tag.append(score)
        return round(0.8 * sum(per_tag) / len(per_tag) + 0.2 * ok, 6)

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        return [self.score_text(t) for t in texts]


def make_format_tags(tags: Sequence[str] | str = ("reasoning", "answer"), mode: str = "strict",
                     allow_empty: bool = False, name: str | None = None) -> FormatTags:
    """Reward for a tagged format such as `<reasoning>…</reasoning><answer>…</answer>`.

    A section is right when its tag opens and closes exactly once (so repeated or nested copies fail), in the
    listed order, with non-blank content (unless `allow_empty`). Sections may span any number of lines.

    Modes:
        strict: 1.0 if the completion is exactly the sections, in order, with only whitespace around and between.
        soft: 1.0 if the sections are right, whatever text surrounds them.
        partial: partial credit for learning the format: per tag 0.5 for one opening and 0.5 for one closing
            (averaged, times 0.8), plus 0.2 when all sections are right (like Unsloth's `xmlcount`).

    Args:
        tags: tag names in order (a list, or a string "reasoning, answer").
        mode: "strict", "soft" or "partial".
        allow_empty: accept sections with blank content.
        name: `__name__` of the reward; default "format_tags".

    Returns:
        A reward `f(completions, **columns) -> list[float]` in [0, 1].

    >>> good = "<reasoning>\\n17 + 25\\n= 42\\n</reasoning>\\n<answer>42</answer>"
    >>> reward = make_format_tags()
    >>> reward([good, "Sure! " + good, "<answer>42</answer>", "<reasoning>a</reasoning><answer><answer>42</answer></answer>"])
    [1.0, 0.0, 0.0, 0.0]
    >>> make_format_tags(mode="soft")(["Sure! " + good])
    [1.0]
    >>> make_format_tags(mode="partial")(["<reasoning>x</reasoning> 42", good])
    [0.4, 1.0]
    """
    return FormatTags(tags, mode, allow_empty, name)


_FLAG_LETTERS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "a": re.ASCII}
REGEX_MODES = ("search", "match", "fullmatch", "count")


class Regex(Reward):
    """Scores whether the completion matches a regular expression (see `make_regex`)."""

    kind = "regex"
    param_names = ("pattern", "mode", "flags", "strip", "match_score", "miss_score", "max_score")

    def __init__(self, pattern: str = r"<answer>\s*\S.*?</answer>", mode: str = "search", flags: str = "s",
                 strip: bool = True, match_score: float = 1.0, miss_score: float = 0.0,
                 max_score: float | None = None, name: str | None = None):
        super().__init__(name)
        check_choice("mode", mode, REGEX_MODES)
        if not isinstance(flags, str) or any(f not in _FLAG_LETTERS for f in flags):
            raise ValueError(f"parameter 'flags' must be letters from {''.join(_FLAG_LETTERS)!r}, got {flags!r}")
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"parameter 'pattern' must be a non-empty regular expression, got {pattern!r}")
        check_number("match_score", match_score)
        check_number("miss_score", miss_score)
        check_number("max_score", max_score, allow_none=True)
        self.pattern, self.mode, self.flags, self.strip = pattern, mode, flags, bool(strip)
        self.match_score, self.miss_score = float(match_score), float(miss_score)
        self.max_score = None if max_score is None else float(max_score)
        self._compiled = self._compile()

    def _compile(self) -> re.Pattern:
        value = 0
        for letter in self.flags:
            value |= _FLAG_LETTERS[letter]
        try:
            return re.compile(self.pattern, value)
        except re.error as exc:
            where = f" at position {exc.pos}" if exc.pos is not None else ""
            raise ValueError(f"parameter 'pattern' is not a valid regular expression: {exc.msg}{where}") from None

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        rx, out = self._compiled, []
        for text in texts:
            if self.strip:
                text = text.strip()
            if self.mode == "count":  # match_score per occurrence, miss_score when there is none
                n = sum(1 for _ in rx.finditer(text))
                score = n * self.match_score if n else self.miss_score
                out.append(score if self.max_score is None else min(score, self.max_score))
                continue
            hit = getattr(rx, self.mode)(text)
            out.append(self.match_score if hit else self.miss_score)
        return out


def make_regex(pattern: str = r"<answer>\s*\S.*?</answer>", mode: str = "search", flags: str = "s",
               strip: bool = True, match_score: float = 1.0, miss_score: float = 0.0,
               max_score: float | None = None, name: str | None = None) -> Regex:
    r"""Reward for any regular expression: `match_score` if the completion matches, else `miss_score`.

    The flags default to "s" (DOTALL: `.` crosses newlines), the usual intent for multi-line completions. The
    pattern is checked when the reward is built, so a typo fails before training starts.

    Args:
        pattern: a Python regular expression.
        mode: "search" (anywhere), "match" (at the start), "fullmatch" (the whole completion), or "count"
            (`match_score` per non-overlapping occurrence).
        flags: letters: i (ignore case), m (multiline ^ $), s (dot matches newline), x (verbose), a (ASCII).
        strip: strip surrounding whitespace before matching.
        match_score: score when it matches (per match in "count" mode).
        miss_score: score when it does not.
        max_score: cap on the score in "count" mode (open-r1's reasoning_steps_reward: match_score=1/3, max 1).
        name: `__name__` of the reward; default "regex".

    Returns:
        A reward `f(completions, **columns) -> list[float]`.

    >>> reward = make_regex(r"^<think>.+</think>\s*\S", mode="match")
    >>> reward(["<think>\nstep 1\nstep 2\n</think>\n42", "42"])
    [1.0, 0.0]
    >>> make_regex(r"Step \d+:", mode="count", match_score=0.25)(["Step 1: a. Step 2: b.", "no steps"])
    [0.5, 0.0]
    >>> make_regex(r"Step \d+:", mode="count", match_score=0.5, max_score=1.0)(["Step 1: Step 2: Step 3:"])
    [1.0]
    >>> make_regex("(unclosed")
    Traceback (most recent call last):
    ...
    ValueError: parameter 'pattern' is not a valid regular expression: missing ), unterminated subpattern at position 0
    """
    return Regex(pattern, mode, flags, strip, match_score, miss_score, max_score, name)


format_tags = make_format_tags()

__all__ = ["FormatTags", "Regex", "make_format_tags", "make_regex", "format_tags", "FORMAT_MODES", "REGEX_MODES"]
