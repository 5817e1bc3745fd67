"""Models users bring: LoRA's 'all-linear' on an architecture with other layer names (a tiny GPT-2 built from a
config, with no chat template and no pad token, stored in bf16), and what the run says it chose for it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.engine.core import runs
from app.engine.core.spec import RewardSpec, RunSpec
from app.engine.training.worker import train


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A tiny random GPT2LMHeadModel (Conv1D layers c_attn, c_proj, c_fc) with the tiny Llama's byte-level
    tokenizer, stripped of its chat template and pad token, its weights saved as bf16."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    tok.pad_token = None
    tok.save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"  # save_pretrained may keep the template in its own file
    for extra in ("chat_template.jinja", "chat_template.json"):
        (folder / extra).unlink(missing_ok=True)
    config = json.loads(config_file.read_text())
    config.pop("chat_template", None)
    config.pop("pad_token", None)
    config_file.write_text(json.dumps(config))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    model.to(torch.bfloat16).save_pretrained(folder)
    return folder


def gpt2_spec(model_dir: Path, **overrides: str) -> RunSpec:
    settings = {"data.task_params": "{n: 40}", "data.eval_size": 4, "training.max_steps": 2,
                "training.per_device_train_batch_size": 4, "generation.num_generations": 4,
                "generation.max_completion_length": 4, "generation.max_length": 64, **overrides}
    spec = RunSpec(method="grpo", model=str(model_dir), backend="trl", rewards=[RewardSpec(name="numeric_answer")])
    return spec.with_overrides([f"{k}={v}" for k, v in settings.items()])


def test_all_linear_is_the_default_and_expands_per_architecture(tiny_model_dir, tiny_gpt2_dir):
    from app.engine.training.backend import architecture_linear_names

    assert RunSpec().lora.target_modules == "all-linear"
    assert architecture_linear_names(str(tiny_model_dir)) == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]  # lm_head is not adapted
    assert architecture_linear_names(str(tiny_gpt2_dir)) == ["c_attn", "c_fc", "c_proj"]


def test_llama_names_on_a_gpt2_model_are_refused_before_loading(tiny_gpt2_dir):
    spec = gpt2_spec(tiny_gpt2_dir, **{"lora.target_modules": "[q_proj, v_proj]"})
    problems = [p for p in spec.problems(check_files=True) if p.field == "lora.target_modules"]
    assert len(problems) == 1
    assert "no linear layer named q_proj, v_proj" in problems[0].problem and "c_attn" in problems[0].problem
    assert not [p for p in gpt2_spec(tiny_gpt2_dir).problems(check_files=True)]
    odd = gpt2_spec(tiny_gpt2_dir, **{"lora.target_modules": "all_linear"})
    assert [p.field for p in odd.problems(check_files=False)] == ["lora.target_modules"]


def test_a_gpt2_run_trains_its_conv1d_layers_and_says_what_it_chose(tiny_gpt2_dir, tmp_path):
    lines: list[str] = []
    result = train(gpt2_spec(tiny_gpt2_dir), runs_dir=tmp_path, progress_bar=False, log=lines.append)
    status = runs.read_status(result.run_dir)
    assert result.state == "finished", status.get("traceback")
    notes = status["model_notes"]
    assert any(n.startswith("pad token:") for n in notes) and any(n.startswith("chat template:") for n in notes)
    assert any(n.startswith("dtype: the weights are stored in bfloat16; this run computes in float32") for n in notes)
    assert sum(line.startswith("Model: ") for line in lines) == len(notes) == 3
    adapter = json.loads((result.run_dir / "adapter" / "adapter_config.json").read_text())
    assert {name.rsplit(".", 1)[-1] for name in adapter["target_modules"]} == {"c_attn", "c_fc", "c_proj"}
    # …and a run started from this adapter with the default 'all-linear' passes the init-adapter check.
    follow_up = gpt2_spec(tiny_gpt2_dir).replace(init_adapter=str(result.run_dir / "adapter"))
    assert follow_up.problems(check_files=True) == []
    # The adapter's tokenizer keeps the template the run chose, so evaluation and chat ask the same way.
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(result.run_dir / "adapter").chat_template
    assert [r["step"] for r in runs.read_jsonl(result.run_dir / "metrics.jsonl")[0] if "eval/accuracy" in r] == [0, 2]
