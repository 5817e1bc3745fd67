"""Prefix-RFT's RunSpec section (`prefix:`) and the trainer's configuration (the section plus the run's seed)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from app.engine.core.fields import spec_field


@dataclass
class PrefixSpec:
    """Prefix-RFT (Huang et al. 2025, arXiv 2507.01679): part of each GRPO group continues a prefix of the row's
    demonstration. Defaults are the paper's values; see docs/prefix-rft.md."""

    demonstration_column: str = spec_field(
        "Dataset column holding the reference solution whose prefix guides the prefixed rollouts "
        "(the built-in arithmetic task: 'solution', e.g. '12 + 7 = 19').",
        "solution",
    )
    n_prefixed: int = spec_field(
        "Rollouts per group that continue a demonstration prefix; they replace on-policy ones, so the group "
        "stays generation.num_generations (paper: 1 of 8).",
        1,
    )
    high: float = spec_field("Upper bound of the prefix fraction of the demonstration (paper: 0.95, constant).", 0.95)
    low_start: float = spec_field("Lower bound of the prefix fraction at step 0 (paper: 0.95).", 0.95)
    low_end: float = spec_field("Lower bound of the prefix fraction at the end of the decay (paper: 0.05).", 0.05)
    schedule: str = spec_field(
        "How the lower bound moves from low_start to low_end: 'cosine' (paper), 'linear', or 'constant' "
        "(low_end from the start: a uniform prefix fraction, the paper's ablation).",
        "cosine",
    )
    decay_steps: int | None = spec_field("Steps over which the lower bound decays (None: training.max_steps).", None)
    min_prefix_tokens: int = spec_field(
        "Shortest prefix in tokens (the official code's min_prefix_len); a prefix always leaves at least the "
        "demonstration's last token to the model.",
        1,
    )
    entropy_top_fraction: float = spec_field(
        "Share of prefix tokens trained: the highest-entropy ones under the current policy, ranked within each "
        "micro-batch (paper: 0.2; 1.0 trains every prefix token).",
        0.2,
    )
    continuation_advantage: str = spec_field(
        "Advantage of the model's own continuation after a prefix: 'raw' (its reward, as the official code's "
        "singleton prefix group gives) or 'centred' (reward minus the on-policy mean).",
        "raw",
    )



@dataclass
class PrefixSettings(PrefixSpec):
    """The `prefix` section of a RunSpec plus the run's seed (the trainer's configuration)."""

    seed: int = 42

    @classmethod
    def from_spec(cls, spec: Any) -> "PrefixSettings":
        return cls(**asdict(spec.prefix), seed=spec.seed)
