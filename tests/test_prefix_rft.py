"""Prefix-RFT (app/engine/methods/prefix_rft/): schedule, prefix cutting within the chat template, advantages, the entropy
mask and the loss masking on the tiny random Llama (fixed seeds), the worker end to end with TRL in-process, and
the worker under Unsloth in a subprocess (asserting that its loss, not GRPOTrainer's, is the one that runs)."""
from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.engine.core.spec import RewardSpec, RunSpec
from app.engine.methods.prefix_rft.trainer import (
    PrefixSettings,
    prefix_rft_trainer_class,
    aggregate_loss,
    clipped_token_loss,
    demonstration_text,
    draw_prefix_fraction,
    join_prefix,
    plan_prefixes,
    prefix_length,
    prefix_low_bound,
    prefix_rft_advantages,
    prefix_token_mask,
    token_advantages,
    top_entropy_prefix_mask,
)

ROOT = Path(__file__).resolve().parents[1]
PROMPT = [{"role": "user", "content": "What is 12 + 7? Reply with only the number."}]
DEMO = "12 + 7 = 19"


# -- schedule -----------------------------------------------------------------------------------------------------
def test_cosine_schedule_follows_the_official_controller():
    official = lambda t, T: 0.05 + 0.5 * (1 + math.cos(math.pi * t / T)) * (0.95 - 0.05)  # noqa: E731
    for t in (0, 1, 37, 250, 499, 500):
        assert prefix_low_bound(t, 500) == pytest.approx(official(t, 500))
    assert prefix_low_bound(0, 500) == pytest.approx(0.95)
    assert prefix_low_bound(250, 500) == pytest.approx(0.5)
    assert prefix_low_bound(900, 500) == pytest.approx(0.05)  # stays at the end value after the decay
    assert prefix_low_bound(50, 100, schedule="linear") == pytest.approx(0.5)
    assert prefix_low_bound(0, 100, schedule="constant") == pytest.approx(0.05)
    values = [prefix_low_bound(t, 40) for t in range(41)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay


def test_fraction_is_drawn_uniformly_between_the_bounds():
    rng = random.Random(0)
    draws = [draw_prefix_fraction(rng, 0.3, 0.95) for _ in range(4000)]
    assert min(draws) >= 0.3 and max(draws) <= 0.95
    assert sum(draws) / len(draws) == pytest.approx((0.3 + 0.95) / 2, abs=0.01)
    assert draw_prefix_fraction(rng, 0.95, 0.95) == 0.95  # step 0 of the paper's schedule


# -- cutting the demonstration ------------------------------------------------------------------------------------
def test_prefix_length_rules():
    assert prefix_length(11, 0.95) == 10  # int(0.95 × 11)
    assert prefix_length(11, 0.99) == 10  # at most n − 1: the model always writes the rest
    assert prefix_length(11, 0.05) == 1  # at least min_prefix_tokens
    assert prefix_length(11, 0.05, min_tokens=3) == 3
    assert prefix_length(1, 0.9) == 0 and prefix_length(0, 0.9) == 0  # too short to cut: an on-policy rollout
    assert join_prefix([1, 2, 3], [4, 5, 6], 4) == [1, 2, 3, 4]
    assert demonstration_text(" ") is None and demonstration_text(19) == "19"
    assert demonstration_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "ab"


def test_plan_prefixes_the_last_rollouts_of_each_group_with_a_demonstration():
    rows = [{"solution": DEMO}] * 4 + [{"solution": ""}] * 4 + [{"solution": "1 + 1 = 2"}] * 4
    tokenize = lambda text: list(text.encode())  # noqa: E731  (one token per byte)
    plan = plan_prefixes(rows, "solution", 4, 2, 0.2, 0.95, tokenize, random.Random(0))
    # group 2 has no demonstration: all on-policy
    assert [d is not None for d in plan] == [False, False, True, True] + [False] * 4 + [False, False, True, True]
    plan = plan_prefixes(rows, "solution", 4, 1, 0.2, 0.95, tokenize, random.Random(0))
    first = plan[3]
    assert first.ids == list(DEMO.encode())[: first.length] and first.demo_tokens == len(DEMO)
    assert 0.2 <= first.fraction <= 0.95 and first.length == prefix_length(len(DEMO), first.fraction)
    again = plan_prefixes(rows, "solution", 4, 1, 0.2, 0.95, tokenize, random.Random(0))
    assert [d and d.ids for d in again] == [d and d.ids for d in plan]  # seeded
    # `offset`: this process's rows start mid-way through the gathered batch (multi-process generation)
    shifted = plan_prefixes(rows[:2], "solution", 4, 1, 0.95, 0.95, tokenize, random.Random(0), offset=2)
    assert [d is not None for d in shifted] == [False, True]


def _chat_cut_matches(tok) -> None:
    demo_ids = tok(DEMO, add_special_tokens=False)["input_ids"]
    prompt_ids = list(tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    for length in range(1, len(demo_ids)):
        prefix_text = tok.decode(demo_ids[:length])
        assert DEMO.startswith(prefix_text)  # cut at a token boundary of the demonstration's own tokenization
        rendered = tok.apply_chat_template(
            PROMPT + [{"role": "assistant", "content": prefix_text}], continue_final_message=True, tokenize=False
        )
        # The context the continuation is generated from (prompt ids + prefix ids) is the assistant turn continued.
        assert tok.decode(prompt_ids + demo_ids[:length]) == rendered


def test_prefix_cut_continues_the_assistant_turn_of_the_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    _chat_cut_matches(AutoTokenizer.from_pretrained(tiny_model_dir))


def test_prefix_cut_with_the_default_models_tokenizer():
    from app.engine.training.models import default_model_dir

    folder = default_model_dir()
    if not (folder / "tokenizer.json").exists():
        pytest.skip("the default model has not been converted on this machine yet")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    assert len(tok(DEMO, add_special_tokens=False)["input_ids"]) < len(DEMO)  # real multi-character tokens
    _chat_cut_matches(tok)


# -- advantages ---------------------------------------------------------------------------------------------------
def test_advantages_follow_the_official_dr_grpo_prefix_code():
    rewards = torch.tensor([0.0, 1.0, 0.5, 0.8, 1.0, 1.0, 0.0, 0.0])
    prefixed = torch.tensor([False, False, False, True] * 2)
    sequence, prefix, mean_on = prefix_rft_advantages(rewards, prefixed, 4)
    # group 1: on-policy mean (0 + 1 + 0.5) / 3 = 0.5; group 2: 2 / 3
    assert mean_on.tolist() == pytest.approx([0.5] * 4 + [2 / 3] * 4)
    assert sequence.tolist() == pytest.approx([-0.5, 0.5, 0.0, 0.8, 1 / 3, 1 / 3, -2 / 3, 0.0])  # continuation: raw r
    assert prefix.tolist() == pytest.approx([0, 0, 0, 0.3, 0, 0, 0, -2 / 3])  # r_prefixed − on-policy mean
    centred, _, _ = prefix_rft_advantages(rewards, prefixed, 4, continuation="centred")
    assert centred[3].item() == pytest.approx(0.3) and centred[7].item() == pytest.approx(-2 / 3)
    # no std scaling (Dr. GRPO): a group with rewards 0 / 10 keeps the raw differences
    sequence, _, _ = prefix_rft_advantages(torch.tensor([0.0, 10.0, 10.0, 10.0]), torch.zeros(4, dtype=torch.bool), 4)
    assert sequence.tolist() == pytest.approx([-7.5, 2.5, 2.5, 2.5])


def test_unscorable_rollouts_get_no_advantage():
    nan = float("nan")
    rewards = torch.tensor([1.0, nan, 0.0, 1.0, nan, nan, nan, 1.0])
    prefixed = torch.tensor([False, False, False, True] * 2)
    sequence, prefix, _ = prefix_rft_advantages(rewards, prefixed, 4)
    assert sequence[:4].tolist() == pytest.approx([0.5, 0.0, -0.5, 1.0])  # NaN row left out of the mean, advantage 0
    assert prefix[3].item() == pytest.approx(0.5)
    assert sequence[4:].tolist() == pytest.approx([0, 0, 0, 1.0]) and prefix[7].item() == 0.0  # no on-policy baseline


def test_token_advantages_and_prefix_mask():
    completion_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    mask = prefix_token_mask(torch.tensor([2, 4]), completion_mask)
    assert mask.tolist() == [[True, True, False, False, False], [True, True, True, False, False]]
    adv = token_advantages(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, -2.0]), mask)
    assert adv.tolist() == [[-1, -1, 1, 1, 1], [-2, -2, -2, 2, 2]]


# -- the entropy mask ---------------------------------------------------------------------------------------------
def test_entropy_mask_keeps_the_top_fifth_of_prefix_tokens_only():
    entropies = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 9.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    prefix_mask = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]]).bool()
    keep = top_entropy_prefix_mask(entropies, prefix_mask, 0.2)
    # 5 prefix tokens: floor(5 × 0.8) = 4 lowest dropped; the high-entropy non-prefix tokens are not ranked
    assert keep.tolist() == [[False, True, False, False, False, False], [False] * 6]
    ten = torch.arange(10.0).flip(0).unsqueeze(0)  # entropies 9..0
    keep = top_entropy_prefix_mask(ten, torch.ones(1, 10, dtype=torch.bool), 0.2)
    assert keep[0].nonzero().flatten().tolist() == [0, 1]  # the two highest
    one = top_entropy_prefix_mask(torch.tensor([[0.0, 3.0]]), torch.tensor([[True, False]]), 0.2)
    assert one.tolist() == [[True, False]]  # floor(0.8) = 0 dropped, as the official int(n × 0.8)
    everything = top_entropy_prefix_mask(ten, torch.ones(1, 10, dtype=torch.bool), 1.0)
    assert everything.all()
    assert not top_entropy_prefix_mask(ten, torch.zeros(1, 10, dtype=torch.bool), 0.2).any()


def test_loss_pieces_match_trl_formulas():
    logps = torch.log(torch.tensor([[0.5, 0.25], [0.1, 0.9]]))
    old = torch.log(torch.tensor([[0.25, 0.25], [0.1, 0.3]]))
    adv = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    loss, ratio = clipped_token_loss(logps, old, adv, 0.2, 0.2, delta=None)
    assert torch.allclose(ratio, torch.tensor([[2.0, 1.0], [1.0, 3.0]]))
    assert torch.allclose(loss, torch.tensor([[-1.2, -1.0], [1.0, 3.0]]))  # pessimistic: clipped gain, full loss
    loss, _ = clipped_token_loss(logps, old, adv, 0.2, 0.2, delta=2.5)
    assert loss[1, 1].item() == pytest.approx(2.5)  # dual clip for negative advantages
    mask = torch.tensor([[1, 1], [1, 0]])
    per_token = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert aggregate_loss(per_token, mask, "dr_grpo", 4).item() == pytest.approx(6 / 8)
    assert aggregate_loss(per_token, mask, "grpo", 4, accumulation_steps=2).item() == pytest.approx(2.25 / 2)
    assert aggregate_loss(per_token, mask, "bnpo", 4).item() == pytest.approx(2.0)
    assert aggregate_loss(per_token, mask, "dapo", 4, dapo_normalizer=torch.tensor(6.0)).item() == pytest.approx(1.0)


# -- the trainer on the tiny model --------------------------------------------------------------------------------
REWARD_BY_POSITION = [0.0, 1.0, 0.5, 0.8]  # the 4th rollout of the group is the prefixed one


def positional_reward(completions, **kwargs):
    return [REWARD_BY_POSITION[i % 4] for i in range(len(completions))]


@pytest.fixture(scope="module")
def trainer(tiny_model_dir, tmp_path_factory):
    try:  # plain TRL on a CPU without Triton needs the PyTorch stand-in for its log-prob kernel
        from app.engine.training.cpu_kernels import ensure_trl_logprob_kernel

        ensure_trl_logprob_kernel()
    except ImportError:
        pass
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from app.engine.methods.prefix_rft.trainer import prefix_rft_trainer_class

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("prefix-trainer")), per_device_train_batch_size=4, num_generations=4,
        max_completion_length=16, loss_type="dr_grpo", scale_rewards="none", beta=0.0, max_steps=4, seed=0,
        use_cpu=True, bf16=False, report_to=[], save_strategy="no", disable_tqdm=True, log_completions=False,
        gradient_checkpointing=False,  # the spec's default (the shared-prompt path needs it off)
    )
    rows = [{"prompt": PROMPT, "solution": DEMO}] * 8
    cls = prefix_rft_trainer_class()
    t = cls(model=model, processing_class=tok, reward_funcs=[positional_reward], args=args,
            train_dataset=datasets.Dataset.from_list(rows), prefix=PrefixSettings(n_prefixed=1, seed=0))
    t.current_gradient_accumulation_steps = 1  # set by Trainer.train(); these tests call the loss directly
    return t


@pytest.fixture(scope="module")
def batch(trainer):
    """One generation batch (one prompt × 4 rollouts, the last prefixed) and the contexts it was generated from."""
    import trl

    seen = []
    original = trl.GRPOTrainer._generate_single_turn

    def record(self, prompt_ids, *args, **kwargs):
        seen.append([list(p) for p in prompt_ids])
        return original(self, prompt_ids, *args, **kwargs)

    trl.GRPOTrainer._generate_single_turn = record
    try:
        torch.manual_seed(0)
        trainer.model.train()
        output = trainer._generate_and_score_completions([{"prompt": PROMPT, "solution": DEMO} for _ in range(4)])
    finally:
        trl.GRPOTrainer._generate_single_turn = original
    return output, seen


def test_prefixed_rollout_continues_the_demonstration(trainer, batch):
    output, seen = batch
    tok = trainer.processing_class
    demo_ids = tok(DEMO, add_special_tokens=False)["input_ids"]
    length = prefix_length(len(demo_ids), 0.95)  # step 0: low = high = 0.95
    prompt_ids = list(tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    contexts = seen[0]
    assert contexts[:3] == [prompt_ids] * 3
    assert contexts[3] == prompt_ids + demo_ids[:length]  # generated from prompt + assistant prefix
    completion = output["completion_ids"][3]
    assert completion[:length].tolist() == demo_ids[:length]  # completion = prefix ids + continuation ids
    assert output["completion_mask"][3].sum() > length  # the model wrote a continuation
    assert output["prefix_mask"][3].tolist() == [1] * length + [0] * (completion.numel() - length)
    assert output["prefix_mask"][:3].sum() == 0 and output["prompt_ids"].shape[0] == 4


def test_batch_carries_prefix_rft_advantages_and_metrics(trainer, batch):
    output, _ = batch
    adv, mask, cmask = output["advantages"], output["prefix_mask"].bool(), output["completion_mask"].bool()
    assert adv.shape == output["completion_ids"].shape
    for row, expected in enumerate([-0.5, 0.5, 0.0]):  # on-policy mean (0 + 1 + 0.5) / 3 = 0.5
        assert torch.allclose(adv[row], torch.full_like(adv[row], expected))
    assert torch.allclose(adv[3][mask[3]], torch.tensor(0.3))  # prefix tokens: 0.8 − 0.5
    assert torch.allclose(adv[3][~mask[3] & cmask[3]], torch.tensor(0.8))  # continuation: the raw reward
    metrics = trainer._metrics["train"]
    assert metrics["prefix/reward_prefixed"][-1] == pytest.approx(0.8)
    assert metrics["prefix/reward_on_policy"][-1] == pytest.approx(0.5)
    assert metrics["prefix/fraction_low"][-1] == pytest.approx(0.95)
    assert metrics["prefix/prefixed_share"][-1] == pytest.approx(0.25)
    assert list(trainer._logs["advantages"])[-4:] == pytest.approx([-0.5, 0.5, 0.0, 0.8])  # what samples.jsonl shows


def _loss_inputs(batch_output, **changes):
    inputs = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in batch_output.items()}
    inputs.update(changes)
    return inputs


def test_loss_without_prefix_tokens_equals_trl_grpo_loss(trainer, batch):
    import trl

    output, _ = batch
    torch.manual_seed(1)
    advantages = torch.randn(output["completion_ids"].shape)
    inputs = _loss_inputs(output, advantages=advantages, prefix_mask=torch.zeros_like(output["prefix_mask"]))
    ours = trainer.compute_loss(trainer.model, inputs)
    theirs = trl.GRPOTrainer._compute_loss(trainer, trainer.model, {k: v for k, v in inputs.items() if k != "prefix_mask"})
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-7)


def test_loss_trains_only_the_highest_entropy_prefix_tokens(trainer, batch, monkeypatch):
    output, _ = batch
    prefix_mask = output["prefix_mask"].bool()
    n_prefix = int(prefix_mask.sum())
    shape = output["completion_ids"].shape
    logps = torch.full(shape, -1.0, requires_grad=True)
    torch.manual_seed(2)
    entropies = torch.rand(shape)
    monkeypatch.setattr(trainer, "_prefix_scores", lambda *a, **k: (logps, entropies))
    calls = trainer.prefix_loss_calls
    loss = trainer.compute_loss(trainer.model, _loss_inputs(output))
    loss.backward()
    assert trainer.prefix_loss_calls == calls + 1

    n_keep = n_prefix - math.floor(n_prefix * 0.8)
    ranked = entropies[prefix_mask].argsort(descending=True)[:n_keep]
    expected_kept = torch.zeros(n_prefix, dtype=torch.bool)
    expected_kept[ranked] = True
    trained = logps.grad != 0
    assert trained[prefix_mask].tolist() == expected_kept.tolist()
    # d loss / d log p = −A / (B × max_completion_length) at ratio 1 (Dr. GRPO aggregation)
    scale = shape[0] * trainer.max_completion_length
    assert torch.allclose(logps.grad[prefix_mask][expected_kept], torch.tensor(-0.3 / scale))
    cmask = output["completion_mask"].bool()
    continuation = cmask[3] & ~prefix_mask[3]
    assert torch.allclose(logps.grad[3][continuation], torch.tensor(-0.8 / scale))
    assert torch.allclose(logps.grad[0][cmask[0]], torch.tensor(0.5 / scale))
    assert (logps.grad[~cmask] == 0).all()
    assert trainer._metrics["train"]["prefix/tokens_updated_share"][-1] == pytest.approx(n_keep / n_prefix)


def test_loss_survives_a_base_class_that_replaces_compute_loss(trainer, batch, monkeypatch):
    """What Unsloth does on a GPU: its GRPOTrainer defines its own compute_loss, which never calls _compute_loss.
    The Prefix-RFT class built on such a base must still run the Prefix-RFT loss (with its prefix masking)."""
    import trl

    from app.engine.methods.prefix_rft.trainer import prefix_rft_trainer_class

    class ReplacedLoss(trl.GRPOTrainer):  # stands in for unsloth_compiled_cache's UnslothGRPOTrainer
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            raise AssertionError("the base class's own loss ran: the prefix masking was bypassed")

        def _compute_loss(self, model, inputs):
            raise AssertionError("the base class's own loss ran: the prefix masking was bypassed")

    cls = prefix_rft_trainer_class(ReplacedLoss)
    assert issubclass(cls, ReplacedLoss) and cls.compute_loss is not ReplacedLoss.compute_loss
    output, _ = batch
    monkeypatch.setattr(trainer, "__class__", cls)  # the same trainer state, now on the replacing base
    calls = trainer.prefix_loss_calls
    loss = trainer.compute_loss(trainer.model, _loss_inputs(output))
    assert torch.isfinite(loss) and trainer.prefix_loss_calls == calls + 1


def test_zero_advantage_skip_keeps_the_prefix_rft_loss(trainer, batch, monkeypatch):
    """The skip in front of the Prefix-RFT loss (its build on TRL's path, `dapo`) leaves out the rows with no
    advantage and no prefix token, and the loss and its gradient stay those of the whole batch; a prefixed row
    stays even at advantage 0, since the entropy mask ranks every prefix token of the batch."""
    from app.engine.training.zero_advantage import SkipZeroAdvantageMixin

    output, _ = batch
    monkeypatch.setattr(trainer, "loss_type", "dapo")
    weights = [p for p in trainer.model.parameters() if p.requires_grad]

    def loss_and_grads(inputs):
        loss = trainer.compute_loss(trainer.model, inputs)
        return loss, torch.autograd.grad(loss, weights, allow_unused=True)

    row_zero_only = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    for advantages, share in ((output["advantages"], 0.75), (output["advantages"] * row_zero_only, 0.5)):
        inputs = _loss_inputs(output, advantages=advantages.clone())
        monkeypatch.setattr(trainer, "__class__", prefix_rft_trainer_class())
        whole, whole_grads = loss_and_grads(_loss_inputs(inputs))
        monkeypatch.setattr(trainer, "__class__", type("Skip", (SkipZeroAdvantageMixin, prefix_rft_trainer_class()), {}))
        skipped, skipped_grads = loss_and_grads(_loss_inputs(inputs))
        assert trainer._metrics["train"]["rows_trained"][-1] == pytest.approx(share)  # row 2 (rows 1-2) out, 3 kept
        assert skipped.item() == pytest.approx(whole.item(), rel=1e-5, abs=1e-7)
        for a, b in zip(whole_grads, skipped_grads):
            assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)


def test_plain_forward_scores_tokens_like_trl(trainer, batch):
    output, _ = batch
    input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    width = output["completion_ids"].size(1)
    cmask = output["completion_mask"].bool()
    with torch.no_grad():
        trainer.prefix_scoring = "trl"
        trl_logps, trl_entropy = trainer._prefix_scores(trainer.model, input_ids, attention, width)
        trainer.prefix_scoring = "plain"  # the path used where Unsloth replaced TRL's scorer (GPU)
        plain_logps, plain_entropy = trainer._prefix_scores(trainer.model, input_ids, attention, width)
    trainer.prefix_scoring = "auto"
    assert torch.allclose(trl_logps[cmask], plain_logps[cmask], atol=1e-4)
    assert torch.allclose(trl_entropy[cmask], plain_entropy[cmask], atol=1e-4)


def test_shared_prompt_trainer_gives_the_plain_loss(trainer, batch, tiny_model_dir):
    """On TRL's path the Prefix-RFT trainer sits on the shared-prompt GRPO trainer (methods/prefix_rft build_trainer):
    its loss scores the group's prompt once and equals the plain trainer's; its rollouts prefill each distinct
    context once (the prefixed rollout's context is its own) and still continue the demonstration."""
    import trl
    from transformers import AutoModelForCausalLM

    from app.engine.methods.prefix_rft.trainer import prefix_rft_trainer_class
    from app.engine.training.shared_prefix import SharedPrefixMixin

    class Shared(SharedPrefixMixin, trl.GRPOTrainer):
        pass

    shared = prefix_rft_trainer_class(Shared)(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), processing_class=trainer.processing_class,
        reward_funcs=[positional_reward], args=trainer.args, train_dataset=trainer.train_dataset,
        prefix=PrefixSettings(n_prefixed=1, seed=0))
    shared.current_gradient_accumulation_steps = 1
    output, _ = batch
    plain_loss = trainer.compute_loss(trainer.model, _loss_inputs(output))
    shared_loss = shared.compute_loss(shared.model, _loss_inputs(output))
    assert shared_loss.item() == pytest.approx(plain_loss.item(), rel=1e-4, abs=1e-6)
    assert shared.shared_prefix_calls == {"forward_shared": 1}

    torch.manual_seed(0)
    shared.model.train()
    rollouts = shared._generate_and_score_completions([{"prompt": PROMPT, "solution": DEMO} for _ in range(4)])
    assert shared.shared_prefix_calls["generate_shared"] == 1
    demo_ids = trainer.processing_class(DEMO, add_special_tokens=False)["input_ids"]
    length = int(rollouts["prefix_mask"][3].sum())
    assert length > 0 and rollouts["completion_ids"][3][:length].tolist() == demo_ids[:length]


# -- spec, validation, recipe -------------------------------------------------------------------------------------
def test_validation_names_prefix_rft_problems():
    spec = RunSpec.load(ROOT / "recipes" / "arithmetic-prefix-rft.yaml")
    assert spec.method == "prefix_rft" and spec.is_rl and spec.prefix.demonstration_column == "solution"
    assert spec.problems(check_files=True) == []
    assert RunSpec.from_yaml(spec.to_yaml()) == spec

    def fields(**changes):
        return {p.field for p in spec.with_overrides([f"{k}={v}" for k, v in changes.items()]).problems()}

    assert "prefix.n_prefixed" in fields(**{"prefix.n_prefixed": 8})
    assert "prefix.n_prefixed" in fields(**{"prefix.n_prefixed": 0})
    assert "grpo.scale_rewards" in fields(**{"grpo.scale_rewards": "group"})
    assert "grpo.loss_type" in fields(**{"grpo.loss_type": "cispo"})
    assert "prefix.entropy_top_fraction" in fields(**{"prefix.entropy_top_fraction": 0})
    assert "prefix.low_start" in fields(**{"prefix.low_start": 0.99})
    assert "prefix.schedule" in fields(**{"prefix.schedule": "step"})
    assert "generation.num_generations" in fields(**{"generation.num_generations": 1})
    missing = spec.with_overrides(["prefix.demonstration_column=worked_answer"]).problems()
    assert [p.field for p in missing] == ["data.source"] and "worked_answer" in str(missing[0])


# -- the worker ---------------------------------------------------------------------------------------------------
def tiny_prefix_spec(model_dir, backend: str, steps: int) -> RunSpec:
    spec = RunSpec(method="prefix_rft", model=str(model_dir), backend=backend, rewards=[RewardSpec(name="numeric_answer")])
    settings = {
        "data.task_params": "{n: 40}", "data.eval_size": 2, "training.max_steps": steps,
        "training.per_device_train_batch_size": 4, "generation.num_generations": 4,
        "generation.max_completion_length": 8, "generation.max_length": 64, "grpo.loss_type": "dr_grpo",
        "grpo.scale_rewards": "none", "logging.eval_at_start": "false", "logging.eval_at_end": "false",
        "logging.save_steps": 100, "prefix.n_prefixed": 2,
    }
    return spec.with_overrides([f"{k}={v}" for k, v in settings.items()])


def test_worker_trains_prefix_rft_with_trl(tiny_model_dir, tmp_path):
    from app.engine.core import runs
    from app.engine.training.worker import train

    result = train(tiny_prefix_spec(tiny_model_dir, "trl", 2), runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    assert result.state == "finished", runs.read_status(result.run_dir).get("traceback")
    steps = [r for r in runs.read_jsonl(result.run_dir / "metrics.jsonl")[0] if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert {"prefix/fraction_low", "prefix/reward_prefixed", "prefix/reward_on_policy",
                "prefix/tokens_updated_share", "entropy", "reward"} <= r.keys()
        assert r["prefix/prefixed_share"] == pytest.approx(0.5)
    assert [r["prefix/fraction_low"] for r in steps] == pytest.approx([0.95, 0.5])  # cosine over 2 steps
    samples = runs.read_jsonl(result.run_dir / "samples.jsonl")[0]
    step1 = [s for s in samples if s["step"] == 1]
    a, b = re.search(r"What is (\d+) \+ (\d+)", step1[0]["prompt"]).groups()
    starts = [s["completion"].startswith(f"{a} + {b}") for s in step1]
    assert starts == [False, False, True, True]  # the last 2 of the group continue the worked answer
    from app.engine.presentation.charts import dashboard

    figure = dashboard(runs.read_jsonl(result.run_dir / "metrics.jsonl")[0], "prefix_rft")["method"]
    names = [trace.name for trace in figure.data]
    assert names == ["prefix/fraction_low", "prefix/fraction", "prefix/reward_prefixed", "prefix/reward_on_policy",
                     "prefix/tokens_updated_share"]


UNSLOTH_SCRIPT = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from app.engine.training.backend import choose_backend
info = choose_backend("unsloth")  # imports unsloth before trl, as the worker does
import trl

def bypassed(*args, **kwargs):
    raise AssertionError("GRPOTrainer's own loss ran: the Prefix-RFT loss was bypassed")

# Whatever the parent's loss is (Unsloth's replacement on a GPU, TRL's on this CPU backend), it must never run.
trl.GRPOTrainer.compute_loss = bypassed
trl.GRPOTrainer._compute_loss = bypassed
from tests.test_prefix_rft import tiny_prefix_spec
from app.engine.core import runs
from app.engine.training.worker import train
result = train(tiny_prefix_spec(sys.argv[1], "unsloth", 1), runs_dir=Path(sys.argv[2]), progress_bar=False,
               log=lambda m: None)
status = runs.read_status(result.run_dir)
records = runs.read_jsonl(result.run_dir / "metrics.jsonl")[0]
print("RESULT " + json.dumps({"state": result.state, "backend": status.get("backend"), "traceback": status.get("traceback"),
                               "steps": [r for r in records if "loss" in r], "unsloth": "unsloth" in sys.modules}))
"""


def test_worker_under_unsloth_runs_the_prefix_rft_loss(tiny_model_dir, tmp_path):
    import importlib.util

    if importlib.util.find_spec("unsloth") is None:
        pytest.skip("unsloth is not installed")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("UNSLOTH_DISABLE_CPU_FALLBACK", None)  # the CPU backend is what runs here
    proc = subprocess.run(
        [sys.executable, "-c", UNSLOTH_SCRIPT, str(tiny_model_dir), str(tmp_path), str(ROOT)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines and "cannot find any torch accelerator" in proc.stderr:
        pytest.skip("this Unsloth has no CPU backend")
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["unsloth"] and result["backend"] == "unsloth"
    assert result["state"] == "finished", result["traceback"]
    (step,) = result["steps"]
    assert step["prefix/tokens_updated_share"] is not None  # written by the Prefix-RFT loss only
    assert step["prefix/prefixed_share"] == pytest.approx(0.5) and step["prefix/fraction_low"] == pytest.approx(0.95)
