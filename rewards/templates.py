"""Starter code for user-written rewards: the template the app's code editor opens with, and a few examples.

Every entry is a complete source that `rewards.load_user_reward` accepts; the tests load and dry-run them all.
"""
from __future__ import annotations

USER_REWARD_TEMPLATE = '''\
"""My reward. One function, called once per batch, returns one score per completion."""
import re


def my_reward(completions, answer=None, **kwargs):
    """Score completions: 1.0 if the last number equals the answer, 0.0 if not, None if there is no answer.

    completions: the generated replies, as strings or as chat messages [{"role": "assistant", "content": ...}].
    answer: the dataset's `answer` column, one value per completion (any column arrives the same way).
    kwargs: also `prompts` and every other column; during training, `trainer_state` (.global_step, .max_steps).
    Return a list of floats or None (None = "does not apply": training leaves that sample out of this reward).
    print() output is captured and shown under the editor.
    """
    scores = []
    for completion, ref in zip(completions, answer or [None] * len(completions)):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        if ref is None:
            scores.append(None)
            continue
        numbers = re.findall(r"-?\\d+(?:\\.\\d+)?", text.replace(",", ""))
        scores.append(1.0 if numbers and float(numbers[-1]) == float(ref) else 0.0)
    return scores
'''

EXAMPLES: dict[str, str] = {
    "last number equals the answer": USER_REWARD_TEMPLATE,
    "brevity bonus that fades in": '''\
def brevity(completions, trainer_state=None, **kwargs):
    """Up to 0.5 for short replies, switched on gradually over the first half of training."""
    progress = 1.0
    if trainer_state is not None and trainer_state.max_steps:
        progress = min(1.0, 2 * trainer_state.global_step / trainer_state.max_steps)
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [progress * 0.5 * max(0.0, 1 - len(t) / 200) for t in texts]
''',
    "reuse built-ins": '''\
import rewards

_correct = rewards.get("numeric_answer")
_format = rewards.get("format_tags", mode="soft")


def correct_and_formatted(completions, **kwargs):
    """Correctness counts only when the format is right too."""
    correct = _correct(completions, **kwargs)
    formatted = _format(completions, **kwargs)
    return [None if c is None else c * f for c, f in zip(correct, formatted)]
''',
    "keyword coverage": '''\
def keyword_coverage(completions, keywords=None, **kwargs):
    """Share of the row's `keywords` column (a list of words) that the completion mentions."""
    out = []
    for completion, words in zip(completions, keywords or [None] * len(completions)):
        text = (completion if isinstance(completion, str) else completion[-1]["content"]).lower()
        out.append(None if not words else sum(w.lower() in text for w in words) / len(words))
    return out
''',
}

__all__ = ["USER_REWARD_TEMPLATE", "EXAMPLES"]
