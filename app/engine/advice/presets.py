"""Per-method, per-hardware RunSpec defaults and the RunSpec a decision-tree recommendation leads to."""
from __future__ import annotations

import os
from typing import Any

from app.engine.core.processes import gpu_available
from app.engine.core.spec import RunSpec


def method_defaults(method: str, gpu: bool = False) -> dict[str, Any]:
    """Sensible RunSpec values (nested dict) for `method` on this hardware: small and quick on a CPU, larger
    batches and longer completions on a GPU. Matches the recipes/ files for the CPU case."""
    if method in ("sft", "dft"):
        return {
            "method": method,
            "training": {"learning_rate": 2e-4, "max_steps": 100 if gpu else 40,
                         "per_device_train_batch_size": 16 if gpu else 8},
            "generation": {"max_length": 512 if gpu else 256, "max_completion_length": 64 if gpu else 32},
            "logging": {"eval_every": 0, "save_steps": 50 if gpu else 20},
        }
    if method == "dpo":  # preference pairs: a smaller step, one row = one pair (two sequences)
        return {
            "method": method,
            "training": {"learning_rate": 5e-5, "max_steps": 100 if gpu else 30,
                         "per_device_train_batch_size": 16 if gpu else 8},
            "generation": {"max_length": 512 if gpu else 128, "max_completion_length": 64 if gpu else 16},
            "dpo": {"beta": 0.1, "loss_type": "sigmoid"},
            "logging": {"save_steps": 50 if gpu else 30},
        }
    rl: dict[str, Any] = {  # grpo, prefix_rft
        "method": method,
        "training": {"learning_rate": 1e-4 if gpu else 2e-4, "max_steps": 200 if gpu else 40,
                     "per_device_train_batch_size": 32 if gpu else 16},
        "generation": {"num_generations": 8, "max_completion_length": 128 if gpu else 16, "temperature": 1.0},
        "grpo": {"loss_type": "dapo", "beta": 0.0, "scale_rewards": "group"},
        "logging": {"sample_every": 1, "save_steps": 50 if gpu else 20},
    }
    if method == "prefix_rft":  # the paper's setting: Dr. GRPO advantages, no KL term
        rl["grpo"] = {"loss_type": "dr_grpo", "beta": 0.0, "scale_rewards": "none"}
    return rl


def merge_nested(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, recursively for mappings (lists and values replace)."""
    out = dict(base)
    for key, value in (changes or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_nested(out[key], value)
        else:
            out[key] = value
    return out


def spec_with(spec: RunSpec | dict[str, Any] | None, changes: dict[str, Any]) -> RunSpec:
    """A RunSpec from `spec` (or the defaults) with nested `changes`; raises SpecError for bad fields."""
    data = spec.to_dict() if isinstance(spec, RunSpec) else dict(spec or RunSpec().to_dict())
    return RunSpec.from_dict(merge_nested(data, changes))


def recommended_spec(
    recommendation: Any,
    base: RunSpec | dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    gpu: bool | None = None,
    preferences_file: str | os.PathLike[str] | None = None,
) -> RunSpec:
    """The RunSpec a decision-tree recommendation (`decision.Recommendation`) leads to: `base` (or the defaults)
    with the method's per-hardware defaults, the recommendation's overrides and the profiled dataset.

    `data`: what the profiler found — `source`, `task_params`, `eval_size`, `demonstration_column`, `format`.
    A DPO recommendation without preference data trains on `preferences_file` (the pairs the app collects).
    Raises SpecError (a bad field) or ValueError (a method this version cannot train)."""
    from app.engine.core.spec import METHODS, RL_METHODS

    method, data = recommendation.method, dict(data or {})
    if method not in METHODS:
        raise ValueError(f"{method} training is not available in this version")
    defaults = method_defaults(method, gpu_available() if gpu is None else gpu)
    changes = merge_nested(defaults, {k: v for k, v in recommendation.spec_overrides.items() if k != "method"})
    changes["method"] = method
    if method == "prefix_rft":  # its loss settings are fixed by the method (Dr. GRPO, no KL)
        changes["grpo"] = defaults["grpo"]
        if data.get("demonstration_column"):
            changes["prefix"] = {"demonstration_column": data["demonstration_column"]}
    if data.get("source"):
        changes["data"] = {"source": data["source"], "task_params": data.get("task_params") or {},
                           "eval_size": int(data.get("eval_size") or 64)}
    if method in RL_METHODS and not changes.get("rewards"):
        changes["rewards"] = [{"name": "exact_answer", "weight": 1.0}]
    if method == "dpo" and data.get("format") != "preference" and preferences_file is not None:
        changes["data"] = _pairs_data(preferences_file)
    return spec_with(base, changes)


def _pairs_data(pairs_file: str | os.PathLike[str]) -> dict[str, Any]:
    return {"source": str(pairs_file), "task_params": {}, "eval_size": 8}


def preference_spec(base: RunSpec | dict[str, Any] | None, pairs_file: str | os.PathLike[str],
                    gpu: bool | None = None) -> RunSpec:
    """A DPO RunSpec that trains on `pairs_file` (the pairs the app collects), with DPO's defaults for this hardware
    and `base`'s model, seed and LoRA settings. Raises SpecError for a bad field."""
    changes = method_defaults("dpo", gpu_available() if gpu is None else gpu)
    changes["data"] = _pairs_data(pairs_file)
    changes["rewards"] = []  # DPO learns from the pairs; GRPO rewards in `base` do not apply
    return spec_with(base, changes)
