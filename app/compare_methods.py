"""Command line: compare fine-tuning methods on one task with the same model, step budget, seed and held-out rows.

    python -m app.compare_methods                                   # all five methods, 40 steps, arithmetic task
    python -m app.compare_methods --steps 30 --methods sft,grpo,prefix_rft --seeds 42,7,1234 --avg-k 4
    python -m app.compare_methods --task gsm8k --model Qwen/Qwen2.5-0.5B-Instruct --steps 200   # on a GPU
    python -m app.compare_methods --show DIR                        # print the table of an existing comparison
    python -m app.compare_methods --merge DIR1 DIR2 --out DIR       # one table from comparisons run side by side

Each method trains in its own worker process (`python -m app.train`), one after another (with --seeds, once per
seed: mean, sd, min/max and a 95 % interval per method); the comparison folder
(`--out`, default DATA_DIR/comparisons/<stamp>-<task>) collects comparison.json and table.md, and the app's
Compare-methods view reopens it. Ctrl-C stops the current run at its next step and skips the rest.
Exit code 0: every method finished; 1: a method failed; 2: a bad setting; 3: stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from app.engine.evaluation.method_compare import METHOD_KEYS, TASKS

    p = argparse.ArgumentParser(prog="python -m app.compare_methods", description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(METHOD_KEYS), help=f"comma-separated, from {','.join(METHOD_KEYS)}")
    p.add_argument("--task", default="arithmetic", choices=TASKS, help="built-in arithmetic (CPU) or gsm8k (GPU)")
    p.add_argument("--model", default="default", help="'default' (SmolLM2-135M-Instruct), a folder or a hub id")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per method (SFT→GRPO: SFT + GRPO steps)")
    p.add_argument("--sft-steps", type=int, help="SFT→GRPO: steps of the priming SFT (default: a quarter)")
    p.add_argument("--seed", type=int, default=42, help="the seed of a single-seed comparison")
    p.add_argument("--seeds", help="run every method once per seed, e.g. 42,7,1234 (the held-out rows stay the same)")
    p.add_argument("--eval-size", type=int, default=128, help="held-out rows, the same for every method and seed")
    p.add_argument("--eval-every", type=int, default=10, help="held-out greedy evaluation every N steps")
    p.add_argument("--avg-k", type=int, default=0, help="also sample K replies per held-out prompt: avg@K, pass@K")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of avg@K")
    p.add_argument("--backend", default="auto", choices=("auto", "unsloth", "trl"))
    p.add_argument("--threads", type=int,
                   help="CPU threads per worker (OMP_NUM_THREADS); 1 is fastest when other jobs share the cores")
    p.add_argument("--data", help="gsm8k: the GSM8K train.jsonl (question / answer lines; required for --task gsm8k)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a RunSpec field of every method, e.g. --set training.learning_rate=1e-4")
    p.add_argument("--out", help="comparison folder (default: DATA_DIR/comparisons/<stamp>-<task>)")
    p.add_argument("--runs-dir", help="where the methods' run folders go (default: $RFT_WORKBENCH_RUNS or ./runs)")
    p.add_argument("--config", help=argparse.SUPPRESS)  # a config.json written by the app's button
    p.add_argument("--show", metavar="DIR", help="print the table of an existing comparison folder and exit")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="combine finished comparisons of other methods or seeds (same settings) into --out, then exit")
    p.add_argument("--quiet", action="store_true", help="no progress lines (the table is still printed)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace):
    from app.engine.evaluation.method_compare import CompareConfig

    if args.config:
        return CompareConfig.from_dict(json.loads(Path(args.config).read_text(encoding="utf-8")))
    from app.engine.evaluation.method_compare import CompareConfigError
    from app.engine.evaluation.stats import parse_seeds

    try:
        seeds = parse_seeds(args.seeds) if args.seeds is not None else []
    except ValueError as exc:
        raise CompareConfigError(str(exc)) from None
    return CompareConfig(
        methods=[m.strip() for m in args.methods.split(",") if m.strip()], task=args.task, model=args.model,
        steps=args.steps, seed=args.seed, seeds=seeds if len(seeds) > 1 else [],
        eval_size=args.eval_size, eval_every=args.eval_every,
        sft_steps=args.sft_steps, avg_k=args.avg_k, avg_temperature=args.temperature, backend=args.backend,
        threads=args.threads, data_source=args.data, overrides=list(args.set),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from app.engine.core.spec import SpecError
    from app.engine.evaluation import method_compare as mc

    if args.show:
        print(mc.write_table(args.show))
        return 0
    if args.merge:
        if not args.out:
            print("error: --merge needs --out DIR for the merged comparison", file=sys.stderr)
            return 2
        try:
            folder = mc.merge_comparisons([Path(f) for f in args.merge], Path(args.out))
        except mc.CompareConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(mc.write_table(folder))
        print(f"comparison folder: {folder}")
        return 0
    try:
        config = config_from_args(args)
        config.validate()
        mc.build_plan(config, ())  # every spec checked before anything trains (gsm8k data is checked at start)
    except (mc.CompareConfigError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.out and Path(args.out, mc.COMPARISON_FILE).exists():  # started from the app: say why in its view
            mc.mark_failed(args.out, str(exc))
        return 2
    start = time.time()

    def say(message: str) -> None:
        if not args.quiet:
            print(f"[{time.strftime('%H:%M:%S')} +{int(time.time() - start)}s] {message}", flush=True)

    folder = Path(args.out) if args.out else mc.default_folder(config)
    seeds = config.run_seeds
    say(f"Comparing {', '.join(mc.METHOD_LABELS[m] for m in config.methods)}: {config.steps} steps each, "
        f"{'seeds ' + ','.join(map(str, seeds)) if len(seeds) > 1 else f'seed {seeds[0]} (single seed)'}, "
        f"{config.eval_size} held-out rows; folder {folder}")
    try:
        mc.run_comparison(config, folder, Path(args.runs_dir) if args.runs_dir else None, progress=say)
    except (mc.CompareConfigError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = mc.read_comparison(folder)
    print()
    print(mc.write_table(folder))
    print(f"comparison folder: {folder}")
    if result.state == "stopped":
        return 3
    return 0 if all(m.state == "finished" for m in result.methods) else 1


if __name__ == "__main__":
    sys.exit(main())
