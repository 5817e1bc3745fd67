"""A recipe end to end, once per seed: held-out greedy accuracy before and after training, the best periodic
evaluation, wall and training time, the mean with a 95 % interval over the seeds, and the compute-budget ratio.

    python bench/bench_recipe.py [recipes/arithmetic-grpo.yaml] [--seeds 42,7,1234] [--eval-size 128]
                                 [--parallel 2] [--reference-steps 40] [--set field=value …]

Each seed runs the recipe through the CLI worker (`python -m app.train`) exactly as a user would, with `seed` set
(training, sampling and data order); the held-out rows (`data.seed`) stay the same for every seed. The interval is
a bootstrap over seeds × held-out rows (app/engine/stats.py).

The budget: beside every seed runs the reference, plain TRL + PEFT for `--reference-steps` steps of
bench_grpo.py's configuration (2 prompts × 8 completions × 16 tokens), its whole process timed like the recipe's.
The runs go in rounds of `--parallel` processes sharing the CPU threads evenly; the reference takes one slot in
every round (with `--parallel 1` it runs just before its seed), so each seed is compared with a reference under
the same load. budget ratio = recipe wall / reference wall; the recipe is within budget when it is ≤ 1.0.
Prints as it goes; one line per seed, then the summary.
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


def seed_command(recipe: str, seed: int, overrides: list[str], run_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "app.train", recipe, "--run-dir", str(run_dir), "--no-progress", "--set",
           f"seed={seed}"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def reference_command(steps: int) -> list[str]:
    """Plain TRL + PEFT, bench_grpo.py's baseline: the compute budget's yardstick."""
    return [sys.executable, str(ROOT / "bench" / "bench_grpo.py"), "--variant", "plain", "--steps", str(steps)]


def run_together(commands: list[list[str]], threads: int) -> list[float]:
    """Start the commands at once, each with `threads` CPU threads; their wall times. Fails loudly on an error."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    logs = [tempfile.TemporaryFile(mode="w+") for _ in commands]
    start = time.time()
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
             for cmd, log in zip(commands, logs)]
    walls: list[float | None] = [None] * len(procs)
    while None in walls:  # poll: each process's own wall time, whichever finishes first
        for i, (cmd, proc, log) in enumerate(zip(commands, procs, logs)):
            if walls[i] is not None or proc.poll() is None:
                continue
            walls[i] = time.time() - start
            if proc.returncode:
                log.seek(0)
                print(log.read()[-4000:])
                for other in procs:
                    other.kill()
                raise SystemExit(f"{' '.join(cmd[1:4])}…: failed (exit {proc.returncode})")
        time.sleep(1)
    return walls


def read_seed(seed: int, run_dir: Path, wall: float) -> dict:
    """What a seed's run folder says."""
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


def print_seed(r: dict) -> None:
    st = r["status"]
    k = max(1, len(r["rewards"]) // 5)
    reward = (f"sampled reward first {k} steps {sum(r['rewards'][:k]) / k:.2f}, last {k} "
              f"{sum(r['rewards'][-k:]) / k:.2f}") if r["rewards"] else ""
    budget = (f"   reference {r['reference']:.0f} s, budget ratio {r['wall'] / r['reference']:.2f}"
              if r.get("reference") else "")
    print(f"seed {r['seed']:<6} held-out {pct(r['base'])} -> {pct(r['final'])} (best {pct(r['best'])} at step "
          f"{r['best_step']})   steps {st.get('step')}   wall {r['wall']:.0f} s   training {r['train']:.0f} s{budget}   "
          f"{st.get('backend')} on {st.get('device')} ({st.get('dtype')})   {reward}", flush=True)


def question_forms(run_dir: Path, outcomes: list | None) -> str:
    """Held-out accuracy by the form of an addition (which operand has one digit): where the errors are. '' when
    the held-out rows are not additions."""
    if not outcomes:
        return ""
    from app.engine.data.tasks import arithmetic_operands
    from app.engine.evaluation.compare import held_out_rows

    rows = held_out_rows(run_dir, n=len(outcomes))[0]
    forms: dict[str, list[int]] = {}
    for row, ok in zip(rows, outcomes):
        operands = arithmetic_operands(str(row.get("prompt", "")))
        if operands is None or ok is None:
            return ""
        a, b = (len(str(abs(x))) for x in operands)
        form = {(1, 1): "a + b", (1, 2): "a + bc", (2, 1): "bc + a"}.get((min(a, 2), min(b, 2)), "bc + de")
        forms.setdefault(form, []).append(int(ok))
    return "   ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(forms.items()))


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "arithmetic-grpo.yaml"))
    p.add_argument("--seeds", default="42", help="comma-separated seeds, e.g. 42,7,1234")
    p.add_argument("--eval-size", type=int, default=128, help="held-out rows (the same for every seed)")
    p.add_argument("--parallel", type=int, default=1, help="processes at once, sharing the CPU threads evenly")
    p.add_argument("--reference-steps", type=int, default=40,
                   help="steps of the plain TRL reference run beside each seed (0: no budget ratio)")
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    if args.parallel < 1:
        raise SystemExit("error: --parallel must be at least 1")
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    overrides = [f"data.eval_size={args.eval_size}", *args.set]
    folder = Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    print(f"recipe        {Path(args.recipe).name} {' '.join(args.set)}")
    print(f"seeds         {', '.join(map(str, seeds))}   held-out rows {args.eval_size}   folder {folder}", flush=True)
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    slots = args.parallel - 1 if args.reference_steps and args.parallel > 1 else args.parallel
    print(f"runs          {args.parallel} at a time, {threads} CPU thread(s) each; reference: plain TRL + PEFT "
          f"{args.reference_steps or 0} steps beside each round", flush=True)
    results = []
    for i in range(0, len(seeds), slots):
        group = seeds[i:i + slots]
        commands = [seed_command(args.recipe, s, overrides, folder / f"seed-{s}") for s in group]
        reference = None
        if args.reference_steps and args.parallel == 1:
            reference = run_together([reference_command(args.reference_steps)], threads)[0]
            walls = run_together(commands, threads)
        elif args.reference_steps:
            *walls, reference = run_together(commands + [reference_command(args.reference_steps)], threads)
        else:
            walls = run_together(commands, threads)
        for seed, wall in zip(group, walls):
            r = read_seed(seed, folder / f"seed-{seed}", wall)
            r["reference"] = reference
            results.append(r)
            print_seed(r)
            forms = question_forms(folder / f"seed-{seed}", r["final_outcomes"])
            if forms:
                print(f"         by question form (correct/asked, final evaluation): {forms}", flush=True)
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
          f"({threads} CPU thread(s) each, {args.parallel} process(es) at a time)")
    ratios = [r["wall"] / r["reference"] for r in results if r.get("reference")]
    if ratios:
        print(f"budget ratio             largest {max(ratios):.2f}, mean {sum(ratios) / len(ratios):.2f}   (recipe wall / "
              f"plain TRL {args.reference_steps} steps beside it; within budget when ≤ 1.0)")
    sd = final.std or 0.0
    print(f"resolution               differences under ~{100 * resolvable_difference(args.eval_size, len(seeds), seed_sd=sd):.0f} "
          f"points between two settings measured like this are not resolved (95 %, conservative)")


if __name__ == "__main__":
    main()
