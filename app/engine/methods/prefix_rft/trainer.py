"""Prefix-RFT on TRL's GRPOTrainer (Huang et al. 2025, "Blending Supervised and Reinforcement Fine-Tuning with
Prefix Sampling", arXiv 2507.01679; official code: ZeroYuHuang/prefix_rft, a verl recipe).

For a prompt with a demonstration (a reference solution column), `n_prefixed` rollouts of its GRPO group start
from a prefix of the demonstration and let the model continue it; the other rollouts are ordinary on-policy
samples. Everything is scored by the run's rewards. In the official code's terms (see docs/prefix-rft.md):

* schedule (`scheduler/global_step.py`): the lower bound of the prefix fraction decays from `low_start` to
  `low_end` on a cosine over training; each prefixed rollout draws its fraction uniformly in [low, high]
  (`BetaSampler` with alpha = beta = 1);
* prefix (`rl_dataset.py`): L = int(fraction × demo tokens), at least `min_prefix_tokens`, at most demo tokens − 1,
  cut at the demonstration's own token boundaries; the model continues from the chat-templated prompt (with the
  generation prompt) followed by those tokens, and the trained completion is prefix ids + continuation ids,
  truncated to max_completion_length; a `prefix_mask` marks the prefix tokens;
* advantages (`core_algos.compute_dr_grpo_prefix_outcome_advantage`): on-policy rollouts get reward − mean of the
  group's on-policy rewards; the prefix tokens of a prefixed rollout get its reward − that mean; its continuation
  gets its raw reward (a singleton prefix group, whose mean the official code sets to 0) or, optionally, the
  centred value; no std scaling (Dr. GRPO);
* loss (`dp_actor.reshape_func('entropy')` + `compute_policy_loss`): PPO clip on every token; among the prefix
  tokens of each micro-batch, ranked by the current policy's entropy, the lowest (1 − top) share gets advantage 0.

Backends: Unsloth (on a GPU) replaces `GRPOTrainer.compute_loss` with its own chunked loss, which knows nothing of
prefix masks; a subclass that overrides only `_compute_loss` would be silently bypassed. This trainer therefore
overrides `compute_loss` itself, and scores tokens with TRL's own `_get_per_token_logps_and_entropies` where that
is TRL's (plain TRL, Unsloth's CPU backend) or with a plain forward pass where Unsloth replaced it (its version
returns detached log-probabilities). Generation is hooked at `_generate_single_turn` and rewards at
`_calculate_rewards`; if a backend skipped either hook the step fails with a message instead of training wrongly.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from app.engine.methods.prefix_rft.settings import PrefixSettings, PrefixSpec

LOSS_TYPES = ("dr_grpo", "grpo", "bnpo", "dapo")
# Metrics this method adds to TRL's (they reach metrics.jsonl through `self._metrics` and `on_log`).
METRICS = {
    "prefix/fraction_low": "lower bound of the prefix fraction at this step (the schedule)",
    "prefix/fraction_high": "upper bound of the prefix fraction",
    "prefix/fraction": "mean prefix fraction drawn for the prefixed rollouts (prefix tokens / demonstration tokens)",
    "prefix/length": "mean number of prefix tokens in a prefixed completion (after the max_completion_length cut)",
    "prefix/prefixed_share": "share of the step's rollouts that continued a prefix",
    "prefix/reward_prefixed": "mean reward of the prefixed rollouts",
    "prefix/reward_on_policy": "mean reward of the on-policy rollouts",
    "prefix/advantage_prefix": "mean advantage of the prefix tokens (prefixed reward − on-policy mean)",
    "prefix/token_share": "share of the generation batch's completion tokens that are prefix tokens",
    "prefix/tokens_updated_share": "share of prefix tokens kept in the loss by the entropy mask",
}


# -- schedule -----------------------------------------------------------------------------------------------------
def prefix_low_bound(step: int, total_steps: int, low_start: float = 0.95, low_end: float = 0.05,
                     schedule: str = "cosine") -> float:
    """Lower bound of the prefix fraction at `step` (official `CosineDecayController`, no warm-up):
    low_end + ½(1 + cos(π·t/T))·(low_start − low_end); after T steps it stays at low_end."""
    if schedule == "constant":
        return float(low_end)
    progress = 1.0 if total_steps <= 0 else min(max(step / total_steps, 0.0), 1.0)
    if schedule == "cosine":
        return float(low_end + 0.5 * (1.0 + math.cos(math.pi * progress)) * (low_start - low_end))
    if schedule == "linear":
        return float(low_start + (low_end - low_start) * progress)
    raise ValueError(f"unknown prefix schedule {schedule!r}")


def draw_prefix_fraction(rng: random.Random, low: float, high: float) -> float:
    """Uniform in [min(low, high), max(low, high)] (official `BetaSampler` with alpha = beta = 1)."""
    lower, upper = min(low, high), max(low, high)
    return lower + (upper - lower) * rng.random()


# -- demonstrations and prefixes ----------------------------------------------------------------------------------
def demonstration_text(value: Any) -> str | None:
    """A row's demonstration as text: a string, a number, or chat messages (their contents joined); None if empty."""
    if value is None:
        return None
    if isinstance(value, list):
        if value and all(isinstance(m, str) for m in value):  # several demonstrations: the first
            value = value[0]
        else:
            value = "".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    elif isinstance(value, dict):
        value = value.get("content", "")
    text = str(value)
    return text if text.strip() else None


def prefix_length(n_tokens: int, fraction: float, min_tokens: int = 1) -> int:
    """Prefix length in tokens (official `_get_prefix`): int(fraction·n), at least `min_tokens`, at most n − 1 so
    the model always writes part of the answer; 0 when the demonstration is too short to cut."""
    if n_tokens < 2 or fraction <= 0:
        return 0
    length = max(int(fraction * n_tokens), min_tokens)
    return max(0, min(length, n_tokens - 1))


@dataclass
class PrefixDraw:
    """One prefixed rollout: the demonstration tokens it starts with and how they were chosen."""

    ids: list[int]
    fraction: float  # the drawn fraction (the prefix is int(fraction × demo_tokens) tokens, clamped)
    demo_tokens: int

    @property
    def length(self) -> int:
        return len(self.ids)


def plan_prefixes(
    rows: Sequence[dict[str, Any]],
    column: str,
    num_generations: int,
    n_prefixed: int,
    low: float,
    high: float,
    tokenize: Callable[[str], list[int]],
    rng: random.Random,
    min_tokens: int = 1,
    offset: int = 0,
) -> list[PrefixDraw | None]:
    """Which rows of a generation batch continue a prefix, and which one.

    Rows come in groups of `num_generations` copies of a prompt (TRL's RepeatSampler); `offset` is this process's
    first row in the gathered batch. The last `n_prefixed` rollouts of each group are prefixed when the row has a
    demonstration that can be cut; every other row is an ordinary on-policy rollout (None).
    """
    plan: list[PrefixDraw | None] = []
    for i, row in enumerate(rows):
        position = (offset + i) % num_generations
        demo = demonstration_text(row.get(column)) if position >= num_generations - n_prefixed else None
        if demo is None:
            plan.append(None)
            continue
        ids = list(tokenize(demo))
        fraction = draw_prefix_fraction(rng, low, high)
        length = prefix_length(len(ids), fraction, min_tokens)
        plan.append(PrefixDraw(ids[:length], fraction, len(ids)) if length > 0 else None)
    return plan


def join_prefix(prefix_ids: Sequence[int], continuation_ids: Sequence[int], max_length: int) -> list[int]:
    """The trained completion of a prefixed rollout: prefix ids + continuation ids, cut to `max_length`."""
    return (list(prefix_ids) + list(continuation_ids))[:max_length]


def prefix_token_mask(prefix_lengths: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the first `prefix_lengths[i]` completion tokens of row i (within its completion mask)."""
    positions = torch.arange(completion_mask.size(1), device=completion_mask.device)
    return (positions.unsqueeze(0) < prefix_lengths.to(completion_mask.device).unsqueeze(1)) & completion_mask.bool()


# -- advantages ---------------------------------------------------------------------------------------------------
def prefix_rft_advantages(
    rewards: torch.Tensor, prefixed: torch.Tensor, num_generations: int, continuation: str = "raw"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-rollout advantages of a batch of groups (official `compute_dr_grpo_prefix_outcome_advantage`).

    rewards: (N,) total rewards, NaN where no reward function could score the rollout; prefixed: (N,) bool.
    Returns (sequence, prefix, on_policy_mean), each (N,):
      sequence  on-policy rollouts: r − mean of the group's on-policy rewards; prefixed rollouts (their
                continuation): r ('raw') or r − that mean ('centred');
      prefix    prefixed rollouts' prefix tokens: r − on-policy mean (0 for on-policy rows);
    No std scaling (Dr. GRPO). Unscorable rows, and prefix advantages of groups without a scorable on-policy
    rollout, are 0.
    """
    if continuation not in ("raw", "centred"):
        raise ValueError(f"continuation must be 'raw' or 'centred', got {continuation!r}")
    rewards = rewards.float()
    grouped = rewards.view(-1, num_generations)
    on_policy = ~prefixed.bool().view(-1, num_generations) & ~torch.isnan(grouped)
    counts = on_policy.sum(dim=1, keepdim=True)
    sums = torch.where(on_policy, grouped, torch.zeros_like(grouped)).sum(dim=1, keepdim=True)
    mean_on = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))
    mean_on = mean_on.expand_as(grouped).reshape(-1)
    is_prefixed = prefixed.bool().view(-1)
    centred = rewards - mean_on
    if continuation == "raw":
        sequence = torch.where(is_prefixed, rewards, centred)
    else:
        sequence = centred
    prefix = torch.where(is_prefixed, centred, torch.zeros_like(rewards))
    return torch.nan_to_num(sequence, nan=0.0), torch.nan_to_num(prefix, nan=0.0), mean_on


def token_advantages(sequence: torch.Tensor, prefix: torch.Tensor, prefix_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) advantages: the prefix advantage on prefix tokens, the sequence advantage elsewhere."""
    full = sequence.unsqueeze(1).expand(prefix_mask.shape)
    return torch.where(prefix_mask.bool(), prefix.unsqueeze(1).expand(prefix_mask.shape), full).contiguous()


# -- the entropy mask and the loss --------------------------------------------------------------------------------
def top_entropy_prefix_mask(entropies: torch.Tensor, prefix_mask: torch.Tensor, top_fraction: float) -> torch.Tensor:
    """(B, T) bool: the prefix tokens kept in the loss (official `reshape_func('entropy')`).

    The prefix tokens of the batch are sorted by entropy; the lowest floor(n·(1 − top_fraction)) are dropped and
    the rest kept (n = 5, top 0.2 → 1 kept; n = 1 → 1 kept). Only prefix tokens are ranked, unlike TRL's
    `top_entropy_quantile`, which ranks all completion tokens. Ties: the earlier token is dropped first.
    """
    prefix_mask = prefix_mask.bool()
    keep = torch.zeros_like(prefix_mask)
    values = entropies.detach()[prefix_mask].float()
    n = values.numel()
    if n == 0:
        return keep
    drop = min(n, int(math.floor(n * (1.0 - top_fraction) + 1e-9)))
    kept_flat = torch.ones(n, dtype=torch.bool, device=values.device)
    if drop > 0:
        order = torch.sort(values, stable=True).indices
        kept_flat[order[:drop]] = False
    keep[prefix_mask] = kept_flat
    return keep


def clipped_token_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    delta: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clip token losses as TRL computes them for grpo/dr_grpo/dapo/bnpo: (per_token_loss, ratio)."""
    coef_1 = torch.exp(per_token_logps - old_per_token_logps)
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    ratio = coef_1
    if delta is not None:
        coef_1 = torch.clamp(coef_1, max=delta)
    return -torch.min(coef_1 * advantages, coef_2 * advantages), ratio


def aggregate_loss(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    max_completion_length: int,
    accumulation_steps: float = 1.0,
    dapo_normalizer: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """TRL's aggregations: dr_grpo sum / (B·max_completion_length); grpo mean of sequence means; bnpo token mean;
    dapo sum / `dapo_normalizer` (tokens of the accumulation window). All but dapo divided by the accumulation."""
    mask = mask.to(per_token_loss.dtype)
    if loss_type == "dr_grpo":
        loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_completion_length)
    elif loss_type == "grpo":
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    elif loss_type == "dapo":
        if dapo_normalizer is None:
            raise ValueError("dapo needs the token count of the accumulation window")
        return (per_token_loss * mask).sum() / dapo_normalizer
    else:
        raise ValueError(f"Prefix-RFT supports loss types {', '.join(LOSS_TYPES)}, got {loss_type!r}")
    return loss / accumulation_steps


# -- scoring tokens -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _logits_not_hidden_states() -> Iterator[None]:
    """Unsloth's fast forward returns hidden states instead of logits while UNSLOTH_RETURN_HIDDEN_STATES=1."""
    old = os.environ.get("UNSLOTH_RETURN_HIDDEN_STATES")
    os.environ["UNSLOTH_RETURN_HIDDEN_STATES"] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("UNSLOTH_RETURN_HIDDEN_STATES", None)
        else:
            os.environ["UNSLOTH_RETURN_HIDDEN_STATES"] = old


def plain_logps_and_entropies(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities (with gradient) and entropies (without) of the last `logits_to_keep` tokens, from
    an ordinary forward pass (the model's own LM head, logit scaling and soft-capping), at `temperature`."""
    with _logits_not_hidden_states():
        outputs = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep + 1,
                        use_cache=False)
    logits = outputs.logits[:, -(logits_to_keep + 1):-1, :].float() / temperature
    targets = input_ids[:, -logits_to_keep:]
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax  # TRL's own, as its scorer uses

    logps = selective_log_softmax(logits, targets)
    with torch.no_grad():
        entropies = entropy_from_logits(logits)
    return logps, entropies


def _as_list(ids: Any) -> list[int]:
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def _is_trl_scorer(function: Any) -> bool:
    """TRL's own `_get_per_token_logps_and_entropies`, or the engine's shared-prompt version of it (which computes
    the same values, and calls TRL's where it does not apply); not a backend's replacement."""
    return getattr(function, "__module__", "") in ("trl.trainer.grpo_trainer", "app.engine.training.shared_prefix")


def _trl_kernel_available() -> bool:
    try:
        import trl.trainer.utils as trl_utils
    except Exception:
        return False
    return getattr(trl_utils, "_ChunkedLogProbFunction", None) is not None


# -- the trainer --------------------------------------------------------------------------------------------------
_TRAINER_CLASSES: dict[type, type] = {}


def prefix_rft_trainer_class(base: type | None = None) -> type:
    """The Prefix-RFT trainer class on top of `base` (default: `trl.GRPOTrainer` as imported now, i.e. after the
    backend choice: Unsloth's patched class when Unsloth patched TRL)."""
    if base is None:
        import trl

        base = trl.GRPOTrainer
    if base not in _TRAINER_CLASSES:
        _TRAINER_CLASSES[base] = _make_trainer_class(base)
    return _TRAINER_CLASSES[base]


def build_prefix_rft_trainer(spec: Any, cls: type | None = None, **trainer_kwargs: Any) -> Any:
    """A Prefix-RFT trainer for `spec` (method prefix_rft): `cls` (default `prefix_rft_trainer_class()`), a class
    built by `prefix_rft_trainer_class`, maybe under other mixins; `trainer_kwargs` are GRPOTrainer's."""
    return (cls or prefix_rft_trainer_class())(prefix=PrefixSettings.from_spec(spec), **trainer_kwargs)


def _make_trainer_class(base: type) -> type:
    class PrefixRFTTrainer(base):  # type: ignore[misc, valid-type]
        """GRPOTrainer with Prefix-RFT's prefixed rollouts, prefix-aware advantages and entropy-masked loss."""

        #: "auto" (TRL's scorer when it is TRL's own or the shared-prompt one, else a plain forward), "trl" or "plain"
        prefix_scoring = "auto"

        def __init__(self, *args: Any, prefix: PrefixSettings | PrefixSpec | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            if prefix is None:
                prefix = PrefixSettings(seed=self.args.seed)
            elif not isinstance(prefix, PrefixSettings):
                prefix = PrefixSettings(**asdict(prefix), seed=self.args.seed)
            self.prefix = prefix
            if self.loss_type not in LOSS_TYPES:
                raise ValueError(f"Prefix-RFT supports loss types {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
            if self.beta != 0.0:
                raise ValueError("Prefix-RFT trains without a KL term: set beta = 0")
            if not 1 <= prefix.n_prefixed < self.num_generations:
                raise ValueError(f"n_prefixed must be in [1, num_generations − 1], got {prefix.n_prefixed}")
            self.prefix_loss_calls = 0  # how often this class's loss ran (tests assert the backend did not bypass it)
            self._prefix_plan: list[PrefixDraw | None] | None = None
            self._prefix_pending = False
            self._prefix_rewards: torch.Tensor | None = None
            self._prefix_demo_ids: dict[str, list[int]] = {}

        # -- schedule and plan ------------------------------------------------------------------------------
        def prefix_total_steps(self) -> int:
            return int(self.prefix.decay_steps or self.state.max_steps or self.args.max_steps or 1)

        def prefix_low(self, step: int | None = None) -> float:
            p = self.prefix
            step = self.state.global_step if step is None else step
            return prefix_low_bound(step, self.prefix_total_steps(), p.low_start, p.low_end, p.schedule)

        def _demo_ids(self, text: str) -> list[int]:
            ids = self._prefix_demo_ids.get(text)
            if ids is None:
                ids = list(self._tokenizer(text, add_special_tokens=False)["input_ids"])
                self._prefix_demo_ids[text] = ids
            return ids

        def _plan_prefixes(self, inputs: list[dict[str, Any]], low: float) -> list[PrefixDraw | None]:
            p = self.prefix
            process = self.accelerator.process_index
            rng = random.Random(f"prefix-rft/{p.seed}/{self.state.global_step}/{process}")
            return plan_prefixes(
                inputs, p.demonstration_column, self.num_generations, p.n_prefixed, low, p.high, self._demo_ids,
                rng, min_tokens=p.min_prefix_tokens, offset=process * len(inputs),
            )

        # -- rollouts -----------------------------------------------------------------------------------------
        def _generate_and_score_completions(self, inputs):
            if not self.model.training:  # evaluation batches stay plain GRPO
                return super()._generate_and_score_completions(inputs)
            low = self.prefix_low()
            plan = self._plan_prefixes(inputs, low)
            self._prefix_plan, self._prefix_pending, self._prefix_rewards = plan, True, None
            try:
                output = super()._generate_and_score_completions(inputs)
                if self._prefix_pending:
                    raise RuntimeError(
                        "Prefix-RFT: the backend's GRPO trainer generated without calling _generate_single_turn, so "
                        "no rollout continued a demonstration prefix; this backend is not supported for prefix_rft."
                    )
                if self._prefix_rewards is None:
                    raise RuntimeError(
                        "Prefix-RFT: the backend's GRPO trainer scored rewards without calling _calculate_rewards; "
                        "this backend is not supported for prefix_rft."
                    )
                return self._apply_prefix_rft(output, plan, low)
            finally:
                self._prefix_plan, self._prefix_pending, self._prefix_rewards = None, False, None

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            plan = self._prefix_plan
            if plan is None or not self._prefix_pending or len(plan) != len(prompt_ids):
                return super()._generate_single_turn(prompt_ids, *args, **kwargs)
            self._prefix_pending = False
            # The continuation's context is exactly what the loss later feeds the model: prompt ids (chat template
            # with the generation prompt) followed by the prefix ids.
            extended = [_as_list(ids) + d.ids if d is not None else ids for ids, d in zip(prompt_ids, plan)]
            completion_ids, logprobs = super()._generate_single_turn(extended, *args, **kwargs)
            max_len = self.max_completion_length
            joined = [
                join_prefix(d.ids, _as_list(c), max_len) if d is not None else c for c, d in zip(completion_ids, plan)
            ]
            if logprobs is not None:  # vLLM: prefix tokens were not sampled, so no sampling log-prob (IS ratio 1)
                logprobs = [
                    ([None] * d.length + list(lp))[:max_len] if d is not None else lp for lp, d in zip(logprobs, plan)
                ]
            return joined, logprobs

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            if self._prefix_plan is not None:
                self._prefix_rewards = rewards_per_func
            return rewards_per_func

        def _apply_prefix_rft(self, output: dict[str, Any], plan: list[PrefixDraw | None], low: float):
            """Replace TRL's advantages with Prefix-RFT's (B, T) ones, add `prefix_mask`, log prefix metrics."""
            completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
            device = completion_ids.device
            local = len(plan)
            lengths = torch.tensor([d.length if d is not None else 0 for d in plan], device=device)
            prefix_mask = prefix_token_mask(lengths, completion_mask)

            rewards_per_func = self._prefix_rewards.to(device)
            unscorable = torch.isnan(rewards_per_func).all(dim=1)
            rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
            rewards[unscorable] = float("nan")
            prefixed = self.accelerator.gather((lengths > 0).int()).bool()
            sequence, prefix_adv, _mean_on = prefix_rft_advantages(
                rewards, prefixed, self.num_generations, self.prefix.continuation_advantage
            )
            start = self.accelerator.process_index * local
            output["advantages"] = token_advantages(
                sequence[start:start + local], prefix_adv[start:start + local], prefix_mask
            )
            output["prefix_mask"] = prefix_mask.long()

            logged = self._logs.get("advantages") if isinstance(self._logs, dict) else None
            if logged is not None and len(logged) >= len(sequence):  # the samples show the advantages trained on
                for k, value in enumerate(sequence.tolist()):
                    logged[len(logged) - len(sequence) + k] = value

            nan = float("nan")
            fractions = torch.tensor(
                [d.length / d.demo_tokens if d is not None else nan for d in plan], device=device, dtype=torch.float32
            )
            fractions = self.accelerator.gather(fractions)
            all_lengths = self.accelerator.gather(prefix_mask.sum(dim=1).float())  # prefix tokens in the completion
            metrics = self._metrics["train"]
            metrics["prefix/fraction_low"].append(low)
            metrics["prefix/fraction_high"].append(float(self.prefix.high))
            metrics["prefix/prefixed_share"].append(prefixed.float().mean().item())
            all_tokens = self.accelerator.gather(completion_mask.sum(dim=1).float())
            metrics["prefix/token_share"].append((all_lengths.sum() / all_tokens.sum().clamp(min=1.0)).item())
            any_prefixed = bool(prefixed.any())
            metrics["prefix/fraction"].append(torch.nanmean(fractions).item() if any_prefixed else nan)
            metrics["prefix/length"].append(all_lengths[prefixed].mean().item() if any_prefixed else nan)
            metrics["prefix/reward_prefixed"].append(torch.nanmean(rewards[prefixed]).item() if any_prefixed else nan)
            on_policy = ~prefixed
            metrics["prefix/reward_on_policy"].append(
                torch.nanmean(rewards[on_policy]).item() if bool(on_policy.any()) else nan
            )
            metrics["prefix/advantage_prefix"].append(prefix_adv[prefixed].mean().item() if any_prefixed else nan)
            return output

        # -- loss -----------------------------------------------------------------------------------------------
        def rows_the_loss_needs(self, inputs: dict[str, Any]) -> torch.Tensor:
            """For the zero-advantage skip in front of this class: every row with prefix tokens stays, whatever its
            advantage (the entropy mask ranks all the batch's prefix tokens), so the loss is the one of all rows."""
            prefix_mask = inputs.get("prefix_mask")
            if prefix_mask is None:
                return torch.zeros(inputs["advantages"].size(0), dtype=torch.bool, device=inputs["advantages"].device)
            return prefix_mask.bool().any(dim=1)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # Overrides compute_loss itself (not only _compute_loss): Unsloth replaces GRPOTrainer.compute_loss.
            if return_outputs:
                raise ValueError("The GRPOTrainer does not support returning outputs")
            return self._prefix_rft_loss(model, inputs)

        def _prefix_scores(self, model, input_ids, attention_mask, logits_to_keep):
            mode = self.prefix_scoring
            if mode == "auto":
                trl_scorer = _is_trl_scorer(type(self)._get_per_token_logps_and_entropies) and _trl_kernel_available()
                mode = "trl" if trl_scorer else "plain"
            if mode == "trl":
                out = self._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, compute_entropy=True
                )
                return out[0], out[1]
            with self.accelerator.autocast():  # the same mixed precision as TRL's scorer
                return plain_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, self.temperature)

        def _prefix_rft_loss(self, model, inputs):
            prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
            completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
            logits_to_keep = completion_ids.size(1)
            mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]

            per_token_logps, entropies = self._prefix_scores(model, input_ids, attention_mask, logits_to_keep)

            prefix_mask = inputs.get("prefix_mask")
            if prefix_mask is None:
                prefix_mask = torch.zeros_like(mask, dtype=torch.bool)
            prefix_mask = prefix_mask.bool() & mask.bool()
            keep = top_entropy_prefix_mask(entropies, prefix_mask, self.prefix.entropy_top_fraction)

            advantages = inputs["advantages"]
            if advantages.dim() == 1:
                advantages = advantages.unsqueeze(1)
            advantages = advantages.expand_as(per_token_logps).masked_fill(prefix_mask & ~keep, 0.0)

            old_per_token_logps = inputs.get("old_per_token_logps")
            if old_per_token_logps is None:
                old_per_token_logps = per_token_logps.detach()
            per_token_loss, ratio = clipped_token_loss(
                per_token_logps, old_per_token_logps, advantages, self.epsilon_low, self.epsilon_high,
                getattr(self.args, "delta", None),
            )
            if getattr(self, "use_vllm", False) and getattr(self, "vllm_importance_sampling_correction", False):
                per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]

            mode = "train" if self.model.training else "eval"
            accumulation = getattr(self, "current_gradient_accumulation_steps", None) or self.args.gradient_accumulation_steps
            accumulation = accumulation if mode == "train" else 1.0
            dapo_normalizer = None
            if self.loss_type == "dapo":
                dapo_normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
                if mode == "train":
                    dapo_normalizer = dapo_normalizer * accumulation / self.args.steps_per_generation
            loss = aggregate_loss(
                per_token_loss, mask, self.loss_type, self.max_completion_length, accumulation, dapo_normalizer
            )
            self.prefix_loss_calls += 1
            self._log_loss_metrics(mode, mask, entropies, ratio, advantages, prefix_mask, keep)
            return loss

        def _log_loss_metrics(self, mode, mask, entropies, ratio, advantages, prefix_mask, keep):
            mask_f = mask.float()
            reduce = self.accelerator.reduce

            def global_mean(x: torch.Tensor) -> float:
                totals = reduce(torch.stack([(x.float() * mask_f).sum(), mask_f.sum()]).detach(), reduction="sum")
                return (totals[0] / totals[1].clamp(min=1.0)).item()

            metrics = self._metrics[mode]
            if entropies is not None:
                metrics["entropy"].append(global_mean(entropies))
            low_clipped = (ratio < 1 - self.epsilon_low) & (advantages < 0)
            high_clipped = (ratio > 1 + self.epsilon_high) & (advantages > 0)
            metrics["clip_ratio/low_mean"].append(global_mean(low_clipped))
            metrics["clip_ratio/high_mean"].append(global_mean(high_clipped))
            metrics["clip_ratio/region_mean"].append(global_mean(low_clipped | high_clipped))
            n_prefix, n_kept = reduce(torch.stack([prefix_mask.sum(), keep.sum()]).float().detach(),
                                      reduction="sum").tolist()
            if n_prefix > 0:
                metrics["prefix/tokens_updated_share"].append(n_kept / n_prefix)

    PrefixRFTTrainer.__qualname__ = PrefixRFTTrainer.__name__
    return PrefixRFTTrainer


# -- charts -------------------------------------------------------------------------------------------------------
__all__ = [
    "METRICS", "LOSS_TYPES", "PrefixSettings", "PrefixDraw", "prefix_low_bound", "draw_prefix_fraction",
    "demonstration_text", "prefix_length", "plan_prefixes", "join_prefix", "prefix_token_mask",
    "prefix_rft_advantages", "token_advantages", "top_entropy_prefix_mask", "clipped_token_loss", "aggregate_loss",
    "plain_logps_and_entropies", "prefix_rft_trainer_class", "build_prefix_rft_trainer",
]
