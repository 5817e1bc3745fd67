"""Built-in tasks the workbench generates itself (no download needed).

`arithmetic`: "What is a + b? Reply with only the number." for a, b in [low, high]. The default model answers it
greedily about a third of the time (it often writes "a + b = c" with c wrong), which makes it a small,
verifiable task on which RFT visibly works on a CPU. Each row carries:
  prompt    the question (plain text; the engine wraps it in the chat template)
  answer    the reference number as text (read by answer rewards such as `numeric_answer`)
  completion the ideal reply (for SFT / DFT)
  solution  a short worked answer, "a + b = c" (a demonstration, e.g. for Prefix-RFT)

`support`: customer-support messages for a model judge (see `support_rows`).

`arithmetic_pairs`: the same questions as preference pairs for DPO (TRL's format: prompt / chosen / rejected).
  chosen    the correct sum, alone (what the prompt asks for)
  rejected  a plausible wrong sum (off by one or two, off by ten, digits swapped), half of the time written
            "a + b = wrong" as the default model likes to answer, half of the time alone (so that the pairs
            teach correctness, not only the format)
  answer    the reference number, for evaluating generations with `numeric_answer`
"""
from __future__ import annotations

import random
import re
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


def wrong_sum(a: int, b: int, rng: random.Random) -> int:
    """A plausible wrong answer to a + b: off by one or two, off by ten, or the digits of the sum swapped."""
    right = a + b
    candidates = {right + d for d in (-2, -1, 1, 2, -10, 10)}
    if right >= 10 and str(right)[::-1] != str(right):
        candidates.add(int(str(right)[::-1]))
    return rng.choice(sorted(c for c in candidates if c > 0 and c != right))


def arithmetic_pair_rows(n: int | None = None, low: int = 1, high: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    """Preference pairs on the arithmetic questions: chosen = the sum alone, rejected = a plausible wrong sum
    ("a + b = wrong" for half of the rows, the wrong number alone for the others)."""
    rows = arithmetic_rows(n=n, low=low, high=high, seed=seed)
    rng = random.Random(f"pairs-{seed}")
    out = []
    for i, row in enumerate(rows):
        a, b = (int(x) for x in row["solution"].split(" = ")[0].split(" + "))
        wrong = wrong_sum(a, b, rng)
        rejected = f"{a} + {b} = {wrong}" if i % 2 == 0 else str(wrong)
        out.append({"prompt": row["prompt"], "chosen": row["answer"], "rejected": rejected, "answer": row["answer"]})
    return out


SUPPORT_SUBJECTS = ("parcel", "order", "refund", "invoice", "password reset email", "subscription",
                    "replacement part", "gift card")
SUPPORT_MESSAGES = ("My {s} has not arrived yet.", "I was charged twice for my {s}.", "My {s} arrived damaged.",
                    "How do I cancel my {s}?", "Where is my {s}? It has been two weeks.",
                    "Can I change the address for my {s}?", "The {s} you sent is the wrong one.",
                    "Nobody answered my last email about my {s}.")


def support_rows(n: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Customer-support messages (8 subjects × 8 complaints), shuffled with `seed`; the first `n` (None: all).
    No program can check a reply: a judge (llm_judge with the polite_and_short rubric) or a person grades it.
    `completion` is one polite, short reply per message, for SFT or as a reference."""
    rows = [{"prompt": message.format(s=subject),
             "completion": f"Thank you for telling us, and sorry about your {subject}. We will sort it out today."}
            for subject in SUPPORT_SUBJECTS for message in SUPPORT_MESSAGES]
    random.Random(seed).shuffle(rows)
    return rows[:n] if n is not None else rows


_SUM_QUESTION = re.compile(r"what is\s+(-?\d+)\s*\+\s*(-?\d+)", re.IGNORECASE)


def arithmetic_operands(question: str) -> tuple[int, int] | None:
    """(a, b) of an addition question "What is a + b?", in the order asked; None when the text is not one.

    >>> arithmetic_operands("What is 5 + 23? Reply with only the number.")
    (5, 23)
    """
    match = _SUM_QUESTION.search(question or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def arithmetic_key(question: str) -> str:
    """The unordered pair {a, b} of an addition question ('' when the text is not one): a + b and b + a are the
    same question, so a held-out "7 + 12" must not have "12 + 7" in training.

    >>> arithmetic_key("What is 12 + 7? Reply with only the number.") == arithmetic_key("what is 7+12?")
    True
    """
    operands = arithmetic_operands(question)
    if operands is None:
        return ""
    a, b = sorted(operands)
    return f"sum:{a},{b}"


BUILTIN_TASKS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "arithmetic": arithmetic_rows,
    "arithmetic_pairs": arithmetic_pair_rows,
    "support": support_rows,
}
BUILTIN_DESCRIPTIONS = {
    "arithmetic": "Addition of two numbers in 1..50, 'Reply with only the number' (answer column: the sum). "
    "Verifiable, tiny, and the default model gets about a third right: RFT shows its effect on a CPU.",
    "arithmetic_pairs": "The arithmetic questions as preference pairs for DPO: chosen = the correct sum, rejected = "
    "a plausible wrong one (half of them written 'a + b = wrong'). Columns: prompt, chosen, rejected, answer.",
    "support": "64 customer-support messages (8 subjects × 8 complaints) whose replies should be polite and short: "
    "no program can check them, a model judge or a person grades them (recipes/judge-grpo.yaml). Columns: prompt, "
    "completion (one polite reply).",
}


# Dedupe keys of built-in tasks (question text → key; '' falls back to the normalised prompt) and their names.
TASK_KEYS: dict[str, tuple[Callable[[str], str], str]] = {
    "arithmetic": (arithmetic_key, "arithmetic: the unordered pair {a, b}"),
    "arithmetic_pairs": (arithmetic_key, "arithmetic: the unordered pair {a, b}"),
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
