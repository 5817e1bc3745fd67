"""Export: a LoRA adapter, a merged model and GGUF files, each loaded back with stock libraries and compared with
the in-app model; bad requests are one sentence and write nothing."""
from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from app.engine.core import runs
from app.engine.core.spec import RunSpec
from app.engine.evaluation import compare as cmp
from app.engine.evaluation import export as exp
from tests.conftest import finished_lora_run


@pytest.fixture(scope="module")
def smol_vocab_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run on a tiny random Llama with the default model's real tokenizer, which llama.cpp's converter knows
    (it refuses tokenizers it has no pre-tokenizer rule for, like the synthetic one of the tiny test model)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from app.engine.training.models import resolve_model

    folder = tmp_path_factory.mktemp("smol-vocab-llama")
    tok = AutoTokenizer.from_pretrained(resolve_model("default"))
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return finished_lora_run(folder, tmp_path_factory.mktemp("runs"), name="gguf", method="grpo",
                             final_eval={"eval/accuracy": 0.5, "eval/n_scored": 4})


def test_export_adapter_copies_the_adapter_without_optimizer_state(run_with_adapter, tmp_path):
    out = exp.export_adapter(run_with_adapter, tmp_path / "adapter-out")
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert (out / "rft_workbench_spec.yaml").exists() and (out / exp.MANIFEST).exists()
    ckpt_out = exp.export_adapter(run_with_adapter, tmp_path / "ckpt-out", checkpoint=2)
    assert not (ckpt_out / "optimizer.pt").exists() and not (ckpt_out / runs.COMPLETE_MARKER).exists()
    with pytest.raises(exp.ExportError, match="not empty"):
        exp.export_adapter(run_with_adapter, out)
    assert exp.export_adapter(run_with_adapter, out, overwrite=True) == out
    with pytest.raises(exp.ExportError, match="no checkpoint-9"):
        exp.export_adapter(run_with_adapter, tmp_path / "x", checkpoint=9)
    with pytest.raises(exp.ExportError, match="neither"):
        exp.export_adapter(tmp_path, tmp_path / "y")


def test_export_merged_gives_a_plain_model_that_matches_the_adapter(run_with_adapter, tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = exp.export_merged(run_with_adapter, tmp_path / "merged")
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


@pytest.mark.parametrize("kind", ["adapter", "merged"])
def test_fp32_exports_round_trip_exactly(run_with_adapter, tmp_path, kind):
    result = exp.export_run(run_with_adapter, tmp_path / kind, kind)
    check = result.check
    assert check is not None and check.ok and check.agreement == 1.0
    assert check.identical == len(check.prompts) > 0 and check.got == check.expected
    assert result.files and all(size > 0 for size in result.files.values())
    summary = result.summary()
    assert f"Exported {kind}" in summary and "matches the in-app model" in summary
    manifest = json.loads((tmp_path / kind / exp.MANIFEST).read_text())
    assert manifest["kind"] == kind and manifest["round_trip"]["agreement"] == 1.0


@pytest.mark.parametrize("gguf_type", ["q8_0"])  # f16 and bf16 take the same path: measured in docs
def test_gguf_export_loads_back_with_transformers_and_matches(smol_vocab_run, tmp_path, gguf_type):
    from gguf import GGUFReader

    result = exp.export_run(smol_vocab_run, tmp_path / "out", "gguf", gguf_type)
    name = f"{smol_vocab_run.name}-{gguf_type}.gguf"
    assert set(result.files) == {name, "Modelfile", "README.md", "rft_workbench_spec.yaml", exp.MANIFEST}
    assert not (tmp_path / "out" / ".merged").exists()  # the converter's input is not left behind
    fields = GGUFReader(tmp_path / "out" / name).fields
    # A byte-level BPE vocabulary with its merges, as llama.cpp needs it (not a SentencePiece one without them).
    assert fields["tokenizer.ggml.model"].contents() == "gpt2" and len(fields["tokenizer.ggml.merges"].data) > 0
    check = result.check
    assert check is not None and "gguf_file" in check.loader
    assert check.ok, check.sentence()
    modelfile = (tmp_path / "out" / "Modelfile").read_text()
    assert f"FROM ./{name}" in modelfile and "<|im_start|>assistant" in modelfile
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Method: grpo" in card and "50.0% on 4 held-out rows" in card and gguf_type in card


def test_bad_exports_are_one_sentence_and_write_nothing(run_with_adapter, tmp_path, monkeypatch):
    with pytest.raises(exp.ExportError, match="unknown GGUF type 'q7'; choose q8_0, f16, bf16"):
        exp.export_run(run_with_adapter, tmp_path / "a", "gguf", "q7")
    with pytest.raises(exp.ExportError, match="unknown export kind 'onnx'"):
        exp.export_run(run_with_adapter, tmp_path / "b", "onnx")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(exp.ExportError, match="llama-quantize binary, which is not on the PATH.*--gguf f16"):
        exp.export_run(run_with_adapter, tmp_path / "c", "gguf", "q4_k_m")
    not_started = runs.create_run_dir(RunSpec(name="empty"), tmp_path / "runs")
    with pytest.raises(exp.ExportError, match="neither a final adapter nor a complete checkpoint"):
        exp.export_run(not_started, tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_a_tokenizer_the_converter_does_not_know_is_one_sentence(run_with_adapter, tmp_path):
    with pytest.raises(exp.ExportError, match="does not know this model's tokenizer.*--merged"):
        exp.export_run(run_with_adapter, tmp_path / "out", "gguf", "f16")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_leaves_nothing_half_written(run_with_adapter, tmp_path, monkeypatch, capsys):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(exp, "_copy_spec", full_disk)  # fails after the adapter files were copied
    assert exp.main([str(run_with_adapter), "--out", str(tmp_path / "exports" / "adapter")]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing was changed" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither the temporary folder nor the parent it made


def test_the_app_writes_exports_only_inside_its_exports_folder(tmp_path):
    root = tmp_path / "exports"
    root.mkdir()
    exp.check_inside(root / "run-adapter", root)
    (root / "link").symlink_to(tmp_path)
    for outside in (tmp_path / "elsewhere", root / ".." / "x", Path("/etc/x"), root / "link" / "x"):
        with pytest.raises(exp.ExportError, match="outside the workbench's exports folder"):
            exp.check_inside(outside, root)


def test_export_command_and_cli(run_with_adapter, tmp_path, capsys):
    command = exp.export_command(run_with_adapter, tmp_path / "out dir", "merged", checkpoint=2)
    assert command.startswith("python -m app.export ") and " --out " in command
    assert command.endswith("--merged --checkpoint 2") and "'" in command  # the space is quoted
    assert exp.export_command(run_with_adapter, tmp_path / "g", "gguf", "f16").endswith("--gguf f16")
    assert exp.main([str(run_with_adapter), "--out", str(tmp_path / "cli-out")]) == 0
    out = capsys.readouterr().out
    assert "matches the in-app model" in out and (tmp_path / "cli-out" / "adapter_config.json").exists()
    assert exp.main([str(tmp_path / "missing"), "--out", str(tmp_path / "z")]) == 2
    assert "does not exist" in capsys.readouterr().err
