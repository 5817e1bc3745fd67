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

from app.engine.core.folders import PROJECT_ROOT
from app.engine.data import forms
from app.engine.data.forms import (  # noqa: F401 (the data API)
    PROMPT_COLUMNS,
    SFT_TARGET_COLUMNS,
    DataError,
    prompt_messages,
)
from app.engine.data.splits import (
    SplitError,
    SplitReport,
    disjoint_split,
    key_function,
    prompt_key,
    split_two_sources,
)
from app.engine.data.tasks import builtin_task_rows

BUILTIN_PREFIX = "builtin:"
HUB_PREFIX = "hub:"

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


def column_problem(method: str, rows: list[dict], where: Callable[[int], str] | None = None) -> str | None:
    """One sentence naming what the rows lack for `method` ('eval' for held-out prompts), or None when they fit.
    The method's row form decides (app.engine.data.forms)."""
    if method == "eval":
        return forms.column_problem(forms.PROMPT, rows, where, what="Evaluation")
    from app.engine import methods

    return methods.get(method).rows_problem(rows, where)


def to_trl_rows(rows: list[dict], method: str, system_prompt: str | None = None) -> list[dict]:
    """Rows in the form `method`'s TRL trainer reads (see app.engine.data.forms)."""
    from app.engine import methods

    return methods.get(method).trl_rows(rows, system_prompt)


def to_trl_dataset(rows: list[dict], method: str, system_prompt: str | None = None):
    """A `datasets.Dataset` of `to_trl_rows`; mixed-type columns get one clear error."""
    import datasets

    trl_rows = forms.uniform_scalars(to_trl_rows(rows, method, system_prompt))
    try:
        return datasets.Dataset.from_list(trl_rows)
    except Exception as exc:  # pyarrow type clashes, e.g. an answer column holding numbers and text
        raise DataError(f"The dataset's columns do not have one type each ({exc}).") from None
