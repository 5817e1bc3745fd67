"""GRPO: online RL. Each prompt's group of sampled completions is scored with the run's rewards and the policy is
updated with group-relative advantages (TRL's GRPOTrainer, or Unsloth's where it runs)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.engine.core.fields import SpecError, collector, finite, spec_field
from app.engine.data import forms
from app.engine.methods.base import (
    FormField,
    MethodCharts,
    TrainerParts,
    TrainingMethod,
)

GRPO_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")
SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class GRPOSpec:
    """GRPO loss settings (TRL GRPOConfig)."""

    loss_type: str = spec_field(f"One of {', '.join(GRPO_LOSS_TYPES)}.", "dapo")
    beta: float = spec_field("KL coefficient against the reference model (0: no reference model).", 0.0)
    epsilon: float = spec_field("PPO clip range (lower).", 0.2)
    epsilon_high: float | None = spec_field("PPO clip range (upper); DAPO suggests 0.28. None: same as epsilon.", None)
    scale_rewards: str = spec_field("Advantage scaling: 'group' (std), 'batch', or 'none' (Dr. GRPO).", "group")
    mask_truncated_completions: bool = spec_field("Exclude completions cut at max length from the loss.", False)
    num_iterations: int = spec_field("Policy updates per generation batch (μ).", 1)
    shared_prefix: bool = spec_field(
        "Compute each prompt once per group, not once per completion, in generation and in the training forward "
        "(the same completions and log-probabilities up to float rounding; TRL backend, one process).", True)
    skip_zero_advantage: bool = spec_field(
        "Leave completions whose advantage is 0 out of the training forward and backward: with beta 0 and a loss "
        "normalised by the batch's tokens (dapo, cispo) their gradient is exactly 0, so the update is the same and "
        "the step cheaper (TRL backend, one process; other settings train every row).", True)


GRPO_CHARTS = MethodCharts(
    main="reward", main_title="Reward (mean ± std over the step's completions)",
    dynamics=(
        ("loss", "Loss", ""),
        ("kl", "KL to reference", ""),
        ("completions/mean_length", "Completion length (tokens)", ""),
        ("entropy", "Entropy", ""),
        ("learning_rate", "Learning rate", ".1e"),
        ("step_time", "Step time (s)", ""),
    ),
)

SCALING_TEXT = {
    "group": "(reward − group mean) / group std (grpo.scale_rewards: group)",
    "batch": "(reward − group mean) / std over the whole batch (grpo.scale_rewards: batch; with one group "
             "shown, the batch is that group)",
    "none": "reward − group mean, no std scaling (grpo.scale_rewards: none, Dr. GRPO)",
}


def _get(obj: Any, *path: str) -> Any:
    """A field of a RunSpec or of its dict form."""
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
    return obj


def grpo_config(parts: TrainerParts) -> Any:
    """TRL's GRPOConfig for the run (shared by the GRPO-family methods)."""
    from trl import GRPOConfig

    spec, g = parts.spec, parts.spec.generation
    return GRPOConfig(
        **parts.common,
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=g.top_k,
        min_p=g.min_p,
        loss_type=spec.grpo.loss_type,
        beta=spec.grpo.beta,
        epsilon=spec.grpo.epsilon,
        epsilon_high=spec.grpo.epsilon_high if spec.grpo.epsilon_high is not None else spec.grpo.epsilon,
        scale_rewards=spec.grpo.scale_rewards,
        mask_truncated_completions=spec.grpo.mask_truncated_completions,
        num_iterations=spec.grpo.num_iterations,
        reward_weights=list(parts.reward_weights),
        log_completions=spec.logging.log_completions,
        num_completions_to_print=0,  # the app shows samples; the log stays readable
        **vllm_options(g),
    )


def vllm_options(g: Any) -> dict[str, Any]:
    """GRPOConfig's vLLM fields for `generation.vllm` (validated before the run: CUDA, vllm installed, the server)."""
    if g.vllm == "off":
        return {"use_vllm": False}
    options: dict[str, Any] = dict(use_vllm=True, vllm_mode=g.vllm,
                                   vllm_gpu_memory_utilization=g.vllm_gpu_memory_utilization)
    if g.vllm == "server":
        options.update(vllm_server_host=g.vllm_server_host, vllm_server_port=g.vllm_server_port)
    return options


def trainer_class(base: type, parts: TrainerParts, method_layer: Callable[[type], type] | None = None) -> type:
    """`base` with the engine's GRPO savings on TRL's path (Unsloth has its own GRPO path): each prompt computed once
    per group (grpo.shared_prefix) and zero-advantage completions left out of the training forward
    (grpo.skip_zero_advantage). `method_layer` builds a method's own trainer on a given base (Prefix-RFT's): it goes
    on the shared-prompt trainer and under the skip, so that the skip wraps the method's own loss."""
    trl_path = parts.backend.name == "trl"
    if trl_path and parts.spec.grpo.shared_prefix:
        from app.engine.training.shared_prefix import SharedPrefixMixin

        base = type("SharedPrefix" + base.__name__, (SharedPrefixMixin, base), {})
    if method_layer is not None:
        base = method_layer(base)
    if trl_path and parts.spec.grpo.skip_zero_advantage:
        from app.engine.training.zero_advantage import SkipZeroAdvantageMixin

        base = type("SkipZeroAdvantage" + base.__name__, (SkipZeroAdvantageMixin, base), {})
    return base


def trainer_kwargs(parts: TrainerParts) -> dict[str, Any]:
    return dict(model=parts.model, processing_class=parts.tokenizer, reward_funcs=list(parts.reward_funcs),
                args=grpo_config(parts), train_dataset=parts.train_dataset, peft_config=parts.peft_config)


class GRPO(TrainingMethod):
    key = "grpo"
    label = "GRPO"
    order = 30
    summary = "Online RL: sample a group of completions per prompt, score them with rewards, group-relative update."
    data_form = forms.PROMPT
    uses_rewards = True
    section = "grpo"
    section_type = GRPOSpec
    section_help = "GRPO loss."
    recipe = "arithmetic-grpo.yaml"
    charts = GRPO_CHARTS
    form_fields = (FormField("grpo.loss_type", "choice", "GRPO loss", GRPO_LOSS_TYPES),
                   FormField("grpo.beta", "float", "KL coefficient β"))

    def defaults(self, gpu: bool) -> dict[str, Any]:
        return {
            "method": self.key,
            # CPU: recipes/arithmetic-grpo.yaml's values (8 prompts × 4 completions, warm-up, cosine decay).
            "training": {"learning_rate": 1e-4 if gpu else 3e-4, "max_steps": 200 if gpu else 60,
                         "per_device_train_batch_size": 32, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1},
            "generation": {"num_generations": 8 if gpu else 4, "max_completion_length": 128 if gpu else 16,
                           "temperature": 1.0},
            "grpo": {"loss_type": "dapo", "beta": 0.0, "scale_rewards": "group"},
            "logging": {"sample_every": 1, "save_steps": 50 if gpu else 20},
        }

    def problems(self, spec: Any) -> list[SpecError]:
        problems, bad = collector()
        t, g, r = spec.training, spec.generation, spec.grpo
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
        if r.loss_type not in GRPO_LOSS_TYPES:
            bad("grpo.loss_type", f"unknown loss {r.loss_type!r}; choose one of {', '.join(GRPO_LOSS_TYPES)}")
        if r.scale_rewards not in SCALE_REWARDS:
            bad("grpo.scale_rewards", f"choose one of {', '.join(SCALE_REWARDS)}")
        if not (finite(r.beta) and r.beta >= 0):
            bad("grpo.beta", f"must be a finite number ≥ 0, got {r.beta}")
        if not (finite(r.epsilon) and r.epsilon > 0):
            bad("grpo.epsilon", f"must be a finite number > 0, got {r.epsilon}")
        if r.epsilon_high is not None and not (finite(r.epsilon_high) and r.epsilon_high > 0):
            bad("grpo.epsilon_high", f"must be a finite number > 0 or empty, got {r.epsilon_high}")
        if not isinstance(r.num_iterations, int) or r.num_iterations < 1:
            bad("grpo.num_iterations", f"must be at least 1 (policy updates per generation batch), got "
                                       f"{r.num_iterations!r}")
        if not spec.rewards:
            bad("rewards", "GRPO needs at least one reward function")
        return problems

    def recommended(self, changes: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        if not changes.get("rewards"):
            changes["rewards"] = [{"name": "exact_answer", "weight": 1.0}]
        return changes

    def build_trainer(self, parts: TrainerParts) -> Any:
        from trl import GRPOTrainer

        return trainer_class(GRPOTrainer, parts)(**trainer_kwargs(parts))

    def advantage_scaling(self, spec: Any) -> tuple[str, str] | None:
        loss = _get(spec, "grpo", "loss_type") or "dapo"
        scale = _get(spec, "grpo", "scale_rewards") or "group"
        return scale, f"Advantages as this run's GRPO computes them: {SCALING_TEXT.get(scale, scale)}; loss {loss}."


METHODS = (GRPO(),)
__all__ = ["GRPO", "GRPOSpec", "GRPO_LOSS_TYPES", "SCALE_REWARDS", "grpo_config", "trainer_class", "trainer_kwargs",
           "vllm_options"]
