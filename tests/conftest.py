"""Shared fixtures: a tiny randomly initialised Llama with a byte-level tokenizer, built from a config.

Unit tests use it instead of the real model: it builds in well under a second and needs no hub.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Keep tests quiet and offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% if not (loop.last and continue_final_message is defined and continue_final_message) %}"
    "{{ '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write a tiny random LlamaForCausalLM and a byte-level BPE tokenizer with a ChatML template to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=specials,
    )
    tok.chat_template = CHATML_TEMPLATE
    tok.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a folder holding the tiny model and tokenizer (built once per test session)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def finished_lora_run(model_dir: Path, runs_dir: Path, name: str = "tiny", checkpoint: bool = False,
                      **status: Any) -> Path:
    """A finished run folder on `model_dir` whose adapter/ is a perturbed (so not a no-op) LoRA; with `checkpoint`
    also a complete checkpoint-2 holding optimizer state. `status` adds fields to status.json."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from app.engine.core import runs
    from app.engine.core.spec import RewardSpec, RunSpec

    spec = RunSpec(model=str(model_dir), name=name, rewards=[RewardSpec(name="numeric_answer")])
    run_dir = runs.create_run_dir(spec, runs_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(run_dir / "adapter")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(run_dir / "adapter")
    if checkpoint:
        ckpt = run_dir / "checkpoints" / "checkpoint-2"
        peft_model.save_pretrained(ckpt)
        (ckpt / "optimizer.pt").write_bytes(b"optimizer state")
        (ckpt / runs.COMPLETE_MARKER).write_text("1")
    runs.update_status(run_dir, state="finished", step=2, max_steps=2, adapter=str(run_dir / "adapter"), **status)
    return run_dir


@pytest.fixture(scope="module")
def run_with_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder on the tiny model: a perturbed LoRA adapter in adapter/ and a complete checkpoint
    holding optimizer state too."""
    return finished_lora_run(tiny_model_dir, tmp_path_factory.mktemp("runs"), checkpoint=True)
