"""Training data: load rows from a built-in task, a file or a hub dataset; hold out an evaluation part; turn rows
into the dataset forms TRL defines (prompt-only, prompt+completion, conversational `messages`).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from app.engine.data.splits import SplitError, SplitReport, disjoint_split, key_function, prompt_key, split_two_sources
from app.engine.data.tasks import builtin_task_rows
from app.engine.core.folders import PROJECT_ROOT

BUILTIN_PREFIX = "builtin:"
HUB_PREFIX = "hub:"
# Columns TRL treats specially; everything else is passed to GRPO reward functions.
PROMPT_COLUMNS = ("prompt", "messages")
SFT_TARGET_COLUMNS = ("completion", "answer")


class DataError(ValueError):
    """A dataset problem, stated in one sentence that names the file or column; `field` is the RunSpec field."""

    def __init__(self, message: str, field: str = "data.source"):
        super().__init__(message)
        self.field = field


@dataclass
class LoadedData:
    """Rows for training and for held-out evaluation (never trained on)."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    source: str
    split: SplitReport | None = None  # what the split held out and dropped (None: rows built by hand)


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
    path = _source_path(source)
    if not path.exists():
        raise DataError(f"Dataset file {path} does not exist.")
    if path.is_dir():
        raise DataError(f"Dataset {path} is a folder; name a .jsonl, .json or .csv file in it.")
    from app.engine.data.profile import load_rows

    try:
        rows = load_rows(path)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if not rows:
        raise DataError(f"Dataset file {path} has no rows.")
    return rows


def _source_path(source: str) -> Path:
    path = Path(source).expanduser()
    if not path.exists() and not path.is_absolute() and (PROJECT_ROOT / path).exists():
        path = PROJECT_ROOT / path  # files the project ships (e.g. app/data/…) named as in the recipes
    return path


def _hub_rows(name: str, split: str) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline, unknown name, bad split: all end the same way for the user
        raise DataError(f"Could not load hub dataset {name!r} (split {split!r}): {exc}") from None
    return [dict(row) for row in ds]


def split_rows(rows: list[dict], eval_size: int, seed: int, key: Callable[[dict], str] = prompt_key
               ) -> tuple[list[dict], list[dict]]:
    """Shuffle with `seed`, hold out `eval_size` rows with distinct questions, and train on the rest minus every
    row that repeats a held-out question (see `app.engine.data.splits`)."""
    train, held, _report = disjoint_split(rows, eval_size, seed, key, "key")
    return train, held


def load_data(data_spec: Any) -> LoadedData:
    """Rows for a RunSpec's `data` section: the source, the held-out part (no training row asks a held-out
    question, by the source's dedupe key), the train-size cap. Raises DataError naming the field."""
    rows = load_source_rows(data_spec.source, data_spec.split, data_spec.seed, data_spec.task_params)
    key, key_name = key_function(data_spec.source)
    try:
        if data_spec.eval_source:
            eval_rows = load_source_rows(data_spec.eval_source, data_spec.split, data_spec.seed)
            train, held, report = split_two_sources(rows, eval_rows, data_spec.eval_size, key, key_name,
                                                    source=data_spec.source)
        else:
            # Generated tasks are already shuffled by their seed: their first distinct questions are held out.
            seed = None if data_spec.source.startswith(BUILTIN_PREFIX) else data_spec.seed
            train, held, report = disjoint_split(rows, data_spec.eval_size, seed, key, key_name,
                                                 source=data_spec.source)
    except SplitError as exc:
        raise DataError(str(exc), exc.field) from None
    if data_spec.train_size is not None:
        train = train[: data_spec.train_size]
        report.train = len(train)
    if not train:
        raise DataError(f"Dataset {data_spec.source} leaves no training rows after holding out {len(held)}.",
                        "data.eval_size")
    return LoadedData(train=train, eval=held, source=data_spec.source, split=report)


def column_problem(method: str, rows: list[dict], where: Callable[[int], str] | None = None) -> str | None:
    """One sentence naming what the rows lack for `method` ('eval' for held-out prompts), or None when they fit.

    Every row is checked, not a sample: a bad row deep in a file fails a run as surely as the first. `where(i)`
    names the i-th row (0-based) as its file does ("line 23", see `row_locations`); the default is "row i+1"."""
    if not rows:
        return "the dataset has no rows"
    if method == "dpo":  # preference pairs: every row is checked (columns, empty replies, chosen == rejected)
        from app.engine.data.preferences import pairs_problem

        return pairs_problem(rows)
    label = where or (lambda i: f"row {i + 1}")
    columns = set().union(*(row.keys() for row in rows))
    if method in ("grpo", "eval"):
        if not columns & set(PROMPT_COLUMNS):
            what = "GRPO" if method == "grpo" else "Evaluation"
            return f"{what} needs a 'prompt' (or chat 'messages') column; the dataset has {sorted(columns)}"
    elif method in ("sft", "dft"):
        if not ({"messages", "text"} & columns):
            if "prompt" not in columns:
                return f"{method.upper()} needs 'prompt' + 'completion' (or 'messages', or 'text'); found {sorted(columns)}"
            if not columns & set(SFT_TARGET_COLUMNS):
                return f"{method.upper()} needs a 'completion' (or 'answer') column with the target reply; found {sorted(columns)}"
    for i, row in enumerate(rows):
        problem = _row_problem(method, row)
        if problem:
            return f"{label(i)} {problem}"
    return None


def _row_problem(method: str, row: dict) -> str | None:
    """What one row lacks for `method`, read the way `to_trl_rows` / `prompt_messages` will read it."""
    if method in ("sft", "dft") and "prompt" not in row:
        if "messages" in row:
            return None if isinstance(row["messages"], list) else "has no 'messages' list (a list of chat turns)"
        if "text" in row:
            text = row["text"]
            return None if isinstance(text, str) and text.strip() else "has an empty 'text'"
    prompt = row.get("prompt")
    if prompt is None:  # prompt_messages falls back to the chat `messages` of the row
        prompt = row.get("messages")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()) or (isinstance(prompt, list) and not prompt):
        return "has an empty prompt"
    if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not all(
            isinstance(m, dict) and "content" in m for m in prompt)):
        return f"has a prompt that is neither text nor a list of chat messages ({type(prompt).__name__})"
    if method in ("sft", "dft") and "messages" not in row and all(row.get(c) is None for c in SFT_TARGET_COLUMNS):
        return "has no completion (or answer): nothing to train on"
    return None


def row_locations(source: str) -> list[str] | None:
    """Where each row of a file source sits in its file ("line 23"), in the order `load_source_rows` returns them;
    None when the source is not a file or the lines cannot be told (messages then count rows). Rows are checked
    before the train/held-out shuffle, so these are the lines a user finds in an editor."""
    if not isinstance(source, str) or source.startswith((BUILTIN_PREFIX, HUB_PREFIX)):
        return None
    path = _source_path(source)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            return _csv_lines(text, "\t" if suffix == ".tsv" else ",")
        if suffix in (".jsonl", ".ndjson") or (suffix != ".json" and text.lstrip().startswith("{")):
            return _jsonl_lines(text)
        if suffix == ".json" or text.lstrip().startswith("["):
            return _json_list_lines(text)
    except (ValueError, csv.Error, StopIteration):
        return None
    return None


def _jsonl_lines(text: str) -> list[str]:
    # The same split as profile.load_rows: on "\n" only, blank lines skipped.
    return [f"line {n}" for n, line in enumerate(text.split("\n"), start=1) if line.strip()]


def _csv_lines(text: str, delimiter: str) -> list[str]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next(reader)  # the header
    out = []
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: the record starts after the previous one
        try:
            record = next(reader)
        except StopIteration:
            return out
        if record:
            out.append(f"line {start}")


def _json_list_lines(text: str) -> list[str] | None:
    """Lines of the items of a top-level JSON list (None for any other shape, e.g. {"data": [...]})."""
    decoder = json.JSONDecoder()
    i = len(text) - len(text.lstrip())
    if not text.startswith("[", i):
        try:  # a .json file holding one object per line reads as JSON Lines (profile.load_rows does the same)
            json.loads(text)
        except json.JSONDecodeError as exc:
            return _jsonl_lines(text) if exc.msg == "Extra data" else None
        return None
    i += 1
    out, line, counted = [], 1, 0
    while i < len(text):
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return out
        line += text.count("\n", counted, i)
        counted = i
        _, i = decoder.raw_decode(text, i)
        out.append(f"line {line}")
    return out


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
        from app.engine.data.preferences import to_trl_pairs

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
