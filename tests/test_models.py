"""Model resolution: the embedded default model (GGUF → cached HF folder), local folders, hub ids."""
from __future__ import annotations

import os

import pytest

from app.engine.training import models
from app.engine.training.models import ModelNotFound, classify_model


def test_names_are_classified_without_loading(tiny_model_dir, tmp_path):
    assert classify_model("default") == ("default", models.DEFAULT_MODEL)
    assert classify_model("SmolLM2-135M-Instruct")[0] == "default"
    assert classify_model(str(tiny_model_dir)) == ("folder", str(tiny_model_dir.resolve()))
    assert classify_model("HuggingFaceTB/SmolLM2-360M-Instruct") == ("hub", "HuggingFaceTB/SmolLM2-360M-Instruct")
    with pytest.raises(ModelNotFound, match="does not exist"):
        classify_model("./no/such/model")
    with pytest.raises(ModelNotFound, match="no config.json"):
        classify_model(str(tmp_path))
    with pytest.raises(ModelNotFound, match="hub id"):
        classify_model("not a model")


@pytest.mark.e2e
def test_default_model_converts_once_into_a_trainable_folder():
    from transformers import AutoConfig, AutoTokenizer

    path = models.ensure_default_model()
    assert (path / models.CONVERSION_MARKER).exists()
    config = AutoConfig.from_pretrained(path)
    assert getattr(config, "quantization_config", None) is None  # the Trainer refuses GGUF-quantized models
    tok = AutoTokenizer.from_pretrained(path)
    # The GGUF metadata says EOS = <|im_start|>; generation must stop at the end of the assistant turn.
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == config.eos_token_id
    assert tok.pad_token is not None
    assert models.resolve_model("default") == str(path)  # the cached folder, no new conversion


def test_conversion_reports_progress(monkeypatch, tmp_path):
    monkeypatch.setenv("RFT_WORKBENCH_CACHE", str(tmp_path))
    seen = []
    monkeypatch.setattr(models, "_convert_gguf", lambda gguf, target, progress: (target.mkdir(parents=True), (target / models.CONVERSION_MARKER).write_text("x"), progress(1.0, "done")))
    path = models.ensure_default_model(lambda f, m: seen.append((f, m)))
    assert path == tmp_path / "models" / models.DEFAULT_MODEL
    assert seen == [(1.0, "done")]
    models.ensure_default_model(lambda f, m: seen.append((f, m)))
    assert len(seen) == 1  # cached: no second conversion


def test_auto_backend_avoids_unsloths_bf16_cpu_backend_without_native_bf16(monkeypatch):
    """On a CPU without AVX512-BF16/AMX, bf16 is emulated (measured 18× slower per GRPO step): `auto` takes TRL in
    fp32 there and says why, without importing Unsloth (which would patch TRL in this process)."""
    import sys

    from app.engine.training import backend

    monkeypatch.setenv("RFT_WORKBENCH_CPU_BF16", "0")
    if backend._device_name()[1]:
        pytest.skip("a CUDA GPU is present: auto picks Unsloth on it")
    had_unsloth = "unsloth" in sys.modules
    info = backend.choose_backend("auto")
    assert (info.name, info.dtype) == ("trl", "float32") and "no native bf16" in info.reason
    assert ("unsloth" in sys.modules) == had_unsloth
    monkeypatch.setenv("RFT_WORKBENCH_CPU_BF16", "1")
    assert backend.cpu_has_native_bf16()
    monkeypatch.delenv("RFT_WORKBENCH_CPU_BF16")
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    assert backend.cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_auto_takes_trl_where_the_engine_measured_it_faster():
    """GRPO with shared prefixes on a CPU (only TRL's path has them) and several processes: TRL + PEFT; otherwise
    `auto` stays the machine's choice (Unsloth on a GPU or a bf16 CPU)."""
    from app.engine.core.spec import RunSpec
    from app.engine.training.backend import resolve_auto

    grpo = RunSpec(method="grpo")
    assert resolve_auto(grpo, cuda=False, processes=1)[0] == "trl"
    assert "shared_prefix" in resolve_auto(grpo, cuda=False, processes=1)[1]
    assert resolve_auto(grpo, cuda=True, processes=1) == ("auto", None)
    assert resolve_auto(grpo.with_overrides(["grpo.shared_prefix=false"]), cuda=False, processes=1) == ("auto", None)
    assert resolve_auto(RunSpec(method="prefix_rft"), cuda=False, processes=1)[0] == "trl"  # a GRPO trainer too
    assert resolve_auto(RunSpec(method="sft"), cuda=False, processes=1) == ("auto", None)
    assert resolve_auto(RunSpec(method="sft"), cuda=True, processes=2)[0] == "trl"
    assert resolve_auto(grpo.replace(backend="unsloth"), cuda=False, processes=1) == ("unsloth", None)
