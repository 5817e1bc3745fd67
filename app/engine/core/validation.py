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
from typing import TYPE_CHECKING, Any

from app.engine import methods
from app.engine.core.fields import (
    BACKENDS,
    DTYPES,
    VLLM_MODES,
    SpecError,
    check_positive_int,
    finite,
)
from app.engine.training.models import ModelNotFound, classify_model
from app.engine.training.trackers import tracker_problems

if TYPE_CHECKING:  # validation reads a spec; the RunSpec module calls validation from RunSpec.validate()
    from app.engine.core.spec import RunSpec

METHODS = methods.keys()


# Metrics training.keep_best ranks by, higher is better: the shared evaluation's and each method's own.
KEEP_BEST_METRICS = tuple(dict.fromkeys(("eval/accuracy", "eval/reward", *(k for m in methods.all() for k in m.eval_metrics))))


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
    check_positive_int(bad, "training.max_steps", t.max_steps)
    check_positive_int(bad, "training.per_device_train_batch_size", t.per_device_train_batch_size)
    check_positive_int(bad, "training.gradient_accumulation_steps", t.gradient_accumulation_steps)
    if not (finite(t.learning_rate) and t.learning_rate > 0):
        bad("training.learning_rate", f"must be a positive number, got {t.learning_rate}")
    if not (finite(t.warmup_ratio) and 0 <= t.warmup_ratio < 1):
        bad("training.warmup_ratio", f"must be in [0, 1), got {t.warmup_ratio}")
    for name in ("weight_decay", "max_grad_norm"):
        if not (finite(getattr(t, name)) and getattr(t, name) >= 0):
            bad(f"training.{name}", f"must be a finite number ≥ 0, got {getattr(t, name)}")
    problems.extend(_name_problem("training.lr_scheduler_type", t.lr_scheduler_type, "trainer_utils", "SchedulerType"))
    problems.extend(_name_problem("training.optim", t.optim, "training_args", "OptimizerNames"))
    check_positive_int(bad, "generation.max_completion_length", g.max_completion_length)
    check_positive_int(bad, "generation.max_length", g.max_length)
    if not (finite(g.temperature) and g.temperature > 0):
        bad("generation.temperature", f"must be a finite number > 0, got {g.temperature}")
    if not (finite(g.top_p) and 0 < g.top_p <= 1):
        bad("generation.top_p", f"must be in (0, 1], got {g.top_p}")
    if not isinstance(g.top_k, int) or isinstance(g.top_k, bool) or g.top_k < 0:
        bad("generation.top_k", f"must be 0 (off) or a positive whole number, got {g.top_k}")
    if g.min_p is not None and not (finite(g.min_p) and 0 <= g.min_p < 1):
        bad("generation.min_p", f"must be in [0, 1) or None (off), got {g.min_p}")
    for name in ("logging_steps", "sample_every", "save_steps", "save_total_limit"):
        check_positive_int(bad, f"logging.{name}", getattr(lg, name))
    if not isinstance(lg.eval_every, int) or lg.eval_every < 0:
        bad("logging.eval_every", f"must be 0 (off) or positive, got {lg.eval_every}")
    if t.keep_best is not None:
        if t.keep_best not in KEEP_BEST_METRICS:
            bad("training.keep_best", f"unknown metric {t.keep_best!r}; choose one of {', '.join(KEEP_BEST_METRICS)}")
        elif not lg.eval_every:
            bad("training.keep_best", "needs periodic evaluations to choose from: set logging.eval_every")
        elif spec.data.eval_size == 0 and not spec.data.eval_source:
            bad("training.keep_best", "needs held-out rows: set data.eval_size (or data.eval_source)")
    problems.extend(vllm_problems(spec, check_files))
    from app.engine.training import distributed

    problems.extend(SpecError(field, problem) for field, problem in distributed.problems(spec, check_files))
    if lg.eval_max_new_tokens is not None:
        check_positive_int(bad, "logging.eval_max_new_tokens", lg.eval_max_new_tokens)
    for problem in tracker_problems(lg.report_to):
        bad("logging.report_to", problem)
    if lg.log_completions and spec.method not in methods.rl_keys():
        bad("logging.log_completions", f"only GRPO-family methods ({', '.join(methods.rl_keys())}) sample completions "
                                       f"to log; {spec.method} does not")
    if spec.lora.enabled:
        check_positive_int(bad, "lora.r", spec.lora.r)
        check_positive_int(bad, "lora.alpha", spec.lora.alpha)
        if not (finite(spec.lora.dropout) and 0 <= spec.lora.dropout < 1):
            bad("lora.dropout", f"must be in [0, 1), got {spec.lora.dropout}")
        targets = spec.lora.target_modules
        if isinstance(targets, str) and targets != "all-linear":
            bad("lora.target_modules", f"must be 'all-linear' or a list of module names, got {targets!r}")
        elif isinstance(targets, list) and (not targets or not all(isinstance(t, str) and t for t in targets)):
            bad("lora.target_modules", f"must be a non-empty list of module names, got {targets!r}")
        elif isinstance(targets, list) and check_files:
            problems.extend(_lora_target_problems(spec, targets))
    # The sandbox's own limits: a timeout ≤ 0 fails every call of a user reward, a huge one hangs the run.
    if not (finite(spec.reward_timeout_s) and 0 < spec.reward_timeout_s <= 3600):
        bad("reward_timeout_s", f"must be a number of seconds in (0, 3600], got {spec.reward_timeout_s}")
    # A rate above 1 can never be exceeded, which silently turns the failure stop off.
    if not (finite(spec.reward_max_failure_rate) and 0 <= spec.reward_max_failure_rate <= 1):
        bad("reward_max_failure_rate", f"must be a share in [0, 1] (e.g. 0.2), got {spec.reward_max_failure_rate}")
    if spec.data.eval_size < 0:
        bad("data.eval_size", f"must be ≥ 0, got {spec.data.eval_size}")
    if spec.data.train_size is not None and spec.data.train_size <= 0:
        bad("data.train_size", f"must be positive or empty, got {spec.data.train_size}")

    method = methods.find(spec.method)
    if method is not None:  # its own section and the shared settings it relies on
        problems.extend(method.problems(spec))
    problems.extend(reward_problems(spec, check_files))
    problems.extend(init_adapter_problems(spec, check_files))
    if check_files and method is not None and not any(p.field.startswith("data") for p in problems):
        problems.extend(data_problems(spec))
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
    wanted = _lora_target_names(spec)
    if theirs is not None and wanted is not None:
        # PEFT writes 'all-linear' out as names, sometimes full paths (transformer.h.0.attn.c_proj): compare the
        # layer names.
        theirs_set = {str(name).rsplit(".", 1)[-1] for name in ([theirs] if isinstance(theirs, str) else theirs)}
        if theirs_set != set(wanted):
            problems.append(SpecError("lora.target_modules",
                                      f"must match the init adapter's target modules {sorted(theirs_set)}, "
                                      f"got {sorted(wanted)}"))
    return problems


def vllm_problems(spec: RunSpec, check_machine: bool = True) -> list[SpecError]:
    """`generation.vllm` and its settings; `check_machine` also asks this machine (CUDA, vllm, the server's port)."""
    from app.engine.training import vllm_generation

    g, field = spec.generation, "generation.vllm"
    if g.vllm not in VLLM_MODES:
        return [SpecError(field, f"unknown mode {g.vllm!r}; choose one of {', '.join(VLLM_MODES)}")]
    if g.vllm == "off":
        return []
    problems = []
    if spec.method not in methods.rl_keys():
        problems.append(SpecError(field, f"only GRPO-family methods ({', '.join(methods.rl_keys())}) sample "
                                         f"completions during training; {spec.method} does not"))
    if spec.fast_inference:
        problems.append(SpecError(field, "fast_inference already generates with vLLM (Unsloth's); use one of them"))
    if not (finite(g.vllm_gpu_memory_utilization) and 0 < g.vllm_gpu_memory_utilization <= 1):
        problems.append(SpecError("generation.vllm_gpu_memory_utilization",
                                  f"must be a share in (0, 1], got {g.vllm_gpu_memory_utilization}"))
    if g.vllm == "server":
        if isinstance(g.vllm_server_port, bool) or not isinstance(g.vllm_server_port, int) or not (
                0 < g.vllm_server_port < 65536):
            problems.append(SpecError("generation.vllm_server_port",
                                      f"must be a TCP port (1–65535), got {g.vllm_server_port!r}"))
        devices = g.vllm_server_devices
        if devices is not None and not all(part.strip().isdigit() for part in str(devices).split(",")):
            problems.append(SpecError("generation.vllm_server_devices",
                                      f"must be CUDA device numbers such as '1' or '2,3', got {devices!r}"))
    if problems or not check_machine:
        return problems
    problem = vllm_generation.environment_problem(g.vllm) or vllm_generation.server_problem(g)
    return [SpecError(field, problem)] if problem else []


def _lora_target_problems(spec: RunSpec, targets: list[str]) -> list[SpecError]:
    """Named targets the model has no linear layer of (Llama's q_proj on a GPT-2 model): PEFT's own error comes
    after the model loaded and does not say which names the model has."""
    names = _model_linear_names(spec)
    missing = [t for t in targets if names is not None and t not in names]
    if not missing:
        return []
    return [SpecError("lora.target_modules", f"this model has no linear layer named {', '.join(missing)}; its "
                                             f"linear layers are {', '.join(names)} (or use 'all-linear')")]


def _lora_target_names(spec: RunSpec) -> list[str] | None:
    """The module names `spec`'s adapter targets, 'all-linear' expanded for the model's architecture; None where
    that needs a model not on this machine yet (the worker's load of the init adapter then refuses a mismatch)."""
    if spec.lora.target_modules != "all-linear":
        return list(spec.lora.target_modules)
    return _model_linear_names(spec)


def _model_linear_names(spec: RunSpec) -> list[str] | None:
    """The model's linear layer names (built from its config on the meta device: no weights are read), or None
    where the model is not on this machine yet (a hub id, the default model before its first conversion)."""
    from app.engine.training.backend import architecture_linear_names
    from app.engine.training.models import default_model_dir

    try:
        kind, value = classify_model(spec.model)
    except ModelNotFound:
        return None
    folder = default_model_dir() if kind == "default" else Path(value) if kind == "folder" else None
    if folder is None or not (folder / "config.json").exists():
        return None
    try:
        return architecture_linear_names(str(folder))
    except Exception:  # an unreadable config is the model check's to report
        return None


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
    from app.engine.data.sources import (
        DataError,
        column_problem,
        load_data,
        load_source_rows,
        row_locations,
    )

    d = spec.data
    sources = [("data.source", d.source, d.task_params, spec.method)]
    if d.eval_source:  # held-out rows: prompts for the shared evaluation, or the method's own rows (DPO's pairs)
        evaluates_own_rows = bool(methods.get(spec.method).eval_metrics)
        sources.append(("data.eval_source", d.eval_source, None, spec.method if evaluates_own_rows else "eval"))
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
    problem = methods.get(spec.method).data_problem(spec, data.train)
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
    from app.engine.training.reward_funcs import build_rewards, dry_run_rewards

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
