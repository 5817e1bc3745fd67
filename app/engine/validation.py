"""RunSpec validation: every check that needs no model, each problem naming its field in one sentence."""
from __future__ import annotations

import math
from pathlib import Path

from app.engine.models import ModelNotFound, classify_model
from app.engine.spec import BACKENDS, DTYPES, GRPO_LOSS_TYPES, METHODS, RL_METHODS, SCALE_REWARDS, RunSpec, SpecError


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

    if spec.method in RL_METHODS:
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
    if spec.method == "prefix_rft":
        problems.extend(prefix_rft_problems(spec))
    if spec.method == "dpo":
        problems.extend(dpo_problems(spec))
    problems.extend(reward_problems(spec, check_files))
    problems.extend(init_adapter_problems(spec, check_files))
    if check_files and not any(p.field.startswith("data") for p in problems):
        problems.extend(data_problems(spec))
    return problems


# Loss aggregations the Prefix-RFT loss implements (app/engine/prefix_rft.py); the paper uses dr_grpo.
PREFIX_RFT_LOSS_TYPES = ("dr_grpo", "grpo", "bnpo", "dapo")
PREFIX_SCHEDULES = ("cosine", "linear", "constant")
CONTINUATION_ADVANTAGES = ("raw", "centred")


def prefix_rft_problems(spec: RunSpec) -> list[SpecError]:
    """Checks of the `prefix` section and of the GRPO settings Prefix-RFT relies on."""
    problems: list[SpecError] = []

    def bad(field: str, problem: str) -> None:
        problems.append(SpecError(field, problem))

    p, g = spec.prefix, spec.generation
    if not isinstance(p.demonstration_column, str) or not p.demonstration_column.strip():
        bad("prefix.demonstration_column", "name the dataset column holding the demonstrations (e.g. 'solution')")
    elif p.demonstration_column in ("prompt", "messages"):
        bad("prefix.demonstration_column", f"'{p.demonstration_column}' is the prompt; name the reference-solution column")
    if not isinstance(p.n_prefixed, int) or p.n_prefixed < 1:
        bad("prefix.n_prefixed", f"must be at least 1, got {p.n_prefixed!r}")
    elif g.num_generations >= 2 and p.n_prefixed >= g.num_generations:
        bad(
            "prefix.n_prefixed",
            f"must be below generation.num_generations ({g.num_generations}): the on-policy rollouts of a group are "
            f"the baseline of its advantages, so at least one must remain (got {p.n_prefixed})",
        )
    for name in ("high", "low_start", "low_end"):
        value = getattr(p, name)
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            bad(f"prefix.{name}", f"must be a fraction in [0, 1], got {value!r}")
    if p.high == 0.0:
        bad("prefix.high", "must be above 0 (a prefix fraction of 0 is an ordinary rollout)")
    if p.low_start > p.high or p.low_end > p.high:
        bad("prefix.low_end" if p.low_end > p.high else "prefix.low_start",
            f"the lower bounds (low_start {p.low_start}, low_end {p.low_end}) must not exceed prefix.high ({p.high})")
    if p.schedule not in PREFIX_SCHEDULES:
        bad("prefix.schedule", f"unknown schedule {p.schedule!r}; choose one of {', '.join(PREFIX_SCHEDULES)}")
    if p.decay_steps is not None and (not isinstance(p.decay_steps, int) or p.decay_steps <= 0):
        bad("prefix.decay_steps", f"must be a positive integer or empty (training.max_steps), got {p.decay_steps!r}")
    _positive(bad, "prefix.min_prefix_tokens", p.min_prefix_tokens)
    if not (isinstance(p.entropy_top_fraction, (int, float)) and 0.0 < p.entropy_top_fraction <= 1.0):
        bad("prefix.entropy_top_fraction", f"must be in (0, 1], got {p.entropy_top_fraction!r}")
    if p.continuation_advantage not in CONTINUATION_ADVANTAGES:
        bad("prefix.continuation_advantage",
            f"choose one of {', '.join(CONTINUATION_ADVANTAGES)}, got {p.continuation_advantage!r}")
    if spec.grpo.loss_type not in PREFIX_RFT_LOSS_TYPES:
        bad("grpo.loss_type",
            f"Prefix-RFT supports {', '.join(PREFIX_RFT_LOSS_TYPES)} (the paper: dr_grpo), got {spec.grpo.loss_type!r}")
    if spec.grpo.scale_rewards != "none":
        bad("grpo.scale_rewards",
            "Prefix-RFT uses Dr. GRPO advantages (reward minus the on-policy mean, no std scaling): set it to 'none'")
    if spec.grpo.beta != 0:
        bad("grpo.beta", f"Prefix-RFT trains without a KL term (the paper's setting): set it to 0, got {spec.grpo.beta}")
    return problems


def init_adapter_problems(spec: RunSpec, check_files: bool = True) -> list[SpecError]:
    """`init_adapter` must be a LoRA adapter folder whose shape matches the `lora` section (its weights are loaded
    into the adapter the run creates, on every backend). `check_files=False` skips reading the folder, which may
    not exist yet (SFT → GRPO builds the GRPO spec before the SFT run has written its adapter)."""
    if spec.init_adapter is None:
        return []
    field = "init_adapter"
    if not isinstance(spec.init_adapter, str) or not spec.init_adapter.strip():
        return [SpecError(field, "give the folder of a LoRA adapter (e.g. runs/<run>/adapter), or leave it empty")]
    if not spec.lora.enabled:
        return [SpecError(field, "starting from an adapter needs lora.enabled: true (the adapter is trained further)")]
    if not check_files:
        return []
    folder = Path(spec.init_adapter).expanduser()
    config_file = folder / "adapter_config.json"
    if not config_file.exists():
        what = "does not exist" if not folder.exists() else "holds no adapter_config.json (not a LoRA adapter)"
        return [SpecError(field, f"{folder} {what}")]
    import json

    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [SpecError(field, f"{config_file} is not readable JSON ({exc})")]
    problems = []
    for key, ours, label in (("r", spec.lora.r, "lora.r"), ("lora_alpha", spec.lora.alpha, "lora.alpha")):
        if config.get(key) is not None and config.get(key) != ours:
            problems.append(SpecError(label, f"must match the init adapter's {key} ({config.get(key)}), got {ours}"))
    theirs = config.get("target_modules")
    if theirs is not None:
        from app.engine.backend import lora_targets

        wanted = lora_targets(spec.lora)
        theirs_set = {theirs} if isinstance(theirs, str) else set(theirs)
        wanted_set = {wanted} if isinstance(wanted, str) else set(wanted)
        if theirs_set != wanted_set:
            problems.append(SpecError("lora.target_modules",
                                      f"must match the init adapter's target modules {sorted(theirs_set)}, "
                                      f"got {sorted(wanted_set)}"))
    return problems


def demonstration_problem(column: str, rows: list[dict]) -> str | None:
    """One sentence when the rows lack the demonstration column Prefix-RFT needs, else None."""
    columns = set().union(*(row.keys() for row in rows[:50])) if rows else set()
    if column not in columns:
        return (f"Prefix-RFT needs a demonstration column '{column}' (prefix.demonstration_column) with a reference "
                f"solution per row; the dataset has {sorted(columns)}")
    if not any(row.get(column) not in (None, "", []) for row in rows):
        return f"the demonstration column '{column}' is empty in every row"
    return None


def dpo_problems(spec: RunSpec) -> list[SpecError]:
    """Checks of the `dpo` section (TRL DPOConfig values that would fail at trainer construction or train badly)."""
    from app.engine.spec import DPO_LOSS_TYPES

    problems: list[SpecError] = []
    d = spec.dpo
    if not (isinstance(d.beta, (int, float)) and math.isfinite(d.beta) and d.beta > 0):
        bad_beta = "must be a positive number (e.g. 0.1; higher stays closer to the reference model)"
        problems.append(SpecError("dpo.beta", f"{bad_beta}, got {d.beta!r}"))
    if d.loss_type not in DPO_LOSS_TYPES:
        problems.append(SpecError("dpo.loss_type", f"unknown loss {d.loss_type!r}; choose one of {', '.join(DPO_LOSS_TYPES)}"))
    if not (isinstance(d.label_smoothing, (int, float)) and 0.0 <= d.label_smoothing < 0.5):
        problems.append(SpecError("dpo.label_smoothing", f"must be in [0, 0.5), got {d.label_smoothing!r}"))
    elif d.loss_type == "exo_pair" and d.label_smoothing == 0:
        problems.append(SpecError("dpo.label_smoothing", "loss_type 'exo_pair' needs label_smoothing > 0 (the EXO paper: 1e-3)"))
    if not (isinstance(d.sft_weight, (int, float)) and math.isfinite(d.sft_weight) and d.sft_weight >= 0):
        problems.append(SpecError("dpo.sft_weight", f"must be ≥ 0 (0: pure DPO), got {d.sft_weight!r}"))
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
    if spec.method == "dpo":  # every pair (held-out ones are evaluated), numbered as in the file
        from app.engine.data import load_source_rows

        d = spec.data
        problem = column_problem("dpo", load_source_rows(d.source, d.split, d.seed, d.task_params))
        return [SpecError("data.source", problem)] if problem else []
    problem = column_problem("grpo" if spec.method == "prefix_rft" else spec.method, data.train)
    if problem is None and spec.method == "prefix_rft":
        problem = demonstration_problem(spec.prefix.demonstration_column, data.train)
    return [SpecError("data.source", problem)] if problem else []
