"""GRPO without the completions that teach nothing: rows whose advantage is 0 skip the training forward.

With a pass/fail reward most groups give all their completions the same reward: early on every sample is wrong,
later every sample of a mastered prompt is right (the health check's "zero reward variance"; 60–90 % of the
groups on the arithmetic recipe). Their advantages are 0, and with β = 0 every term of their loss is 0 times
something, so they add nothing to the gradient; TRL still runs them through the training forward and backward.

Under the loss types normalised by the generation batch's token count (`dapo`, `cispo`, `vespo`: the
normaliser is `num_items_in_batch`, counted before this), dropping those rows before the forward leaves the loss
value and every gradient as they were, up to float rounding, and saves their share of the forward and backward.
A step where no row has an advantage returns a zero loss that still touches every trainable weight (zero
gradients, as the plain path gives), so the optimizer steps exactly as it would have.

Every other setting trains every row: β > 0 (the KL term has a gradient at advantage 0), the per-sequence or
per-row normalised losses (`grpo`, `bnpo`, `dr_grpo`, `sapo`, `luspo`), an entropy bonus or TRL's entropy mask
(batch statistics; a trainer whose own mask ranks only some rows keeps those through `rows_the_loss_needs`, as
Prefix-RFT does with its prefixed rows), MoE auxiliary losses, images, several processes (each DDP rank must run its
forward). TRL's metrics computed in the loss (`entropy`, clip ratios) then cover the rows that trained; `rows_trained` is the share.
"""
from __future__ import annotations

from typing import Any

import torch

# The loss types whose normaliser is the whole generation batch's completion tokens, not the rows of the forward.
BATCH_TOKEN_NORMALISED = ("dapo", "cispo", "vespo")


def informative_rows(advantages: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the rows with a non-zero advantage (any token of it, for (B, T) advantages).

    >>> informative_rows(torch.tensor([0.0, 1.5, -1.5, 0.0])).tolist()
    [False, True, True, False]
    """
    nonzero = advantages != 0
    return nonzero if nonzero.dim() == 1 else nonzero.flatten(1).any(dim=1)


def take_rows(inputs: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """`inputs` with every per-row tensor (first dimension = batch) restricted to the rows in `keep`; scalars such as
    `num_items_in_batch` and non-tensors as they are."""
    rows = keep.size(0)
    return {key: value[keep] if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == rows
            else value for key, value in inputs.items()}


def zero_loss(model: Any) -> torch.Tensor:
    """0, differentiable with respect to every trainable weight (each gets a zero gradient, not none: AdamW then
    steps every weight as after a batch whose gradient is 0)."""
    weights = [p for p in model.parameters() if p.requires_grad]
    return sum((p.reshape(-1)[0] * 0.0 for p in weights), torch.zeros((), device=weights[0].device))


IMAGE_KEYS = ("pixel_values", "image_grid_thw", "pixel_attention_mask", "image_sizes", "num_images")


class SkipZeroAdvantageMixin:
    """Put before TRL's GRPOTrainer (or a subclass) in the bases: `class T(SkipZeroAdvantageMixin, GRPOTrainer)`."""

    def _skip_zero_advantage_applies(self, inputs: dict[str, Any]) -> bool:
        return (self.model.training and self.beta == 0.0 and self.loss_type in BATCH_TOKEN_NORMALISED
                and self.top_entropy_quantile >= 1.0 and not getattr(self, "_entropy_bonus_enabled", False)
                and not getattr(self, "aux_loss_enabled", False) and self.accelerator.num_processes == 1
                and "advantages" in inputs and not any(inputs.get(key) is not None for key in IMAGE_KEYS))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._skip_zero_advantage_applies(inputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        keep = informative_rows(inputs["advantages"])
        # A trainer whose loss reads batch statistics of some rows (Prefix-RFT's entropy mask) names them.
        rows_the_loss_needs = getattr(self, "rows_the_loss_needs", None)
        if rows_the_loss_needs is not None:
            keep = keep | rows_the_loss_needs(inputs)
        self._metrics["train"]["rows_trained"].append(keep.float().mean().item())
        if keep.all():
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not keep.any():
            return zero_loss(model)
        return super().compute_loss(model, take_rows(inputs, keep), return_outputs, num_items_in_batch)
