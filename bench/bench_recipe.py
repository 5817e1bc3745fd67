"""A recipe end to end: held-out greedy accuracy before and after training, and wall time.

    python bench/bench_recipe.py [recipes/arithmetic-grpo.yaml] [--set field=value …]

Runs the recipe through the CLI worker (`python -m app.train`) exactly as a user would, then reads the run folder:
the base model's evaluation (step 0), the trained model's (last step), the reward curve, and the times.
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "arithmetic-grpo.yaml"))
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="bench-recipe-")) / "run"
    cmd = [sys.executable, "-m", "app.train", args.recipe, "--run-dir", str(run_dir), "--no-progress"]
    for item in args.set:
        cmd += ["--set", item]
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(f"run failed (exit {proc.returncode})")
    status = runs.read_status(run_dir)
    records = runs.read_jsonl(run_dir / "metrics.jsonl")[0]
    evals = [r for r in records if "eval/accuracy" in r]
    steps = [r for r in records if "reward" in r or "loss" in r]
    train_time = sum(r.get("step_time") or 0 for r in steps)
    print(f"recipe        {Path(args.recipe).name} {' '.join(args.set)}")
    print(f"backend       {status.get('backend')} on {status.get('device')} ({status.get('dtype')}), {os.cpu_count()} CPU threads")
    print(f"steps         {status.get('step')}   training {train_time:.0f} s   wall (load, eval ×2, train, save) {wall:.0f} s")
    if evals:
        print(f"held-out      n={evals[0]['eval/n']}  accuracy {evals[0]['eval/accuracy']:.1%} -> {evals[-1]['eval/accuracy']:.1%}"
              f"   (eval {evals[0]['eval/seconds']:.0f} s each)")
    rewards = [r["reward"] for r in steps if r.get("reward") is not None]
    if rewards:
        k = max(1, len(rewards) // 5)
        print(f"sampled reward  first {k} steps {sum(rewards[:k]) / k:.2f}  last {k} steps {sum(rewards[-k:]) / k:.2f}")
    print(f"run folder    {run_dir}")


if __name__ == "__main__":
    main()
