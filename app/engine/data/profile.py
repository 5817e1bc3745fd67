"""Dataset profiling: read a JSONL/JSON/CSV file and describe what the rows hold, so the decision tree can
pre-answer its questions and the UI can explain the data before any model is loaded.

`load_rows(path)` reads a file into a list of dicts, raising `ValueError` that names the file and line for
malformed input. `profile_dataset(rows_or_path)` returns a `DatasetProfile`: the TRL dataset format, which column
is the prompt / the label / a worked demonstration, what kind of answers the rows hold (numbers, LaTeX, JSON,
code with tests, choices, short or long text), whether a reward function can check them, which registry rewards
fit, length statistics, and warnings (duplicate or empty prompts, very long rows).

Detection reads at most `SAMPLE_ROWS` evenly spaced rows; whole-dataset counts (fill rates, duplicates, empty
prompts, long rows) are single cheap passes. Values may be anything JSON holds (None, numbers, nested lists):
every check converts them to text first.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from app.engine.data.splits import normalise_text
from rewards.text import last_boxed

SAMPLE_ROWS = 2000  # rows read for answer-kind and demonstration detection
KIND_DOMINANT_SHARE = 0.6  # below this share the answer kind is reported with low confidence
SHORT_TEXT_MAX_WORDS = 5  # answers up to this many words count as short (exact-match checkable) text
CHOICE_MAX_LABELS = 10  # a label column with at most this many distinct values is a classification / choice task
CHOICE_MIN_REPEATS = 5  # ... provided each value repeats this often on average
DEMO_MIN_CHARS = 40  # a demonstration is a worked solution at least this long ...
DEMO_MIN_RATIO = 3.0  # ... and this many times longer than the final answer ...
DEMO_MIN_STEPS = 2  # ... with at least this many steps (lines or sentences) ...
DEMO_MIN_SHARE = 0.5  # ... in at least this share of the rows that have the column
LONG_ROW_CHARS = 8000  # about 2,000 tokens: longer rows are cut by max_length
SHORT_TEXT_CONFIDENCE = 0.6  # exact match on short text misses paraphrases: never a confident "verifiable"

# Column names by role, most specific first (matched case-insensitively).
PROMPT_COLUMNS = ("prompt", "question", "instruction", "problem", "query", "input", "inputs")
ANSWER_COLUMNS = (
    "answer", "final_answer", "completion", "solution", "output", "response", "target", "label",
    "ground_truth", "gold", "reference", "expected", "expected_output", "result", "outputs",
)
DEMO_COLUMNS = ANSWER_COLUMNS + (
    "rationale", "explanation", "reasoning", "cot", "chain_of_thought", "worked_solution", "steps", "thoughts",
)
TESTS_COLUMNS = ("tests", "test", "test_list", "test_cases", "unit_tests", "test_code", "assertions")

ANSWER_KINDS = ("numeric", "math", "json", "code_tests", "choice", "short_text", "long_text")
FORMATS = ("prompt_only", "prompt_completion", "conversational", "preference", "text", "unknown")

_NUMBER = r"[+\-−]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][+\-]?\d+)?%?"
NUMBER_RE = re.compile(rf"^{_NUMBER}$")
GSM8K_RE = re.compile(r"####\s*(\S+)\s*$")
ANSWER_IS_RE = re.compile(r"(?:final answer|the answer is)\s*[:：]?\s*(.+?)\s*\.?\s*$", re.IGNORECASE)
MATH_RE = re.compile(
    r"\\boxed|\\frac|\\dfrac|\\sqrt|\\cdot|\\pi|\\left|\\right|\\times|\\le|\\ge|\\\(|\\\[|\^\{|_\{"
    r"|\$[^$]*[\\^_=+][^$]*\$"  # inline math needs an operator inside: "$5 and $10" is money
    r"|^[+\-−]?\d+\s*/\s*\d+$|\d\s*\^\s*\d|[a-zA-Z]\^|\bsqrt\("
)
CHOICE_RE = re.compile(r"^\(?[A-Ea-e]\)?[.:]?$")
CODE_RE = re.compile(r"```|^\s*(?:def|class|import|from \S+ import)\s", re.MULTILINE)
ASSERT_RE = re.compile(r"\bassert\b")

KIND_REWARDS = {
    "numeric": ["numeric_answer"],
    "math": ["math_equivalence"],
    "json": ["json_valid", "json_schema"],
    "code_tests": ["python_tests"],
    "choice": ["exact_answer"],
    "short_text": ["exact_answer", "similarity"],
    "long_text": ["similarity"],
}


# -- result ---------------------------------------------------------------------------------------------------
@dataclass
class LengthStats:
    """Lengths in characters over the sampled rows (nearest-rank percentiles)."""

    mean: float
    p50: int
    p90: int
    max: int


@dataclass
class ColumnInfo:
    """One column: how often it is filled and which JSON types its sampled values have."""

    name: str
    fill_rate: float  # share of all rows with a non-empty value
    types: list[str]  # among "text", "number", "bool", "list", "object"


@dataclass
class DatasetProfile:
    """What a dataset holds, as far as can be told without a model."""

    n_rows: int  # rows in the dataset
    n_sampled: int  # rows read for kind / demonstration detection
    columns: list[ColumnInfo]  # in first-seen order
    format: str  # one of FORMATS (TRL's dataset types)
    prompt_column: str | None  # column holding the prompt ("messages" for conversational rows)
    answer_column: str | None  # label / reference answer ("messages": its last assistant turn)
    demonstration_column: str | None  # worked solutions longer than the final answer (may equal answer_column)
    tests_column: str | None  # test cases / asserts for code answers
    n_labelled: int  # rows with a non-empty answer
    labelled_share: float  # n_labelled / n_rows
    answer_kind: str | None  # dominant kind (one of ANSWER_KINDS); None without answers
    answer_kind_shares: dict[str, float]  # kind -> share of sampled answers
    verifiable: bool | None  # can a reward function check completions? None: cannot tell
    verifiable_confidence: float  # 0..1, confidence in `verifiable`
    reasons: list[str]  # sentences explaining the `verifiable` guess
    suggested_rewards: list[str]  # registry reward names fitting the answer kind, best first
    prompt_length: LengthStats
    answer_length: LengthStats | None  # None without answers
    reasoning_helps: bool | None  # multi-step answers or math/numeric tasks; None without answers
    reasoning_reason: str  # one sentence explaining `reasoning_helps`
    demonstration_reason: str  # one sentence explaining `demonstration_column`
    warnings: list[str] = field(default_factory=list)  # problems found, one sentence each
    source: str | None = None  # file the rows came from
    n_duplicate_prompts: int = 0  # rows asking a question an earlier row asks (normalised text, `splits.prompt_key`)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- loading --------------------------------------------------------------------------------------------------
def load_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a .jsonl/.ndjson, .json (a list of objects) or .csv/.tsv file.

    Raises ValueError naming the file (and line) for: a missing or empty file, bytes that are not UTF-8, a line
    that is not JSON, a row that is not an object, a CSV record with the wrong number of fields, or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file does not exist.")
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise ValueError(f"{path} is empty.")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows = _csv_rows(path, text, "\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(path, text)
    elif suffix == ".json" or text.lstrip().startswith("["):
        rows = _json_rows(path, text)
    elif text.lstrip().startswith("{"):
        rows = _jsonl_rows(path, text)
    else:
        raise ValueError(f"{path}: unsupported file type '{suffix}'; use .jsonl, .json or .csv.")
    if not rows:
        raise ValueError(f"{path} has no rows.")
    return rows


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(
            f"{path}, line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); "
            "save the file as UTF-8."
        ) from None


def _jsonl_rows(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    # Split on "\n" only: str.splitlines() also breaks at U+2028, U+0085 and other separators that JSON writers
    # leave unescaped inside strings (json.dumps(..., ensure_ascii=False)), tearing valid lines apart.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object {{...}}, got {_json_type(row)}.")
        rows.append(row)
    return rows


def _json_rows(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line in a .json file: read it as JSON Lines
            return _jsonl_rows(path, text)
        raise ValueError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:  # {"data": [...]} is accepted; any other object is ambiguous
            raise ValueError(f"{path}: expected a JSON list of objects (or one object holding such a list).")
        data = lists[0]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of objects, got {_json_type(data)}.")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: item {i} of the JSON list is {_json_type(row)}, not an object {{...}}.")
    return data


def _csv_rows(path: Path, text: str, delimiter: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        names = [name.strip() or f"column_{i + 1}" for i, name in enumerate(header)]  # pandas leaves the index unnamed
        duplicated = [name for name, count in Counter(names).items() if count > 1]
        if duplicated:
            raise ValueError(f"{path}, line 1: column '{duplicated[0]}' appears more than once in the header.")
        rows = []
        for record in reader:
            if not record:
                continue
            if len(record) != len(names):
                raise ValueError(
                    f"{path}, line {reader.line_num}: expected {len(names)} fields (as in the header), "
                    f"found {len(record)}."
                )
            rows.append(dict(zip(names, record)))
    except csv.Error as exc:
        raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({exc}).") from None
    return rows


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


# -- value helpers --------------------------------------------------------------------------------------------
def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return math.isnan(value)  # pandas-style missing value
    if isinstance(value, (list, dict)):
        return not value
    return False


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "content" in m for m in value)


def _as_text(value: Any) -> str:
    """Any JSON value as text: chat messages by their contents, containers as JSON."""
    if _is_empty(value):
        return ""
    if isinstance(value, str):
        return value
    if _is_messages(value):
        return "\n".join(_as_text(m.get("content")) for m in value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "text"


def _sample(rows: list[dict[str, Any]], limit: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """At most `limit` evenly spaced rows: deterministic, and covers files sorted by topic."""
    if len(rows) <= limit:
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def _lengths(texts: list[str]) -> LengthStats:
    values = sorted(len(t) for t in texts) or [0]

    def rank(q: float) -> int:
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    return LengthStats(mean=round(sum(values) / len(values), 1), p50=rank(0.5), p90=rank(0.9), max=values[-1])


def _pct(share: float) -> str:
    return f"{share:.0%}"


# -- answers --------------------------------------------------------------------------------------------------
def final_answer(text: str) -> str:
    """The final answer inside a worked solution: after '####', inside the last \\boxed{}, or after
    'the answer is'; otherwise the whole (stripped) text."""
    text = text.strip()
    match = GSM8K_RE.search(text)
    if match:
        return match.group(1)
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    last_line = text.splitlines()[-1] if text else ""
    match = ANSWER_IS_RE.search(last_line)
    if match and len(text) > len(match.group(1)) * DEMO_MIN_RATIO:
        return match.group(1)
    return text


def is_number(text: str) -> bool:
    text = text.strip()
    return any(c.isdigit() for c in text) and bool(NUMBER_RE.match(text))


def answer_kind(value: Any) -> str:
    """Kind of one reference answer (one of ANSWER_KINDS except 'choice' by value set, see `_dominant_kind`)."""
    if isinstance(value, bool):
        return "choice"
    if isinstance(value, (int, float)):
        return "numeric"
    if isinstance(value, (dict, list)) and not _is_messages(value):
        return "json"
    text = _as_text(value).strip()
    gsm8k = GSM8K_RE.search(text)
    if gsm8k:
        return "numeric" if is_number(gsm8k.group(1)) else "short_text"
    if is_number(text):
        return "numeric"
    if _is_json_container(text):
        return "json"
    if MATH_RE.search(text):
        return "math"
    if CODE_RE.search(text):
        return "code_tests"
    if CHOICE_RE.match(text):
        return "choice"
    return "short_text" if len(text.split()) <= SHORT_TEXT_MAX_WORDS else "long_text"


def _is_json_container(text: str) -> bool:
    if not text or text[0] not in "[{":
        return False
    try:
        return isinstance(json.loads(text), (dict, list))
    except (json.JSONDecodeError, RecursionError):
        return False


def _dominant_kind(values: list[Any], kinds: list[str]) -> tuple[str | None, dict[str, float]]:
    """Most common kind and the share of each; short text drawn from a small repeated set is a choice task."""
    if not kinds:
        return None, {}
    counts = Counter(kinds)
    shares = {k: round(c / len(kinds), 3) for k, c in counts.most_common()}
    kind = counts.most_common(1)[0][0]
    distinct = {_as_text(v).strip().lower() for v in values}
    repeated = len(values) >= CHOICE_MIN_REPEATS * len(distinct)
    if kind == "short_text" and len(distinct) <= CHOICE_MAX_LABELS and repeated:
        share = shares.pop("short_text") + shares.get("choice", 0.0)
        shares = {"choice": round(share, 3), **{k: v for k, v in shares.items() if k != "choice"}}
        kind = "choice"
    return kind, shares


# -- columns and format ---------------------------------------------------------------------------------------
def _column_names(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def _find(columns: list[str], candidates: tuple[str, ...], exclude: tuple[str | None, ...] = ()) -> str | None:
    by_lower = {c.lower(): c for c in reversed(columns) if c not in exclude}
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    return None


def _detect_format(columns: list[str], sample: list[dict[str, Any]], prompt: str | None) -> str:
    lower = {c.lower() for c in columns}
    if {"chosen", "rejected"} <= lower:
        return "preference"
    messages = _find(columns, ("messages", "conversations"))
    if messages and any(_is_messages(row.get(messages)) for row in sample):
        return "conversational"
    if prompt:
        return "prompt_completion" if "completion" in lower else "prompt_only"
    text_columns = [c for c in columns if any(isinstance(row.get(c), str) for row in sample)]
    if "text" in lower or len(text_columns) == 1:
        return "text"
    return "unknown"


def _conversation_parts(value: Any) -> tuple[str, Any]:
    """(prompt text, last assistant reply or None) of a `messages` conversation."""
    if not _is_messages(value):
        return _as_text(value), None
    turns = list(value)
    reply = turns.pop()["content"] if turns[-1].get("role") == "assistant" else None
    return _as_text(turns), reply


def _tests_column(columns: list[str], sample: list[dict[str, Any]], exclude: tuple[str | None, ...]) -> str | None:
    named = _find(columns, TESTS_COLUMNS, exclude)
    if named:
        return named
    for column in columns:  # an unconventionally named column of asserts
        if column in exclude:
            continue
        texts = [_as_text(row.get(column)) for row in sample if not _is_empty(row.get(column))]
        if texts and sum(bool(ASSERT_RE.search(t)) for t in texts) >= DEMO_MIN_SHARE * len(texts):
            return column
    return None


def _steps(text: str) -> int:
    """Lines, or sentences in a one-paragraph solution: a rough count of reasoning steps."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return len(lines)
    return len([s for s in re.split(r"(?<=[.!?;])\s+", text.strip()) if s])


def _demonstration(
    columns: list[str], sample: list[dict[str, Any]], answer_col: str | None, exclude: tuple[str | None, ...]
) -> tuple[str | None, str, int]:
    """(column, reason, median steps) of the column holding worked solutions longer than the final answer."""
    best: tuple[float, str, list[int], list[int]] | None = None
    for column in columns:
        if column in exclude or column.lower() not in DEMO_COLUMNS:
            continue
        worked_steps, lengths, filled = [], [], 0
        for row in sample:
            text = _as_text(row.get(column)).strip()
            if not text:
                continue
            filled += 1
            label = _as_text(row.get(answer_col)) if answer_col and answer_col != column else text
            final, steps = final_answer(label), _steps(text)
            long_enough = len(text) >= DEMO_MIN_CHARS and len(text) >= DEMO_MIN_RATIO * max(1, len(final))
            if long_enough and steps >= DEMO_MIN_STEPS:
                worked_steps.append(steps)
                lengths.append(len(text))
        share = len(worked_steps) / filled if filled else 0.0
        if share >= DEMO_MIN_SHARE and (best is None or share > best[0]):
            best = (share, column, sorted(worked_steps), sorted(lengths))
    if best is None:
        return None, "No column holds worked solutions that are longer than the final answer.", 0
    share, column, steps, lengths = best
    median_steps, median_len = steps[len(steps) // 2], lengths[len(lengths) // 2]
    reason = (
        f"Column '{column}' holds worked solutions ({_pct(share)} of rows; median {median_len} characters, "
        f"{median_steps} steps) that lead to the final answer."
    )
    return column, reason, median_steps


# -- verifiability --------------------------------------------------------------------------------------------
def _verifiability(
    kind: str | None, shares: dict[str, float], tests_col: str | None, answer_col: str | None, gsm8k_share: float,
    distinct: int, median_len: int,
) -> tuple[bool | None, float, list[str]]:
    if kind is None and tests_col is None:
        return None, 0.0, ["No answer or label column was found, so whether a reward can check completions cannot be "
                           "judged from the data."]
    if tests_col is not None:
        return True, 0.9, [f"Column '{tests_col}' holds test cases, so a python_tests reward can run completions "
                           "against them."]
    share = shares.get(kind, 0.0)
    p = _pct(share)
    sentences = {
        "numeric": f"{p} of answers are numbers, so a numeric_answer reward can check them.",
        "math": f"{p} of answers are math expressions (LaTeX such as \\boxed{{}} or \\frac), so a math_equivalence "
        "reward can check them.",
        "json": f"{p} of answers parse as JSON, so json_valid (and json_schema, given a schema) can check completions.",
        "code_tests": f"{p} of answers are code, but no column of test cases was found: add tests (asserts) so "
        "python_tests can check completions.",
        "choice": f"Answers take only {distinct} distinct values, so an exact_answer reward can check them.",
        "short_text": f"{p} of answers are short (at most {SHORT_TEXT_MAX_WORDS} words), so exact_answer can check "
        "them, though a correct paraphrase would be marked wrong.",
        "long_text": f"{p} of answers are free text (median {median_len} characters): no rule can check them exactly "
        "(similarity gives only a soft score), so the task is not verifiable.",
    }
    reasons = [sentences[kind]]
    if kind == "numeric" and gsm8k_share >= KIND_DOMINANT_SHARE:
        reasons = [f"{_pct(gsm8k_share)} of answers end in a GSM8K-style '#### n' line, so gsm8k_answer (or "
                   "numeric_answer on the final number) can check them."]
    others = [f"{_pct(v)} {k}" for k, v in shares.items() if k != kind]
    if others:
        reasons.append(f"Other answers in '{answer_col}': {', '.join(others)}.")
    if kind == "long_text":
        return False, share, reasons
    confidence = share
    if kind == "short_text":
        confidence = min(share, SHORT_TEXT_CONFIDENCE)
    elif kind == "code_tests":  # code without tests cannot be checked until tests are written
        confidence = min(share, 0.5)
    if share < KIND_DOMINANT_SHARE:
        reasons.append("No single kind of answer dominates, so one reward will not fit every row.")
    return True, round(confidence, 2), reasons


def rewards_for_kind(kind: str | None, gsm8k: bool = False) -> list[str]:
    """Registry reward names that check answers of `kind`, best first."""
    if kind is None:
        return []
    if kind == "numeric" and gsm8k:
        return ["gsm8k_answer", "numeric_answer"]
    return list(KIND_REWARDS[kind])


def _reasoning(kind: str | None, demo_col: str | None, demo_steps: int) -> tuple[bool | None, str]:
    if demo_col is not None and demo_steps >= DEMO_MIN_STEPS:
        return True, (f"The answers in '{demo_col}' show multi-step work (median {demo_steps} steps) before the final "
                      "answer, so step-by-step reasoning helps.")
    if kind in ("numeric", "math"):
        return True, "The answers are numbers or math, and such problems usually benefit from working step by step."
    if kind is None:
        return None, "There are no answers to inspect, so whether reasoning helps cannot be told from the data."
    return False, "The answers are direct, with no worked steps, so chain-of-thought reasoning is unlikely to matter."


def duplicate_count(prompts: list[str]) -> int:
    """Rows whose normalised prompt an earlier row already has (empty prompts not counted)."""
    keys = [normalise_text(p) for p in prompts]
    keys = [k for k in keys if k]
    return len(keys) - len(set(keys))


# -- warnings -------------------------------------------------------------------------------------------------
def _prompt_warnings(
    rows: list[dict[str, Any]], prompt_of: Callable[[dict[str, Any]], str], prompt_col: str, answer_col: str | None
) -> list[str]:
    warnings = []
    first_seen: dict[str, int] = {}
    duplicates, empty, long_rows = [], [], []
    for i, row in enumerate(rows, start=1):
        prompt = normalise_text(prompt_of(row))  # the split's dedupe key: case and whitespace do not count
        if not prompt:
            empty.append(i)
        elif prompt in first_seen:
            duplicates.append((i, first_seen[prompt]))
        else:
            first_seen[prompt] = i
        size = sum(len(_as_text(v)) for v in row.values())
        if size > LONG_ROW_CHARS:
            long_rows.append(i)
    if duplicates:
        row, original = duplicates[0]
        warnings.append(
            f"{len(duplicates)} rows repeat an earlier prompt (e.g. row {row} repeats row {original}); case and "
            "whitespace do not count. Duplicates weigh those prompts more, and the split drops training rows that "
            "repeat a held-out prompt."
        )
    if empty:
        warnings.append(f"{len(empty)} rows have an empty '{prompt_col}' (first: row {empty[0]}).")
    if long_rows:
        warnings.append(
            f"{len(long_rows)} rows are longer than {LONG_ROW_CHARS:,} characters (about {LONG_ROW_CHARS // 4:,} "
            f"tokens; first: row {long_rows[0]}) and will be cut at max_length."
        )
    if prompt_col not in ("prompt", "messages"):
        warnings.append(f"The prompt is in column '{prompt_col}'; TRL expects 'prompt', so rename it before training.")
    if answer_col and answer_col != prompt_col:  # a conversation's replies are always text
        types = {_type_name(row.get(answer_col)) for row in _sample(rows) if not _is_empty(row.get(answer_col))}
        if len(types) > 1:
            mixed = " and ".join(sorted(types))
            warnings.append(f"Column '{answer_col}' mixes {mixed} values; it will be read as text.")
    return warnings


# -- profile --------------------------------------------------------------------------------------------------
def profile_dataset(data: list[dict[str, Any]] | str | os.PathLike[str]) -> DatasetProfile:
    """Profile rows (or the file at a path, read with `load_rows`). Raises ValueError for no rows or a row
    that is not a dict."""
    source = None
    if isinstance(data, (str, os.PathLike)):
        source = str(data)
        data = load_rows(data)
    rows = list(data)
    if not rows:
        raise ValueError("The dataset has no rows.")
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"Row {i} is {_json_type(row)}, not an object with named columns.")
    sample = _sample(rows)
    columns = _column_names(rows)

    prompt_col = _find(columns, PROMPT_COLUMNS)
    if prompt_col is None and _find(columns, ANSWER_COLUMNS):
        prompt_col = _find(columns, ("text",))  # {"text", "label"} rows: a classification task, not plain text
    fmt = _detect_format(columns, sample, prompt_col)
    answer_col: str | None
    if fmt == "conversational":
        prompt_col = _find(columns, ("messages", "conversations"))
        answer_col = _find(columns, ANSWER_COLUMNS) or prompt_col
    elif fmt == "preference":
        answer_col = _find(columns, ("chosen",))
    elif fmt == "text":
        prompt_col = answer_col = None
    else:
        answer_col = _find(columns, ANSWER_COLUMNS, exclude=(prompt_col,))

    def answer_of(row: dict[str, Any]) -> Any:
        if answer_col is None:
            return None
        value = row.get(answer_col)
        return _conversation_parts(value)[1] if answer_col == prompt_col else value

    text_col = _find(columns, ("text",)) or next(
        (c for c in columns if any(isinstance(r.get(c), str) for r in sample)), None
    )

    def prompt_of(row: dict[str, Any]) -> str:
        if prompt_col is None:  # plain text rows (or an implicit-prompt preference pair): the whole text
            return _as_text(row.get(text_col)) if text_col else ""
        value = row.get(prompt_col)
        return _conversation_parts(value)[0] if fmt == "conversational" else _as_text(value)

    n_labelled = sum(not _is_empty(answer_of(row)) for row in rows) if answer_col else 0
    answers = [answer_of(row) for row in sample]
    answers = [a for a in answers if not _is_empty(a)]
    tests_col = _tests_column(columns, sample, exclude=(prompt_col, answer_col))
    kinds = [answer_kind(a) for a in answers]
    kind, shares = _dominant_kind(answers, kinds)
    if tests_col is not None:
        kind = "code_tests"
    gsm8k_share = sum(bool(GSM8K_RE.search(_as_text(a))) for a in answers) / len(answers) if answers else 0.0
    answer_texts = [_as_text(a) for a in answers]
    answer_length = _lengths(answer_texts) if answers else None

    verifiable, confidence, reasons = _verifiability(
        kind, shares, tests_col, answer_col, gsm8k_share,
        distinct=len({t.strip().lower() for t in answer_texts}),
        median_len=answer_length.p50 if answer_length else 0,
    )
    demo_col, demo_reason, demo_steps = (None, "Preference pairs hold no separate worked solutions.", 0)
    if fmt != "preference":
        demo_col, demo_reason, demo_steps = _demonstration(columns, sample, answer_col, exclude=(prompt_col,))
    reasoning_helps, reasoning_reason = _reasoning(kind, demo_col, demo_steps)

    warnings = _prompt_warnings(rows, prompt_of, prompt_col, answer_col) if prompt_col else []
    n_duplicates = duplicate_count([prompt_of(row) for row in rows]) if prompt_col else 0
    if fmt == "unknown":
        warnings.append(f"No prompt column was found (looked for {', '.join(PROMPT_COLUMNS)}, messages or text).")
    if answer_col and 0 < n_labelled < len(rows):
        warnings.append(f"{len(rows) - n_labelled} rows have no '{answer_col}' value.")

    return DatasetProfile(
        n_rows=len(rows),
        n_sampled=len(sample),
        columns=_column_infos(rows, sample, columns),
        format=fmt,
        prompt_column=prompt_col,
        answer_column=answer_col,
        demonstration_column=demo_col,
        tests_column=tests_col,
        n_labelled=n_labelled,
        labelled_share=round(n_labelled / len(rows), 3),
        answer_kind=kind,
        answer_kind_shares=shares,
        verifiable=verifiable,
        verifiable_confidence=confidence,
        reasons=reasons,
        suggested_rewards=rewards_for_kind(kind, gsm8k=gsm8k_share >= KIND_DOMINANT_SHARE),
        prompt_length=_lengths([prompt_of(row) for row in sample]),
        answer_length=answer_length,
        reasoning_helps=reasoning_helps,
        reasoning_reason=reasoning_reason,
        demonstration_reason=demo_reason,
        warnings=warnings,
        source=source,
        n_duplicate_prompts=n_duplicates,
    )


def _column_infos(rows: list[dict[str, Any]], sample: list[dict[str, Any]], columns: list[str]) -> list[ColumnInfo]:
    filled = Counter(key for row in rows for key, value in row.items() if not _is_empty(value))
    infos = []
    for column in columns:
        types = sorted({_type_name(row[column]) for row in sample if column in row and not _is_empty(row[column])})
        infos.append(ColumnInfo(name=str(column), fill_rate=round(filled[column] / len(rows), 3), types=types))
    return infos
