"""A RunSpec's rewards as the callables a run scores with: built once (registry built-ins, user files, inline
code in the sandbox), guarded (an error scores None and is counted), and dry-run on a few rows before any model
loads. Validation, the worker and the compare view build them here."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.engine.core.spec import RunSpec


def build_rewards(spec: RunSpec) -> tuple[list[Any], list[float], list[str | None]]:
    """The spec's rewards as guarded callables (never raise; errors → None and counted), weights, registry names."""
    import rewards

    built, weights, registry = [], [], []
    for r in spec.rewards:
        if r.name:
            fn = rewards.get(r.name, **r.params)
        elif r.file:
            fn = rewards.load_user_reward_file(r.file, timeout_s=spec.reward_timeout_s)
        else:
            fn = rewards.load_user_reward(r.source or "", timeout_s=spec.reward_timeout_s)
        built.append(fn)
        weights.append(float(r.weight))
        registry.append(r.name)
    names = rewards.unique_names([rewards.reward_name(fn) for fn in built])
    return [rewards.guard(fn, name=name) for fn, name in zip(built, names)], weights, registry


def dry_run_rewards(funcs: list[Any], rows: list[dict[str, Any]], system_prompt: str | None = None) -> None:
    """Call every reward on ~8 rows (their reference completions) before any model is loaded, in the form GRPO
    will call it: chat-form prompts (with the system prompt) and completions, and the dataset's other columns."""
    import rewards
    from app.engine.data import forms

    sample = []
    for row, trl_row in zip(rows[:8], forms.to_form(forms.PROMPT, rows[:8], system_prompt)):
        completion = row.get("completion") or row.get("solution") or row.get("answer") or ""
        sample.append({**trl_row, "completion": [{"role": "assistant", "content": str(completion)}]})
    results = rewards.dry_run([getattr(f, "fn", f) for f in funcs], sample, n=8)
    rewards.check_dry_run(results)
