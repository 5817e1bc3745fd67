"""Loading a model for inference: a base model (a RunSpec model name) with a LoRA adapter merged in, or a full
fine-tuned model folder, on a device and in a dtype. The app's in-process path (`compare.load_model`: fp32 on the
CPU) and the generation worker (the GPU, bf16 or 4-bit) load the same way."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def load_local(base: str, adapter: str | Path | None, dtype: Any, device: str = "cpu", quantization: Any = None,
               progress: Callable[[float, str], None] | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode, the adapter merged. The tokenizer is the adapter's when it saved one (a run
    may have chosen a chat template for a model without one). Raises what loading raises."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from app.engine.training.models import resolve_model

    folder = Path(adapter) if adapter else None
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": device})
    if folder is not None and not (folder / "adapter_config.json").exists():  # a full fine-tuned model folder
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    else:
        base_path = resolve_model(base, progress)
        model = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
        tok_source = folder if folder is not None and (folder / "tokenizer_config.json").exists() else base_path
        tokenizer = AutoTokenizer.from_pretrained(tok_source)
        if folder is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(folder))
            # A 4-bit base keeps the adapter beside it (merging into quantized weights would round the update).
            model = model if quantization is not None else model.merge_and_unload()
    if quantization is None:
        model.to(device)
    model.eval()
    return model, tokenizer


__all__ = ["load_local"]
