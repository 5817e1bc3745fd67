"""A PyTorch stand-in for TRL's Triton log-probability kernel, for machines without Triton (CPU-only PyTorch).

TRL 1.15 computes per-token log-probabilities for GRPO and SFT through a fused LM head whose kernel
(`trl.kernels.ChunkedLogProbFunction`) is written in Triton. Triton ships with CUDA builds of PyTorch only; on a
CPU-only install TRL leaves `trl.trainer.utils._ChunkedLogProbFunction = None` and the first training step fails
with "'NoneType' object has no attribute 'apply'". Unsloth's CPU backend fills that slot with its own kernel; the
plain TRL backend fills it with this one: the same outputs, computed with ordinary PyTorch ops (autograd gives the
backward). It materialises the logits of the labelled tokens, which is fine for the small models a CPU trains.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

OPTIONAL_OUTPUTS = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


class TorchChunkedLogProb:
    """Same call as TRL's `_ChunkedLogProbFunction.apply`; returns (log_probs, entropy, log_sum_sq_probs,
    mean_logits, is_top1), each None unless requested in `outputs` (log_probs always)."""

    @staticmethod
    def apply(
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        temperature: float,
        chunk_size: int,
        final_logit_softcapping: float | None = None,
        logit_scale: float | None = 1.0,
        outputs: tuple[str, ...] = OPTIONAL_OUTPUTS,
    ) -> tuple[Any, ...]:
        # Same transform order as TRL's kernel: scale, soft-cap, then temperature; statistics in fp32.
        logits = F.linear(hidden, weight.to(hidden.dtype), None if bias is None else bias.to(hidden.dtype)).float()
        if logit_scale not in (None, 1.0):
            logits = logits * logit_scale
        if final_logit_softcapping is not None:
            logits = final_logit_softcapping * torch.tanh(logits / final_logit_softcapping)
        logits = logits / temperature
        log_z = torch.logsumexp(logits, dim=-1)
        target_logit = logits.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
        log_probs = target_logit - log_z
        entropy = log_sum_sq = mean_logits = is_top1 = None
        if "entropy" in outputs:
            probs = torch.softmax(logits, dim=-1)
            entropy = log_z - (probs * logits).sum(-1)
        with torch.no_grad():
            if "log_sum_sq_probs" in outputs:
                log_sum_sq = torch.logsumexp(2 * logits, dim=-1) - 2 * log_z
            if "mean_logits" in outputs:
                mean_logits = logits.mean(-1)
            if "is_top1" in outputs:
                is_top1 = logits.argmax(-1) == targets
        return log_probs, entropy, log_sum_sq, mean_logits, is_top1


def ensure_trl_logprob_kernel() -> bool:
    """Fill TRL's kernel slot when Triton is missing; returns True when the stand-in was installed."""
    import trl.trainer.utils as trl_utils

    if getattr(trl_utils, "_ChunkedLogProbFunction", None) is not None:
        return False
    trl_utils._ChunkedLogProbFunction = TorchChunkedLogProb
    return True
