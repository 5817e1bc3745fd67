"""Leak-free held-out splits: every row gets a canonical key for its prompt, and no training row shares a key with
a held-out row.

Two rows ask "the same question" when their keys are equal. The generic key is the prompt's text normalised:
Unicode NFKC, case-folded, whitespace collapsed; for chat-form prompts only the last user turn counts (a system
prompt or an earlier turn does not make a question new). Built-in tasks may define a stronger key
(`tasks.TASK_KEYS`): arithmetic uses the unordered pair {a, b}, so "What is 7 + 12?" and "What is 12 + 7?" are
one question.

`disjoint_split` picks the held-out rows (distinct keys only, in a seeded order) and drops every training row
whose key is held out; `SplitReport` says what was dropped, for status.json, the CLI and the Train tab.
"""
from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from app.engine.data.tasks import TASK_KEYS

KeyFn = Callable[[dict[str, Any]], str]
_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Case-folded, NFKC, whitespace collapsed: the form in which two prompts count as equal.

    >>> normalise_text("  What is 2 +\\n 3? ")
    'what is 2 + 3?'
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", str(text)).casefold()).strip()


def prompt_text(row: dict[str, Any]) -> str:
    """The question a row asks: the prompt text, or the last user turn of a chat-form prompt / conversation;
    rows with no prompt (plain `text` rows, implicit-prompt preference pairs) are keyed by their text."""
    value = row.get("prompt")
    if value is None:
        value = row.get("messages")
    if isinstance(value, list):
        users = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return str(users[-1])
        return " ".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    if value is not None:
        return str(value)
    for column in ("text", "chosen"):
        if row.get(column) is not None:
            return str(row[column])
    return ""


def prompt_key(row: dict[str, Any]) -> str:
    """The generic dedupe key of a row: its normalised question text.

    >>> prompt_key({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi  there"}]})
    'hi there'
    """
    return normalise_text(prompt_text(row))


def key_function(source: str | None) -> tuple[KeyFn, str]:
    """The key for a data source and its name: a built-in task's own key where it has one, else `prompt_key`."""
    if source and source.startswith("builtin:"):
        task = source[len("builtin:"):]
        if task in TASK_KEYS:
            task_key, label = TASK_KEYS[task]

            def key(row: dict[str, Any]) -> str:
                return task_key(prompt_text(row)) or prompt_key(row)

            return key, label
    return prompt_key, "normalised prompt (case, whitespace, last user turn)"


@dataclass
class SplitReport:
    """What the split did: sizes, and the training rows left out because they repeat a held-out question."""

    key: str  # which key decided "the same question"
    held_out: int
    train: int
    dropped_train_rows: int  # rows that repeat a held-out question (never trained on)
    dropped_example: dict[str, str] | None = None  # {"train": prompt, "held_out": prompt} of one dropped row
    held_out_duplicates: int = 0  # rows of the held-out source skipped because they repeat an earlier held-out row
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        """One line for the CLI and the Train tab."""
        text = f"held out {self.held_out} questions, training on {self.train} rows"
        if self.dropped_train_rows:
            noun = "row" if self.dropped_train_rows == 1 else "rows"
            text += f"; dropped {self.dropped_train_rows} training {noun} that repeat held-out questions"
            if self.dropped_example:
                text += f" (e.g. {_short(self.dropped_example['train'])!r} repeats {_short(self.dropped_example['held_out'])!r})"
        if self.held_out_duplicates:
            text += f"; skipped {self.held_out_duplicates} held-out rows that repeat another held-out question"
        return text[0].upper() + text[1:] + f" (key: {self.key})."


def split_sentence(recorded: dict[str, Any] | None) -> str:
    """The one-line split summary of a run's status.json `split` record ('' when the run has none)."""
    if not recorded:
        return ""
    try:
        return SplitReport(**recorded).sentence()
    except TypeError:  # a record from another version: show what is there
        return ", ".join(f"{k} {v}" for k, v in recorded.items() if isinstance(v, (int, str)))


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SplitError(ValueError):
    """A split that cannot be made (more held-out rows than distinct questions, no training rows left)."""

    def __init__(self, message: str, field_name: str = "data.eval_size"):
        super().__init__(message)
        self.field = field_name


def _distinct_empty(key: KeyFn) -> KeyFn:
    """`key`, with rows that have no question text each their own key (they cannot repeat a question)."""
    def keyed(row: dict[str, Any]) -> str:
        return key(row) or f"\0row-{id(row)}"

    return keyed


def pick_held_out(rows: Sequence[dict[str, Any]], n: int, key: KeyFn, order: Sequence[int] | None = None
                  ) -> tuple[list[dict[str, Any]], set[str], int]:
    """The first `n` rows (in `order`) with distinct keys, their keys, and how many rows were skipped as repeats."""
    held: list[dict[str, Any]] = []
    keys: set[str] = set()
    skipped = 0
    for i in order if order is not None else range(len(rows)):
        if len(held) >= n:
            break
        k = key(rows[i])
        if k in keys:
            skipped += 1
            continue
        keys.add(k)
        held.append(rows[i])
    return held, keys, skipped


def drop_repeats(train: Sequence[dict[str, Any]], held: Sequence[dict[str, Any]], held_keys: set[str], key: KeyFn
                 ) -> tuple[list[dict[str, Any]], int, dict[str, str] | None]:
    """Training rows whose key is not held out, how many were dropped, and one example of a dropped row."""
    by_key = {key(r): r for r in held}
    kept: list[dict[str, Any]] = []
    dropped = 0
    example = None
    for row in train:
        k = key(row)
        if k in held_keys:
            dropped += 1
            if example is None:
                example = {"train": prompt_text(row), "held_out": prompt_text(by_key.get(k, row))}
            continue
        kept.append(row)
    return kept, dropped, example


def disjoint_split(rows: Sequence[dict[str, Any]], eval_size: int, seed: int | None, key: KeyFn, key_name: str,
                   source: str = "the dataset") -> tuple[list[dict[str, Any]], list[dict[str, Any]], SplitReport]:
    """(train, held_out, report) of one source: `eval_size` rows with distinct keys held out (in an order shuffled
    with `seed`; None keeps the rows' order, for generated tasks already shuffled by theirs), then every row whose
    key is held out left out of training. Raises SplitError when the data cannot give both parts."""
    key = _distinct_empty(key)
    order = list(range(len(rows)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    distinct = len({key(r) for r in rows})
    if eval_size > 0 and eval_size >= distinct:
        raise SplitError(
            f"data.eval_size is {eval_size}, but {source} has only {len(rows)} rows with {distinct} distinct "
            f"questions, so no training rows would remain: set data.eval_size below {distinct} (e.g. "
            f"{max(1, distinct // 5)}) or 0 for no held-out evaluation.")
    held, keys, _repeats = pick_held_out(rows, eval_size, key, order)  # repeats are dropped from training below
    held_ids = {id(r) for r in held}
    rest = [rows[i] for i in order if id(rows[i]) not in held_ids]
    train, dropped, example = drop_repeats(rest, held, keys, key)
    report = SplitReport(key=key_name, held_out=len(held), train=len(train), dropped_train_rows=dropped,
                         dropped_example=example)
    return train, held, report


def split_two_sources(train_rows: Sequence[dict[str, Any]], eval_rows: Sequence[dict[str, Any]], eval_size: int,
                      key: KeyFn, key_name: str, source: str = "the dataset"
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], SplitReport]:
    """(train, held_out, report) with a separate held-out source: its first `eval_size` rows with distinct keys are
    held out, and training rows asking any of those questions are dropped (so `eval_source == source` trains on
    what is left, never on a held-out question)."""
    key = _distinct_empty(key)
    held, keys, skipped = pick_held_out(eval_rows, eval_size, key)
    train, dropped, example = drop_repeats(train_rows, held, keys, key)
    if not train:
        raise SplitError(
            f"Every training row of {source} asks a question of data.eval_source's held-out rows ({dropped} rows "
            "dropped): training would learn the test. Use a different eval_source, or hold out part of the source "
            "with data.eval_size and no eval_source.", "data.eval_source")
    return train, held, SplitReport(key=key_name, held_out=len(held), train=len(train), dropped_train_rows=dropped,
                                    dropped_example=example, held_out_duplicates=skipped)


def overlap(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], key: KeyFn = prompt_key) -> int:
    """How many rows of `a` ask a question that is also in `b` (a leakage check)."""
    keys = {key(r) for r in b}
    return sum(1 for r in a if key(r) in keys)


__all__ = ["split_sentence", "normalise_text", "prompt_text", "prompt_key", "key_function", "SplitReport", "SplitError",
           "disjoint_split", "split_two_sources", "overlap", "pick_held_out", "drop_repeats"]
