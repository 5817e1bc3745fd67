"""Training data: load rows from a built-in task, a file or a hub dataset; hold out an evaluation part; turn rows
into the dataset forms TRL defines (prompt-only, prompt+completion, conversational `messages`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engine.tasks import builtin_task_rows

BUILTIN_PREFIX = "builtin:"
HUB_PREFIX = "hub:"
# Columns TRL treats specially; everything else is passed to GRPO reward functions.
PROMPT_COLUMNS = ("prompt", "messages")
SFT_TARGET_COLUMNS = ("completion", "answer")
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # relative data paths not found in the working folder: from here


class DataError(ValueError):
    """A dataset problem, stated in one sentence that names the file or column."""


@dataclass
class LoadedData:
    """Rows for training and for held-out evaluation (never trained on)."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    source: str


def load_source_rows(source: str, split: str = "train", seed: int = 0, task_params: dict | None = None) -> list[dict]:
    """All rows of a data source: 'builtin:NAME', 'hub:org/name', or a .jsonl/.json/.csv file."""
    if not source or not isinstance(source, str):
        raise DataError("data.source is empty: name a file, 'builtin:arithmetic' or 'hub:org/name'.")
    if source.startswith(BUILTIN_PREFIX):
        try:
            return builtin_task_rows(source[len(BUILTIN_PREFIX):], task_params, seed=seed)
        except ValueError as exc:
            raise DataError(str(exc)) from None
    if source.startswith(HUB_PREFIX):
        return _hub_rows(source[len(HUB_PREFIX):], split)
    path = Path(source).expanduser()
    if not path.exists() and not path.is_absolute() and (PROJECT_ROOT / path).exists():
        path = PROJECT_ROOT / path  # files the project ships (e.g. app/data/…) named as in the recipes
    if not path.exists():
        raise DataError(f"Dataset file {path} does not exist.")
    from app.engine.profile import load_rows

    try:
        rows = load_rows(path)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if not rows:
        raise DataError(f"Dataset file {path} has no rows.")
    return rows


def _hub_rows(name: str, split: str) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline, unknown name, bad split: all end the same way for the user
        raise DataError(f"Could not load hub dataset {name!r} (split {split!r}): {exc}") from None
    return [dict(row) for row in ds]


def split_rows(rows: list[dict], eval_size: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Shuffle with `seed` and hold out `eval_size` rows (at most half of them, so training keeps rows)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = min(max(eval_size, 0), len(rows) // 2)
    held = [rows[i] for i in order[:n_eval]]
    train = [rows[i] for i in order[n_eval:]]
    return train, held


def load_data(data_spec: Any) -> LoadedData:
    """Rows for a RunSpec's `data` section: the source, the held-out part, the train-size cap."""
    rows = load_source_rows(data_spec.source, data_spec.split, data_spec.seed, data_spec.task_params)
    if data_spec.eval_source:
        train = rows
        held = load_source_rows(data_spec.eval_source, data_spec.split, data_spec.seed)[: data_spec.eval_size]
    elif data_spec.source.startswith(BUILTIN_PREFIX):
        # Generated tasks are already shuffled by their seed: the first rows are held out.
        held, train = rows[: data_spec.eval_size], rows[data_spec.eval_size:]
    else:
        train, held = split_rows(rows, data_spec.eval_size, data_spec.seed)
    if data_spec.train_size is not None:
        train = train[: data_spec.train_size]
    if not train:
        raise DataError(f"Dataset {data_spec.source} leaves no training rows after holding out {len(held)}.")
    return LoadedData(train=train, eval=held, source=data_spec.source)


def column_problem(method: str, rows: list[dict]) -> str | None:
    """One sentence naming what the rows lack for `method`, or None when they fit."""
    if not rows:
        return "the dataset has no rows"
    if method == "dpo":  # preference pairs: every row is checked (columns, empty replies, chosen == rejected)
        from app.engine.preferences import pairs_problem

        return pairs_problem(rows)
    columns = set().union(*(row.keys() for row in rows[:50]))
    if method in ("grpo",):
        if not columns & set(PROMPT_COLUMNS):
            return f"GRPO needs a 'prompt' (or chat 'messages') column; the dataset has {sorted(columns)}"
    elif method in ("sft", "dft"):
        if "messages" in columns or "text" in columns:
            return None
        if "prompt" not in columns:
            return f"{method.upper()} needs 'prompt' + 'completion' (or 'messages', or 'text'); found {sorted(columns)}"
        if not columns & set(SFT_TARGET_COLUMNS):
            return f"{method.upper()} needs a 'completion' (or 'answer') column with the target reply; found {sorted(columns)}"
    for i, row in enumerate(rows[:50]):
        prompt = row.get("prompt", row.get("messages"))
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            return f"row {i + 1} has an empty prompt"
    return None


def prompt_messages(row: dict, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The row's prompt as chat messages (system message first when given)."""
    if "prompt" in row and row["prompt"] is not None:
        prompt = row["prompt"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    else:  # a `messages` conversation: everything before the last assistant turn is the prompt
        messages = list(row["messages"])
        while messages and messages[-1].get("role") == "assistant":
            messages.pop()
    if system_prompt and not (messages and messages[0].get("role") == "system"):
        messages = [{"role": "system", "content": system_prompt}] + messages
    return messages


def _target_text(row: dict) -> str:
    for column in SFT_TARGET_COLUMNS:
        if row.get(column) is not None:
            value = row[column]
            if isinstance(value, list):  # chat-form completion
                return "".join(m.get("content", "") for m in value)
            return str(value)
    raise DataError("a row has no completion/answer")


def to_trl_rows(rows: list[dict], method: str, system_prompt: str | None = None) -> list[dict]:
    """Rows in the conversational form TRL expects for `method`.

    GRPO: `prompt` as messages plus every other column (TRL passes them to the reward functions).
    SFT/DFT: `messages` rows stay as they are; `text` rows stay; prompt+completion becomes conversational
    prompt/completion so the loss covers only the completion.
    DPO: `prompt` / `chosen` / `rejected` in conversational form and nothing else (plain text becomes one message,
    an implicit prompt is split off; see `preferences.normalize_pair`).
    """
    if method == "dpo":
        from app.engine.preferences import to_trl_pairs

        return to_trl_pairs(rows, system_prompt)
    out = []
    for row in rows:
        if method in ("sft", "dft"):
            if "messages" in row and "prompt" not in row:
                msgs = list(row["messages"])
                if system_prompt and not (msgs and msgs[0].get("role") == "system"):
                    msgs = [{"role": "system", "content": system_prompt}] + msgs
                out.append({"messages": msgs})
            elif "text" in row and "prompt" not in row:
                out.append({"text": str(row["text"])})
            else:
                out.append(
                    {
                        "prompt": prompt_messages(row, system_prompt),
                        "completion": [{"role": "assistant", "content": _target_text(row)}],
                    }
                )
        else:
            extra = {k: v for k, v in row.items() if k not in ("prompt", "messages", "completion_ids")}
            out.append({**extra, "prompt": prompt_messages(row, system_prompt)})
    return out


def _uniform_scalars(rows: list[dict]) -> list[dict]:
    """Columns mixing numbers and text (CSV answers, hand-written JSONL) become text: Arrow wants one type."""
    mixed = set()
    for column in set().union(*(r.keys() for r in rows)) if rows else ():
        kinds = {type(r[column]) for r in rows if r.get(column) is not None}
        if str in kinds and kinds & {int, float, bool}:
            mixed.add(column)
    if not mixed:
        return rows
    return [{k: (str(v) if k in mixed and v is not None else v) for k, v in r.items()} for r in rows]


def to_trl_dataset(rows: list[dict], method: str, system_prompt: str | None = None):
    """A `datasets.Dataset` of `to_trl_rows`; mixed-type columns get one clear error."""
    import datasets

    trl_rows = _uniform_scalars(to_trl_rows(rows, method, system_prompt))
    try:
        return datasets.Dataset.from_list(trl_rows)
    except Exception as exc:  # pyarrow type clashes, e.g. an answer column holding numbers and text
        raise DataError(f"The dataset's columns do not have one type each ({exc}).") from None
