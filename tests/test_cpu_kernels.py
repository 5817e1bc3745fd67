"""The PyTorch stand-in for TRL's Triton log-prob kernel matches a plain log-softmax, gradients included."""
from __future__ import annotations

import torch

from app.engine.training.cpu_kernels import TorchChunkedLogProb


def test_matches_log_softmax_and_entropy_with_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(5, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    targets = torch.tensor([0, 3, 10, 4, 4])
    log_probs, entropy, _, _, is_top1 = TorchChunkedLogProb.apply(
        hidden, weight, None, targets, 0.7, 4, None, 1.0, ("entropy", "is_top1")
    )
    logits = (hidden @ weight.T) / 0.7
    ref = torch.log_softmax(logits, -1)
    assert torch.allclose(log_probs, ref.gather(-1, targets[:, None]).squeeze(-1), atol=1e-5)
    assert torch.allclose(entropy, -(ref.exp() * ref).sum(-1), atol=1e-5)
    assert torch.equal(is_top1, logits.argmax(-1) == targets)
    log_probs.sum().backward()
    grad = weight.grad.clone()
    weight.grad = None
    ref.gather(-1, targets[:, None]).sum().backward()
    assert torch.allclose(grad, weight.grad, atol=1e-5)


def test_softcap_and_scale_follow_trl_order():
    hidden, weight, targets = torch.randn(3, 4), torch.randn(6, 4), torch.tensor([1, 2, 5])
    log_probs, *_ = TorchChunkedLogProb.apply(hidden, weight, None, targets, 2.0, 4, 3.0, 0.5, ())
    z = 3.0 * torch.tanh((hidden @ weight.T) * 0.5 / 3.0) / 2.0
    assert torch.allclose(log_probs, torch.log_softmax(z, -1).gather(-1, targets[:, None]).squeeze(-1), atol=1e-5)
