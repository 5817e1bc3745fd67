"""Built-in tasks the workbench generates itself (no download needed).

`arithmetic`: "What is a + b? Reply with only the number." for a, b in [low, high]. The default model answers it
greedily about a third of the time (it often writes "a + b = c" with c wrong), which makes it a small,
verifiable task on which RFT visibly works on a CPU. Each row carries:
  prompt    the question (plain text; the engine wraps it in the chat template)
  answer    the reference number as text (read by answer rewards such as `numeric_answer`)
  completion the ideal reply (for SFT / DFT)
  solution  a short worked answer, "a + b = c" (a demonstration, e.g. for Prefix-RFT)
"""
from __future__ import annotations

import random
from typing import Any, Callable

ARITHMETIC_TEMPLATE = "What is {a} + {b}? Reply with only the number."


def arithmetic_rows(n: int | None = None, low: int = 1, high: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    """All distinct (a, b) pairs in [low, high]², shuffled with `seed`; the first `n` of them (None: all)."""
    if low > high:
        raise ValueError(f"task_params: low ({low}) must not exceed high ({high})")
    pairs = [(a, b) for a in range(low, high + 1) for b in range(low, high + 1)]
    random.Random(seed).shuffle(pairs)
    if n is not None:
        pairs = pairs[:n]
    return [
        {
            "prompt": ARITHMETIC_TEMPLATE.format(a=a, b=b),
            "answer": str(a + b),
            "completion": str(a + b),
            "solution": f"{a} + {b} = {a + b}",
        }
        for a, b in pairs
    ]


BUILTIN_TASKS: dict[str, Callable[..., list[dict[str, Any]]]] = {"arithmetic": arithmetic_rows}
BUILTIN_DESCRIPTIONS = {
    "arithmetic": "Addition of two numbers in 1..50, 'Reply with only the number' (answer column: the sum). "
    "Verifiable, tiny, and the default model gets about a third right: RFT shows its effect on a CPU.",
}


def builtin_task_rows(name: str, params: dict[str, Any] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of a built-in task; raises ValueError for an unknown task or parameter."""
    if name not in BUILTIN_TASKS:
        raise ValueError(f"unknown built-in task {name!r}; available: {', '.join(sorted(BUILTIN_TASKS))}")
    params = dict(params or {})
    params.setdefault("seed", seed)
    try:
        return BUILTIN_TASKS[name](**params)
    except TypeError as exc:
        raise ValueError(f"task_params for {name!r}: {exc}") from None
