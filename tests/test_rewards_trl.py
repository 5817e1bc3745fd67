"""Built-ins and a sandboxed user reward go straight into a real trl.GRPOTrainer (tiny model, CPU, one step)."""
from __future__ import annotations

import pytest

import rewards

pytest.importorskip("trl")

USER_SOURCE = '''\
def short_reply(completions, trainer_state=None, **kwargs):
    """Up to 1.0 for replies shorter than 20 characters."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    print("step", trainer_state.global_step, "batch", len(texts))
    return [max(0.0, 1 - len(t) / 20) for t in texts]
'''

BROKEN_SOURCE = '''\
def broken(completions, **kwargs):
    return [1 / 0 for _ in completions]
'''


class _TorchChunkedLogProb:
    """Plain-torch stand-in for TRL's Triton `ChunkedLogProbFunction` (TRL 1.15 needs Triton for GRPO's fused LM
    head; Triton only ships for GPUs). Same arguments and outputs, full logits: fine for a tiny model."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, softcap=None, logit_scale=1.0,
              outputs=("log_probs",)):
        import torch

        logits = torch.nn.functional.linear(hidden.float(), weight.float(), None if bias is None else bias.float())
        logits = logits * logit_scale
        if softcap:
            logits = softcap * torch.tanh(logits / softcap)
        logp = torch.log_softmax(logits / temperature, dim=-1)
        target_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp.exp() * logp).sum(-1) if "entropy" in outputs else None
        log_sum_sq = torch.logsumexp(2 * logp, -1).detach() if "log_sum_sq_probs" in outputs else None
        mean_logits = logits.mean(-1).detach() if "mean_logits" in outputs else None
        is_top1 = (logits.argmax(-1) == targets) if "is_top1" in outputs else None
        return target_logp, entropy, log_sum_sq, mean_logits, is_top1


@pytest.fixture
def cpu_fused_lm_head(monkeypatch):
    import trl.trainer.utils as trl_utils

    if getattr(trl_utils, "_ChunkedLogProbFunction", object()) is None:  # no Triton (CPU-only torch)
        monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", _TorchChunkedLogProb)


def test_grpo_trainer_one_step_with_builtins_and_sandboxed_reward(tiny_model_dir, tmp_path, cpu_fused_lm_head):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": [{"role": "user", "content": f"What is {a} + {b}? Reply with only the number."}],
             "answer": str(a + b)} for a, b in [(17, 25), (3, 4), (10, 5), (1, 1)]]
    dataset = Dataset.from_list(rows)
    user = rewards.load_user_reward(USER_SOURCE, timeout_s=5)
    broken = rewards.load_user_reward(BROKEN_SOURCE, timeout_s=5)
    funcs = [
        rewards.guard(rewards.get("numeric_answer")),
        rewards.guard(rewards.get("format_tags", mode="partial")),
        rewards.get("repetition"),  # unguarded built-ins work too
        rewards.guard(user),
        rewards.guard(broken),
    ]
    results = rewards.dry_run(funcs, [{"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["answer"]}],
                                       "answer": r["answer"]} for r in rows])
    assert [r.ok for r in results] == [True, True, True, True, False]

    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to=[], max_completion_length=8,
        num_generations=2, per_device_train_batch_size=2, gradient_accumulation_steps=1, max_steps=1,
        logging_steps=1, save_strategy="no", learning_rate=1e-5, temperature=1.0,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=funcs, args=args,
                          train_dataset=dataset)
    try:
        trainer.train()
    finally:
        user.close()
        broken.close()

    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    for name in ("numeric_answer", "format_tags", "repetition", "short_reply"):
        assert f"rewards/{name}/mean" in logs, sorted(logs)
    assert 0.0 <= logs["rewards/short_reply/mean"] <= 1.0
    # the broken reward cost its own scores (None -> NaN mean), never the step
    guarded_broken = funcs[4]
    assert guarded_broken.calls >= 1 and guarded_broken.failed_calls == guarded_broken.calls
    assert guarded_broken.pop_error_count() == 2 * guarded_broken.calls
    assert "ZeroDivisionError" in guarded_broken.last_error and "line 2" in guarded_broken.last_error
    assert funcs[3].failed_calls == 0 and "step 0 batch 2" in user.last_prints
    with pytest.raises(rewards.RewardFailureThresholdExceeded, match="'broken'"):
        rewards.check_failure_threshold(funcs, min_calls=1)
