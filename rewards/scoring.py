"""Scoring tables of completions with several rewards (playground, notebooks, compare view), and dry runs.

    table = rewards.score(rows, [("numeric_answer", 1.0), ("format_tags", 0.5)])
    table.rows[0]      # {"index": 0, "prompt": ..., "completion": ..., "scores": {...}, "total": ..., "errors": {...}}
    table.per_reward   # {"numeric_answer": {"mean": ..., "std": ..., "n_none": ..., "n_errors": ..., "seconds": ...}}
    pandas.DataFrame(table.to_records())

A row is a dict with `completion` (string or chat form), optionally `prompt`, and any dataset columns; rewards
get them exactly as TRL passes them: `prompts=[...]`, `completions=[...]`, one list per column.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewards.guard import GuardedReward, call_reward, describe_exception, invoke_reward, reward_name, unique_names
from rewards.text import completion_text, prompt_text

RewardLike = Callable[..., Any] | str


@dataclass
class StandInTrainerState:
    """What rewards see as `trainer_state` outside training (dry run, playground): the start of a 1-step run."""

    global_step: int = 0
    max_steps: int = 1
    epoch: float = 0.0
    num_train_epochs: int = 1


def _no_log(*args: Any, **kwargs: Any) -> None:
    return None


def batch_kwargs(rows: Sequence[dict[str, Any]], trainer_extras: bool = False) -> tuple[list[Any], dict[str, Any]]:
    """Rows → (completions, kwargs) in TRL's calling form: `prompts`, plus one list per other column.

    As in GRPOTrainer, a completion of a conversational prompt (a list of messages) is conversational too: a
    plain-text completion of such a row becomes `[{"role": "assistant", "content": text}]`, so a reward that reads
    `completions[i][0]["content"]` in training works unchanged in evaluation, the playground and the dry run.

    With `trainer_extras`, also what GRPOTrainer adds: a stand-in `trainer_state` (step 0 of 1) and no-op
    `log_extra` / `log_metric`, so a reward written for training runs unchanged in a dry run or the playground.

    >>> batch_kwargs([{"prompt": "2+2?", "completion": "4", "answer": "4"}])
    (['4'], {'prompts': ['2+2?'], 'answer': ['4']})
    """
    completions: list[Any] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "completion" not in row:
            raise ValueError(f"row {i} has no 'completion' (rows are dicts with completion, prompt, columns)")
        completion = row["completion"]
        if isinstance(completion, str) and isinstance(row.get("prompt"), list):
            completion = [{"role": "assistant", "content": completion}]
        completions.append(completion)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in ("prompt", "completion", "prompts", "completions") and k not in keys]
    kwargs: dict[str, Any] = {"prompts": [row.get("prompt") for row in rows]}
    for key in keys:
        kwargs[key] = [row.get(key) for row in rows]
    if trainer_extras:
        kwargs.update(trainer_state=StandInTrainerState(), log_extra=_no_log, log_metric=_no_log)
    return completions, kwargs


def _resolve(funcs: Sequence[Any]) -> list[tuple[Callable[..., Any], str, float]]:
    """(reward, weight) pairs, bare rewards, or registry names → (callable, unique name, weight)."""
    from rewards.registry import get

    out: list[tuple[Callable[..., Any], str, float]] = []
    for item in funcs:
        fn, weight = item if isinstance(item, tuple) else (item, 1.0)
        if isinstance(fn, str):
            fn = get(fn)
        name = reward_name(fn)
        if isinstance(fn, GuardedReward):  # scoring must not count into the training error counters
            fn = fn.fn
        out.append((fn, name, float(weight)))
    return [(fn, name, weight) for (fn, _, weight), name in zip(out, unique_names([n for _, n, _ in out]))]


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)  # Bessel, like TRL's nanstd
    return mean, math.sqrt(var)


@dataclass
class ScoreTable:
    """Per-sample, per-reward scores with the weighted total, errors, and a per-reward summary."""

    names: list[str]
    weights: list[float]
    rows: list[dict[str, Any]]
    per_reward: dict[str, dict[str, Any]]
    seconds: float = 0.0
    prints: dict[str, str] = field(default_factory=dict)

    def totals(self) -> list[float | None]:
        """The weighted total of each row (None where every reward gave None)."""
        return [row["total"] for row in self.rows]

    def to_records(self) -> list[dict[str, Any]]:
        """Flat dicts (one per row) for `pandas.DataFrame`: index, prompt, completion, one column per reward,
        total, advantage (when computed), and `error/<name>` columns for rewards that had errors."""
        failing = [n for n in self.names if self.per_reward[n]["n_errors"]]
        records = []
        for row in self.rows:
            rec = {"index": row["index"], "prompt": row["prompt"], "completion": row["completion"]}
            rec.update({n: row["scores"][n] for n in self.names})
            rec["total"] = row["total"]
            if "advantage" in row:
                rec["advantage"] = row["advantage"]
            rec.update({f"error/{n}": row["errors"].get(n) for n in failing})
            records.append(rec)
        return records

    def summary(self) -> str:
        """A small text table of the per-reward means (for logs and notebooks)."""
        lines = [f"{'reward':24} {'weight':>7} {'mean':>8} {'none':>5} {'errors':>6} {'ms':>8}"]
        for n in self.names:
            s = self.per_reward[n]
            mean = "-" if s["mean"] is None else f"{s['mean']:.4f}"
            lines.append(f"{n:24} {s['weight']:>7g} {mean:>8} {s['n_none']:>5} {s['n_errors']:>6} "
                         f"{s['seconds'] * 1000:>8.1f}")
        return "\n".join(lines)


def score(rows: Sequence[dict[str, Any]], funcs: Sequence[Any], group_size: int | None = None,
          scale_rewards: str = "group") -> ScoreTable:
    """Score rows with rewards and weights; never raises for a failing reward (its errors are in the table).

    Args:
        rows: dicts with `completion` (string or chat form), optionally `prompt`, and dataset columns.
        funcs: `(reward, weight)` pairs (a reward is a callable or a registry name), or bare rewards (weight 1).
        group_size: if given, consecutive groups of this many rows are treated as the completions of one prompt
            and each row gets its GRPO `advantage` (see `batch_advantages`).
        scale_rewards: how the advantages are scaled, as GRPOConfig's `scale_rewards`: 'group', 'batch', 'none'.

    Returns:
        A ScoreTable. A row's `total` is the weighted sum of its non-None scores (TRL's nansum), None if all
        are None.

    >>> rows = [{"prompt": "What is 17 + 25?", "completion": c, "answer": "42"} for c in ["42", "41"]]
    >>> table = score(rows, [("numeric_answer", 1.0), ("length", 0.5)], group_size=2)
    >>> [(r["scores"]["numeric_answer"], r["total"], round(r["advantage"], 3)) for r in table.rows]
    [(1.0, 1.0, 0.707), (0.0, 0.0, -0.707)]
    >>> table.per_reward["numeric_answer"]["mean"]
    0.5
    """
    start = time.perf_counter()
    resolved = _resolve(funcs)
    completions, kwargs = batch_kwargs(rows, trainer_extras=True)
    n = len(completions)
    results: dict[str, tuple[list[float | None], list[str | None]]] = {}
    per_reward: dict[str, dict[str, Any]] = {}
    prints: dict[str, str] = {}
    for fn, name, weight in resolved:
        t0 = time.perf_counter()
        scores, errors = call_reward(fn, completions, dict(kwargs)) if n else ([], [])
        seconds = time.perf_counter() - t0
        results[name] = (scores, errors)
        if getattr(fn, "last_prints", ""):
            prints[name] = fn.last_prints
        values = [s for s in scores if s is not None]
        mean, std = _stats(values)
        per_reward[name] = {
            "weight": weight, "mean": mean, "std": std,
            "min": min(values) if values else None, "max": max(values) if values else None,
            "n": len(values), "n_none": n - len(values), "n_errors": sum(e is not None for e in errors),
            "seconds": seconds,
        }
    table_rows = []
    for i in range(n):
        scores_i = {name: results[name][0][i] for _, name, _ in resolved}
        errors_i = {name: results[name][1][i] for _, name, _ in resolved if results[name][1][i] is not None}
        parts = [w * scores_i[name] for _, name, w in resolved if scores_i[name] is not None]
        table_rows.append({
            "index": i,
            "prompt": prompt_text(rows[i].get("prompt")),
            "completion": completion_text(completions[i]),
            "scores": scores_i,
            "total": sum(parts) if parts else None,
            "errors": errors_i,
        })
    if group_size:
        advantages, _ = batch_advantages([r["total"] for r in table_rows], group_size, scale_rewards)
        for r, a in zip(table_rows, advantages):
            r["advantage"] = a
    return ScoreTable([name for _, name, _ in resolved], [w for _, _, w in resolved], table_rows, per_reward,
                      time.perf_counter() - start, prints)


def group_advantages(totals: Sequence[float | None], scale: bool = True) -> tuple[list[float], bool]:
    """GRPO advantages of one group of completions, as TRL computes them: (r - mean) / (std + 1e-4).

    None totals (every reward None) are left out of the mean and std and get advantage 0, as in TRL. `std` is
    Bessel-corrected (TRL's nanstd). `scale=False` is Dr. GRPO's `scale_rewards="none"`: r - mean. Returns the
    advantages and whether the group has no spread (no learning signal: every completion scored the same, or
    fewer than two were scorable).

    >>> group_advantages([1.0, 0.0, 1.0, 0.0])
    ([0.866, -0.866, 0.866, -0.866], False)
    >>> group_advantages([1.0, 1.0])
    ([0.0, 0.0], True)
    >>> group_advantages([2.0, None, 0.0], scale=False)
    ([1.0, 0.0, -1.0], False)
    """
    values = [float(t) for t in totals if t is not None and not math.isnan(t)]
    if not values:
        return [0.0] * len(totals), True
    mean = sum(values) / len(values)
    if len(values) > 1:
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    else:
        std = float("nan")
    zero_variance = math.isnan(std) or math.isclose(std, 0.0, abs_tol=1e-8)
    out = []
    for t in totals:
        if t is None or math.isnan(t):
            out.append(0.0)
            continue
        a = float(t) - mean
        if scale:
            a = a / (std + 1e-4) if not math.isnan(std) else 0.0
        out.append(round(a, 3 if scale else 9))
    return out, zero_variance


SCALE_REWARDS = ("group", "batch", "none")


def batch_advantages(totals: Sequence[float | None], group_size: int, scale_rewards: str = "group"
                     ) -> tuple[list[float], list[bool]]:
    """GRPO advantages of a batch of consecutive groups, as TRL's GRPOTrainer computes them for `scale_rewards`:
    'group' (r − group mean) / (group std + 1e-4), 'batch' (r − group mean) / (batch std + 1e-4), 'none' (Dr. GRPO)
    r − group mean. None totals are left out of means and stds and get 0. Returns the advantages and, per group,
    whether it has no spread (no learning signal).

    >>> batch_advantages([1.0, 0.0, 3.0, 3.0], 2, "none")
    ([0.5, -0.5, 0.0, 0.0], [False, True])
    >>> batch_advantages([1.0, 0.0, 3.0, 1.0], 2, "batch")[0]
    [0.397, -0.397, 0.795, -0.795]
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}, got {scale_rewards!r}")
    out: list[float] = []
    flags: list[bool] = []
    values = [float(t) for t in totals if t is not None and not math.isnan(t)]
    batch_std = _nanstd(values)
    for g in range(0, len(totals), group_size):
        group = list(totals[g : g + group_size])
        centred, zero = group_advantages(group, scale=False)
        flags.append(zero)
        if scale_rewards == "none":
            out += centred
        elif scale_rewards == "group":
            out += group_advantages(group, scale=True)[0]
        else:
            out += [0.0 if math.isnan(batch_std) else round(a / (batch_std + 1e-4), 3) for a in centred]
    return out, flags


def _nanstd(values: Sequence[float]) -> float:
    if len(values) < 2:
        return float("nan")
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# --- dry run ------------------------------------------------------------------------------------------------------


@dataclass
class DryRunResult:
    """One reward's dry run: its scores on the sample rows, and the problem that should stop a run (if any)."""

    name: str
    ok: bool
    scores: list[float | None]
    errors: list[str | None]
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    prints: str = ""


class DryRunError(ValueError):
    """At least one reward failed its dry run; the message names each and its problem. `.results` has them all."""

    def __init__(self, message: str, results: list[DryRunResult]):
        super().__init__(message)
        self.results = results


def dry_run(funcs: Sequence[Callable[..., Any]], rows: Sequence[dict[str, Any]], n: int = 8) -> list[DryRunResult]:
    """Call each reward once on up to `n` rows, as TRL would, and check what comes back.

    The call has TRL's keys: `prompts`, `completions`, the columns, a stand-in `trainer_state` (step 0 of 1) and
    no-op `log_extra`/`log_metric`. A reward fails if it raises, returns something other than a list of one float-or-None per row, returns
    NaN/inf, or (sandboxed rewards) reports an error. Returning None for every row is allowed but warned about
    (it usually means the reward reads a column the data does not have). Guarded rewards are unwrapped so their
    errors show. Nothing is raised here: pass the results to `check_dry_run`.

    >>> from rewards.answers import numeric_answer
    >>> results = dry_run([numeric_answer, lambda completions, **kw: [1 / 0]], [{"completion": "42", "answer": "42"}])
    >>> [(r.name, r.ok, r.scores) for r in results]
    [('numeric_answer', True, [1.0]), ('<lambda>', False, [None])]
    >>> results[1].problem.split(" (at")[0]
    'raised ZeroDivisionError: division by zero'
    """
    sample = list(rows)[:n]
    completions, kwargs = batch_kwargs(sample, trainer_extras=True)
    out = []
    for fn in funcs:
        name = reward_name(fn)
        raw_fn = fn.fn if isinstance(fn, GuardedReward) else fn
        start = time.perf_counter()
        problem = None
        try:
            scores, errors = invoke_reward(raw_fn, completions, dict(kwargs))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the point is to report it (sys.exit too)
            scores, errors = [None] * len(completions), [None] * len(completions)
            problem = f"raised {describe_exception(exc)}"
        seconds = time.perf_counter() - start
        if problem is None:
            bad = [(i, e) for i, e in enumerate(errors) if e is not None]
            if bad:
                i, e = bad[0]
                more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
                problem = f"row {i}: {e}{more}"
        warnings = []
        if problem is None and completions and all(s is None for s in scores):
            warnings.append("returned None for every row: does it read a column the data has (e.g. answer_column)?")
        if seconds > 5:
            warnings.append(f"slow: {seconds:.1f} s for {len(completions)} rows")
        out.append(DryRunResult(name, problem is None, scores, errors, problem, warnings, seconds,
                                getattr(raw_fn, "last_prints", "") or ""))
    return out


def check_dry_run(results: Sequence[DryRunResult]) -> None:
    """Raise DryRunError naming every reward that failed its dry run, with its problem.

    >>> check_dry_run([DryRunResult("my_reward", False, [None], [None], "row 0: returned nan")])
    Traceback (most recent call last):
    ...
    rewards.scoring.DryRunError: Reward dry run failed: my_reward: row 0: returned nan
    """
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    if len(failed) == 1:
        message = f"Reward dry run failed: {failed[0].name}: {failed[0].problem}"
    else:
        message = "Reward dry run failed:\n" + "\n".join(f"- {r.name}: {r.problem}" for r in failed)
    raise DryRunError(message, list(results))


__all__ = ["score", "ScoreTable", "group_advantages", "batch_kwargs", "dry_run", "DryRunResult", "DryRunError",
           "check_dry_run"]
