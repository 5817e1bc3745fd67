"""Held-out evaluation and generation for comparison.

Generation happens in eval mode with the KV cache on. Generating from a model still in the trainer's training
state (train mode, `use_cache=False`, gradient checkpointing) produced garbage on this model ("4-------"), so
`generate_completions` always switches modes and restores them.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from app.engine.data.forms import prompt_messages

# Built-in rewards that check correctness: the first of these in a run's rewards defines `accuracy`; a run without
# one has no accuracy.
CORRECTNESS_REWARDS = ("numeric_answer", "exact_answer", "gsm8k_answer", "math_equivalence", "python_tests")


@dataclass
class EvalResult:
    """Scores of one model on held-out rows."""

    n: int
    accuracy: float | None  # `Accuracy.value`: share of scored rows whose correctness reward gave full marks
    reward: float | None  # mean weighted total of the rewards
    per_reward: dict[str, float | None]
    mean_length: float  # completion length in tokens
    seconds: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    n_scored: int = 0  # rows the correctness reward applied to (the accuracy's denominator)
    n_correct: int = 0
    outcomes: list[float | None] = field(default_factory=list)  # per row: 1.0 full marks, 0.0 not, None unscored
    totals: list[float | None] = field(default_factory=list)  # per row: the weighted total reward

    def metrics(self, prefix: str = "eval/") -> dict[str, Any]:
        out: dict[str, Any] = {
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}n_scored": self.n_scored,
            f"{prefix}reward": self.reward,
            f"{prefix}mean_length": self.mean_length,
            f"{prefix}n": self.n,
            f"{prefix}seconds": round(self.seconds, 2),
        }
        out.update({f"{prefix}rewards/{k}": v for k, v in self.per_reward.items()})
        return out


@contextlib.contextmanager
def inference_mode(model: Any, unsloth: bool = False) -> Iterator[None]:
    """Eval mode with the KV cache on for the duration; restores the previous state."""
    import torch

    was_training = model.training
    config = getattr(model, "config", None)
    old_cache = getattr(config, "use_cache", None)
    if unsloth:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    model.eval()
    if config is not None:
        config.use_cache = True
    try:
        with torch.no_grad():
            yield
    finally:
        if config is not None and old_cache is not None:
            config.use_cache = old_cache
        if was_training:
            if unsloth:
                from unsloth import FastLanguageModel

                FastLanguageModel.for_training(model)
            model.train()


class EvaluationStopped(Exception):
    """Generation ended early because `should_stop()` turned true (a stop request during an evaluation)."""


def _stop_criteria(should_stop: Callable[[], bool]) -> Any:
    """A StoppingCriteriaList that ends `generate` at the next token once `should_stop()` is true: one batch of a
    large model can take minutes, too long to wait for a stop request."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StopRequested(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_StopRequested()])


def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[dict[str, str]] | str],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    unsloth: bool = False,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    shared_prefix: bool = True,
) -> tuple[list[str], list[int]]:
    """Generate one reply per prompt (greedy by default); returns texts and token counts.

    Prompts are chat messages (the chat template is applied) or plain strings (used as is).
    With `shared_prefix`, the tokens every prompt of a batch begins with (the system prompt) are computed once for
    the batch; the replies are the plain path's up to float rounding. With `num_return_sequences` > 1, replies of
    one prompt are consecutive. When `should_stop()` turns true
    (checked between batches and at each generated token) generation ends and EvaluationStopped is raised.
    """
    from app.engine.evaluation.endpoint import RemoteModel

    # A served model (4 · Compare's endpoint column: it applies its template) or one in the generation worker
    # (which runs this same function there).
    if isinstance(model, RemoteModel):
        return model.generate(prompts, max_new_tokens, do_sample, temperature, num_return_sequences)
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    texts = [
        p if isinstance(p, str) else tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    old_side = tok.padding_side
    tok.padding_side = "left"  # decoder-only models continue from the right end
    out_texts: list[str] = []
    out_lengths: list[int] = []
    device = next(model.parameters()).device
    try:
        with inference_mode(model, unsloth=unsloth):
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                gen_kwargs: dict[str, Any] = dict(
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    pad_token_id=tok.pad_token_id,
                    num_return_sequences=num_return_sequences,
                    use_cache=True,
                )
                if do_sample:
                    gen_kwargs.update(temperature=temperature, top_p=1.0, top_k=0)
                else:
                    gen_kwargs.update(temperature=None, top_p=None, top_k=None)
                if should_stop is not None:
                    if should_stop():
                        raise EvaluationStopped(f"stopped after {start} of {len(texts)} prompts")
                    gen_kwargs["stopping_criteria"] = _stop_criteria(should_stop)
                output, width = _generate(model, tok, chunk, device, shared_prefix and not unsloth, gen_kwargs)
                if should_stop is not None and should_stop():  # the batch was cut short: its texts are partial
                    raise EvaluationStopped(f"stopped after {start} of {len(texts)} prompts")
                new_tokens = output[:, width:]
                for row in new_tokens:
                    ids = row.tolist()
                    n = len(ids)
                    for stop in (tok.eos_token_id, tok.pad_token_id):
                        if stop is not None and stop in ids:
                            n = min(n, ids.index(stop) + (1 if stop == tok.eos_token_id else 0))
                    out_lengths.append(n)
                    out_texts.append(tok.decode(ids[:n], skip_special_tokens=True))
                if progress:
                    progress(min(start + batch_size, len(texts)), len(texts))
    finally:
        tok.padding_side = old_side
    return out_texts, out_lengths


def _generate(model: Any, tok: Any, texts: list[str], device: Any, shared_prefix: bool,
              gen_kwargs: dict[str, Any]) -> tuple[Any, int]:
    """One batch's output ids and the prompt width they start after. Prompts that begin alike (a system prompt)
    run their shared tokens once (`shared_prefix.generate_common_prefix`); otherwise the plain left-padded call.
    Several replies per prompt take the plain call (`generate` repeats the rows itself)."""
    if shared_prefix and gen_kwargs.get("num_return_sequences", 1) == 1 and len(texts) > 1:
        from app.engine.training.shared_prefix import generate_common_prefix

        rows = tok(texts, add_special_tokens=False)["input_ids"]
        shared = generate_common_prefix(model, rows, tok.pad_token_id, **gen_kwargs)
        if shared is not None:
            return shared
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    return model.generate(**enc, **gen_kwargs), enc["input_ids"].shape[1]


FULL_MARKS = 1.0 - 1e-9  # a correctness reward at its maximum (1.0), allowing for float noise


@dataclass(frozen=True)
class Accuracy:
    """The one definition of accuracy: the share of scored rows whose correctness reward gives full marks.

    Rows where the reward does not apply (it returned None, e.g. no reference answer) are left out of the share
    and counted in `n_unscored`. `value` is None when no row was scored."""

    value: float | None
    n_correct: int
    n_scored: int
    n_unscored: int

    def metrics(self, prefix: str = "eval/") -> dict[str, Any]:
        return {f"{prefix}accuracy": self.value, f"{prefix}n_scored": self.n_scored,
                f"{prefix}n_unscored": self.n_unscored}


NO_ACCURACY = Accuracy(None, 0, 0, 0)


def correctness_reward(reward_names: Sequence[str], registry_names: Sequence[str | None]) -> str | None:
    """The reward that defines accuracy: the first built-in correctness reward (CORRECTNESS_REWARDS) among a run's
    rewards, by its metric name. None when there is none: then there is no accuracy (a format or length reward is
    never passed off as one), only the mean reward."""
    for label, reg in zip(reward_names, registry_names):
        if reg in CORRECTNESS_REWARDS:
            return label
    return None


def accuracy(scores: Sequence[float | None]) -> Accuracy:
    """Accuracy of one correctness reward's scores (one per row; None or NaN: the reward does not apply).

    >>> accuracy([1.0, 0.0, None, 1.0])
    Accuracy(value=0.6666666666666666, n_correct=2, n_scored=3, n_unscored=1)
    """
    scored = [float(s) for s in scores if s is not None and not (isinstance(s, float) and math.isnan(s))]
    correct = sum(1 for s in scored if s >= FULL_MARKS)
    return Accuracy(correct / len(scored) if scored else None, correct, len(scored), len(scores) - len(scored))


def outcomes(rows: Sequence[dict[str, Any]], reward: str | None) -> list[float | None]:
    """Per scored row: 1.0 when the correctness reward gave full marks, 0.0 when not, None when it did not apply
    (their mean over non-None rows is the accuracy; the seed bootstrap resamples them)."""
    if reward is None:
        return []
    out: list[float | None] = []
    for row in rows:
        s = (row.get("scores") or {}).get(reward)
        out.append(None if s is None or (isinstance(s, float) and math.isnan(s)) else float(s >= FULL_MARKS))
    return out


def table_accuracy(rows: Sequence[dict[str, Any]], reward: str | None) -> Accuracy:
    """Accuracy of scored rows (`rewards.score` rows: each has a `scores` dict) by the correctness reward
    `reward`; NO_ACCURACY when there is no such reward."""
    if reward is None:
        return NO_ACCURACY
    return accuracy([(row.get("scores") or {}).get(reward) for row in rows])


@dataclass
class ScoredGeneration:
    """Replies generated for prompt rows and scored with rewards: `rows[i * k + j]` is the j-th reply to prompt i,
    with its `scores` (per reward), `total` (weighted) and `errors`."""

    messages: list[Any]  # each prompt row as chat messages
    texts: list[str]
    lengths: list[int]
    rows: list[dict[str, Any]]
    k: int = 1
    seconds: float = 0.0

    def per_prompt(self, i: int) -> list[dict[str, Any]]:
        return self.rows[i * self.k:(i + 1) * self.k]


def generate_and_score(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    reward_funcs: Sequence[Callable[..., list[float | None]]] = (),
    weights: Sequence[float] = (),
    system_prompt: str | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    unsloth: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> ScoredGeneration:
    """The one generate-and-score path (held-out evaluation, 4 · Compare, sampled avg@k / pass@k): generate for
    each prompt row (greedy unless `do_sample`), then score every reply with the rewards, the row's other columns
    (e.g. `answer`) passed to them as in training. Without rewards the rows carry empty scores."""
    from rewards import score

    start = time.time()
    k = max(1, int(num_return_sequences))
    messages = [prompt_messages(r, system_prompt) for r in rows]
    texts, lengths = generate_completions(
        model, tokenizer, messages, max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=do_sample,
        temperature=temperature, num_return_sequences=k, unsloth=unsloth, should_stop=should_stop,
    )
    table_rows = [
        {**{c: v for c, v in row.items() if c not in ("prompt", "completion", "messages")}, "prompt": msg,
         "completion": texts[i * k + j]}
        for i, (row, msg) in enumerate(zip(rows, messages)) for j in range(k)
    ]
    if reward_funcs:
        scored = score(table_rows, list(zip(reward_funcs, weights))).rows
        table = [{**r, "scores": s["scores"], "total": s.get("total"), "errors": s.get("errors", {})}
                 for r, s in zip(table_rows, scored)]
    else:
        table = [{**r, "scores": {}, "total": None, "errors": {}} for r in table_rows]
    return ScoredGeneration(messages, texts, lengths, table, k, time.time() - start)


def evaluate(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    reward_funcs: Sequence[Callable[..., list[float | None]]],
    weights: Sequence[float],
    accuracy_reward: str | None = None,
    system_prompt: str | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    unsloth: bool = False,
    keep_samples: int = 8,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult:
    """Greedy generation on held-out rows, scored with the run's rewards; `accuracy_reward` (from
    `correctness_reward`) defines the accuracy, None means the run has none."""
    gen = generate_and_score(model, tokenizer, rows, reward_funcs, weights, system_prompt=system_prompt,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, unsloth=unsloth,
                             should_stop=should_stop)  # raises EvaluationStopped
    names = [getattr(f, "__name__", str(f)) for f in reward_funcs]
    per_reward = {n: mean_of([row["scores"].get(n) for row in gen.rows]) for n in names}
    totals = [row.get("total") for row in gen.rows]
    acc = table_accuracy(gen.rows, accuracy_reward)
    samples = [
        {"prompt": last_user_text(row["prompt"]), "completion": row["completion"], "scores": row["scores"],
         "total": row.get("total")}
        for row in gen.rows[:keep_samples]
    ]
    return EvalResult(
        n=len(rows),
        accuracy=acc.value,
        reward=mean_of(totals),
        per_reward=per_reward,
        mean_length=sum(gen.lengths) / max(len(gen.lengths), 1),
        seconds=gen.seconds,
        samples=samples,
        n_scored=acc.n_scored,
        n_correct=acc.n_correct,
        outcomes=outcomes(gen.rows, accuracy_reward),
        totals=totals,
    )


def mean_of(values: Sequence[Any]) -> float | None:
    """Mean of the numbers among `values` (None and NaN left out); None when there are none."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def last_user_text(messages: list[dict[str, str]] | str) -> str:
    """The last user turn of chat messages (the question as a person reads it)."""
    if isinstance(messages, str):
        return messages
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return str(users[-1]) if users else str(messages[-1].get("content", "")) if messages else ""
