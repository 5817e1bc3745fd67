"""Backend choice and model loading: Unsloth where it runs, else plain TRL + PEFT.

Unsloth patches TRL when it is imported, so `choose_backend` must run before anything imports `trl`; the worker
calls it first. Unsloth runs on a CUDA GPU and, from version 2026.10.9, on the CPU (its CPU backend: stock
TRL/PEFT with bf16 weights and chunked cross-entropy). Older versions raise on import without a GPU; we then fall
back to TRL + PEFT and record why.

`auto` takes Unsloth's CPU backend only on a CPU with native bf16 arithmetic (AVX512-BF16 or AMX). Elsewhere bf16
matmuls are emulated: on a 2-core AVX2 EPYC a GRPO step took 149 s there against 8.3 s for TRL + PEFT in fp32
(bench/bench_grpo.py, docs/benchmarks.md), so `auto` uses TRL there and `unsloth` must be asked for by name.
"""
from __future__ import annotations

import functools
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

# A ChatML template for tokenizers that have none (base models, GPT-2-style): the prompts' role markers then
# tokenise as plain text, which a base model learns as any other text.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class BackendError(RuntimeError):
    """The requested backend cannot run here."""


@dataclass
class BackendInfo:
    """What a run used; recorded in status.json."""

    name: str  # "unsloth" | "trl"
    device: str  # "cpu" or "cuda:0 (NVIDIA H100 …)"
    dtype: str  # torch dtype name of the weights
    reason: str  # why this backend was chosen
    unsloth_version: str | None = None
    fast_inference: bool = False
    load_in_4bit: bool = False
    # What loading chose for this model where it needed care (pad token, chat template, dtype), one sentence each.
    model_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _device_name() -> tuple[str, bool]:
    import torch

    if torch.cuda.is_available():
        return f"cuda:0 ({torch.cuda.get_device_name(0)})", True
    return "cpu", False


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16 in /proc/cpuinfo). The environment
    variable RFT_WORKBENCH_CPU_BF16=1 / 0 overrides the check (other platforms: 0 unless set)."""
    forced = os.environ.get("RFT_WORKBENCH_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _try_import_unsloth() -> tuple[Any | None, str]:
    if "trl" in sys.modules and "unsloth" not in sys.modules:
        # Unsloth must patch TRL before TRL is imported; importing it now would leave TRL half-patched.
        return None, "trl was imported before unsloth in this process"
    try:
        import unsloth  # noqa: F401  (patches transformers/TRL on import)

        return unsloth, ""
    except Exception as exc:  # NotImplementedError without a GPU on old versions, ImportError if absent
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def choose_backend(requested: str = "auto", dtype: str = "auto") -> BackendInfo:
    """Pick and import the backend. Call before importing trl."""
    device, cuda = _device_name()
    if requested == "auto" and not cuda and not cpu_has_native_bf16():
        return BackendInfo(
            name="trl", device=device, dtype=_resolve_dtype(dtype, cuda, unsloth=False),
            reason="this CPU has no native bf16 (AVX512-BF16/AMX), where Unsloth's bf16 CPU backend is many times "
                   "slower than TRL + PEFT in fp32; using TRL + PEFT (backend: unsloth forces Unsloth)")
    if requested in ("auto", "unsloth"):
        module, why_not = _try_import_unsloth()
        if module is not None:
            return BackendInfo(
                name="unsloth",
                device=device,
                dtype=_resolve_dtype(dtype, cuda, unsloth=True),
                reason="requested" if requested == "unsloth" else f"Unsloth runs here ({'GPU' if cuda else 'CPU backend'})",
                unsloth_version=getattr(module, "__version__", None),
            )
        if requested == "unsloth":
            raise BackendError(f"backend: Unsloth cannot run here ({why_not}). Use backend 'trl' or 'auto'.")
        reason = f"Unsloth unavailable ({why_not}); using TRL + PEFT"
    else:
        reason = "requested"
    return BackendInfo(name="trl", device=device, dtype=_resolve_dtype(dtype, cuda, unsloth=False), reason=reason)


# The methods whose trainer takes the shared-prompt savings on TRL's path (methods/grpo.py `trainer_class`).
SHARED_PREFIX_METHODS = ("grpo", "prefix_rft")


def resolve_auto(spec: Any, cuda: bool, processes: int) -> tuple[str, str | None]:
    """What `backend: auto` asks `choose_backend` for, and why when it is not the machine's own choice: TRL + PEFT
    for several processes (Unsloth's patches are single-process here), and on a CPU for GRPO with
    `grpo.shared_prefix`, which only TRL's path has: on an AMX Xeon, where Unsloth's bf16 CPU backend is otherwise
    the faster one, the engine's GRPO step took 12.8 s on TRL + shared prefix (fp32) against 17.8 s on Unsloth
    (bench/bench_grpo.py, docs/benchmarks.md)."""
    if spec.backend != "auto":
        return spec.backend, None
    if processes > 1:
        return "trl", f"backend auto with {processes} processes: TRL + PEFT"
    if not cuda and spec.method in SHARED_PREFIX_METHODS and spec.grpo.shared_prefix:
        return "trl", (f"backend auto, {spec.method} on a CPU: TRL + PEFT with grpo.shared_prefix (each prompt "
                       "computed once per group), faster than Unsloth's CPU backend (backend: unsloth forces it)")
    return "auto", None


def _resolve_dtype(dtype: str, cuda: bool, unsloth: bool) -> str:
    if dtype != "auto":
        return dtype
    if cuda:
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    # Unsloth's CPU backend trains in bf16 (its measured speed-up); plain PyTorch CPU training is safest in fp32.
    return "bfloat16" if unsloth else "float32"


def linear_module_names(model: Any) -> list[str]:
    """The names (last component) of `model`'s linear layers except its output head: what PEFT's 'all-linear'
    adapts, for any architecture (Llama's q_proj…, GPT-2's c_attn…, Phi-3's qkv_proj…)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not head and name}
    return sorted(names)


@functools.lru_cache(maxsize=32)
def architecture_linear_names(model_path: str) -> list[str]:
    """`linear_module_names` of the model in `model_path` built on the meta device from its config alone (no
    weights are read, so it is cheap even for a 7B model)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return linear_module_names(model)


def lora_targets(lora: Any, model: Any) -> list[str]:
    """The module names the adapter targets on `model` ('all-linear' expanded for this architecture)."""
    return linear_module_names(model) if lora.target_modules == "all-linear" else list(lora.target_modules)


def peft_config(spec: Any):
    """The PEFT LoraConfig for plain TRL (TRL's trainers wrap the model themselves)."""
    if not spec.lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        # PEFT expands 'all-linear' for the model it wraps (and writes the names into adapter_config.json).
        target_modules=spec.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def load_model(spec: Any, info: BackendInfo, model_path: str) -> tuple[Any, Any, Any]:
    """Load (model, tokenizer, peft_config_for_trainer) on the chosen backend.

    Unsloth: `FastLanguageModel.from_pretrained` + `get_peft_model` (the model comes back wrapped, so the trainer
    gets no peft_config). TRL: `AutoModelForCausalLM` and a LoraConfig the trainer applies.
    """
    import torch

    torch_dtype = getattr(torch, info.dtype)
    if info.name == "unsloth":
        from unsloth import FastLanguageModel

        max_seq = max(spec.generation.max_length, 64 + spec.generation.max_completion_length)
        kwargs: dict[str, Any] = dict(
            model_name=model_path, max_seq_length=max_seq, dtype=torch_dtype, load_in_4bit=bool(spec.load_in_4bit),
        )
        if spec.fast_inference:
            kwargs.update(fast_inference=True, max_lora_rank=spec.lora.r)
        model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
        info.load_in_4bit, info.fast_inference = bool(spec.load_in_4bit), bool(spec.fast_inference)
        if spec.lora.enabled:
            model = FastLanguageModel.get_peft_model(
                model,
                r=spec.lora.r,
                lora_alpha=spec.lora.alpha,
                lora_dropout=spec.lora.dropout,
                target_modules=lora_targets(spec.lora, model),
                use_gradient_checkpointing="unsloth" if spec.training.gradient_checkpointing else False,
                random_state=spec.seed,
            )
        if getattr(spec, "init_adapter", None):
            load_init_adapter(model, spec.init_adapter)
        return model, _fix_tokenizer(tokenizer, info.model_notes), None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    _note_dtype(model_path, spec.dtype, info)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype)
    if info.device.startswith("cuda"):
        model = model.to("cuda")
    if getattr(spec, "init_adapter", None):
        # Wrap here (not in the trainer) so the adapter's weights can be loaded before training; TRL's trainers take
        # an already-wrapped PeftModel when no peft_config is passed.
        from peft import get_peft_model

        model = get_peft_model(model, peft_config(spec))
        load_init_adapter(model, spec.init_adapter)
        return model, _fix_tokenizer(tokenizer, info.model_notes), None
    return model, _fix_tokenizer(tokenizer, info.model_notes), peft_config(spec)


def load_init_adapter(model: Any, folder: str) -> int:
    """Copy the LoRA weights saved in `folder` into `model`'s adapter (same rank and targets; validated in the spec).
    Returns the number of tensors loaded; raises RuntimeError when the adapter does not fit the model."""
    from pathlib import Path

    from peft.utils import load_peft_weights, set_peft_model_state_dict

    weights = load_peft_weights(str(Path(folder).expanduser()), device="cpu")
    result = set_peft_model_state_dict(model, weights)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if unexpected or missing or not weights:
        example = (unexpected or missing or ["(no tensors)"])[0]
        raise RuntimeError(
            f"init_adapter {folder} does not fit this model's LoRA adapter ({len(unexpected)} unexpected, "
            f"{len(missing)} missing tensors, e.g. {example}): was it trained on the same base model and LoRA settings?")
    return len(weights)


def _fix_tokenizer(tokenizer: Any, notes: list[str] | None = None) -> Any:
    """Give the tokenizer what training and chat-formatted prompts need, saying in `notes` what was chosen."""
    notes = notes if notes is not None else []
    tok = getattr(tokenizer, "tokenizer", tokenizer)  # processors wrap a tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
        notes.append(f"pad token: the tokenizer has none; using its end-of-sequence token {tok.eos_token!r} "
                     "(padding is masked out of the loss)")
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHATML_TEMPLATE
        if tokenizer is not tok:
            tokenizer.chat_template = CHATML_TEMPLATE
        notes.append("chat template: the tokenizer has none; using ChatML (<|im_start|>role … <|im_end|>), which "
                     "the saved adapter's tokenizer keeps, so evaluation and chat ask the same way")
    return tokenizer


def _note_dtype(model_path: str, requested: str, info: BackendInfo) -> None:
    """Say when the weights are stored in another dtype than the run computes in (e.g. bf16 files trained in fp32
    on a CPU without native bf16)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_path)
    except Exception:  # the load that follows reports an unreadable model in its own words
        return
    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    stored = str(stored).replace("torch.", "") if stored is not None else None
    if stored and stored != info.dtype:
        info.model_notes.append(f"dtype: the weights are stored in {stored}; this run computes in {info.dtype} "
                                f"(dtype: {requested} on {info.device})")


def check_backend_request(spec: Any) -> str | None:
    """Problems with GPU-only options, stated before loading anything."""
    if spec.load_in_4bit or spec.fast_inference:
        import torch

        if not torch.cuda.is_available():
            which = "load_in_4bit" if spec.load_in_4bit else "fast_inference"
            return f"{which} needs a CUDA GPU (Unsloth); this machine has none"
        if spec.fast_inference:
            import importlib.util

            if importlib.util.find_spec("vllm") is None:
                return "fast_inference needs vllm installed (pip install vllm)"
    return None
