"""RunSpec validation: every check that needs no model, each problem naming its field in one sentence."""
from __future__ import annotations

import math
from pathlib import Path

from app.engine.models import ModelNotFound, classify_model
from app.engine.spec import BACKENDS, DTYPES, GRPO_LOSS_TYPES, METHODS, SCALE_REWARDS, RunSpec, SpecError


def spec_problems(spec: RunSpec, check_files: bool = True) -> list[SpecError]:
    """All problems found in `spec`; `check_files` also reads the dataset and reward files."""
    problems: list[SpecError] = []

    def bad(field: str, problem: str) -> None:
        problems.append(SpecError(field, problem))

    if spec.method not in METHODS:
        bad("method", f"unknown method {spec.method!r}; choose one of {', '.join(METHODS)}")
    if spec.backend not in BACKENDS:
        bad("backend", f"unknown backend {spec.backend!r}; choose one of {', '.join(BACKENDS)}")
    if spec.dtype not in DTYPES:
        bad("dtype", f"unknown dtype {spec.dtype!r}; choose one of {', '.join(DTYPES)}")
    try:
        classify_model(spec.model)
    except ModelNotFound as exc:
        bad("model", str(exc))

    t, g, lg = spec.training, spec.generation, spec.logging
    _positive(bad, "training.max_steps", t.max_steps)
    _positive(bad, "training.per_device_train_batch_size", t.per_device_train_batch_size)
    _positive(bad, "training.gradient_accumulation_steps", t.gradient_accumulation_steps)
    if not (t.learning_rate > 0 and math.isfinite(t.learning_rate)):
        bad("training.learning_rate", f"must be a positive number, got {t.learning_rate}")
    if not 0 <= t.warmup_ratio < 1:
        bad("training.warmup_ratio", f"must be in [0, 1), got {t.warmup_ratio}")
    _positive(bad, "generation.max_completion_length", g.max_completion_length)
    _positive(bad, "generation.max_length", g.max_length)
    if g.temperature <= 0:
        bad("generation.temperature", f"must be > 0, got {g.temperature}")
    if not 0 < g.top_p <= 1:
        bad("generation.top_p", f"must be in (0, 1], got {g.top_p}")
    for name in ("logging_steps", "sample_every", "save_steps", "save_total_limit"):
        _positive(bad, f"logging.{name}", getattr(lg, name))
    if lg.eval_every < 0:
        bad("logging.eval_every", f"must be 0 (off) or positive, got {lg.eval_every}")
    if spec.lora.enabled:
        _positive(bad, "lora.r", spec.lora.r)
        _positive(bad, "lora.alpha", spec.lora.alpha)
    if spec.data.eval_size < 0:
        bad("data.eval_size", f"must be ≥ 0, got {spec.data.eval_size}")
    if spec.data.train_size is not None and spec.data.train_size <= 0:
        bad("data.train_size", f"must be positive or empty, got {spec.data.train_size}")

    if spec.method == "grpo":
        if g.num_generations < 2:
            bad("generation.num_generations", f"GRPO needs at least 2 completions per prompt, got {g.num_generations}")
        else:
            batch = t.per_device_train_batch_size * t.gradient_accumulation_steps
            if batch % g.num_generations:
                bad(
                    "training.per_device_train_batch_size",
                    f"the generation batch ({t.per_device_train_batch_size} × {t.gradient_accumulation_steps} "
                    f"accumulation = {batch}) must be divisible by generation.num_generations ({g.num_generations})",
                )
        if spec.grpo.loss_type not in GRPO_LOSS_TYPES:
            bad("grpo.loss_type", f"unknown loss {spec.grpo.loss_type!r}; choose one of {', '.join(GRPO_LOSS_TYPES)}")
        if spec.grpo.scale_rewards not in SCALE_REWARDS:
            bad("grpo.scale_rewards", f"choose one of {', '.join(SCALE_REWARDS)}")
        if spec.grpo.beta < 0:
            bad("grpo.beta", f"must be ≥ 0, got {spec.grpo.beta}")
        if not spec.rewards:
            bad("rewards", "GRPO needs at least one reward function")
    problems.extend(reward_problems(spec, check_files))
    if check_files and not any(p.field.startswith("data") for p in problems):
        problems.extend(data_problems(spec))
    return problems


def _positive(bad, field: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        bad(field, f"must be a positive integer, got {value!r}")


def reward_problems(spec: RunSpec, check_files: bool = True) -> list[SpecError]:
    import rewards

    problems = []
    for i, r in enumerate(spec.rewards):
        where = f"rewards[{i}]"
        given = [k for k in ("name", "file", "source") if getattr(r, k)]
        if len(given) != 1:
            problems.append(SpecError(where, "give exactly one of name (a built-in), file or source"))
            continue
        if not math.isfinite(r.weight):
            problems.append(SpecError(f"{where}.weight", f"must be a finite number, got {r.weight}"))
        if r.name and not rewards.exists(r.name):
            try:
                rewards.get(r.name)
            except Exception as exc:  # the registry's message lists close names
                problems.append(SpecError(f"{where}.name", str(exc)))
            continue
        if r.name:
            try:
                rewards.get(r.name, **r.params)
            except Exception as exc:
                problems.append(SpecError(f"{where}.params", str(exc)))
        if r.file and check_files and not Path(r.file).expanduser().exists():
            problems.append(SpecError(f"{where}.file", f"file {r.file} does not exist"))
    return problems


def data_problems(spec: RunSpec) -> list[SpecError]:
    from app.engine.data import DataError, column_problem, load_data

    try:
        data = load_data(spec.data)
    except DataError as exc:
        return [SpecError("data.source", str(exc))]
    problem = column_problem(spec.method, data.train)
    return [SpecError("data.source", problem)] if problem else []
