"""GRPO rows with a zero advantage left out of the training forward (app/engine/training/zero_advantage.py): the same
loss and gradients as TRL's plain path on the tiny model, zero gradients on a step with no informative row, and the
settings where every row must train."""
from __future__ import annotations

import pytest
import torch

from app.engine.training import zero_advantage
from tests.test_shared_prefix import PROMPTS, grouped_batch


def test_informative_rows_and_take_rows():
    adv = torch.tensor([[0.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])  # (B, T) advantages: any non-zero token counts
    keep = zero_advantage.informative_rows(adv)
    assert keep.tolist() == [False, True, True]
    inputs = {"advantages": adv, "completion_ids": torch.arange(6).view(3, 2), "num_items_in_batch": torch.tensor(5),
              "old_per_token_logps": None, "note": "kept"}
    taken = zero_advantage.take_rows(inputs, keep)
    assert taken["completion_ids"].tolist() == [[2, 3], [4, 5]] and taken["advantages"].shape == (2, 2)
    assert taken["num_items_in_batch"].item() == 5 and taken["old_per_token_logps"] is None
    assert taken["note"] == "kept"


class _Recorder:
    """The compute_loss the mixin calls (TRL's, stood in for): records the rows it was given."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.__dict__.setdefault("rows", []).append(inputs["completion_ids"].size(0))
        return torch.tensor(1.0)


def make_trainer(tiny_model_dir, tmp_path, cls, **config):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from app.engine.training.cpu_kernels import ensure_trl_logprob_kernel

    ensure_trl_logprob_kernel()

    def length_reward(completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=12, num_generations=4,
                      max_completion_length=6, max_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                      disable_tqdm=True, gradient_checkpointing=False, **{"beta": 0.0, "loss_type": "dapo", **config})
    rows = [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS * 4]
    trainer = cls(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                  processing_class=AutoTokenizer.from_pretrained(tiny_model_dir), reward_funcs=[length_reward],
                  args=args, train_dataset=Dataset.from_list(rows), peft_config=LoraConfig(r=4, lora_alpha=8))
    torch.manual_seed(3)
    with torch.no_grad():  # a perturbed adapter, so the gradient reaches every LoRA weight
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train at each step
    return trainer


def step_inputs(tok, advantages: torch.Tensor) -> dict:
    """A generation batch as TRL's `_generate_and_score_completions` hands it to the loss: 3 prompts × 4
    completions (one ended early), the DAPO normaliser counted over all of them."""
    prompt_ids, prompt_mask = grouped_batch(tok)
    torch.manual_seed(0)
    completion_ids = torch.randint(3, 200, (prompt_ids.size(0), 6))
    completion_mask = torch.ones_like(completion_ids)
    completion_mask[5, 2:] = 0
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask, "advantages": advantages, "old_per_token_logps": None,
            "num_items_in_batch": completion_mask.sum()}


def loss_and_grads(trainer, compute_loss, inputs) -> tuple[float, dict[str, torch.Tensor]]:
    trainer.model.zero_grad(set_to_none=True)
    loss = compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    return loss.item(), grads


@pytest.fixture
def skipping_trainer(tiny_model_dir, tmp_path):
    from trl import GRPOTrainer

    class Skipping(zero_advantage.SkipZeroAdvantageMixin, GRPOTrainer):
        pass

    return make_trainer(tiny_model_dir, tmp_path, Skipping)


def test_skipping_zero_advantage_rows_keeps_the_loss_and_gradients(skipping_trainer):
    from trl import GRPOTrainer

    trainer = skipping_trainer
    # the first and last groups all scored alike (advantage 0), the second one did not
    advantages = torch.tensor([0.0] * 4 + [1.2, -0.4, -0.4, -0.4] + [0.0] * 4)
    inputs = step_inputs(trainer.processing_class, advantages)
    plain_loss, plain = loss_and_grads(trainer, lambda m, x: GRPOTrainer.compute_loss(trainer, m, x), inputs)
    trainer._metrics["train"].clear()
    rows = []
    original = GRPOTrainer._get_per_token_logps_and_entropies

    def counting(self, model, input_ids, *args, **kwargs):
        rows.append(input_ids.size(0))
        return original(self, model, input_ids, *args, **kwargs)

    GRPOTrainer._get_per_token_logps_and_entropies = counting
    try:
        skip_loss, skipped = loss_and_grads(trainer, trainer.compute_loss, inputs)
    finally:
        GRPOTrainer._get_per_token_logps_and_entropies = original
    assert rows == [4]  # only the informative group ran the forward
    assert trainer._metrics["train"]["rows_trained"] == [pytest.approx(4 / 12)]
    assert skip_loss == pytest.approx(plain_loss, rel=1e-5, abs=1e-7) and plain_loss != 0.0
    assert any(g.abs().sum() > 0 for g in plain.values())
    for name in plain:
        torch.testing.assert_close(skipped[name], plain[name], atol=1e-6, rtol=1e-4)


def test_a_step_without_informative_rows_gives_zero_gradients(skipping_trainer):
    from trl import GRPOTrainer

    trainer = skipping_trainer
    inputs = step_inputs(trainer.processing_class, torch.zeros(12))
    plain_loss, plain = loss_and_grads(trainer, lambda m, x: GRPOTrainer.compute_loss(trainer, m, x), inputs)
    skip_loss, skipped = loss_and_grads(trainer, trainer.compute_loss, inputs)
    assert skip_loss == plain_loss == 0.0
    assert skipped.keys() == plain.keys()
    assert all(torch.count_nonzero(g) == 0 for g in list(skipped.values()) + list(plain.values()))


@pytest.mark.parametrize("config", [{"beta": 0.04}, {"loss_type": "grpo"}, {"loss_type": "dr_grpo"},
                                    {"top_entropy_quantile": 0.5}])
def test_every_row_trains_where_skipping_would_change_the_update(tiny_model_dir, tmp_path, config):
    class Skipping(zero_advantage.SkipZeroAdvantageMixin, _Recorder):
        pass

    trainer = make_trainer(tiny_model_dir, tmp_path, lambda **kw: _skipping_grpo(Skipping, **kw), **config)
    inputs = step_inputs(trainer.processing_class, torch.tensor([0.0] * 8 + [1.0, -1.0, 0.5, -0.5]))
    trainer.compute_loss(trainer.model, inputs)
    assert trainer.rows == [12] and "rows_trained" not in trainer._metrics["train"]


def _skipping_grpo(recorder_mixin: type, **kwargs):
    """A GRPOTrainer whose loss is the recorder's (after the mixin's decision), built like the real one."""
    from trl import GRPOTrainer

    cls = type("RecordingGRPO", (recorder_mixin, GRPOTrainer), {})
    return cls(**kwargs)
