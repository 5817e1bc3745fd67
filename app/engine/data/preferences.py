"""Preference pairs for DPO: the engine side of collecting them, reading them, checking them, and scoring a model
on them. No Gradio here; the UI's preference-collection loop calls these functions.

A pairs file is JSON Lines in TRL's preference format, conversational form (what `append_pair` writes):

    {"prompt": [{"role": "user", "content": "What is 2 + 3? ..."}],
     "chosen": [{"role": "assistant", "content": "5"}],
     "rejected": [{"role": "assistant", "content": "2 + 3 = 6"}],
     "meta": {...}}                      # optional, ignored by training

Training also accepts the plain form (`prompt`, `chosen`, `rejected` as text) and TRL's implicit-prompt form
(`chosen` and `rejected` as whole conversations sharing their first turns). Extra columns (`answer`, `meta`…) are
kept for evaluation rewards and dropped before TRL sees the rows.

The collection loop (for prompts from the user's dataset):

    sample = sample_pair(model, tokenizer, prompt)          # two sampled replies, A and B
    n = record_choice("preferences/pairs.jsonl", sample, "a")   # "a" | "b" | "tie" | "skip"; returns the pair count
    ... python -m app.train with method dpo, data.source = the pairs file

Every pair is appended and flushed as one line the moment it is judged, so closing the tab loses nothing; readers
tolerate a torn last line. Ties and skips go to a side file (`<name>.skipped.jsonl`), never into the pairs.

Command line: `python -m app.engine.preferences arithmetic|check …` (app/engine/preferences.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from app.engine.core.folders import PROJECT_ROOT
from app.engine.core.runs import parse_json_lines

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
CHOICES = ("a", "b", "tie", "skip")
MAX_REPORTED = 3  # problems named one by one in a summary sentence; the rest are counted
SHIPPED_PAIRS = PROJECT_ROOT / "app" / "data" / "arithmetic_pairs.jsonl"
SHIPPED_PAIRS_N = 512  # rows in the shipped file: arithmetic_pair_rows(n=512, seed=0)

Messages = list[dict[str, Any]]


class PairError(ValueError):
    """A preference pair that cannot be used, stated in one sentence."""


# -- shapes ---------------------------------------------------------------------------------------------------------
def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def _text(value: Any) -> str:
    """The text of a reply: a string, or the joined contents of chat messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return "" if value is None else str(value)


def _message_problem(value: Any, column: str) -> str | None:
    """Why `value` is not usable as the `column` of a pair (text or chat messages), or None."""
    if value is None:
        return f"has no '{column}'"
    if isinstance(value, str):
        return f"has an empty '{column}'" if not value.strip() else None
    if isinstance(value, list):
        if not value:
            return f"has an empty '{column}' (no messages)"
        for m in value:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                return f"has a '{column}' message without 'role' and 'content'"
        if not _text(value).strip():
            return f"has an empty '{column}'"
        return None
    return f"has a '{column}' that is neither text nor chat messages ({type(value).__name__})"


def _split_implicit(chosen: Messages, rejected: Messages) -> tuple[Messages, Messages, Messages]:
    """TRL's implicit prompt: the longest shared run of first messages is the prompt."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    return chosen[:n], chosen[n:], rejected[n:]


def row_problem(row: Any) -> str | None:
    """Why one row cannot be a preference pair (a clause such as "has an empty 'chosen'"), or None."""
    if not isinstance(row, dict):
        return f"is not an object with prompt / chosen / rejected ({type(row).__name__})"
    if not any(row.get(c) is not None for c in PAIR_COLUMNS):
        return "is empty (no prompt, chosen or rejected)"
    for column in ("chosen", "rejected"):
        problem = _message_problem(row.get(column), column)
        if problem:
            return problem
    chosen, rejected = row["chosen"], row["rejected"]
    if row.get("prompt") is None:
        if not (_is_messages(chosen) and _is_messages(rejected)):
            return "has no 'prompt' (only conversations in 'chosen' and 'rejected' may leave the prompt implicit)"
        prompt, chosen, rejected = _split_implicit(chosen, rejected)
        if not prompt:
            return "has no 'prompt', and 'chosen' and 'rejected' share no first messages to take it from"
        if not chosen or not rejected:
            return "has no 'prompt', and 'chosen' or 'rejected' holds nothing after the shared messages"
    else:
        problem = _message_problem(row["prompt"], "prompt")
        if problem:
            return problem
    if _text(chosen).strip() == _text(rejected).strip():
        shown = _text(chosen).strip()
        shown = shown if len(shown) <= 40 else shown[:39] + "…"
        return f"has identical 'chosen' and 'rejected' ({shown!r}): there is no preference to learn"
    return None


def validate_pairs(rows: Sequence[Any]) -> list[str]:
    """Every problem of a preference dataset, one sentence each ("row 3 has an empty 'chosen'."); [] when usable.

    Checks: at least one row; the columns of TRL's preference format (prompt / chosen / rejected, or an implicit
    prompt shared by chat-form chosen / rejected); no empty prompt or reply; chosen differs from rejected.
    """
    if not rows:
        return ["The preference data has no rows."]
    columns = set().union(*(r.keys() for r in rows if isinstance(r, dict)))
    missing = [c for c in ("chosen", "rejected") if c not in columns]
    if missing:
        names = " and ".join(f"'{c}'" for c in missing)
        return [
            "DPO needs preference pairs in TRL's format: columns 'prompt', 'chosen' and 'rejected' (plain text or chat "
            f"messages); the data has no {names} column{'s' if len(missing) > 1 else ''} (found {sorted(columns)}). "
            "Collect pairs in the app's preference view, or train this data with SFT / GRPO instead."
        ]
    problems = []
    for i, row in enumerate(rows, start=1):
        problem = row_problem(row)
        if problem:
            problems.append(f"Row {i} {problem}.")
    return problems


def pairs_problem(rows: Sequence[Any]) -> str | None:
    """One sentence summarising `validate_pairs` (the first problems, then a count), or None."""
    problems = validate_pairs(rows)
    if not problems:
        return None
    if len(problems) == 1:
        return problems[0]
    shown = " ".join(problems[:MAX_REPORTED])
    more = len(problems) - MAX_REPORTED
    return f"{len(problems)} of {len(rows)} preference rows cannot be used: {shown}" + (
        f" (and {more} more)" if more > 0 else ""
    )


def normalize_pair(row: dict[str, Any], system_prompt: str | None = None) -> dict[str, Any]:
    """A pair in TRL's explicit conversational form: `prompt` (user turns, system message first when given),
    `chosen` and `rejected` (assistant turns). Plain text becomes one message; an implicit prompt is split off.
    Other columns are kept. Raises PairError for an unusable row."""
    problem = row_problem(row)
    if problem:
        raise PairError(f"A preference row {problem}.")
    prompt, chosen, rejected = row.get("prompt"), row["chosen"], row["rejected"]
    if prompt is None:
        prompt, chosen, rejected = _split_implicit(list(chosen), list(rejected))
    prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system_prompt and not (prompt and prompt[0].get("role") == "system"):
        prompt = [{"role": "system", "content": system_prompt}] + prompt

    def reply(value: Any) -> Messages:
        return [{"role": "assistant", "content": value}] if isinstance(value, str) else [dict(m) for m in value]

    extra = {k: v for k, v in row.items() if k not in PAIR_COLUMNS}
    return {**extra, "prompt": prompt, "chosen": reply(chosen), "rejected": reply(rejected)}


def to_trl_pairs(rows: Sequence[dict[str, Any]], system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Rows for `trl.DPOTrainer`: prompt / chosen / rejected in conversational form and nothing else (so the chat
    template of the model frames them as at inference)."""
    out = []
    for row in rows:
        pair = normalize_pair(row, system_prompt)
        out.append({"prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]})
    return out


# -- the pairs file -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Any]:
    """The file opened for reading and appending under an exclusive lock (two tabs may judge at once; `filelock`
    works on every OS, through a `.lock` file beside it)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"), open(path, "a+b") as f:
        yield f


def _repair_tail(f: Any) -> None:
    """Make the file end with a newline: complete a last line that is valid JSON, drop a torn one (a write cut
    short by a crash), so that the next line starts on its own."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size == 0:
        return
    f.seek(max(0, size - 1))
    if f.read(1) == b"\n":
        return
    f.seek(0)
    data = f.read()
    start = data.rfind(b"\n") + 1
    tail = data[start:]
    try:
        complete = isinstance(json.loads(tail), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        complete = False
    if complete:
        f.write(b"\n")
    else:
        f.truncate(start)
    f.flush()


def append_pair(
    path: str | os.PathLike[str],
    prompt: str | Messages,
    chosen: str | Messages,
    rejected: str | Messages,
    meta: dict[str, Any] | None = None,
) -> int:
    """Append one preference pair to the JSONL file at `path` (created with its folder) and return how many pairs
    the file holds now.

    The pair is written in TRL's conversational preference form; `meta` (models, run, step, time…) is stored under
    "meta", which training ignores. The line is flushed and synced before returning. Raises PairError for an empty
    prompt or reply and for identical chosen / rejected replies (nothing is written then).
    """
    record = normalize_pair({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    if meta:
        record["meta"] = meta
    append_record(path, record)
    return count_pairs(path)


def append_record(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON line to a marks file (pairs, thumbs), created with its folder: under the file lock, after
    repairing a torn last line, flushed and synced before returning."""
    line = (json.dumps(record, ensure_ascii=False, allow_nan=False, default=str) + "\n").encode("utf-8")
    with _locked(Path(path)) as f:
        _repair_tail(f)
        f.seek(0, os.SEEK_END)
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_pairs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The pairs of a JSONL file ([] when it does not exist). A torn last line (a write in progress or cut short) and
    lines that are not JSON objects are left out; a complete last line without its newline is read."""
    path = Path(path)
    if not path.exists():
        return []
    return parse_json_lines(path.read_bytes())


def count_pairs(path: str | os.PathLike[str]) -> int:
    """How many usable pairs the file holds (rows with a problem are not counted)."""
    return sum(1 for row in read_pairs(path) if row_problem(row) is None)


def skipped_path(path: str | os.PathLike[str]) -> Path:
    """The side file of ties and skips for a pairs file: `pairs.jsonl` → `pairs.skipped.jsonl`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.skipped{path.suffix or '.jsonl'}")


# -- sampling two replies and recording the judgement ---------------------------------------------------------------
@dataclass
class PairSample:
    """Two replies to one prompt, shown as A and B."""

    prompt: Messages  # the prompt as the model saw it (system message first when one was given)
    a: str
    b: str
    sources: tuple[str, str] = ("model", "model")  # which model wrote A and B
    identical: bool = False  # still identical after the retries: nothing to judge
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def pair(self, choice: str) -> tuple[str, str]:
        """(chosen, rejected) for the choice 'a' or 'b'."""
        if choice == "a":
            return self.a, self.b
        if choice == "b":
            return self.b, self.a
        raise PairError(f"choice must be 'a' or 'b' to make a pair, got {choice!r}")


def record_choice(
    path: str | os.PathLike[str], sample: PairSample, choice: str, meta: dict[str, Any] | None = None
) -> int:
    """Record a judgement of `sample` and return the pair count of the file.

    'a' / 'b' append a pair (chosen = the picked reply); 'tie' / 'skip' append the sample to the side file
    (`skipped_path`), so the loop can tell which prompts were already shown; DPO trains on pairs only.
    """
    if choice not in CHOICES:
        raise PairError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
    info = {"sources": list(sample.sources), "time": time.time(), **sample.meta, **(meta or {})}
    if choice in ("a", "b"):
        chosen, rejected = sample.pair(choice)
        info["chosen_source"] = sample.sources[0 if choice == "a" else 1]
        return append_pair(path, sample.prompt, chosen, rejected, meta=info)
    side = skipped_path(path)
    record = {"prompt": sample.prompt, "a": sample.a, "b": sample.b, "choice": choice, "meta": info}
    line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    with _locked(side) as f:
        _repair_tail(f)
        f.seek(0, os.SEEK_END)
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    return count_pairs(path)


def judged_prompts(path: str | os.PathLike[str]) -> set[str]:
    """The prompts (last user message) already judged in a pairs file or its side file, to show new ones first."""
    seen = set()
    for row in read_pairs(path) + read_pairs(skipped_path(path)):
        prompt = row.get("prompt")
        if isinstance(prompt, list):
            users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
            prompt = users[-1] if users else None
        if isinstance(prompt, str):
            seen.add(prompt)
    return seen


def next_unjudged(prompts: Sequence[Messages], start: int, path: str | os.PathLike[str]) -> int:
    """Index of the first prompt at or after `start` whose last user message `path` holds no judgement for
    (`len(prompts)` when every one has been judged): the collection loop never asks twice about one prompt."""
    done = judged_prompts(path)
    i = start
    while i < len(prompts):
        users = [m["content"] for m in prompts[i] if m.get("role") == "user"]
        if not users or users[-1] not in done:
            break
        i += 1
    return i


# -- the shipped example file ---------------------------------------------------------------------------------------
def write_arithmetic_pairs(path: str | os.PathLike[str], n: int = SHIPPED_PAIRS_N, seed: int = 0) -> int:
    """Write the built-in `arithmetic_pairs` task (plain form, with the `answer` column) as a JSONL file."""
    from app.engine.data.tasks import arithmetic_pair_rows

    rows = arithmetic_pair_rows(n=n, seed=seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


__all__ = [
    "PairError", "PairSample", "append_pair", "read_pairs", "count_pairs", "validate_pairs", "pairs_problem",
    "row_problem", "normalize_pair", "to_trl_pairs", "record_choice", "judged_prompts",
    "next_unjudged", "skipped_path", "write_arithmetic_pairs", "SHIPPED_PAIRS",
]

