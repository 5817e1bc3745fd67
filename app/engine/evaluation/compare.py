"""Side-by-side comparison of models and preference pairs (exports: app/engine/evaluation/export.py).

    refs = available_models(runs_dir)                          # base model, each run's final adapter and checkpoints
    result = compare_models(refs[:2], rows, [RewardSpec(name="numeric_answer")], max_new_tokens=32)
    result.summary                                             # mean reward, accuracy, length, seconds per model
    save_preference("preferences/pairs.jsonl", prompt, chosen, rejected)   # TRL's preference format, for DPO

Inference here is the plain transformers path on the CPU in fp32 (PEFT adapters merged into a copy of the base
model), so it never competes with a training run for a GPU and gives the same numbers on every machine. Loaded
models are cached (a few at a time) so repeated comparisons do not reload them.
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from app.engine.core import runs
from app.engine.data.preferences import Messages, PairError, PairSample
from app.engine.evaluation.evaluate import last_user_text, mean_of
from app.engine.presentation.formats import percent, side_by_side_widths

BASE_PREFIX = "base::"
ADAPTER_PREFIX = "adapter::"
MODEL_CACHE_SIZE = 3  # loaded models kept in memory (135M fp32 ≈ 0.55 GB each)
# Files of a checkpoint folder that belong to the optimizer state, not to the model.
TRAINING_STATE_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin",
                        "scaler.pt", runs.COMPLETE_MARKER)

ProgressFn = Callable[[float, str], None]


class CompareError(ValueError):
    """A comparison or export problem, in one sentence for the user."""


# -- which models can be compared -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """A model to generate with: a base model, optionally with a LoRA adapter (or a full fine-tuned folder)."""

    label: str  # shown to the user
    base: str  # RunSpec model name: 'default', a folder, or a hub id
    adapter: str | None = None  # adapter folder (a run's adapter/ or checkpoints/checkpoint-N), or a full model folder
    run: str | None = None  # run folder name, when from a run

    endpoint: str | None = None  # an OpenAI-compatible base URL serving `base` (python -m app.serve, vLLM, …)

    @property
    def key(self) -> str:
        """A string that identifies this model (a dropdown value); `parse_model_key` turns it back."""
        if self.endpoint:
            from app.engine.evaluation.endpoint import endpoint_key

            return endpoint_key(self.endpoint, self.base)
        return f"{ADAPTER_PREFIX}{self.adapter}" if self.adapter else f"{BASE_PREFIX}{self.base}"


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists()


def is_model(folder: Path) -> bool:
    return (folder / "config.json").exists() and any(folder.glob("*.safetensors"))


def run_base(run_dir: Path) -> str:
    try:
        from app.engine.core.spec import RunSpec

        return RunSpec.load(run_dir / "spec.yaml").model
    except Exception:
        return "default"


def run_of(folder: Path) -> Path | None:
    """The run folder that holds an adapter/ or checkpoints/checkpoint-N folder."""
    for parent in (folder.parent, folder.parent.parent):
        if (parent / "spec.yaml").exists():
            return parent
    return None


def base_label(model: str) -> str:
    from app.engine.training.models import DEFAULT_MODEL, is_default_model

    return f"base · {DEFAULT_MODEL}" if is_default_model(model) else f"base · {model}"


def available_models(runs_dir: Path | str | None, bases: Sequence[str] = ("default",),
                     checkpoints: bool = True) -> list[ModelRef]:
    """Base models, then every run's final adapter and (optionally) its complete checkpoints, newest run first."""
    from app.engine.training.models import is_default_model

    refs: list[ModelRef] = []
    seen_bases: list[str] = []

    def add_base(model: str) -> None:
        norm = "default" if is_default_model(model) else model
        if norm not in seen_bases:
            seen_bases.append(norm)
            refs.append(ModelRef(base_label(norm), norm))

    for b in bases:
        add_base(b)
    run_refs: list[ModelRef] = []
    for info in runs.list_runs(Path(runs_dir)) if runs_dir else []:
        base = run_base(info.path)
        add_base(base)
        adapter = info.path / "adapter"
        if is_adapter(adapter) or is_model(adapter):
            run_refs.append(ModelRef(f"{info.name} · final", base, str(adapter), info.path.name))
        if checkpoints:
            for ckpt in reversed(runs.checkpoints(info.path)):
                if is_adapter(ckpt) or is_model(ckpt):
                    run_refs.append(ModelRef(f"{info.name} · {ckpt.name}", base, str(ckpt), info.path.name))
    return refs + run_refs


def parse_model_key(key: str) -> ModelRef:
    """The ModelRef of a `ModelRef.key` string (a base model name, an adapter folder, or an endpoint)."""
    from app.engine.evaluation.endpoint import ENDPOINT_PREFIX, parse_endpoint_key

    if key.startswith(ENDPOINT_PREFIX):
        base_url, model = parse_endpoint_key(key)
        return endpoint_ref(base_url, model)
    if key.startswith(BASE_PREFIX):
        model = key[len(BASE_PREFIX):]
        return ModelRef(base_label(model), model)
    if key.startswith(ADAPTER_PREFIX):
        folder = Path(key[len(ADAPTER_PREFIX):])
        if not folder.exists():
            raise CompareError(f"Model folder {folder} no longer exists (was the run deleted?).")
        run_dir = run_of(folder)
        base = run_base(run_dir) if run_dir else adapter_base(folder)
        name = (runs.read_status(run_dir).get("name") or run_dir.name) if run_dir else folder.name
        label = f"{name} · {'final' if folder.name == 'adapter' else folder.name}"
        return ModelRef(label, base, str(folder), run_dir.name if run_dir else None)
    raise CompareError(f"Unknown model {key!r}: pick a base model or a run's adapter.")


def endpoint_ref(base_url: str, model: str) -> ModelRef:
    """A model served over the OpenAI API as a Compare column; raises CompareError for a URL that is not one."""
    base_url = (base_url or "").strip().rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise CompareError(f"{base_url or 'The endpoint'} is not an http(s) URL; give the server's base URL, e.g. "
                           "http://127.0.0.1:8000/v1 (what python -m app.serve prints).")
    if not (model or "").strip():
        raise CompareError("Name the model the endpoint serves (python -m app.serve prints it).")
    return ModelRef(f"endpoint · {Path(model.strip()).name or model.strip()} · {base_url}", model.strip(),
                    endpoint=base_url)


def adapter_base(folder: Path) -> str:
    try:
        return json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    except Exception:
        return "default"


# -- loading ----------------------------------------------------------------------------------------------------------
_CACHE: "OrderedDict[str, tuple[Any, Any]]" = OrderedDict()
_CACHE_LOCK = threading.Lock()


def load_model(ref: ModelRef, progress: ProgressFn | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) for inference: fp32 on the CPU, eval mode, adapter merged. Cached by `ref.key`. An
    endpoint's model is its client (no tokenizer: the server applies its own chat template); where the generation
    worker is on (a CUDA GPU), the model is its handle in that process (generation_worker.WorkerModel)."""
    if ref.endpoint:
        from app.engine.evaluation.endpoint import EndpointModel

        return EndpointModel(ref.endpoint, ref.base), None
    adapter = Path(ref.adapter) if ref.adapter else None
    if adapter is not None and not adapter.exists():
        raise CompareError(f"Adapter folder {adapter} does not exist.")
    from app.engine.evaluation import generation_worker

    if generation_worker.enabled():
        load = generation_worker.Load(ref.base, str(adapter) if adapter else None, _trained_in_4bit(adapter), ref.label)
        return generation_worker.WorkerModel(load), None
    with _CACHE_LOCK:
        if ref.key in _CACHE:
            _CACHE.move_to_end(ref.key)
            return _CACHE[ref.key]
    import torch

    from app.engine.evaluation.loading import load_local

    if progress:
        progress(0.0, f"Loading {ref.label}")
    try:
        model, tokenizer = load_local(ref.base, adapter, dtype=torch.float32, device="cpu", progress=progress)
    except Exception as exc:
        raise CompareError(f"Could not load {ref.label}: {exc}") from None
    with _CACHE_LOCK:
        _CACHE[ref.key] = (model, tokenizer)
        while len(_CACHE) > MODEL_CACHE_SIZE:
            _CACHE.popitem(last=False)
    return model, tokenizer


def _trained_in_4bit(adapter: Path | None) -> bool:
    """Whether the run that made `adapter` loaded its base in 4-bit (the generation worker loads it the same way)."""
    run = run_of(adapter) if adapter is not None else None
    if run is None:
        return False
    try:
        from app.engine.core.spec import RunSpec

        return bool(RunSpec.load(run / "spec.yaml").load_in_4bit)
    except Exception:
        return False


def clear_cache() -> None:
    """Forget the loaded models (frees their memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# -- comparing ----------------------------------------------------------------------------------------------------------
@dataclass
class CompareResult:
    """Outputs of several models on the same prompts, scored with the same rewards."""

    models: list[str]  # labels, in column order
    keys: list[str]  # ModelRef keys, same order
    prompts: list[str]  # prompt text per row (the last user message)
    messages: list[list[dict[str, str]]]  # the chat prompt per row (as generated from)
    references: list[str | None]  # reference answer per row, when the rows have one
    outputs: dict[str, list[dict[str, Any]]]  # label → per row {completion, scores, total, tokens}
    summary: list[dict[str, Any]]  # per model: model, mean_reward, accuracy, mean_length, seconds, n
    reward_names: list[str]
    accuracy_reward: str | None

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """(headers, rows) of the side-by-side table: prompt, reference, then per model its output and reward; the
        last row summarises each model (mean reward, accuracy)."""
        headers = ["#", "prompt"] + (["reference"] if any(self.references) else [])
        for i, m in enumerate(self.models):
            headers += [m, f"reward {chr(65 + i) if i < 26 else i + 1}"]
        rows: list[list[Any]] = []
        for i, prompt in enumerate(self.prompts):
            row: list[Any] = [i + 1, prompt] + ([self.references[i] or ""] if any(self.references) else [])
            for m in self.models:
                out = self.outputs[m][i]
                row += [out["completion"], _fmt_scores(out["scores"], out["total"])]
            rows.append(row)
        summary: list[Any] = ["", "SUMMARY"] + ([""] if any(self.references) else [])
        for s in self.summary:
            acc = "" if s["accuracy"] is None else f"accuracy {s['accuracy']:.0%} · "
            mean = "–" if s["mean_reward"] is None else f"{s['mean_reward']:.3f}"
            summary += [f"{acc}mean reward {mean} · {s['mean_length']:.1f} tokens on average", mean]
        rows.append(summary)
        return headers, rows

    def column_widths(self) -> list[str]:
        """Widths for the side-by-side table (presentation.formats.side_by_side_widths)."""
        return side_by_side_widths(len(self.models), any(self.references))

    def summary_table(self) -> tuple[list[str], list[list[Any]]]:
        """(headers, rows): model, mean reward, accuracy, each reward's mean, mean length, seconds."""
        headers = ["model", "mean reward", "accuracy"] + [f"{n}" for n in self.reward_names] + [
            "tokens (mean)", "seconds"]
        rows = []
        for s in self.summary:
            rows.append([s["model"], _round(s["mean_reward"]), percent(s["accuracy"])]
                        + [_round(s["per_reward"].get(n)) for n in self.reward_names]
                        + [round(s["mean_length"], 1), round(s["seconds"], 1)])
        return headers, rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompareResult":
        return cls(**data)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _fmt_scores(scores: dict[str, float | None], total: float | None) -> str:
    if not scores:
        return ""
    if len(scores) == 1:
        (value,) = scores.values()
        return "–" if value is None else f"{value:g}"
    parts = ", ".join(f"{k} {('–' if v is None else f'{v:g}')}" for k, v in scores.items())
    return f"{'–' if total is None else f'{total:g}'} ({parts})"


def prompt_rows_from_text(text: str) -> list[dict[str, Any]]:
    """Typed prompts, one per line; `prompt => answer` adds a reference answer (scored by answer rewards)."""
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        if " => " in line:
            prompt, answer = line.rsplit(" => ", 1)
            rows.append({"prompt": prompt.strip(), "answer": answer.strip()})
        else:
            rows.append({"prompt": line})
    return rows


def _run_data(run_dir: Path | str) -> tuple[Any, Any]:
    from app.engine.core.spec import RunSpec, SpecError
    from app.engine.data.sources import DataError, load_data

    try:
        spec = RunSpec.load(Path(run_dir) / "spec.yaml")
        return spec, load_data(spec.data)
    except (SpecError, DataError) as exc:
        raise CompareError(f"Could not read the rows of {Path(run_dir).name}: {exc}") from None


def held_out_rows(run_dir: Path | str, n: int = 8) -> tuple[list[dict[str, Any]], str | None]:
    """The first `n` held-out rows of a run (never trained on: no training row asks their question) and its system
    prompt. A run that held nothing out raises CompareError: its training rows are never passed off as held-out."""
    spec, data = _run_data(run_dir)
    if not data.eval:
        raise CompareError(
            f"Run {Path(run_dir).name} held out no rows (data.eval_size {spec.data.eval_size}), so it has no prompts "
            "it never trained on: type prompts, load a file, or use its training rows (labelled 'seen in training').")
    return data.eval[:n], spec.data.system_prompt


def training_rows(run_dir: Path | str, n: int = 8) -> tuple[list[dict[str, Any]], str | None]:
    """The first `n` rows a run trained on and its system prompt: scores on them measure fit, not generalisation."""
    spec, data = _run_data(run_dir)
    return data.train[:n], spec.data.system_prompt


def file_rows(path: Path | str, n: int = 8) -> list[dict[str, Any]]:
    """The first `n` rows of a .jsonl/.json/.csv file with a `prompt` (or chat `messages`) column."""
    from app.engine.data.profile import load_rows

    try:
        rows = load_rows(path)
    except (OSError, ValueError) as exc:
        raise CompareError(f"Could not read {Path(path).name}: {exc}") from None
    usable = [r for r in rows if r.get("prompt") or r.get("messages")]
    if not usable:
        raise CompareError(f"{Path(path).name} has no 'prompt' (or chat 'messages') column with text.")
    return usable[:n]


def build_reward_funcs(reward_specs: Sequence[Any]) -> tuple[list[Any], list[float], list[str | None]]:
    """(callables, weights, registry names) for RewardSpec-like items (dicts or RewardSpec)."""
    from app.engine.core.spec import RewardSpec, RunSpec
    from app.engine.training.reward_funcs import build_rewards

    specs = [r if isinstance(r, RewardSpec) else RewardSpec(**r) for r in reward_specs]
    try:
        return build_rewards(RunSpec(rewards=specs))
    except Exception as exc:  # unknown name, bad params, user code that does not load
        raise CompareError(f"Could not build the rewards: {exc}") from None


def compare_models(
    refs: Sequence[ModelRef],
    rows: Sequence[dict[str, Any]],
    reward_specs: Sequence[Any] = (),
    system_prompt: str | None = None,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    batch_size: int = 16,
    progress: ProgressFn | None = None,
) -> CompareResult:
    """Generate one reply per (prompt row × model) and score them all with the same rewards.

    Rows are dicts with `prompt` (text or chat messages) and any columns the rewards read (e.g. `answer`).
    Greedy by default, so outputs are reproducible. Raises CompareError for unusable input.
    """
    from app.engine.data.forms import prompt_messages
    from app.engine.evaluation.endpoint import EndpointError
    from app.engine.evaluation.evaluate import (
        correctness_reward,
        generate_and_score,
        table_accuracy,
    )

    if len(refs) < 1:
        raise CompareError("Pick at least one model (two or more to compare).")
    if not rows:
        raise CompareError("Give at least one prompt.")
    labels = [r.label for r in refs]
    if len(set(labels)) != len(labels):
        raise CompareError("The same model is picked twice.")
    rows = [dict(r) for r in rows]
    for i, r in enumerate(rows):
        if not r.get("prompt") and not r.get("messages"):
            raise CompareError(f"Prompt row {i + 1} is empty.")
    messages = [prompt_messages(r, system_prompt) for r in rows]
    prompts = [last_user_text(m) for m in messages]
    references = [None if r.get("answer") is None else str(r.get("answer")) for r in rows]
    funcs, weights, registry = build_reward_funcs(reward_specs) if reward_specs else ([], [], [])
    names = [getattr(f, "__name__", str(f)) for f in funcs]
    accuracy_reward = correctness_reward(names, registry)
    outputs: dict[str, list[dict[str, Any]]] = {}
    summary = []
    steps = len(refs) * 2
    for m, ref in enumerate(refs):
        start = time.time()

        def note(fraction: float, message: str, _m: int = m) -> None:
            if progress:
                progress((2 * _m + fraction * 0.5) / steps, message)

        model, tokenizer = load_model(ref, progress=note)
        if progress:
            progress((2 * m + 0.5) / steps, f"Generating with {ref.label} ({len(rows)} prompts)")
        try:
            gen = generate_and_score(model, tokenizer, rows, funcs, weights, system_prompt=system_prompt,
                                     max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=do_sample,
                                     temperature=temperature)
        except EndpointError as exc:
            raise CompareError(str(exc)) from None
        lengths = gen.lengths
        if progress:
            progress((2 * m + 1.5) / steps, f"Scored {ref.label}")
        per_row = [{"completion": r["completion"], "tokens": n_tok, "scores": r["scores"], "total": r["total"],
                    "errors": r["errors"]} for r, n_tok in zip(gen.rows, lengths)]
        outputs[ref.label] = per_row
        acc = table_accuracy(per_row, accuracy_reward)
        summary.append({
            "model": ref.label,
            "mean_reward": mean_of([r["total"] for r in per_row]),
            "accuracy": acc.value,
            "n_scored": acc.n_scored,
            "per_reward": {n: mean_of([r["scores"].get(n) for r in per_row]) for n in names},
            "mean_length": sum(lengths) / max(len(lengths), 1),
            "seconds": time.time() - start,
            "n": len(per_row),
        })
    for f in funcs:  # stop sandboxed user rewards
        close = getattr(f, "close", None)
        if callable(close):
            close()
    if progress:
        progress(1.0, "Done")
    return CompareResult(labels, [r.key for r in refs], prompts, messages, references, outputs, summary, names,
                         accuracy_reward)


# -- preference pairs -------------------------------------------------------------------------------------------------
def save_preference(path: Path | str, prompt: str | list[dict[str, str]], chosen: str, rejected: str,
                    meta: dict[str, Any] | None = None) -> int:
    """Append one preference pair to a JSONL file in TRL's conversational preference format and return how many
    pairs the file now holds:

        {"prompt": [{"role": "user", "content": ...}], "chosen": [{"role": "assistant", "content": ...}],
         "rejected": [{"role": "assistant", "content": ...}]}

    A DPO run reads the file as it is (`data.source: <path>`). `meta` (models, step…) goes under `"meta"`, which
    trainers ignore. Written through `app.engine.data.preferences.append_pair` (file lock, flushed and synced per line).
    """
    from app.engine.data.preferences import PairError, append_pair

    if isinstance(chosen, str) and isinstance(rejected, str) and chosen.strip() == rejected.strip():
        raise CompareError("The two replies are identical: there is no preference to record.")
    try:
        return append_pair(path, prompt, chosen, rejected, meta=meta)
    except PairError as exc:
        raise CompareError(str(exc)) from None


# -- collecting preference pairs: two sampled replies for a person to compare -------------------------------
def _as_messages(prompt: str | Messages, system_prompt: str | None) -> Messages:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise PairError("The prompt is empty.")
        messages: Messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
        if not messages:
            raise PairError("The prompt is empty.")
    if system_prompt and messages[0].get("role") != "system":
        messages = [{"role": "system", "content": system_prompt}] + messages
    return messages


def sample_pair(
    model: Any,
    tokenizer: Any,
    prompt: str | Messages,
    *,
    other_model: Any = None,
    sources: tuple[str, str] = ("model", "model"),
    system_prompt: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    max_tries: int = 3,
    unsloth: bool = False,
    seed: int | None = None,
) -> PairSample:
    """Two sampled replies to `prompt` for a person to compare.

    One model: two samples in one `generate` call (`num_return_sequences=2`), drawn again (up to `max_tries`) while
    they are identical. With `other_model` (e.g. the base model against a trained run, sharing `tokenizer`): one
    sample from each, shown in random order, `sources` naming them ("base", "run") as `sources[0]` for `model`.
    """
    import torch

    from app.engine.evaluation.evaluate import generate_completions

    if seed is not None:
        torch.manual_seed(seed)
    rng = random.Random(seed)
    messages = _as_messages(prompt, system_prompt)
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, unsloth=unsloth)
    start = time.time()
    for _ in range(max(1, max_tries)):
        if other_model is None:
            texts, _ = generate_completions(model, tokenizer, [messages], num_return_sequences=2, **kwargs)
            first, second, names = texts[0], texts[1], tuple(sources)
        else:
            (first,), _ = generate_completions(model, tokenizer, [messages], **kwargs)
            (second,), _ = generate_completions(other_model, tokenizer, [messages], **kwargs)
            names = tuple(sources)
            if rng.random() < 0.5:  # no position bias: the trained model is not always B
                first, second, names = second, first, (names[1], names[0])
        if first.strip() != second.strip():
            break
    return PairSample(
        prompt=messages, a=first, b=second, sources=names, identical=first.strip() == second.strip(),
        seconds=time.time() - start,
    )


def count_preferences(path: Path | str) -> int:
    """How many usable pairs a preferences file holds (0 when it does not exist)."""
    from app.engine.data.preferences import count_pairs

    return count_pairs(path)


__all__ = [
    "ModelRef", "available_models", "parse_model_key", "load_model", "clear_cache", "compare_models", "CompareResult",
    "CompareError", "endpoint_ref", "prompt_rows_from_text", "held_out_rows", "training_rows", "file_rows",
    "build_reward_funcs", "save_preference",
    "count_preferences", "TRAINING_STATE_FILES", "is_adapter", "is_model", "run_of", "run_base", "adapter_base",
]
