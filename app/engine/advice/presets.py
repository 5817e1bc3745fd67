"""Per-method, per-hardware RunSpec defaults and the RunSpec a decision-tree recommendation leads to."""
from __future__ import annotations

import os
from typing import Any

from app.engine import methods
from app.engine.core.processes import gpu_available
from app.engine.core.spec import RunSpec


def method_defaults(method: str, gpu: bool = False) -> dict[str, Any]:
    """Sensible RunSpec values (nested dict) for `method` on this hardware (the method's own `defaults`): small and
    quick on a CPU, larger batches and longer completions on a GPU. Matches the recipes/ files for the CPU case."""
    return methods.get(method).defaults(gpu)


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
    A method that learns from marks (DPO's pairs, KTO's thumbs), recommended for data without them, trains on
    `preferences_file`: the file the app collects its marks in.
    Raises SpecError (a bad field) or ValueError (a method this version cannot train)."""
    method, data = recommendation.method, dict(data or {})
    trainer = methods.find(method)
    if trainer is None:
        raise ValueError(f"{method} training is not available in this version")
    defaults = trainer.defaults(gpu_available() if gpu is None else gpu)
    changes = merge_nested(defaults, {k: v for k, v in recommendation.spec_overrides.items() if k != "method"})
    changes["method"] = method
    if data.get("source"):
        changes["data"] = {"source": data["source"], "task_params": data.get("task_params") or {},
                           "eval_size": int(data.get("eval_size") or 64)}
    changes = trainer.recommended(changes, data)
    if trainer.collects and data.get("format") != "preference" and preferences_file is not None:
        changes["data"] = _pairs_data(preferences_file)  # no marks in the data yet: train on those the app collects
    return spec_with(base, changes)


def _pairs_data(pairs_file: str | os.PathLike[str]) -> dict[str, Any]:
    return {"source": str(pairs_file), "task_params": {}, "eval_size": 8}


def marks_spec(base: RunSpec | dict[str, Any] | None, method: str, marks_file: str | os.PathLike[str],
               gpu: bool | None = None) -> RunSpec:
    """A RunSpec of `method` (one that learns from marks: DPO's pairs, KTO's thumbs) training on `marks_file`, the
    file the app collects them in, with the method's defaults for this hardware and `base`'s model, seed and LoRA
    settings. Raises SpecError for a bad field."""
    changes = method_defaults(method, gpu_available() if gpu is None else gpu)
    changes["data"] = _pairs_data(marks_file)
    changes["rewards"] = []  # it learns from the marks; GRPO rewards in `base` do not apply
    return spec_with(base, changes)


def preference_spec(base: RunSpec | dict[str, Any] | None, pairs_file: str | os.PathLike[str],
                    gpu: bool | None = None) -> RunSpec:
    """A DPO RunSpec that trains on `pairs_file` (the pairs the app collects)."""
    return marks_spec(base, "dpo", pairs_file, gpu)
