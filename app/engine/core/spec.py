"""RunSpec: the one typed specification of a training run.

It flows from the UI or a YAML file to the worker process, is saved as `spec.yaml` in the run folder, and is
what the charts and the compare view read back. Every field carries a `help` text (shown in the UI and in
`python -m app.train --help-spec`). `validate()` checks everything that can be checked without loading a model
and names the field and the problem.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from app.engine import methods
from app.engine.core.fields import (  # noqa: F401 (the spec vocabulary)
    BACKENDS,
    DTYPES,
    STRATEGIES,
    VLLM_MODES,
    SpecError,
    spec_field,
)

METHODS = methods.keys()  # every registered training method (app/engine/methods/), in display order
RL_METHODS = methods.rl_keys()  # methods that sample completions and score them with rewards


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one YAML mapping: YAML keeps the last silently, which drops the first section."""

    def __init__(self, key: Any, first_line: int, second_line: int, parents: list[str]):
        self.key_path = ".".join([*parents, str(key)]) or "spec"
        super().__init__(f"given twice (lines {first_line} and {second_line}); YAML would keep only the last, so "
                         "keep one or merge them")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden: that is its purpose
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # the SafeConstructor reports unhashable keys itself
        line = key_node.start_mark.line + 1
        if key in seen:
            raise DuplicateKeyError(key, seen[key], line, _key_path(loader, node))
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


def _key_path(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> list[str]:
    """Dotted path of `node` in the document (for the field a duplicate is in), from the root mapping's keys."""
    root = getattr(loader, "_rft_root", None)

    def walk(current: Any, path: list[str]) -> list[str] | None:
        if current is node:
            return path
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                found = walk(v, [*path, str(getattr(k, "value", k))])
                if found is not None:
                    return found
        return None

    return (walk(root, []) or []) if root is not None else []


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_yaml(text: str) -> Any:
    """yaml.safe_load, except that a key given twice in one mapping raises DuplicateKeyError (naming both lines)."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        loader._rft_root = node
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


@dataclass
class DataSpec:
    """Where the training rows come from and which part is held out for evaluation."""

    source: str = spec_field(
        "Dataset: 'builtin:arithmetic' (a task the workbench generates), a .jsonl/.json/.csv file, or a hub "
        "dataset id ('hub:org/name').",
        "builtin:arithmetic",
    )
    split: str = spec_field("Split to read from a hub dataset.", "train")
    train_size: int | None = spec_field("Use at most this many training rows (None: all).", None)
    eval_size: int = spec_field("Rows held out for evaluation (taken from the source, never trained on).", 64)
    eval_source: str | None = spec_field("A separate file for held-out evaluation; when set, eval_size rows of it.", None)
    system_prompt: str | None = spec_field("System message prepended to every prompt (chat models).", None)
    task_params: dict[str, Any] = spec_field(
        "Parameters of a built-in task, e.g. {'n': 2000, 'low': 1, 'high': 50} for arithmetic.", factory=dict
    )
    seed: int = spec_field("Seed of the train/held-out split and of built-in task generation.", 0)


@dataclass
class RewardSpec:
    """One reward function and its weight: a built-in from the rewards registry, or user code."""

    name: str | None = spec_field("Registry name (see `rewards.available()`), e.g. 'numeric_answer'.", None)
    weight: float = spec_field("Weight in the weighted sum of rewards.", 1.0)
    params: dict[str, Any] = spec_field("Parameters of a parameterised built-in (its make_… factory).", factory=dict)
    file: str | None = spec_field("Path of a .py file defining one reward function (run in the sandbox).", None)
    source: str | None = spec_field("Python source of a reward function (run in the sandbox).", None)

    def label(self) -> str:
        if self.name:
            return self.name
        return Path(self.file).stem if self.file else "user_reward"


@dataclass
class LoraSpec:
    """LoRA adapter settings (PEFT / Unsloth)."""

    enabled: bool = spec_field("Train a LoRA adapter (False: full fine-tuning).", True)
    r: int = spec_field("LoRA rank.", 16)
    alpha: int = spec_field("LoRA alpha (scaling = alpha / r).", 32)
    dropout: float = spec_field("LoRA dropout.", 0.0)
    target_modules: list[str] | str = spec_field(
        "Modules to adapt: 'all-linear' (PEFT's: every linear layer but the output head, whatever the "
        "architecture names them) or a list of names, e.g. [q_proj, v_proj].",
        "all-linear",
    )


@dataclass
class TrainingSpec:
    """Optimisation hyper-parameters (passed to TRL's config)."""

    learning_rate: float = spec_field("Peak learning rate.", 2e-4)
    max_steps: int = spec_field("Optimizer steps (>0). Takes precedence over epochs.", 40)
    per_device_train_batch_size: int = spec_field(
        "Rows per step (GRPO: completions per step; must be a multiple of num_generations).", 8
    )
    gradient_accumulation_steps: int = spec_field("Micro-batches accumulated per optimizer step.", 1)
    warmup_ratio: float = spec_field("Share of steps with linear warm-up.", 0.0)
    lr_scheduler_type: str = spec_field("Learning-rate schedule (transformers names: constant, linear, cosine…).", "constant")
    weight_decay: float = spec_field("AdamW weight decay.", 0.0)
    max_grad_norm: float = spec_field("Gradient clipping.", 1.0)
    optim: str = spec_field("Optimizer name (transformers).", "adamw_torch")
    gradient_checkpointing: bool = spec_field("Trade compute for memory.", False)
    keep_best: str | None = spec_field(
        "Keep the adapter of the best periodic held-out evaluation as the run's adapter/ (like transformers' "
        "load_best_model_at_end), by this metric, higher is better: 'eval/accuracy', 'eval/reward' or "
        "'eval/preference_accuracy'. Needs logging.eval_every. None: the last step's adapter.",
        None,
    )


@dataclass
class GenerationSpec:
    """Sampling settings for GRPO rollouts and the length limits of every method."""

    num_generations: int = spec_field("Completions sampled per prompt (GRPO group size, ≥ 2).", 8)
    max_completion_length: int = spec_field("Max new tokens per sampled completion (GRPO) or in evaluation.", 16)
    max_length: int = spec_field("Max tokens of prompt+completion (SFT/DFT/DPO truncation).", 256)
    temperature: float = spec_field("Sampling temperature for rollouts.", 1.0)
    top_p: float = spec_field("Nucleus sampling for rollouts.", 1.0)
    top_k: int = spec_field("Sample rollouts from the k most likely tokens only (0: off).", 0)
    min_p: float | None = spec_field(
        "Sample rollouts only from tokens at least this fraction as likely as the most likely one (e.g. 0.1), which "
        "cuts the long tail a small model samples at temperature 1 (None: off).", None)
    vllm: str = spec_field(
        "GRPO-family rollouts with vLLM (a CUDA GPU and `pip install vllm`): 'off' (transformers' generate), "
        "'colocate' (vLLM inside the training process, on its GPU) or 'server' (a `trl vllm-serve` server on GPUs "
        "of its own; TRL sends it the weights after each step).", "off")
    vllm_server_host: str = spec_field("vllm: server — the server's host.", "127.0.0.1")
    vllm_server_port: int = spec_field("vllm: server — the server's port.", 8000)
    vllm_server_devices: str | None = spec_field(
        "vllm: server — start `trl vllm-serve` for the run on these CUDA devices (e.g. '1', or '2,3'), and stop it "
        "with the run. None: use a server already running at host:port.", None)
    vllm_gpu_memory_utilization: float = spec_field(
        "Share of the vLLM GPU's memory vLLM may take (colocate: shared with training, so keep it low).", 0.3)


@dataclass
class LoggingSpec:
    """How often the run writes metrics, samples, checkpoints and evaluations."""

    logging_steps: int = spec_field("Write metrics every N steps.", 1)
    sample_every: int = spec_field("Write sample completions every N steps (GRPO).", 1)
    save_steps: int = spec_field("Save a checkpoint every N steps (also saved on stop).", 20)
    save_total_limit: int = spec_field("Keep at most this many checkpoints.", 2)
    eval_every: int = spec_field("Held-out evaluation every N steps (0: only at start and end).", 0)
    eval_at_start: bool = spec_field("Evaluate the base model before training.", True)
    eval_at_end: bool = spec_field("Evaluate the trained model after training.", True)
    eval_max_new_tokens: int | None = spec_field("Evaluation generation length (None: max_completion_length).", None)
    report_to: list[str] = spec_field(
        "Experiment trackers that get the run's metrics beside the run folder: any of tensorboard, trackio, wandb, "
        "mlflow (optional installs: pip install -r requirements-trackers.txt).", factory=list)
    report_to_optional: bool = spec_field(
        "Skip a tracker that cannot start (not installed, bad key) with a warning, instead of stopping the run.", False)
    log_completions: bool = spec_field(
        "GRPO-family: also write TRL's per-step completion logs (checkpoints/completions/completions_NNNNN.parquet: "
        "prompt, completion, each reward, advantage).", False)


@dataclass
class DistributedSpec:
    """Several processes on this machine (one per GPU; on a CPU they share the cores), each a copy of the same run."""

    processes: int = spec_field(
        "Training processes (1: this process only). More: the run starts one process per device, data-parallel "
        "(the global batch is per_device_train_batch_size × processes); rank 0 alone writes the run folder.", 1)
    strategy: str = spec_field(
        "ddp (every process holds the whole model), fsdp (parameters sharded across GPUs), deepspeed_zero2 or "
        "deepspeed_zero3 (DeepSpeed ZeRO; pip install deepspeed). fsdp and DeepSpeed need CUDA GPUs.", "ddp")
    config_file: str | None = spec_field(
        "A DeepSpeed JSON (deepspeed_* strategies) or an FSDP config JSON (fsdp) replacing the one shipped in "
        "recipes/accelerate/. None: the shipped file.", None)


def _with_method_sections(cls: type) -> type:
    """`cls` as a dataclass with one field per method section, after `generation` (the YAML order users know).
    A method owns its section's dataclass (app/engine/methods/<method>.py); the RunSpec only lists them."""
    annotations: dict[str, Any] = {}
    for name, hint in cls.__annotations__.items():
        annotations[name] = hint
        if name == "generation":
            for method in methods.with_section():
                annotations[method.section] = method.section_type
                setattr(cls, method.section, spec_field(method.section_help, factory=method.section_type))
    cls.__annotations__ = annotations
    return dataclass(cls)


@_with_method_sections
class RunSpec:
    """Everything that defines a training run."""

    method: str = spec_field(f"Training method: one of {', '.join(METHODS)}.", "grpo")
    model: str = spec_field("'default' (embedded SmolLM2-135M-Instruct), a local folder, or a hub id.", "default")
    init_adapter: str | None = spec_field(
        "A LoRA adapter folder to start from (e.g. a finished run's adapter/): its weights initialise the adapter this "
        "run trains, as in SFT → GRPO. Its rank, alpha and target modules must match the lora section. "
        "None: a fresh adapter.",
        None,
    )
    name: str | None = spec_field("Run name (used in the run folder name).", None)
    backend: str = spec_field("'auto' (Unsloth where it runs, else TRL+PEFT), 'unsloth' or 'trl'.", "auto")
    dtype: str = spec_field("Weights dtype: auto (bf16 on GPU/Unsloth, fp32 on plain CPU), float32, bfloat16, float16.", "auto")
    load_in_4bit: bool = spec_field("Unsloth 4-bit loading (GPU only).", False)
    fast_inference: bool = spec_field("Unsloth vLLM generation (GPU with vllm installed).", False)
    seed: int = spec_field("Random seed of the run.", 42)
    data: DataSpec = spec_field("Dataset.", factory=DataSpec)
    rewards: list[RewardSpec] = spec_field("Reward functions with weights (GRPO; also used in evaluation).", factory=list)
    lora: LoraSpec = spec_field("LoRA adapter.", factory=LoraSpec)
    training: TrainingSpec = spec_field("Optimisation.", factory=TrainingSpec)
    generation: GenerationSpec = spec_field("Sampling and lengths.", factory=GenerationSpec)
    # Here each method with a section of its own (methods.with_section(): grpo, prefix, dpo, …) gets a field named
    # after it, added by `_with_method_sections` below.
    logging: LoggingSpec = spec_field("Metrics, samples, checkpoints, evaluation.", factory=LoggingSpec)
    distributed: DistributedSpec = spec_field("Processes and devices the run trains on.", factory=DistributedSpec)
    reward_timeout_s: float = spec_field("Wall-time limit per batch call of a user-written reward.", 10.0)
    reward_max_failure_rate: float = spec_field("Stop the run when a reward fails on more than this share of calls.", 0.2)

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=110)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        return _build(cls, data, "")

    @classmethod
    def from_yaml(cls, text: str) -> "RunSpec":
        """Parse a spec; a key given twice in one mapping (two `training:` sections) is refused, not merged."""
        try:
            data = load_yaml(text)
        except DuplicateKeyError as exc:
            raise SpecError(exc.key_path, str(exc)) from None
        except yaml.YAMLError as exc:
            raise SpecError("spec", f"not valid YAML ({' '.join(str(exc).split())})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpecError("spec", "the YAML must be a mapping of field names to values")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "RunSpec":
        """Read a spec file; every way the file can be unreadable is one SpecError naming it."""
        path = Path(path)
        if not path.exists():
            raise SpecError("spec", f"file {path} does not exist")
        if path.is_dir():
            hint = (f"; to continue the run in it: python -m app.train --resume {path}"
                    if (path / "spec.yaml").is_file() else "")
            raise SpecError("spec", f"{path} is a folder, not a YAML file{hint}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SpecError("spec", f"cannot read {path} ({exc.strerror or exc})") from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise SpecError("spec", f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                                    "save it as UTF-8") from None
        return cls.from_yaml(text)

    def replace(self, **changes: Any) -> "RunSpec":
        return dataclasses.replace(self, **changes)

    def with_overrides(self, assignments: list[str]) -> "RunSpec":
        """Apply `field.sub=value` strings (values parsed as YAML), as given by `--set`."""
        data = self.to_dict()
        for item in assignments:
            if "=" not in item or not item.split("=", 1)[0].strip():
                raise SpecError(str(item), "expected field=value, e.g. training.learning_rate=1e-4")
            key, raw = item.split("=", 1)
            key = key.strip()
            try:
                value = load_yaml(raw) if raw.strip() else None
            except DuplicateKeyError as exc:
                raise SpecError(f"{key}.{exc.key_path}", str(exc)) from None
            except yaml.YAMLError as exc:
                problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
                raise SpecError(key, f"cannot read the value {raw!r} ({problem}); quote text that YAML would "
                                     "parse, e.g. --set 'name=\"a: b\"'") from None
            target = data
            parts = key.split(".")
            for part in parts[:-1]:
                if not isinstance(target.get(part), dict):
                    raise SpecError(key, f"'{part}' is not a section of the spec")
                target = target[part]
            target[parts[-1]] = value
        return RunSpec.from_dict(data)

    # -- validation ----------------------------------------------------------------------------------------
    def validate(self, check_files: bool = True) -> None:
        """Raise SpecError for the first problem found; loads no model."""
        problems = self.problems(check_files=check_files)
        if problems:
            raise problems[0]

    def problems(self, check_files: bool = True) -> list[SpecError]:
        from app.engine.core.validation import (
            spec_problems,  # avoids importing data/rewards for plain YAML work
        )

        return spec_problems(self, check_files=check_files)

    @property
    def is_rl(self) -> bool:
        return self.method in RL_METHODS

    @property
    def training_method(self) -> "methods.TrainingMethod":
        """The registered method this spec trains with (KeyError for an unknown one; validate() says it first)."""
        return methods.get(self.method)


# -- building dataclasses from plain dicts with clear messages ----------------------------------------------
def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise SpecError(prefix or "spec", f"expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = [k for k in data if k not in known]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SpecError(f"{prefix}{key}", f"unknown field{hint}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, name + ".")
    if origin in (list,) and args and dataclasses.is_dataclass(args[0]):
        if value is None:
            return []
        if not isinstance(value, list):
            raise SpecError(name, "expected a list")
        return [_coerce(args[0], item, f"{name}[{i}]") for i, item in enumerate(value)]
    if args and type(None) in args:  # Optional[...] / X | None
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for candidate in inner:
            try:
                return _coerce(candidate, value, name)
            except SpecError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is not None and type(None) not in args and len(args) > 1 and origin not in (dict, list):
        for candidate in args:  # a union such as list[str] | str
            try:
                return _coerce(candidate, value, name)
            except SpecError:
                continue
        raise SpecError(name, f"expected {tp}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SpecError(name, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise SpecError(name, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(name, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(name, f"expected text, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise SpecError(name, f"expected a list, got {value!r}")
        return list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(name, f"expected a mapping, got {value!r}")
        return dict(value)
    return value


def field_help() -> dict[str, str]:
    """Dotted field name → help text, for the UI and `--help-spec`."""
    out: dict[str, str] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = get_type_hints(cls)
        for f in fields(cls):
            out[prefix + f.name] = f.metadata.get("help", "")
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], prefix + f.name + ".")

    walk(RunSpec, "")
    return out
