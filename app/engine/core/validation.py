"""RunSpec validation: every check that needs no model, each problem naming its field in one sentence.

`check_run(spec)` is what every run calls before it creates its folder, and what `python -m app.train
--validate-only` runs: one function, so "spec OK" means the run gets past its set-up (all but loading the model).
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

from app.engine.training.models import ModelNotFound, classify_model
from app.engine.core.spec import BACKENDS, DTYPES, GRPO_LOSS_TYPES, METHODS, RL_METHODS, SCALE_REWARDS, RunSpec, SpecError


KEEP_BEST_METRICS = ("eval/accuracy", "eval/reward", "eval/preference_accuracy")  # higher is better


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
    if not (_finite(t.learning_rate) and t.learning_rate > 0):
        bad("training.learning_rate", f"must be a positive number, got {t.learning_rate}")
    if not (_finite(t.warmup_ratio) and 0 <= t.warmup_ratio < 1):
        bad("training.warmup_ratio", f"must be in [0, 1), got {t.warmup_ratio}")
    for name in ("weight_decay", "max_grad_norm"):
        if not (_finite(getattr(t, name)) and getattr(t, name) >= 0):
            bad(f"training.{name}", f"must be a finite number ≥ 0, got {getattr(t, name)}")
    problems.extend(_name_problem("training.lr_scheduler_type", t.lr_scheduler_type, "trainer_utils", "SchedulerType"))
    problems.extend(_name_problem("training.optim", t.optim, "training_args", "OptimizerNames"))
    _positive(bad, "generation.max_completion_length", g.max_completion_length)
    _positive(bad, "generation.max_length", g.max_length)
    if not (_finite(g.temperature) and g.temperature > 0):
        bad("generation.temperature", f"must be a finite number > 0, got {g.temperature}")
    if not (_finite(g.top_p) and 0 < g.top_p <= 1):
        bad("generation.top_p", f"must be in (0, 1], got {g.top_p}")
    for name in ("logging_steps", "sample_every", "save_steps", "save_total_limit"):
        _positive(bad, f"logging.{name}", getattr(lg, name))
    if not isinstance(lg.eval_every, int) or lg.eval_every < 0:
        bad("logging.eval_every", f"must be 0 (off) or positive, got {lg.eval_every}")
    if t.keep_best is not None:
        if t.keep_best not in KEEP_BEST_METRICS:
            bad("training.keep_best", f"unknown metric {t.keep_best!r}; choose one of {', '.join(KEEP_BEST_METRICS)}")
        elif not lg.eval_every:
            bad("training.keep_best", "needs periodic evaluations to choose from: set logging.eval_every")
        elif spec.data.eval_size == 0 and not spec.data.eval_source:
            bad("training.keep_best", "needs held-out rows: set data.eval_size (or data.eval_source)")
    if lg.eval_max_new_tokens is not None:
        _positive(bad, "logging.eval_max_new_tokens", lg.eval_max_new_tokens)
    if spec.lora.enabled:
        _positive(bad, "lora.r", spec.lora.r)
        _positive(bad, "lora.alpha", spec.lora.alpha)
        if not (_finite(spec.lora.dropout) and 0 <= spec.lora.dropout < 1):
            bad("lora.dropout", f"must be in [0, 1), got {spec.lora.dropout}")
    # The sandbox's own limits: a timeout ≤ 0 fails every call of a user reward, a huge one hangs the run.
    if not (_finite(spec.reward_timeout_s) and 0 < spec.reward_timeout_s <= 3600):
        bad("reward_timeout_s", f"must be a number of seconds in (0, 3600], got {spec.reward_timeout_s}")
    # A rate above 1 can never be exceeded, which silently turns the failure stop off.
    if not (_finite(spec.reward_max_failure_rate) and 0 <= spec.reward_max_failure_rate <= 1):
        bad("reward_max_failure_rate", f"must be a share in [0, 1] (e.g. 0.2), got {spec.reward_max_failure_rate}")
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
        if not (_finite(spec.grpo.beta) and spec.grpo.beta >= 0):
            bad("grpo.beta", f"must be a finite number ≥ 0, got {spec.grpo.beta}")
        if not (_finite(spec.grpo.epsilon) and spec.grpo.epsilon > 0):
            bad("grpo.epsilon", f"must be a finite number > 0, got {spec.grpo.epsilon}")
        if spec.grpo.epsilon_high is not None and not (_finite(spec.grpo.epsilon_high) and spec.grpo.epsilon_high > 0):
            bad("grpo.epsilon_high", f"must be a finite number > 0 or empty, got {spec.grpo.epsilon_high}")
        if not isinstance(spec.grpo.num_iterations, int) or spec.grpo.num_iterations < 1:
            bad("grpo.num_iterations", f"must be at least 1 (policy updates per generation batch), got "
                                       f"{spec.grpo.num_iterations!r}")
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
        from app.engine.training.backend import lora_targets

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
    from app.engine.core.spec import DPO_LOSS_TYPES

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


def _finite(value: Any) -> bool:
    """A real number, not NaN or ±inf (comparisons with NaN are all False, so `x > 0` alone lets NaN through)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _name_problem(field: str, value: Any, module: str, enum: str) -> list[SpecError]:
    """`value` must be one of the names transformers' enum `module.enum` accepts (TrainingArguments looks it up
    when the trainer is built, after the model has loaded)."""
    choices = transformers_choices(module, enum)
    if choices is None or value in choices:
        return []
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return [SpecError(field, f"unknown name {value!r}{hint}; the installed transformers accepts "
                             f"{', '.join(choices)}")]


@functools.lru_cache(maxsize=None)
def transformers_choices(module: str, enum: str) -> tuple[str, ...] | None:
    """The string values of enum `enum` in `transformers.<module>`, for the installed version. Read from its source
    when transformers is not imported yet: importing it here would come before Unsloth's import in the worker, which
    Unsloth must precede. None when neither works (the check is then skipped, never guessed)."""
    loaded = sys.modules.get(f"transformers.{module}")
    if loaded is not None and hasattr(loaded, enum):
        return tuple(str(member.value) for member in getattr(loaded, enum))
    try:
        found = importlib.util.find_spec("transformers")  # a top-level name: located, not imported
        if found is None or not found.origin:
            return None
        tree = ast.parse(Path(found.origin).with_name(f"{module}.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, ImportError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == enum:
            values = tuple(stmt.value.value for stmt in node.body if isinstance(stmt, ast.Assign)
                           and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str))
            return values or None
    return None


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
        if r.source:  # compiled here, as the app's editor does: a syntax error is found before any model loads
            problem = _reward_code_problem(r.source, "<reward>")
            if problem:
                problems.append(SpecError(f"{where}.source", problem))
        if r.file and check_files:
            path = Path(r.file).expanduser()
            if not path.exists():
                problems.append(SpecError(f"{where}.file", f"file {r.file} does not exist"))
            elif path.is_dir():
                problems.append(SpecError(f"{where}.file", f"{r.file} is a folder; name the .py file of the reward"))
            else:
                try:
                    source = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    problems.append(SpecError(f"{where}.file", f"cannot read {r.file} as UTF-8 text ({exc})"))
                    continue
                problem = _reward_code_problem(source, str(path))
                if problem:
                    problems.append(SpecError(f"{where}.file", problem))
    return problems


def _reward_code_problem(source: str, filename: str) -> str | None:
    """The sandbox's static check of user reward code (syntax, one usable function), without starting it."""
    from rewards.sandbox import RewardCodeError, find_reward_function

    try:
        find_reward_function(source, filename=filename)
    except RewardCodeError as exc:
        return str(exc)
    return None


def data_problems(spec: RunSpec) -> list[SpecError]:
    """Problems of the data: each source read in full, every row checked (named by its line in the file), then the
    train/held-out split."""
    return _check_data(spec)[0]


def _check_data(spec: RunSpec) -> tuple[list[SpecError], Any]:
    """(problems, the LoadedData when there are none)."""
    from app.engine.data.sources import DataError, column_problem, load_data, load_source_rows, row_locations

    d = spec.data
    method = "grpo" if spec.method == "prefix_rft" else spec.method
    sources = [("data.source", d.source, d.task_params, method)]
    if d.eval_source:  # held-out rows are prompts for evaluation (pairs, for DPO)
        sources.append(("data.eval_source", d.eval_source, None, "dpo" if method == "dpo" else "eval"))
    for field, source, params, kind in sources:
        try:
            rows = load_source_rows(source, d.split, d.seed, params)
        except DataError as exc:
            return [SpecError(field, str(exc))], None
        # Before the split shuffles them: the n-th row is the file's n-th record, so its line can be named.
        lines = row_locations(source)
        where = (lambda i, lines=lines: lines[i]) if lines is not None and len(lines) == len(rows) else None
        problem = column_problem(kind, rows, where=where)
        if problem:
            return [SpecError(field, f"{source}: {problem}")], None
    try:
        data = load_data(d)
    except DataError as exc:
        return [SpecError(getattr(exc, "field", "data.source"), str(exc))], None
    if spec.method == "prefix_rft":
        problem = demonstration_problem(spec.prefix.demonstration_column, data.train)
        if problem:
            return [SpecError("data.source", problem)], None
    return [], data


def check_run(spec: RunSpec) -> None:
    """Every check a run makes before it creates its folder, and all of `--validate-only`: `spec_problems` with the
    files (all data rows, reward code compiled, names transformers looks up), then each reward called on ~8 training
    rows as GRPO will call it (the dry run). Raises the first problem as SpecError; loads no model."""
    problems = spec_problems(spec, check_files=True)
    if problems:
        raise problems[0]
    if not spec.rewards:
        return
    _, data = _check_data(spec)
    import contextlib

    import rewards
    from app.engine.training.worker import build_rewards, dry_run_rewards

    with contextlib.ExitStack() as cleanup:  # sandboxed rewards run in worker processes: always stop them
        try:
            funcs, _weights, _registry = build_rewards(spec)
        except (rewards.RewardCodeError, ValueError) as exc:
            raise SpecError("rewards", str(exc)) from None
        for fn in funcs:
            cleanup.callback(fn.close)
        try:
            dry_run_rewards(funcs, data.train, spec.data.system_prompt)
        except rewards.DryRunError as exc:
            raise SpecError("rewards", str(exc)) from None
