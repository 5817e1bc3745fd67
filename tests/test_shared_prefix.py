"""Shared-prompt GRPO (app/engine/training/shared_prefix.py) against the plain path on the tiny model: the same
greedy completions, the same per-token log-probabilities and entropies, the same gradients; and a GRPO run that
takes the shared path."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.engine.training import shared_prefix

PROMPTS = ["What is 2 + 3?", "What is 17 + 25? Reply with only the number.", "Hi"]


def lora_model(model_dir: Path):
    """The tiny model with a perturbed LoRA on every linear layer (so the adapter changes the outputs)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    return model.eval(), tok


def grouped_batch(tok, group: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prompt `group` times in a row, left-padded to one length (prompts of different lengths)."""
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in PROMPTS for _ in range(group)]
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert len(set(enc["attention_mask"].sum(1).tolist())) == len(PROMPTS)  # the padding is exercised
    return enc["input_ids"], enc["attention_mask"]


def test_evaluation_with_a_shared_system_prompt_gives_the_plain_replies(tiny_model_dir):
    """Held-out evaluation runs the tokens every prompt begins with (system prompt, "What is ") once per batch:
    the same greedy replies and lengths as the plain left-padded batch, the prompts differing in length."""
    from app.engine.evaluation.evaluate import generate_completions

    model, tok = lora_model(tiny_model_dir)
    questions = ["What is 2 + 3?", "What is 17 + 25? Reply with only the number.", "What is 100 + 1?", "What is 9?"]
    prompts = [[{"role": "system", "content": "You are a careful assistant who answers briefly."},
                {"role": "user", "content": q}] for q in questions]
    rows = tok([tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts],
               add_special_tokens=False)["input_ids"]
    assert shared_prefix.common_prefix_length(rows) >= shared_prefix.MIN_COMMON_PREFIX
    assert len({len(r) for r in rows}) > 1  # the padding between the shared part and each row's own is exercised
    plain = generate_completions(model, tok, prompts, max_new_tokens=10, batch_size=4, shared_prefix=False)
    shared = generate_completions(model, tok, prompts, max_new_tokens=10, batch_size=4)
    assert shared == plain
    calls = []
    real_generate = model.generate
    model.generate = lambda **kw: calls.append(kw) or real_generate(**kw)
    generate_completions(model, tok, prompts, max_new_tokens=2, batch_size=4)
    assert calls and calls[0]["past_key_values"] is not None  # the shared path ran
    # prompts that share too little take the plain call
    assert shared_prefix.generate_common_prefix(model, [[1, 2, 3], [1, 4, 5]], tok.pad_token_id) is None


def test_distinct_rows_finds_groups_in_any_order():
    ids = torch.tensor([[1, 2], [3, 4], [1, 2], [3, 4], [5, 6]])
    first, inverse = shared_prefix.distinct_rows(ids, torch.ones_like(ids))
    assert first.tolist() == [0, 1, 4] and inverse.tolist() == [0, 1, 0, 1, 2]
    assert shared_prefix.distinct_rows(ids[:2], torch.ones_like(ids[:2])) is None  # nothing to share
    # the same tokens under a different padding mask are different prompts
    mask = torch.tensor([[1, 1], [1, 1], [0, 1], [1, 1], [1, 1]])
    assert shared_prefix.distinct_rows(ids, mask)[0].tolist() == [0, 1, 2, 4]


def test_shared_generation_gives_the_plain_greedy_completions(tiny_model_dir):
    model, tok = lora_model(tiny_model_dir)
    ids, mask = grouped_batch(tok)
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        shared = shared_prefix.generate_shared(model, ids, mask, **kwargs)
    assert shared.shape == plain.shape
    assert torch.equal(shared, plain)
    assert len({tuple(r) for r in plain[:, ids.size(1):].tolist()}) > 1  # the prompts lead to different replies


def fused(model):
    """TRL's fused log-prob head on the base model, as GRPOTrainer adds it (with the CPU kernel)."""
    from trl.trainer.utils import add_fused_lm_head

    from app.engine.training.cpu_kernels import ensure_trl_logprob_kernel

    ensure_trl_logprob_kernel()
    add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy"))
    return model


def plain_logps(model, input_ids, attention_mask, logits_to_keep):
    """What TRL's `_get_per_token_logps_and_entropies` computes for these rows."""
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :-logits_to_keep] = -100
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    return out.log_probs[:, -logits_to_keep:], out.entropy[:, -logits_to_keep:]


def lora_grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_shared_logps_and_gradients_equal_the_plain_path(tiny_model_dir):
    model, tok = lora_model(tiny_model_dir)
    model = fused(model).train()
    prompt_ids, prompt_mask = grouped_batch(tok)
    torch.manual_seed(0)
    completions = torch.randint(3, 200, (prompt_ids.size(0), 6))
    completion_mask = torch.ones_like(completions)
    completion_mask[1, 3:] = 0  # a completion that ended early (right padding)
    input_ids = torch.cat([prompt_ids, completions], 1)
    attention_mask = torch.cat([prompt_mask, completion_mask], 1)

    logps, entropy = plain_logps(model, input_ids, attention_mask, 6)
    (logps * completion_mask).sum().backward()
    plain_grads = lora_grads(model)
    s_logps, s_entropy = shared_prefix.shared_logps(model, input_ids, attention_mask, 6, compute_entropy=True)
    (s_logps * completion_mask).sum().backward()
    shared_grads = lora_grads(model)

    assert s_logps.shape == logps.shape
    keep = completion_mask.bool()
    torch.testing.assert_close(s_logps[keep], logps[keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s_entropy[keep], entropy[keep], atol=1e-5, rtol=1e-5)
    assert plain_grads.keys() == shared_grads.keys() and any("lora_A" in n for n in plain_grads)
    for name in plain_grads:  # the prompt's LoRA weights get the group's summed gradient through the cache
        torch.testing.assert_close(shared_grads[name], plain_grads[name], atol=1e-5, rtol=1e-4)


def test_grpo_run_takes_the_shared_path(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from app.engine.training.cpu_kernels import ensure_trl_logprob_kernel

    ensure_trl_logprob_kernel()

    class Shared(shared_prefix.SharedPrefixMixin, GRPOTrainer):
        pass

    def length_reward(completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    rows = [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS * 4]
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=6, max_steps=2, report_to=[], use_cpu=True, save_strategy="no",
                      logging_steps=1, disable_tqdm=True, gradient_checkpointing=False, beta=0.04)
    trainer = Shared(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                     processing_class=AutoTokenizer.from_pretrained(tiny_model_dir), reward_funcs=[length_reward],
                     args=args, train_dataset=Dataset.from_list(rows), peft_config=LoraConfig(r=4, lora_alpha=8))
    trainer.train()
    calls = trainer.shared_prefix_calls
    # every generation and every forward (policy and, with beta > 0, the reference) shared the prompts
    assert calls.get("generate_shared") == 2 and "generate_plain" not in calls
    assert calls.get("forward_shared", 0) >= 4 and "forward_plain" not in calls
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)


@pytest.mark.parametrize("tokens,eos,expected", [([4, 5], [2], [4, 5]), ([2, 7], [2, 3], [2]), ([4, 3, 2], [2, 3], [4, 3])])
def test_strip_after_eos(tokens, eos, expected):
    assert shared_prefix.strip_after_eos(torch.tensor(tokens), eos) == expected
