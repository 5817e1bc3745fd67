"""Prefix-RFT (Huang et al. 2025, arXiv 2507.01679): GRPO where part of each group continues a prefix of the
row's demonstration, whose length decays over training. The method's package: this module (the protocol),
settings.py (its RunSpec section) and trainer.py (a GRPOTrainer subclass: prefixed rollouts, prefix-aware
advantages, entropy-masked loss; imported only when a run builds it, since it needs torch). docs/prefix-rft.md
maps it onto the official code."""
from __future__ import annotations

from typing import Any

from app.engine.core.fields import SpecError, check_positive_int
from app.engine.data import forms
from app.engine.methods.base import FormField, MethodCharts, TrainerParts
from app.engine.methods.grpo import GRPO, GRPO_CHARTS
from app.engine.methods.prefix_rft.settings import PrefixSettings, PrefixSpec  # noqa: F401 (the section types)

# Loss aggregations the Prefix-RFT loss implements (trainer.py); the paper uses dr_grpo.
PREFIX_RFT_LOSS_TYPES = ("dr_grpo", "grpo", "bnpo", "dapo")
PREFIX_SCHEDULES = ("cosine", "linear", "constant")
CONTINUATION_ADVANTAGES = ("raw", "centred")


def prefix_rft_problems(spec: Any) -> list[SpecError]:
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
    check_positive_int(bad, "prefix.min_prefix_tokens", p.min_prefix_tokens)
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


def demonstration_problem(column: str, rows: list[dict]) -> str | None:
    """One sentence when the rows lack the demonstration column Prefix-RFT needs, else None."""
    columns = set().union(*(row.keys() for row in rows[:50])) if rows else set()
    if column not in columns:
        return (f"Prefix-RFT needs a demonstration column '{column}' (prefix.demonstration_column) with a reference "
                f"solution per row; the dataset has {sorted(columns)}")
    if not any(row.get(column) not in (None, "", []) for row in rows):
        return f"the demonstration column '{column}' is empty in every row"
    return None



PREFIX_CHARTS = MethodCharts(
    main="reward", main_title=GRPO_CHARTS.main_title, dynamics=GRPO_CHARTS.dynamics,
    # Prefix-RFT's own panels (metric, title, y format), each with a companion line drawn beside it.
    extra=(
        ("prefix/fraction_low", "Prefix fraction: lower bound and used", ".0%"),
        ("prefix/reward_prefixed", "Reward: prefixed vs on-policy", ""),
        ("prefix/tokens_updated_share", "Prefix tokens updated (entropy mask)", ".0%"),
    ),
    extra_title="Prefix-RFT",
    extra_companions={"prefix/fraction_low": "prefix/fraction", "prefix/reward_prefixed": "prefix/reward_on_policy"},
    extra_empty="No Prefix-RFT metrics yet (method prefix_rft logs prefix/*).",
)


class PrefixRFT(GRPO):
    key = "prefix_rft"
    label = "Prefix-RFT"
    order = 40
    summary = ("GRPO where part of each group continues a prefix of a demonstration whose length decays over "
               "training: SFT and RFT blended.")
    data_form = forms.PROMPT
    section = "prefix"
    section_type = PrefixSpec
    section_help = "Prefix-RFT settings (method prefix_rft)."
    recipe = "arithmetic-prefix-rft.yaml"
    charts = PREFIX_CHARTS
    form_fields = (FormField("prefix.demonstration_column", "text", "Demonstration column"),
                   FormField("prefix.n_prefixed", "int", "Prefixed rollouts per group"),
                   FormField("prefix.schedule", "choice", "Prefix decay schedule", PREFIX_SCHEDULES))

    def defaults(self, gpu: bool) -> dict[str, Any]:
        rl = super().defaults(gpu)
        rl["method"] = self.key
        rl["grpo"] = {"loss_type": "dr_grpo", "beta": 0.0, "scale_rewards": "none"}  # the paper's setting
        return rl

    def problems(self, spec: Any) -> list[SpecError]:
        return super().problems(spec) + prefix_rft_problems(spec)

    def data_problem(self, spec: Any, train_rows: list[dict[str, Any]]) -> str | None:
        return demonstration_problem(spec.prefix.demonstration_column, train_rows)

    def recommended(self, changes: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        changes = super().recommended(changes, data)
        changes["grpo"] = self.defaults(False)["grpo"]  # its loss settings are fixed by the method (Dr. GRPO, no KL)
        if data.get("demonstration_column"):
            changes["prefix"] = {"demonstration_column": data["demonstration_column"]}
        return changes

    def build_trainer(self, parts: TrainerParts) -> Any:
        import trl

        from app.engine.methods.grpo import trainer_class, trainer_kwargs
        from app.engine.methods.prefix_rft.trainer import build_prefix_rft_trainer, prefix_rft_trainer_class

        # TRL's path: each prompt runs once per group (grpo.shared_prefix), in the rollouts and in the loss, and the
        # skip (grpo.skip_zero_advantage) wraps Prefix-RFT's loss, which keeps every row with prefix tokens (its
        # entropy mask ranks them all: `rows_the_loss_needs`).
        cls = trainer_class(trl.GRPOTrainer, parts, method_layer=prefix_rft_trainer_class)
        return build_prefix_rft_trainer(parts.spec, cls, **trainer_kwargs(parts))

    def advantage_scaling(self, spec: Any) -> tuple[str, str] | None:
        return "none", ("Advantages as Prefix-RFT trains them: reward − group mean, no std scaling (Dr. GRPO; "
                        "prefixed rollouts are scored against the on-policy mean).")


METHODS = (PrefixRFT(),)
