"""The reward playground without Gradio: build rewards (built-ins with weights, user code in the sandbox), get
completions to try them on (typed, dataset rows, or sampled live from a model), score them, and save user rewards.

    funcs, user = build_rewards([("numeric_answer", 1.0, {})], user_source=code)
    rows = typed_rows("What is 2 + 2?", "4\\n5", answer="4")
    result = run_playground(rows, funcs, group_size=len(rows))
    result.zero_variance, result.errors, result.prints
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

MAX_TYPED_COMPLETIONS = 64
MAX_SAMPLES = 16  # completions sampled live for one prompt
COMPLETION_SEPARATOR = "---"  # a line holding only this separates multi-line typed completions


JUDGE_HEADERS = ["#", "judge", "score", "judge's reply", "seconds", "note"]


class PlaygroundError(ValueError):
    """Input the playground cannot use, said in one sentence."""


# -- rewards -------------------------------------------------------------------------------------------------------
def parse_reward_rows(rows: Sequence[Sequence[Any]] | None) -> list[tuple[str, float, dict[str, Any]]]:
    """[(name, weight, params)] from the built-in rewards table (columns: reward, weight, params as JSON)."""
    out = []
    for i, row in enumerate(rows or []):
        row = list(row) + [None, None, None]
        name = str(row[0] or "").strip()
        if not name:
            continue
        try:
            weight = float(row[1]) if row[1] not in (None, "") else 1.0
        except (TypeError, ValueError):
            raise PlaygroundError(f"Weight of {name} must be a number, got {row[1]!r}.") from None
        raw = row[2]
        params: dict[str, Any] = {}
        if isinstance(raw, dict):
            params = raw
        elif raw not in (None, "", "{}"):
            try:
                params = json.loads(str(raw))
            except json.JSONDecodeError as exc:
                raise PlaygroundError(f"Parameters of {name} are not valid JSON ({exc.msg}).") from None
            if not isinstance(params, dict):
                raise PlaygroundError(f"Parameters of {name} must be a JSON object like {{\"tolerance\": 0.01}}.")
        out.append((name, weight, params))
    return out


def build_rewards(builtins: Sequence[tuple[str, float, dict[str, Any]]], user_source: str | None = None,
                  user_weight: float = 1.0, user_name: str | None = None,
                  timeout_s: float = 10.0) -> tuple[list[tuple[Callable[..., Any], float]], Any]:
    """(reward, weight) pairs for scoring, and the sandboxed user reward (or None).

    Raises PlaygroundError for a bad built-in (unknown name or parameter, message from the registry) and
    `rewards.RewardCodeError` (with `.line`) for user code that does not load.
    """
    import rewards

    funcs: list[tuple[Callable[..., Any], float]] = []
    for name, weight, params in builtins:
        try:
            funcs.append((rewards.get(name, **params), float(weight)))
        except ValueError as exc:
            raise PlaygroundError(str(exc)) from None
    user = None
    if user_source and user_source.strip():
        user = rewards.load_user_reward(user_source, timeout_s=timeout_s, name=user_name or None)
        funcs.append((user, float(user_weight)))
    if not funcs:
        raise PlaygroundError("Pick at least one built-in reward or write your own.")
    return funcs, user


def check_user_reward(source: str) -> tuple[str, int]:
    """Static check of user reward code (syntax, one fitting function): (function name, line). Raises
    RewardCodeError with `.line`."""
    from rewards import find_reward_function

    return find_reward_function(source)


# -- completions to try ----------------------------------------------------------------------------------------------
def split_completions(text: str) -> list[str]:
    """Typed completions: one per line, or, when a line holds only `---`, the blocks between such lines."""
    text = (text or "").strip("\n")
    if not text.strip():
        return []
    lines = text.splitlines()
    if any(line.strip() == COMPLETION_SEPARATOR for line in lines):
        blocks, current = [], []
        for line in lines:
            if line.strip() == COMPLETION_SEPARATOR:
                blocks.append("\n".join(current))
                current = []
            else:
                current.append(line)
        blocks.append("\n".join(current))
        return [b.strip("\n") for b in blocks if b.strip()]
    return [line for line in lines if line.strip()]


def parse_columns(text: str | None) -> dict[str, Any]:
    """Extra dataset columns for typed completions, as a JSON object (e.g. {"tests": ["assert f(1) == 2"]})."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlaygroundError(f"Extra columns are not valid JSON: {exc.msg} (line {exc.lineno}).") from None
    if not isinstance(value, dict):
        raise PlaygroundError('Extra columns must be a JSON object, e.g. {"answer": "42"}.')
    return value


def typed_rows(prompt: str, completions_text: str, answer: str | None = None,
               columns: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows for completions typed by the user, all answering the same prompt (one GRPO group)."""
    completions = split_completions(completions_text)
    if not completions:
        raise PlaygroundError("Type at least one completion (one per line, or blocks separated by a '---' line).")
    if len(completions) > MAX_TYPED_COMPLETIONS:
        raise PlaygroundError(f"At most {MAX_TYPED_COMPLETIONS} completions at a time, got {len(completions)}.")
    base: dict[str, Any] = dict(columns or {})
    if answer is not None and str(answer).strip():
        base["answer"] = str(answer).strip()
    return [{**base, "prompt": prompt or "", "completion": c} for c in completions]


def reference_completion(row: dict[str, Any]) -> str:
    """The row's own target reply (completion, solution, answer, or a conversation's last assistant turn)."""
    for key in ("completion", "solution", "answer", "response", "output"):
        value = row.get(key)
        if value not in (None, ""):
            if isinstance(value, list):
                return "".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
            return str(value)
    messages = row.get("messages")
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "assistant":
                return str(m.get("content", ""))
    return ""


def dataset_rows(source: str, n: int = 8, task_params: dict[str, Any] | None = None, seed: int = 0,
                 start: int = 0) -> list[dict[str, Any]]:
    """`n` rows of a dataset, each with its reference reply as the completion to score (checks that a reward
    gives the known-good answers full marks)."""
    from app.engine.data.sources import DataError, load_source_rows

    try:
        rows = load_source_rows(source, seed=seed, task_params=task_params)
    except (DataError, ValueError) as exc:
        raise PlaygroundError(str(exc)) from None
    chosen = rows[start : start + max(1, n)]
    if not chosen:
        raise PlaygroundError(f"The dataset has only {len(rows)} rows.")
    return [{**row, "completion": reference_completion(row)} for row in chosen]


def prompt_row(source: str | None, index: int = 0, prompt: str | None = None, answer: str | None = None,
               task_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The prompt to sample for: a typed prompt (with an optional answer) or row `index` of a dataset."""
    if prompt and prompt.strip():
        row: dict[str, Any] = {"prompt": prompt.strip()}
        if answer and str(answer).strip():
            row["answer"] = str(answer).strip()
        return row
    if not source:
        raise PlaygroundError("Type a prompt or choose a dataset to take one from.")
    rows = dataset_rows(source, 1, task_params, start=max(0, int(index)))
    row = dict(rows[0])
    row.pop("completion", None)
    return row


def sample_rows(row: dict[str, Any], model_key: str = "base::default", n: int = 8, temperature: float = 1.0,
                max_new_tokens: int = 32, system_prompt: str | None = None,
                progress: Callable[[float, str], None] | None = None) -> list[dict[str, Any]]:
    """`n` completions sampled from a model for one prompt row (one GRPO group), as rows to score."""
    from app.engine.data.sources import prompt_messages
    from app.engine.evaluation.compare import load_model, parse_model_key
    from app.engine.evaluation.evaluate import generate_completions

    if not 2 <= n <= MAX_SAMPLES:
        raise PlaygroundError(f"Sample between 2 and {MAX_SAMPLES} completions (a GRPO group), got {n}.")
    if not row.get("prompt") and not row.get("messages"):
        raise PlaygroundError("The prompt is empty.")
    ref = parse_model_key(model_key)
    model, tokenizer = load_model(ref, progress=progress)
    if progress:
        progress(0.5, f"Sampling {n} completions from {ref.label}")
    messages = prompt_messages(row, system_prompt)
    texts, _ = generate_completions(model, tokenizer, [messages], max_new_tokens=int(max_new_tokens),
                                    do_sample=True, temperature=float(temperature), num_return_sequences=int(n))
    columns = {k: v for k, v in row.items() if k not in ("prompt", "messages", "completion")}
    return [{**columns, "prompt": messages, "completion": t} for t in texts]


# -- scoring -------------------------------------------------------------------------------------------------------
@dataclass
class PlaygroundResult:
    """What the playground shows after scoring."""

    headers: list[str]
    rows: list[list[Any]]  # per completion: #, completion, each reward, total, advantage
    summary_headers: list[str]
    summary_rows: list[list[Any]]  # per reward: weight, mean, std, None count, errors, ms
    groups: list[dict[str, Any]]  # per group: index, size, mean, std, zero_variance
    zero_variance: bool  # some group has no spread: GRPO learns nothing from it
    errors: list[str]  # "reward: sample i: message" (messages carry 'line N' for user code)
    tracebacks: dict[str, str]  # reward → traceback of the user's code
    prints: dict[str, str]  # reward → captured print output
    seconds: float
    records: list[dict[str, Any]] = field(default_factory=list)
    advantage_note: str = ""  # which scaling the advantage column shows ('' without groups)
    judge_headers: list[str] = field(default_factory=lambda: list(JUDGE_HEADERS))
    judge_rows: list[list[Any]] = field(default_factory=list)  # per model-judge call: what the judge wrote


def advantage_scaling(spec: Any | None) -> tuple[str, str]:
    """How a run built from `spec` (a RunSpec or its dict) scales GRPO advantages, and a sentence naming it: the
    method's own rule (GRPO follows `grpo.scale_rewards`; Prefix-RFT is always reward − group mean). A method that
    samples no groups is shown as GRPO would score the rows."""
    from app.engine import methods

    key = (spec.get("method") if isinstance(spec, dict) else getattr(spec, "method", None)) or "grpo"
    method = methods.find(key)
    scaling = method.advantage_scaling(spec) if method is not None else None
    return scaling or methods.get("grpo").advantage_scaling(spec)


def run_playground(rows: list[dict[str, Any]], funcs: Sequence[tuple[Callable[..., Any], float]],
                   group_size: int | None = None, spec: Any | None = None) -> PlaygroundResult:
    """Score rows with weighted rewards; `group_size` rows per prompt get GRPO advantages (None: no groups),
    scaled as the run of `spec` (a RunSpec or its dict; None: TRL's default, group std) would scale them."""
    import rewards

    if not rows:
        raise PlaygroundError("Nothing to score.")
    start = time.perf_counter()
    scale, advantage_note = advantage_scaling(spec)
    table = rewards.score(rows, list(funcs), group_size=group_size, scale_rewards=scale)
    names = table.names
    headers = ["#", "completion"] + names + ["total"] + (["advantage"] if group_size else [])
    out_rows = []
    for r in table.rows:
        row = [r["index"] + 1, r["completion"]] + [_num(r["scores"][n]) for n in names] + [_num(r["total"])]
        if group_size:
            row.append(_num(r.get("advantage")))
        out_rows.append(row)
    summary_headers = ["reward", "weight", "mean", "std", "min", "max", "no score", "errors", "time (ms)"]
    summary_rows = []
    for n in names:
        s = table.per_reward[n]
        summary_rows.append([n, s["weight"], _num(s["mean"]), _num(s["std"]), _num(s["min"]), _num(s["max"]),
                             s["n_none"], s["n_errors"], round(s["seconds"] * 1000, 1)])
    groups = []
    if group_size:
        for g, first in enumerate(range(0, len(table.rows), group_size)):
            totals = [r["total"] for r in table.rows[first : first + group_size]]
            _, zero = rewards.group_advantages(totals)
            vals = [t for t in totals if t is not None]
            mean = sum(vals) / len(vals) if vals else None
            std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else None
            groups.append({"group": g + 1, "size": len(totals), "mean": mean, "std": std, "zero_variance": zero})
    errors = []
    for r in table.rows:
        for name, message in r["errors"].items():
            errors.append(f"{name}: completion {r['index'] + 1}: {message}")
    tracebacks = {}
    for fn, _ in funcs:
        tb = getattr(fn, "last_traceback", "")
        if tb:
            tracebacks[getattr(fn, "__name__", "reward")] = tb
    return PlaygroundResult(headers, out_rows, summary_headers, summary_rows, groups,
                            any(g["zero_variance"] for g in groups), _dedupe(errors), tracebacks, dict(table.prints),
                            time.perf_counter() - start, table.to_records(),
                            advantage_note if group_size else "", judge_rows=judge_rows(funcs))


def close_rewards(funcs: Sequence[tuple[Callable[..., Any], float]]) -> None:
    """Stop what built rewards keep running (a local judge's process)."""
    for fn, _ in funcs:
        close = getattr(getattr(fn, "fn", fn), "close", None)
        if callable(close):
            close()


def judge_rows(funcs: Sequence[tuple[Callable[..., Any], float]]) -> list[list[Any]]:
    """For each model-judge reward of the last scoring: per completion its parsed score, the judge's raw reply,
    the seconds the call took, and whether it came from the cache or why it failed."""
    from rewards.judge import as_judge

    out = []
    for fn, _ in funcs:
        inner = as_judge(fn)
        if inner is None:
            continue
        for i, j in enumerate(inner.last_judgements):
            note = j.error or ("cached" if j.cached else "")
            out.append([i + 1, getattr(fn, "__name__", inner.kind), _num(j.score), j.reply or "",
                        round(j.seconds, 2), note])
    return out


def _num(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _dedupe(errors: list[str], limit: int = 20) -> list[str]:
    """Identical messages collapsed ("... (on 8 completions)"), at most `limit` lines."""
    counts: dict[str, list[str]] = {}
    for e in errors:
        name, _, rest = e.partition(": completion ")
        idx, _, message = rest.partition(": ")
        counts.setdefault(f"{name}: {message}", []).append(idx)
    out = []
    for key, idxs in counts.items():
        name, _, message = key.partition(": ")
        where = f"completion {idxs[0]}" if len(idxs) == 1 else f"completions {', '.join(idxs[:6])}" + (
            "…" if len(idxs) > 6 else "")
        out.append(f"{name} · {where}: {message}")
    return out[:limit]


# -- saving user rewards ---------------------------------------------------------------------------------------------
def reward_file_name(name: str) -> str:
    """A safe .py file name for a reward name."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", name.strip()).strip("_")[:60]
    if not slug:
        raise PlaygroundError("Give the reward a name (letters, digits, underscores).")
    if slug[0].isdigit():
        slug = "reward_" + slug
    return slug + ".py"


def save_user_reward(source: str, name: str, folder: Path | str) -> Path:
    """Check the code statically and write it to `folder/<name>.py` (replacing an earlier version)."""
    check_user_reward(source)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / reward_file_name(name)
    tmp = path.with_suffix(".py.tmp")
    tmp.write_text(source if source.endswith("\n") else source + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def list_user_rewards(folder: Path | str) -> list[Path]:
    """Saved user rewards (.py files), newest first."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(folder.glob("*.py"), key=lambda p: p.stat().st_mtime, reverse=True)


def reward_specs(builtins: Sequence[tuple[str, float, dict[str, Any]]], user_file: str | Path | None = None,
                 user_weight: float = 1.0) -> list[dict[str, Any]]:
    """RunSpec `rewards` entries for the chosen built-ins and a saved user reward file."""
    out: list[dict[str, Any]] = [{"name": n, "weight": float(w), "params": dict(p)} for n, w, p in builtins]
    if user_file:
        out.append({"file": str(user_file), "weight": float(user_weight)})
    return out


__all__ = [
    "PlaygroundError", "PlaygroundResult", "parse_reward_rows", "build_rewards", "check_user_reward",
    "split_completions", "parse_columns", "typed_rows", "dataset_rows", "prompt_row", "sample_rows",
    "reference_completion", "run_playground", "save_user_reward", "list_user_rewards", "reward_file_name",
    "reward_specs",
]
