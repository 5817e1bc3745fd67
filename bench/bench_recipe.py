"""A recipe end to end, once per seed: held-out greedy accuracy before and after training, the best periodic
evaluation, wall and training time, and the mean with a 95 % interval over the seeds.

    python bench/bench_recipe.py [recipes/arithmetic-grpo.yaml] [--seeds 42,7,1234] [--eval-size 128] [--set field=value …]

Each seed runs the recipe through the CLI worker (`python -m app.train`) exactly as a user would, with `seed` set
(training, sampling and data order); the held-out rows (`data.seed`) stay the same for every seed. The interval is
a bootstrap over seeds × held-out rows (app/engine/stats.py). Prints as it goes; one line per seed, then the summary.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine import runs  # noqa: E402
from app.engine.evaluation.stats import (  # noqa: E402
    kept_step_seconds,
    parse_seeds,
    resolvable_difference,
    summarize_arm,
)


def run_seed(recipe: str, seed: int, overrides: list[str], folder: Path) -> dict:
    """Train the recipe with `seed` in its own process; what its run folder says."""
    run_dir = folder / f"seed-{seed}"
    cmd = [sys.executable, "-m", "app.train", recipe, "--run-dir", str(run_dir), "--no-progress", "--set",
           f"seed={seed}"]
    for item in overrides:
        cmd += ["--set", item]
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(f"seed {seed}: run failed (exit {proc.returncode})")
    status = runs.read_status(run_dir)
    records = runs.read_jsonl(run_dir / "metrics.jsonl")[0]
    evals = [r for r in records if "eval/accuracy" in r]
    outcomes = {int(r["step"]): r["correct"] for r in runs.read_jsonl(run_dir / runs.EVALS_FILE)[0] if r.get("correct")}
    accs = [r["eval/accuracy"] for r in evals if r.get("eval/accuracy") is not None]
    final_step = int(evals[-1]["step"]) if evals else None
    return {
        "seed": seed, "run_dir": run_dir, "status": status, "wall": wall, "train": kept_step_seconds(records),
        "n": evals[0].get("eval/n") if evals else None,
        "base": evals[0].get("eval/accuracy") if evals and evals[0]["step"] == 0 else None,
        "final": evals[-1].get("eval/accuracy") if evals else None, "best": max(accs) if accs else None,
        "best_step": next((int(r["step"]) for r in evals if r.get("eval/accuracy") == max(accs)), None) if accs else None,
        "final_outcomes": outcomes.get(final_step) if final_step is not None else None,
        "rewards": [r["reward"] for r in records if r.get("reward") is not None],
    }


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "arithmetic-grpo.yaml"))
    p.add_argument("--seeds", default="42", help="comma-separated seeds, e.g. 42,7,1234")
    p.add_argument("--eval-size", type=int, default=128, help="held-out rows (the same for every seed)")
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    overrides = [f"data.eval_size={args.eval_size}", *args.set]
    folder = Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    print(f"recipe        {Path(args.recipe).name} {' '.join(args.set)}")
    print(f"seeds         {', '.join(map(str, seeds))}   held-out rows {args.eval_size}   folder {folder}", flush=True)
    results = []
    for seed in seeds:
        r = run_seed(args.recipe, seed, overrides, folder)
        results.append(r)
        st = r["status"]
        k = max(1, len(r["rewards"]) // 5)
        reward = (f"sampled reward first {k} steps {sum(r['rewards'][:k]) / k:.2f}, last {k} "
                  f"{sum(r['rewards'][-k:]) / k:.2f}") if r["rewards"] else ""
        print(f"seed {seed:<6} held-out {pct(r['base'])} -> {pct(r['final'])} (best {pct(r['best'])} at step "
              f"{r['best_step']})   steps {st.get('step')}   wall {r['wall']:.0f} s   training {r['train']:.0f} s   "
              f"{st.get('backend')} on {st.get('device')} ({st.get('dtype')})   {reward}", flush=True)
    final = summarize_arm({r["seed"]: r["final"] for r in results if r["final"] is not None},
                          {r["seed"]: r["final_outcomes"] for r in results if r["final_outcomes"]})
    base = summarize_arm({r["seed"]: r["base"] for r in results if r["base"] is not None})
    print()
    print(f"final held-out accuracy  {final.text()}   min {pct(final.min)}  max {pct(final.max)}   (interval: {final.interval})")
    print(f"base accuracy            {pct(base.mean)}")
    drops = [r["best"] - r["final"] for r in results if r["best"] is not None and r["final"] is not None]
    if drops:
        print(f"best − final             largest {100 * max(drops):.1f} points (a collapse shows here)")
    print(f"wall time                mean {sum(r['wall'] for r in results) / len(results):.0f} s per seed "
          f"({os.cpu_count()} CPU threads)")
    sd = final.std or 0.0
    print(f"resolution               differences under ~{100 * resolvable_difference(args.eval_size, len(seeds), seed_sd=sd):.0f} "
          f"points between two settings measured like this are not resolved (95 %, conservative)")


if __name__ == "__main__":
    main()
