"""Shared-prompt GRPO: each prompt of a group is computed once, not once per completion.

GRPO samples `num_generations` completions of the same prompt. TRL's GRPOTrainer runs the whole prompt for every
completion twice: in generation (the prefill) and in the training forward that scores the completion tokens. On
the CPU recipe the prompt (~47 tokens with SmolLM2's default system prompt) is three times the completion (16),
so most of a step's FLOPs are the same prompt recomputed. Here the distinct prompts of a batch run once, their
key/value cache is gathered to every completion of their group, and only the completion tokens run per row:

- generation: the distinct prompts (all but their last token) are prefilled once; `generate` continues from that
  cache for every row (the last prompt token and the new tokens), so it produces what the plain path produces.
- training forward: the distinct prompts (all but their last token) run once with gradients; the rows run the
  last prompt token and the completion on top of the gathered cache. Positions, attention mask and the fused
  log-probability head are TRL's, so the per-token log-probabilities equal the plain path's up to float rounding,
  and the gradient reaches the prompt's LoRA weights through the cache (summed over the group, as in the plain
  path).

The plain path is used whenever this does not apply: no repeated prompt in the batch, multimodal inputs, tools,
vLLM or continuous batching, MoE auxiliary losses, gradient checkpointing, or a distributed run (a DDP-wrapped
model must be called once per backward).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def distinct_rows(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(index of one row per distinct prompt, row → distinct prompt), or None when no prompt repeats.

    >>> ids = torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [0, 5, 6]]); mask = (ids > 0).long()
    >>> first, inverse = distinct_rows(ids, mask)
    >>> first.tolist(), inverse.tolist()
    ([0, 2], [0, 0, 1, 0])
    """
    keyed = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    unique, inverse = torch.unique(keyed, dim=0, return_inverse=True)
    if unique.size(0) == keyed.size(0):
        return None
    first = torch.full((unique.size(0),), keyed.size(0), dtype=torch.long, device=keyed.device)
    first = first.scatter_reduce(0, inverse, torch.arange(keyed.size(0), device=keyed.device), reduce="amin")
    order = torch.argsort(first)  # distinct prompts in order of first appearance (stable, readable)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return first[order], rank[inverse]


def gather_cache(cache: Any, index: torch.Tensor) -> Any:
    """`cache` with its batch rows taken at `index` (rows may repeat): differentiable, unlike the in-place
    helpers of transformers' caches, which is what lets gradients flow back into the shared prompt."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)
    return cache


def prefill(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            position_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
    """A DynamicCache holding `input_ids` (no logits computed beyond one position)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=cache,
          use_cache=True, logits_to_keep=1, **kwargs)
    return cache


def generation_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids as `generate` derives them from a left-padded attention mask."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def generate_shared(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, **generate_kwargs: Any
                    ) -> torch.Tensor:
    """`model.generate(input_ids, attention_mask, …)` with each distinct prompt prefilled once. Same outputs as
    the plain call (greedy: the same tokens); falls back to it when no prompt repeats or a prompt is one token."""
    rows = distinct_rows(input_ids, attention_mask) if input_ids.size(1) > 1 else None
    if rows is None:
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
    first, inverse = rows
    head = slice(None, -1)  # generate must run at least the last prompt token itself
    cache = prefill(model, input_ids[first][:, head], attention_mask[first][:, head],
                    position_ids=generation_positions(attention_mask[first])[:, head])
    gather_cache(cache, inverse)
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
                          **generate_kwargs)


MIN_COMMON_PREFIX = 8  # tokens: below this, prefilling the shared part once saves less than it costs


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares, leaving each row at least one token of its own.

    >>> common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]])
    2
    >>> common_prefix_length([[1, 2], [1, 2]])
    1
    """
    if not rows:
        return 0
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for i in range(max(n, 0)):
        if any(r[i] != first[i] for r in rows):
            return i
    return max(n, 0)


def generate_common_prefix(model: Any, rows: Sequence[Sequence[int]], pad_id: int,
                           **generate_kwargs: Any) -> tuple[torch.Tensor, int] | None:
    """Greedy or sampled replies to prompts that begin alike (the chat template's system prompt and the start of
    every question) with the shared tokens run once: they are prefilled for one row and the cache copied to all,
    then each row's own tokens follow, padded on their left *after* the shared part (the attention mask hides the
    padding and positions count real tokens only, as `generate` does for left padding). Returns the output ids
    and the padded prompt width (new tokens start there), or None when the prompts share fewer than
    MIN_COMMON_PREFIX tokens (use the plain call)."""
    shared = common_prefix_length(rows)
    if shared < MIN_COMMON_PREFIX:
        return None
    width = max(len(r) for r in rows) - shared
    device = next(model.parameters()).device
    ids = torch.full((len(rows), shared + width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        own = row[shared:]
        ids[i, :shared] = torch.tensor(row[:shared])
        ids[i, shared + width - len(own):] = torch.tensor(own)
        mask[i, :shared] = 1
        mask[i, shared + width - len(own):] = 1
    ids, mask = ids.to(device), mask.to(device)
    try:
        cache = prefill(model, ids[:1, :shared], mask[:1, :shared])
    except TypeError:  # a model whose forward lacks logits_to_keep or a cache argument: the plain call
        return None
    gather_cache(cache, torch.zeros(len(rows), dtype=torch.long, device=device))
    out = model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, **generate_kwargs)
    return out, ids.size(1)


def shared_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                 compute_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Per-token log-probabilities (and entropies) of the last `logits_to_keep` tokens, as TRL's
    `_get_per_token_logps_and_entropies` computes them, with each distinct prompt run once. None: no prompt
    repeats (the caller takes the plain path)."""
    prompt_len = input_ids.size(1) - logits_to_keep
    if prompt_len < 2:
        return None
    rows = distinct_rows(input_ids[:, :prompt_len], attention_mask[:, :prompt_len])
    if rows is None:
        return None
    first, inverse = rows
    head = prompt_len - 1  # the last prompt token runs per row: its output predicts the first completion token
    cache = prefill(model, input_ids[first, :head], attention_mask[first, :head])
    gather_cache(cache, inverse)
    tail = input_ids[:, head:]
    labels = tail.masked_fill(attention_mask[:, head:] == 0, -100)
    outputs = model(input_ids=tail, attention_mask=attention_mask, past_key_values=cache, labels=labels,
                    fused_lm_head=True)
    entropy = outputs.entropy[:, -logits_to_keep:] if compute_entropy else None
    return outputs.log_probs[:, -logits_to_keep:], entropy


class SharedPrefixMixin:
    """Put before TRL's GRPOTrainer (or a subclass) in the bases: `class T(SharedPrefixMixin, GRPOTrainer)`."""

    shared_prefix_calls: dict[str, int]

    def _shared_prefix_applies(self) -> bool:
        args = self.args
        return not (self.use_vllm or getattr(self, "use_transformers_continuous_batching", False)
                    or getattr(self, "tools", None) or getattr(self, "_is_vlm", False)
                    or args.gradient_checkpointing or self.accelerator.num_processes > 1
                    or getattr(self, "aux_loss_enabled", False))

    def _count(self, key: str) -> None:
        calls = self.__dict__.setdefault("shared_prefix_calls", {})
        calls[key] = calls.get(key, 0) + 1

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                           batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                           **multimodal):
        usable = (self._shared_prefix_applies() and not compute_aux_loss
                  and all(value is None for value in multimodal.values()))
        if usable and (batch_size is None or batch_size >= input_ids.size(0)):
            with self.accelerator.autocast():
                shared = shared_logps(model, input_ids, attention_mask, logits_to_keep, compute_entropy)
            if shared is not None:
                self._count("forward_shared")
                return shared[0], shared[1], None
        self._count("forward_plain")
        return super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
            compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **multimodal)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        has_images = images is not None and any(image is not None for image in images)
        if not self._shared_prefix_applies() or has_images or multimodal_fields:
            self._count("generate_plain")
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        from trl.models import unwrap_model_for_generation
        from trl.trainer.utils import pad

        prompt_tensors = [torch.tensor(ids) for ids in prompt_ids]
        padded = pad(prompt_tensors, padding_value=self._tokenizer.pad_token_id, padding_side="left")
        mask = pad([torch.ones_like(t) for t in prompt_tensors], padding_value=0, padding_side="left")
        device = self.accelerator.device
        inputs = {"input_ids": padded.to(device), "attention_mask": mask.to(device)}
        with (
            unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                        gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                        generation_kwargs=self.generation_kwargs) as unwrapped,
            torch.no_grad(),
        ):
            out = generate_shared(unwrapped, inputs["input_ids"], inputs["attention_mask"],
                                  generation_config=self.generation_config)
        self._count("generate_shared")
        completion_ids = out[:, inputs["input_ids"].size(1):]
        return [strip_after_eos(row, self.eos_token_ids) for row in completion_ids.cpu()], None


def strip_after_eos(row: torch.Tensor, eos_ids: list[int]) -> list[int]:
    """The completion's tokens up to and including its first EOS (TRL's masking of what follows).

    >>> strip_after_eos(torch.tensor([5, 6, 2, 9, 9]), [2])
    [5, 6, 2]
    """
    tokens = row.tolist()
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1]
    return tokens
