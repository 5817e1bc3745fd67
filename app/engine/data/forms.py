"""TRL's row forms, by form rather than by method (each method names the form its trainer reads):

    PROMPT      prompt (text or chat messages) + any other columns: GRPO-family trainers and evaluation
    COMPLETION  prompt + completion (or answer), a `messages` conversation, or `text`: SFTTrainer
    PREFERENCE  prompt / chosen / rejected, explicit or implicit prompt: DPOTrainer (app.engine.data.preferences)

Checks read the rows exactly as the conversions will, and name a bad row by its place in the file.
"""
from __future__ import annotations

from typing import Callable

PROMPT = "prompt"
COMPLETION = "completion"
PREFERENCE = "preference"

PROMPT_COLUMNS = ("prompt", "messages")  # columns TRL treats specially; the others reach GRPO reward functions
SFT_TARGET_COLUMNS = ("completion", "answer")


class DataError(ValueError):
    """A dataset problem, stated in one sentence that names the file or column; `field` is the RunSpec field."""

    def __init__(self, message: str, field: str = "data.source"):
        super().__init__(message)
        self.field = field


def column_problem(form: str, rows: list[dict], where: Callable[[int], str] | None = None, what: str = "") -> str | None:
    """One sentence naming what the rows lack for `form` (`what`: the method, as the sentence names it), or None.

    Every row is checked, not a sample: a bad row deep in a file fails a run as surely as the first. `where(i)`
    names the i-th row (0-based) as its file does ("line 23", see `row_locations`); the default is "row i+1"."""
    if not rows:
        return "the dataset has no rows"
    if form == PREFERENCE:  # preference pairs: every row is checked (columns, empty replies, chosen == rejected)
        from app.engine.data.preferences import pairs_problem

        return pairs_problem(rows)
    label = where or (lambda i: f"row {i + 1}")
    columns = set().union(*(row.keys() for row in rows))
    if form == PROMPT:
        if not columns & set(PROMPT_COLUMNS):
            return f"{what} needs a 'prompt' (or chat 'messages') column; the dataset has {sorted(columns)}"
    elif form == COMPLETION:
        if not ({"messages", "text"} & columns):
            if "prompt" not in columns:
                return f"{what} needs 'prompt' + 'completion' (or 'messages', or 'text'); found {sorted(columns)}"
            if not columns & set(SFT_TARGET_COLUMNS):
                return f"{what} needs a 'completion' (or 'answer') column with the target reply; found {sorted(columns)}"
    for i, row in enumerate(rows):
        problem = _row_problem(form, row)
        if problem:
            return f"{label(i)} {problem}"
    return None


def _row_problem(form: str, row: dict) -> str | None:
    """What one row lacks for `form`, read the way `to_form` / `prompt_messages` will read it."""
    if form == COMPLETION and "prompt" not in row:
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
    if form == COMPLETION and "messages" not in row and all(row.get(c) is None for c in SFT_TARGET_COLUMNS):
        return "has no completion (or answer): nothing to train on"
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


def to_form(form: str, rows: list[dict], system_prompt: str | None = None) -> list[dict]:
    """Rows in TRL's conversational `form`.

    PROMPT: `prompt` as messages plus every other column (TRL passes them to the reward functions).
    COMPLETION: `messages` rows stay as they are; `text` rows stay; prompt+completion becomes conversational
    prompt/completion so the loss covers only the completion.
    PREFERENCE: `prompt` / `chosen` / `rejected` in conversational form and nothing else (plain text becomes one
    message, an implicit prompt is split off; see `preferences.normalize_pair`).
    """
    if form == PREFERENCE:
        from app.engine.data.preferences import to_trl_pairs

        return to_trl_pairs(rows, system_prompt)
    if form not in (PROMPT, COMPLETION):
        raise ValueError(f"no conversion for the row form {form!r}: its method converts its own rows")
    out = []
    for row in rows:
        if form == COMPLETION:
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


def uniform_scalars(rows: list[dict]) -> list[dict]:
    """Columns mixing numbers and text (CSV answers, hand-written JSONL) become text: Arrow wants one type."""
    mixed = set()
    for column in set().union(*(r.keys() for r in rows)) if rows else ():
        kinds = {type(r[column]) for r in rows if r.get(column) is not None}
        if str in kinds and kinds & {int, float, bool}:
            mixed.add(column)
    if not mixed:
        return rows
    return [{k: (str(v) if k in mixed and v is not None else v) for k, v in r.items()} for r in rows]
