"""The workbench engine: everything except the UI, with no Gradio import (docs/architecture.md).

    core/          the RunSpec and its validation, the run store, worker processes and the GPU rule, app folders
    data/          sources (files, hub, built-in tasks), TRL's row forms, leak-free splits, the dataset profile
    methods/       one module per training method behind one protocol, and their registry
    training/      the worker (one run in one process), backends, model loading, callbacks, kernels
    evaluation/    generation and the one accuracy, comparing models, export, the method comparison, statistics
    advice/        the decision tree, method presets, run health
    presentation/  the charts (the only engine place that formats for the UI)

The public API is re-exported here (what the README and the notebooks use); names load on first use, so
`import app.engine` stays light:

    from app.engine import RunSpec, train, runs, charts
    result = train(RunSpec.load("recipes/arithmetic-grpo.yaml"))
"""
from __future__ import annotations

import importlib
from typing import Any

# public name → (module, attribute); attribute None: the module itself
_API: dict[str, tuple[str, str | None]] = {
    # the spec
    "RunSpec": ("app.engine.core.spec", "RunSpec"),
    "RewardSpec": ("app.engine.core.spec", "RewardSpec"),
    "SpecError": ("app.engine.core.fields", "SpecError"),
    "field_help": ("app.engine.core.spec", "field_help"),
    # training, in this process or as a worker process
    "train": ("app.engine.training.worker", "train"),
    "train_from_yaml": ("app.engine.training.worker", "train_from_yaml"),
    "start_run": ("app.engine.core.processes", "start_run"),
    "resume_run": ("app.engine.core.processes", "resume_run"),
    "stop_run": ("app.engine.core.processes", "stop_run"),
    "gpu_available": ("app.engine.core.processes", "gpu_available"),
    "LaunchRefused": ("app.engine.core.processes", "LaunchRefused"),
    # the run store and reading runs live
    "runs": ("app.engine.core.runs", None),
    "RunReader": ("app.engine.core.run_reader", "RunReader"),
    "sample_steps": ("app.engine.core.run_reader", "sample_steps"),
    "samples_at": ("app.engine.core.run_reader", "samples_at"),
    "log_tail": ("app.engine.core.run_reader", "log_tail"),
    "resolve_paths": ("app.engine.core.folders", "resolve_paths"),
    # data
    "load_source_rows": ("app.engine.data.sources", "load_source_rows"),
    "load_data": ("app.engine.data.sources", "load_data"),
    "profile_dataset": ("app.engine.data.profile", "profile_dataset"),
    # choosing a method
    "methods": ("app.engine.methods", None),
    "recommend": ("app.engine.advice.decision", "recommend"),
    "Answers": ("app.engine.advice.decision", "Answers"),
    "answers_from_profile": ("app.engine.advice.decision", "answers_from_profile"),
    "tree_figure": ("app.engine.presentation.decision_tree", "tree_figure"),
    "QUESTIONS": ("app.engine.advice.decision", "QUESTIONS"),
    "METHOD_NAMES": ("app.engine.advice.decision", "METHOD_NAMES"),
    "recommended_spec": ("app.engine.advice.presets", "recommended_spec"),
    "method_defaults": ("app.engine.advice.presets", "method_defaults"),
    "spec_with": ("app.engine.advice.presets", "spec_with"),
    # evaluation, comparison, export
    "evaluate": ("app.engine.evaluation.evaluate", "evaluate"),
    "generate_completions": ("app.engine.evaluation.evaluate", "generate_completions"),
    "resolve_model": ("app.engine.training.models", "resolve_model"),
    "compare": ("app.engine.evaluation.compare", None),
    "export": ("app.engine.evaluation.export", None),
    "serve": ("app.engine.evaluation.serve", None),
    "compare_models": ("app.engine.evaluation.compare", "compare_models"),
    "method_compare": ("app.engine.evaluation.method_compare", None),
    "CompareConfig": ("app.engine.evaluation.method_compare", "CompareConfig"),
    "prepare_task_data": ("app.engine.evaluation.method_compare", "prepare_task_data"),
    # the reward playground
    "playground": ("app.engine.evaluation.playground", None),
    "run_playground": ("app.engine.evaluation.playground", "run_playground"),
    "typed_rows": ("app.engine.evaluation.playground", "typed_rows"),
    "dataset_rows": ("app.engine.evaluation.playground", "dataset_rows"),
    "prompt_row": ("app.engine.evaluation.playground", "prompt_row"),
    "sample_rows": ("app.engine.evaluation.playground", "sample_rows"),
    "save_user_reward": ("app.engine.evaluation.playground", "save_user_reward"),
    # charts
    "charts": ("app.engine.presentation.charts", None),
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _API[name]
    except KeyError:
        raise AttributeError(f"module 'app.engine' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
