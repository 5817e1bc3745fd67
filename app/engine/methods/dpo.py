"""DPO: offline preference learning from prompt / chosen / rejected pairs with TRL's DPOTrainer. Held-out pairs
are scored by the model's own log-probabilities (preference accuracy and margin), comparable between the base and
the trained model; docs/dpo.md."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from app.engine.core.fields import SpecError, finite, spec_field
from app.engine.data import forms
from app.engine.data.preferences import normalize_pair, row_problem
from app.engine.methods.base import (
    EvalContext,
    FormField,
    MethodCharts,
    TrainerParts,
    TrainingMethod,
)

# TRL 1.15 DPOConfig.loss_type values (one loss; `dpo.sft_weight` adds the "sft" term).
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sigmoid_norm",
)


@dataclass
class DPOSpec:
    """DPO loss settings (TRL DPOConfig). Rows are preference pairs (prompt / chosen / rejected); one row of
    `training.per_device_train_batch_size` is one pair (two sequences). Sequences longer than
    `generation.max_length` tokens (prompt + reply) are truncated. With LoRA the reference model is the base model
    (the adapter switched off), so no second copy of the weights is loaded."""

    beta: float = spec_field(
        "Strength of the pull towards the reference model (DPO β): higher stays closer to it. "
        "For loss_type 'ipo' it is the regulariser τ.",
        0.1,
    )
    loss_type: str = spec_field(
        f"Preference loss: 'sigmoid' (standard DPO), or one of {', '.join(DPO_LOSS_TYPES[1:])}.", "sigmoid"
    )
    label_smoothing: float = spec_field(
        "Assumed share of flipped preference labels, in [0, 0.5) (loss_type 'robust'; 'exo_pair' needs > 0, e.g. 1e-3).",
        0.0,
    )
    sft_weight: float = spec_field(
        "Weight of an added SFT (negative log-likelihood) loss on the chosen replies (RPO); 0: pure DPO. Keeps the "
        "chosen replies' likelihood from falling while the margin grows.",
        0.0,
    )


def dpo_problems(spec: Any) -> list[SpecError]:
    """Checks of the `dpo` section (TRL DPOConfig values that would fail at trainer construction or train badly)."""
    problems: list[SpecError] = []
    d = spec.dpo
    if not (isinstance(d.beta, (int, float)) and finite(d.beta) and d.beta > 0):
        bad_beta = "must be a positive number (e.g. 0.1; higher stays closer to the reference model)"
        problems.append(SpecError("dpo.beta", f"{bad_beta}, got {d.beta!r}"))
    if d.loss_type not in DPO_LOSS_TYPES:
        problems.append(SpecError("dpo.loss_type", f"unknown loss {d.loss_type!r}; choose one of {', '.join(DPO_LOSS_TYPES)}"))
    if not (isinstance(d.label_smoothing, (int, float)) and 0.0 <= d.label_smoothing < 0.5):
        problems.append(SpecError("dpo.label_smoothing", f"must be in [0, 0.5), got {d.label_smoothing!r}"))
    elif d.loss_type == "exo_pair" and d.label_smoothing == 0:
        problems.append(SpecError("dpo.label_smoothing", "loss_type 'exo_pair' needs label_smoothing > 0 (the EXO paper: 1e-3)"))
    if not (isinstance(d.sft_weight, (int, float)) and finite(d.sft_weight) and d.sft_weight >= 0):
        problems.append(SpecError("dpo.sft_weight", f"must be ≥ 0 (0: pure DPO), got {d.sft_weight!r}"))
    return problems




def preference_eval(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    system_prompt: str | None = None,
    batch_size: int = 8,
    max_length: int = 512,
    unsloth: bool = False,
    prefix: str = "eval/",
) -> dict[str, Any]:
    """How strongly the model prefers the chosen replies of held-out pairs, from its own log-probabilities:

    `preference_accuracy`  share of pairs with log p(chosen) > log p(rejected)
    `preference_margin`    mean of log p(chosen) − log p(rejected) (nats, summed over the reply's tokens)
    `logps/chosen`, `logps/rejected`  mean summed log-probabilities

    Unlike TRL's `rewards/accuracies` (relative to the reference model, so 0 before the first update), these are
    comparable between the base model and the trained one. Rows with a problem are left out.
    """
    from app.engine.evaluation.evaluate import inference_mode
    from app.engine.evaluation.logprobs import sequence_logps

    start = time.time()
    pairs = []
    for row in rows:
        if row_problem(row) is None:
            pairs.append(normalize_pair(row, system_prompt))
    if not pairs:
        return {}
    seqs = [(p["prompt"], p["chosen"]) for p in pairs] + [(p["prompt"], p["rejected"]) for p in pairs]
    with inference_mode(model, unsloth=unsloth):
        logps = sequence_logps(model, tokenizer, seqs, batch_size=batch_size, max_length=max_length)
    chosen, rejected = logps[: len(pairs)], logps[len(pairs) :]
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {
        f"{prefix}preference_accuracy": sum(m > 0 for m in margins) / len(margins),
        f"{prefix}preference_margin": sum(margins) / len(margins),
        f"{prefix}logps/chosen": sum(chosen) / len(chosen),
        f"{prefix}logps/rejected": sum(rejected) / len(rejected),
        f"{prefix}preference_n": len(pairs),
        f"{prefix}preference_seconds": round(time.time() - start, 2),
    }



DPO_CHARTS = MethodCharts(
    main="lines", main_title="DPO implicit rewards (β · log-ratio to the reference)", main_y_title="implicit reward",
    main_lines=(("rewards/chosen", "chosen"), ("rewards/rejected", "rejected"),
                ("rewards/margins", "margin (chosen − rejected)")),
    dynamics=(
        ("loss", "Loss", ""),
        ("rewards/accuracies", "Preference accuracy (train batch)", ".0%"),
        ("logps/chosen", "Log-prob of chosen and rejected replies", ""),
        ("grad_norm", "Gradient norm", ""),
        ("learning_rate", "Learning rate", ".1e"),
        ("step_time", "Step time (s)", ""),
    ),
    companions={"logps/chosen": ("logps/rejected", "rejected")},
)


class DPO(TrainingMethod):
    key = "dpo"
    label = "DPO"
    order = 50
    summary = "Preference learning from chosen / rejected reply pairs (offline, no reward model)."
    data_form = forms.PREFERENCE
    learns_from_marks = True
    collects = "pairs"
    collect_hint = "collect preference pairs (mark the better of two outputs)"
    alternative = "DPO, if you can say which of two replies is better (pairs carry more signal per mark)."
    section = "dpo"
    section_type = DPOSpec
    section_help = "DPO loss (method 'dpo': preference pairs)."
    recipe = "preference-dpo.yaml"
    charts = DPO_CHARTS
    form_fields = (FormField("dpo.beta", "float", "DPO β"),
                   FormField("dpo.loss_type", "choice", "DPO loss", DPO_LOSS_TYPES))
    eval_metrics = ("eval/preference_accuracy",)  # higher is better: training.keep_best may rank by it

    def defaults(self, gpu: bool) -> dict[str, Any]:
        return {  # one row = one pair (two sequences): a smaller step
            "method": self.key,
            "training": {"learning_rate": 5e-5, "max_steps": 100 if gpu else 30,
                         "per_device_train_batch_size": 16 if gpu else 8},
            "generation": {"max_length": 512 if gpu else 128, "max_completion_length": 64 if gpu else 16},
            "dpo": {"beta": 0.1, "loss_type": "sigmoid"},
            "logging": {"save_steps": 50 if gpu else 30},
        }

    def problems(self, spec: Any) -> list[SpecError]:
        return dpo_problems(spec)

    def eval_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [normalize_pair(row) for row in rows]  # an implicit prompt made explicit: evaluation prompts with it

    def build_trainer(self, parts: TrainerParts) -> Any:
        """`trl.DPOTrainer`. LoRA: TRL wraps the model with the PEFT config; an Unsloth model arrives wrapped
        already (TRL then keeps a frozen copy of the fresh adapter as the reference)."""
        from trl import DPOConfig, DPOTrainer

        d = parts.spec.dpo
        loss_type, loss_weights = [d.loss_type], None
        if d.sft_weight > 0:  # RPO: DPO plus an NLL term on the chosen replies
            loss_type, loss_weights = [d.loss_type, "sft"], [1.0, float(d.sft_weight)]
        cfg = DPOConfig(**parts.common, max_length=parts.spec.generation.max_length, beta=d.beta, loss_type=loss_type,
                        loss_weights=loss_weights, label_smoothing=d.label_smoothing)
        return DPOTrainer(model=parts.model, processing_class=parts.tokenizer, args=cfg,
                          train_dataset=parts.train_dataset, peft_config=parts.peft_config)

    def extra_evaluation(self, ctx: EvalContext, rows: list[dict[str, Any]], step: int) -> dict[str, Any]:
        if not rows:
            return {}
        metrics = preference_eval(ctx.model, ctx.tokenizer, rows, system_prompt=ctx.spec.data.system_prompt,
                                  max_length=ctx.spec.generation.max_length, unsloth=ctx.unsloth)
        if metrics:
            ctx.log(f"[eval step {step}] preference accuracy {metrics['eval/preference_accuracy']:.1%}, margin "
                    f"{metrics['eval/preference_margin']:.2f} nats on {metrics['eval/preference_n']} held-out pairs")
        return metrics


METHODS = (DPO(),)
