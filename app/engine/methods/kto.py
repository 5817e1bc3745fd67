"""KTO (Kahneman-Tversky Optimisation, Ethayarajh et al. 2024) with TRL's KTOTrainer: learns from single replies
marked good or bad (👍 / 👎), no pairs needed, so the marks are easier to collect than DPO's.

Rows (TRL's unpaired preference form): `prompt`, `completion`, `label` (true: desirable). Preference pairs
(`prompt` / `chosen` / `rejected`) are accepted too and read as two marks each. The app's *4 · Compare* collects
thumbs into a file of this form (`append_thumb`). Held-out rows are scored by the model's own log-probabilities
of the marked replies (pairs: preference accuracy, as DPO reports it)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from app.engine.core.fields import SpecError, collector, finite, spec_field
from app.engine.data.forms import prompt_messages
from app.engine.data.preferences import append_record, normalize_pair, read_pairs
from app.engine.data.preferences import row_problem as pair_problem
from app.engine.methods.base import (
    EvalContext,
    FormField,
    MethodCharts,
    TrainerParts,
    TrainingMethod,
)

UNPAIRED = "unpaired"  # the row form: prompt / completion / label
KTO_LOSS_TYPES = ("kto", "apo_zero_unpaired")  # TRL 1.15 KTOConfig.loss_type


@dataclass
class KTOSpec:
    """KTO loss settings (TRL KTOConfig). One row of `training.per_device_train_batch_size` is one marked reply;
    TRL estimates the KL term from mismatched prompt/reply pairs of the same batch, so a batch needs ≥ 2 rows."""

    beta: float = spec_field("Strength of the pull towards the reference model (KTO β): higher stays closer.", 0.1)
    desirable_weight: float = spec_field(
        "Weight of the 👍 replies' loss (raise it when 👎 marks outnumber 👍 ones: the KTO paper keeps "
        "desirable_weight × n_good / (undesirable_weight × n_bad) in [1, 4/3]).", 1.0)
    undesirable_weight: float = spec_field("Weight of the 👎 replies' loss.", 1.0)
    loss_type: str = spec_field(f"One of {', '.join(KTO_LOSS_TYPES)}.", "kto")


KTO_CHARTS = MethodCharts(
    main="lines", main_title="KTO implicit rewards (β · log-ratio to the reference)", main_y_title="implicit reward",
    main_lines=(("rewards/chosen", "👍 replies"), ("rewards/rejected", "👎 replies"),
                ("rewards/margins", "margin (👍 − 👎)")),
    dynamics=(
        ("loss", "Loss", ""),
        ("kl", "KL estimate to reference", ""),
        ("logps/chosen", "Log-prob of 👍 and 👎 replies", ""),
        ("grad_norm", "Gradient norm", ""),
        ("learning_rate", "Learning rate", ".1e"),
        ("step_time", "Step time (s)", ""),
    ),
    companions={"logps/chosen": ("logps/rejected", "👎")},
)


def _is_pair(row: dict[str, Any]) -> bool:
    return "chosen" in row or "rejected" in row


def _reply(value: Any) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": value}] if isinstance(value, str) else [dict(m) for m in value]


def thumb_problem(row: Any) -> str | None:
    """Why one row cannot be a KTO mark (a clause such as "has no 'label'"), or None."""
    if not isinstance(row, dict):
        return f"is not an object with prompt / completion / label ({type(row).__name__})"
    if _is_pair(row):
        return pair_problem(row)
    prompt, completion = row.get("prompt"), row.get("completion")
    if prompt is None or (isinstance(prompt, (str, list)) and not prompt) or (isinstance(prompt, str) and not prompt.strip()):
        return "has an empty 'prompt'"
    text = completion if isinstance(completion, str) else "".join(
        str(m.get("content", "")) for m in completion if isinstance(m, dict)) if isinstance(completion, list) else None
    if text is None or not text.strip():
        return "has an empty 'completion'"
    if not isinstance(row.get("label"), bool):
        return f"has a 'label' that is not true or false ({row.get('label')!r}); true marks a good reply"
    return None


def unpaired_rows(rows: list[dict[str, Any]], system_prompt: str | None = None) -> list[dict[str, Any]]:
    """TRL's conversational unpaired form: prompt (messages), completion (an assistant turn), label; a pair
    becomes its chosen reply (true) and its rejected one (false)."""
    out = []
    for row in rows:
        if _is_pair(row):
            pair = normalize_pair(row, system_prompt)
            out += [{"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
                    {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}]
        else:
            out.append({"prompt": prompt_messages(row, system_prompt), "completion": _reply(row["completion"]),
                        "label": bool(row["label"])})
    return out


def append_thumb(path: str | Path, prompt: str | list[dict[str, str]], completion: str, good: bool,
                 meta: dict[str, Any] | None = None) -> tuple[int, int]:
    """Append one 👍 (good) or 👎 mark of a single reply to the KTO file at `path` (created with its folder; a line
    in TRL's unpaired form, `meta` kept aside); returns the file's (👍, 👎) counts. ValueError for an empty reply."""
    record: dict[str, Any] = {"prompt": prompt_messages({"prompt": prompt}), "completion": _reply(completion),
                              "label": bool(good)}
    problem = thumb_problem(record)
    if problem:
        raise ValueError(f"This mark {problem}.")
    if meta:
        record["meta"] = meta
    append_record(path, record)
    return count_thumbs(path)


def count_thumbs(path: str | Path) -> tuple[int, int]:
    """(👍, 👎) usable marks in a KTO file (0, 0 when it does not exist)."""
    marks = [r for r in read_pairs(path) if thumb_problem(r) is None and not _is_pair(r)]
    good = sum(1 for r in marks if r["label"])
    return good, len(marks) - good


def kto_problems(spec: Any) -> list[SpecError]:
    problems, bad = collector()
    k = spec.kto
    if not (finite(k.beta) and k.beta > 0):
        bad("kto.beta", f"must be a positive number (e.g. 0.1; higher stays closer to the reference model), got {k.beta!r}")
    for name in ("desirable_weight", "undesirable_weight"):
        value = getattr(k, name)
        if not (finite(value) and value > 0):
            bad(f"kto.{name}", f"must be a positive number, got {value!r}")
    if k.loss_type not in KTO_LOSS_TYPES:
        bad("kto.loss_type", f"unknown loss {k.loss_type!r}; choose one of {', '.join(KTO_LOSS_TYPES)}")
    if spec.training.per_device_train_batch_size < 2:
        bad("training.per_device_train_batch_size",
            "KTO needs at least 2 rows per batch (TRL estimates its KL term from mismatched rows of the batch)")
    return problems


class KTO(TrainingMethod):
    key = "kto"
    label = "KTO"
    order = 60
    summary = "Learns from single replies marked good or bad (👍 / 👎): no pairs needed, no reward model."
    data_form = UNPAIRED
    learns_from_marks = True
    collects = "thumbs"
    collect_hint = "mark single outputs 👍 / 👎 in 4 · Compare"
    alternative = "KTO, if marking single replies 👍 / 👎 is easier than choosing the better of two."
    section = "kto"
    section_type = KTOSpec
    section_help = "KTO loss (method 'kto': replies marked good or bad)."
    recipe = "preference-kto.yaml"
    charts = KTO_CHARTS
    eval_metrics = ("eval/preference_accuracy",)
    form_fields = (FormField("kto.beta", "float", "KTO β"),
                   FormField("kto.desirable_weight", "float", "👍 weight"),
                   FormField("kto.undesirable_weight", "float", "👎 weight"))

    def defaults(self, gpu: bool) -> dict[str, Any]:
        return {
            "method": self.key,
            "training": {"learning_rate": 5e-5, "max_steps": 100 if gpu else 30,
                         "per_device_train_batch_size": 16 if gpu else 8},
            "generation": {"max_length": 512 if gpu else 128, "max_completion_length": 64 if gpu else 16},
            "kto": {"beta": 0.1, "loss_type": "kto"},
            "logging": {"save_steps": 50 if gpu else 30},
        }

    def problems(self, spec: Any) -> list[SpecError]:
        return kto_problems(spec)

    def rows_problem(self, rows: list[dict[str, Any]], where: Callable[[int], str] | None = None) -> str | None:
        if not rows:
            return "the dataset has no rows"
        label = where or (lambda i: f"row {i + 1}")
        for i, row in enumerate(rows):
            problem = thumb_problem(row)
            if problem:
                return (f"{label(i)} {problem} (KTO reads prompt / completion / label rows, or prompt / chosen / "
                        "rejected pairs)")
        marks = unpaired_rows(rows)
        if all(m["label"] for m in marks) or not any(m["label"] for m in marks):
            which = "👍 (label true)" if marks[0]["label"] else "👎 (label false)"
            return f"every row is {which}: KTO needs both good and bad replies to learn which is which"
        return None

    def trl_rows(self, rows: list[dict[str, Any]], system_prompt: str | None = None) -> list[dict[str, Any]]:
        return unpaired_rows(rows, system_prompt)

    def build_trainer(self, parts: TrainerParts) -> Any:
        """`trl.KTOTrainer`. With LoRA the reference model is the base model (the adapter switched off)."""
        from trl import KTOConfig, KTOTrainer

        k = parts.spec.kto
        cfg = KTOConfig(**parts.common, max_length=parts.spec.generation.max_length, beta=k.beta,
                        desirable_weight=k.desirable_weight, undesirable_weight=k.undesirable_weight,
                        loss_type=k.loss_type)
        return KTOTrainer(model=parts.model, processing_class=parts.tokenizer, args=cfg,
                          train_dataset=parts.train_dataset, peft_config=parts.peft_config)

    def extra_evaluation(self, ctx: EvalContext, rows: list[dict[str, Any]], step: int) -> dict[str, Any]:
        """Held-out pairs: preference accuracy and margin (DPO's measure). Held-out single marks: the mean
        log-probability of the 👍 and of the 👎 replies; their gap grows as the model learns the marks."""
        from app.engine.methods.dpo import preference_eval

        metrics = preference_eval(ctx.model, ctx.tokenizer, [r for r in rows if _is_pair(r)],
                                  system_prompt=ctx.spec.data.system_prompt, max_length=ctx.spec.generation.max_length,
                                  unsloth=ctx.unsloth)
        single = unpaired_rows([r for r in rows if not _is_pair(r) and thumb_problem(r) is None],
                               ctx.spec.data.system_prompt)
        if single:
            from app.engine.evaluation.evaluate import inference_mode
            from app.engine.evaluation.logprobs import sequence_logps

            start = time.time()
            with inference_mode(ctx.model, unsloth=ctx.unsloth):
                logps = sequence_logps(ctx.model, ctx.tokenizer, [(r["prompt"], r["completion"]) for r in single],
                                       max_length=ctx.spec.generation.max_length)
            good = [lp for lp, r in zip(logps, single) if r["label"]]
            bad = [lp for lp, r in zip(logps, single) if not r["label"]]
            metrics.update({"eval/logps/desirable": sum(good) / len(good) if good else None,
                            "eval/logps/undesirable": sum(bad) / len(bad) if bad else None,
                            "eval/marks_n": len(single), "eval/marks_seconds": round(time.time() - start, 2)})
        if metrics.get("eval/preference_accuracy") is not None:
            ctx.log(f"[eval step {step}] preference accuracy {metrics['eval/preference_accuracy']:.1%} on "
                    f"{metrics['eval/preference_n']} held-out pairs")
        return metrics


METHODS = (KTO(),)
