"""Compare view engine: models to pick, side-by-side generation and scoring, preference pairs, export."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.engine.core import runs
from app.engine.core.spec import RewardSpec, RunSpec
from app.engine.evaluation import compare as cmp


@pytest.fixture(scope="module")
def run_with_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder on the tiny model: a (perturbed, so it differs from the base) LoRA adapter in
    adapter/ and a complete checkpoint holding optimizer state too."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    runs_dir = tmp_path_factory.mktemp("runs")
    spec = RunSpec(model=str(tiny_model_dir), name="tiny", rewards=[RewardSpec(name="numeric_answer")])
    run_dir = runs.create_run_dir(spec, runs_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(run_dir / "adapter")
    tok.save_pretrained(run_dir / "adapter")
    ckpt = run_dir / "checkpoints" / "checkpoint-2"
    peft_model.save_pretrained(ckpt)
    (ckpt / "optimizer.pt").write_bytes(b"optimizer state")
    (ckpt / runs.COMPLETE_MARKER).write_text("1")
    runs.update_status(run_dir, state="finished", step=2, max_steps=2, adapter=str(run_dir / "adapter"))
    return run_dir


def test_available_models_lists_base_final_adapter_and_checkpoints(run_with_adapter, tiny_model_dir):
    refs = cmp.available_models(run_with_adapter.parent)
    labels = [r.label for r in refs]
    assert labels[0] == "base · SmolLM2-135M-Instruct"
    assert f"base · {tiny_model_dir}" in labels  # the run's own base model
    assert "tiny · final" in labels and "tiny · checkpoint-2" in labels
    final = next(r for r in refs if r.label == "tiny · final")
    assert final.base == str(tiny_model_dir) and final.adapter == str(run_with_adapter / "adapter")
    assert [r.label for r in cmp.available_models(run_with_adapter.parent, checkpoints=False)][-1] == "tiny · final"
    assert cmp.available_models(None) == [cmp.ModelRef("base · SmolLM2-135M-Instruct", "default")]


def test_model_keys_round_trip(run_with_adapter, tiny_model_dir):
    for ref in cmp.available_models(run_with_adapter.parent):
        back = cmp.parse_model_key(ref.key)
        assert (back.label, back.base, back.adapter) == (ref.label, ref.base, ref.adapter)
    with pytest.raises(cmp.CompareError, match="no longer exists"):
        cmp.parse_model_key("adapter::/no/such/folder")
    with pytest.raises(cmp.CompareError, match="Unknown model"):
        cmp.parse_model_key("something")


def test_prompt_rows_from_text():
    rows = cmp.prompt_rows_from_text("What is 2 + 2? => 4\n\n  Say hi  \nA => B => C")
    assert rows == [{"prompt": "What is 2 + 2?", "answer": "4"}, {"prompt": "Say hi"}, {"prompt": "A => B", "answer": "C"}]


def test_compare_generates_scores_and_summarises(run_with_adapter, tiny_model_dir):
    refs = [cmp.ModelRef("base", str(tiny_model_dir)), cmp.parse_model_key(f"adapter::{run_with_adapter / 'adapter'}")]
    rows = [{"prompt": "What is 1 + 1?", "answer": "2"}, {"prompt": "Say a number.", "answer": "7"}]
    notes = []
    result = cmp.compare_models(refs, rows, [{"name": "numeric_answer"}, {"name": "length", "weight": 0.5}],
                                max_new_tokens=6, progress=lambda f, m: notes.append((f, m)))
    assert result.models == ["base", "tiny · final"]
    assert result.prompts == ["What is 1 + 1?", "Say a number."] and result.references == ["2", "7"]
    assert result.reward_names == ["numeric_answer", "length"] and result.accuracy_reward == "numeric_answer"
    for label in result.models:
        outs = result.outputs[label]
        assert len(outs) == 2 and all(isinstance(o["completion"], str) and o["tokens"] <= 6 for o in outs)
        assert all(set(o["scores"]) == {"numeric_answer", "length"} for o in outs)
    # The perturbed adapter was merged: it does not answer exactly like the base model.
    assert [o["completion"] for o in result.outputs["base"]] != [o["completion"] for o in result.outputs["tiny · final"]]
    s = result.summary[0]
    assert s["model"] == "base" and s["n"] == 2 and 0.0 <= s["accuracy"] <= 1.0 and s["mean_length"] <= 6
    headers, table = result.table()
    assert headers == ["#", "prompt", "reference", "base", "reward A", "tiny · final", "reward B"]
    assert len(table) == 3 and table[-1][1] == "SUMMARY" and "accuracy" in table[-1][3]
    assert len(result.column_widths()) == len(headers)
    s_headers, s_rows = result.summary_table()
    assert s_headers[:3] == ["model", "mean reward", "accuracy"] and len(s_rows) == 2
    assert notes[-1] == (1.0, "Done") and all(0.0 <= f <= 1.0 for f, _ in notes)
    again = cmp.CompareResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.table() == result.table()


def test_compare_caches_models_and_rejects_bad_input(tiny_model_dir):
    ref = cmp.ModelRef("base", str(tiny_model_dir))
    first = cmp.load_model(ref)
    assert cmp.load_model(ref)[0] is first[0]
    cmp.clear_cache()
    assert cmp.load_model(ref)[0] is not first[0]
    with pytest.raises(cmp.CompareError, match="at least one model"):
        cmp.compare_models([], [{"prompt": "x"}])
    with pytest.raises(cmp.CompareError, match="at least one prompt"):
        cmp.compare_models([ref], [])
    with pytest.raises(cmp.CompareError, match="twice"):
        cmp.compare_models([ref, ref], [{"prompt": "x"}])
    with pytest.raises(cmp.CompareError, match="rewards"):
        cmp.compare_models([ref], [{"prompt": "x"}], [{"name": "no_such_reward"}])
    with pytest.raises(cmp.CompareError, match="Could not load"):
        cmp.load_model(cmp.ModelRef("broken", "/definitely/not/a/model"))


def test_compare_without_rewards_still_shows_outputs(tiny_model_dir):
    result = cmp.compare_models([cmp.ModelRef("base", str(tiny_model_dir))], [{"prompt": "hi"}], max_new_tokens=3)
    assert result.summary[0]["mean_reward"] is None and result.summary[0]["accuracy"] is None
    assert result.table()[0] == ["#", "prompt", "base", "reward A"]


def test_save_preference_appends_trl_conversational_pairs(tmp_path):
    path = tmp_path / "prefs" / "pairs.jsonl"
    assert cmp.count_preferences(path) == 0
    assert cmp.save_preference(path, "What is 2 + 2?", "4", "5") == 1
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert cmp.save_preference(path, prompt, "Hello!", "Go away.", meta={"chosen_model": "a"}) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
                        "chosen": [{"role": "assistant", "content": "4"}],
                        "rejected": [{"role": "assistant", "content": "5"}]}
    assert lines[1]["prompt"] == prompt and lines[1]["meta"] == {"chosen_model": "a"}
    from app.engine.data.profile import profile_dataset

    assert profile_dataset(str(path)).format == "preference"  # the decision tree sees a DPO dataset
    with pytest.raises(cmp.CompareError, match="identical"):
        cmp.save_preference(path, "p", "same", "same")
    with pytest.raises(cmp.CompareError, match="empty"):
        cmp.save_preference(path, "  ", "a", "b")
    assert cmp.count_preferences(path) == 2


def test_export_adapter_copies_the_adapter_without_optimizer_state(run_with_adapter, tmp_path):
    out = cmp.export_adapter(run_with_adapter, tmp_path / "adapter-out")
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert (out / "rft_workbench_spec.yaml").exists()
    ckpt_out = cmp.export_adapter(run_with_adapter, tmp_path / "ckpt-out", checkpoint=2)
    assert not (ckpt_out / "optimizer.pt").exists() and not (ckpt_out / runs.COMPLETE_MARKER).exists()
    with pytest.raises(cmp.CompareError, match="not empty"):
        cmp.export_adapter(run_with_adapter, out)
    assert cmp.export_adapter(run_with_adapter, out, overwrite=True) == out
    with pytest.raises(cmp.CompareError, match="no checkpoint-9"):
        cmp.export_adapter(run_with_adapter, tmp_path / "x", checkpoint=9)
    with pytest.raises(cmp.CompareError, match="neither"):
        cmp.export_adapter(tmp_path, tmp_path / "y")


def test_export_merged_gives_a_plain_model_that_matches_the_adapter(run_with_adapter, tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = cmp.export_merged(run_with_adapter, tmp_path / "merged")
    assert (out / "config.json").exists() and not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(run_with_adapter / "adapter")).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-4)
    # A merged folder is itself a model: the compare view can load it directly.
    result = cmp.compare_models([cmp.ModelRef("merged", "default", str(out))], [{"prompt": "hi"}], max_new_tokens=2)
    assert len(result.outputs["merged"]) == 1


def test_export_command_and_cli(run_with_adapter, tmp_path, capsys):
    command = cmp.export_command(run_with_adapter, tmp_path / "out dir", merged=True, checkpoint=2)
    assert command.startswith("python -m app.engine.compare export ")
    assert command.endswith("--merged --checkpoint 2") and "'" in command  # the space is quoted
    assert cmp.main(["export", str(run_with_adapter), str(tmp_path / "cli-out")]) == 0
    assert (tmp_path / "cli-out" / "adapter_config.json").exists()
    assert cmp.main(["export", str(tmp_path / "missing"), str(tmp_path / "z")]) == 2
    assert "does not exist" in capsys.readouterr().err
