"""GRPO step time and peak memory: the workbench engine against a plain TRL + PEFT script, same configuration.

    python bench/bench_grpo.py [--steps 6] [--warmup 1]

Each variant runs in its own process (Unsloth patches TRL on import, so it cannot share a process with plain
TRL): plain TRL + PEFT in fp32 (the baseline), the engine forced to TRL (its own overhead), the engine on
`backend: auto` (what a user gets here) and the engine forced to Unsloth (on a CPU: its bf16 CPU backend, which
`auto` skips on CPUs without native bf16; `--unsloth-steps` keeps that variant short there). Prints mean step time
after warm-up, peak RSS, and ratios to the baseline.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# One configuration for every variant: 2 prompts × 8 completions × 16 tokens, LoRA r=16 on all linear layers.
CONFIG = dict(prompts_per_step=2, num_generations=8, max_completion_length=16, learning_rate=2e-4, lora_r=16, seed=42)


def plain_trl(steps: int) -> dict:
    """The baseline: what a user would write with TRL + PEFT directly."""
    import re

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from app.engine.data.tasks import arithmetic_rows
    from app.engine.training.cpu_kernels import ensure_trl_logprob_kernel
    from app.engine.training.models import ensure_default_model

    ensure_trl_logprob_kernel()  # TRL's Triton log-prob kernel is missing on CPU-only torch: without it step 1 fails

    path = ensure_default_model()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]} for r in arithmetic_rows()[64:]]

    def numeric_answer(completions, answer, **kwargs):
        out = []
        for c, a in zip(completions, answer):
            nums = re.findall(r"-?\d+", c[0]["content"])
            out.append(1.0 if nums and nums[-1] == a else 0.0)
        return out

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)

    c = CONFIG
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=c["prompts_per_step"] * c["num_generations"],
        num_generations=c["num_generations"], max_completion_length=c["max_completion_length"],
        learning_rate=c["learning_rate"], max_steps=steps, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
        save_strategy="no", seed=c["seed"], disable_tqdm=True,
    )
    lora = LoraConfig(r=c["lora_r"], lora_alpha=2 * c["lora_r"], target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=[numeric_answer], args=args,
                          train_dataset=Dataset.from_list(rows), peft_config=lora, callbacks=[Timer()])
    trainer.train()
    return {"step_times": times}


def engine(steps: int, backend: str) -> dict:
    from app.engine.core import runs
    from app.engine.core.spec import RunSpec
    from app.engine.training.worker import train

    c = CONFIG
    spec = RunSpec.load(ROOT / "recipes" / "arithmetic-grpo.yaml").with_overrides([
        f"backend={backend}", f"training.max_steps={steps}",
        f"training.per_device_train_batch_size={c['prompts_per_step'] * c['num_generations']}",
        f"generation.num_generations={c['num_generations']}", f"generation.max_completion_length={c['max_completion_length']}",
        f"training.learning_rate={c['learning_rate']}", f"lora.r={c['lora_r']}", f"lora.alpha={2 * c['lora_r']}",
        f"seed={c['seed']}", "logging.eval_at_start=false", "logging.eval_at_end=false", "logging.save_steps=1000",
    ])
    result = train(spec, runs_dir=Path(tempfile.mkdtemp()), progress_bar=False, log=lambda m: None)
    records = runs.read_jsonl(result.run_dir / "metrics.jsonl")[0]
    status = runs.read_status(result.run_dir)
    return {"step_times": [r["step_time"] for r in records if "step_time" in r], "backend": status.get("backend"),
            "dtype": status.get("dtype"), "state": result.state}


VARIANTS = {"plain": None, "engine-trl": "trl", "engine-auto": "auto", "engine-unsloth": "unsloth"}


def child(variant: str, steps: int) -> None:
    out = plain_trl(steps) if variant == "plain" else engine(steps, VARIANTS[variant])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--unsloth-steps", type=int, default=3, help="steps of the engine-unsloth variant")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        return child(args.variant, args.steps)
    results = {}
    for variant in VARIANTS:
        steps = min(args.steps, args.unsloth_steps) if variant == "engine-unsloth" else args.steps
        proc = subprocess.run([sys.executable, __file__, "--variant", variant, "--steps", str(steps)],
                              capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{variant} failed:\n{proc.stderr[-2000:]}")
            continue
        results[variant] = json.loads(line[-1][7:])
        times = results[variant]["step_times"][args.warmup:] or results[variant]["step_times"]
        print(f"{variant}: {sum(times) / len(times):.2f} s/step over {len(times)} steps, backend "
              f"{results[variant].get('backend', 'trl')}, peak RSS {results[variant]['peak_rss_mb']:.0f} MB", flush=True)
    base = results.get("plain")
    print(f"\nGRPO, {CONFIG}, {args.steps} steps (engine-unsloth {min(args.steps, args.unsloth_steps)}; first "
          f"{args.warmup} not timed), {os.cpu_count()} CPU threads")
    print(f"{'variant':14s} {'backend':8s} {'dtype':9s} {'s/step':>7s} {'ratio':>6s} {'peak MB':>8s} {'ratio':>6s}")
    for name, r in results.items():
        times = r["step_times"][args.warmup:] or r["step_times"]
        mean = sum(times) / len(times)
        r["mean"] = mean
        ratio_t = mean / base["mean"] if base and "mean" in base else float("nan")
        ratio_m = r["peak_rss_mb"] / base["peak_rss_mb"] if base else float("nan")
        print(f"{name:14s} {r.get('backend', 'trl'):8s} {r.get('dtype', 'float32'):9s} {mean:7.2f} {ratio_t:6.2f} "
              f"{r['peak_rss_mb']:8.0f} {ratio_m:6.2f}")


if __name__ == "__main__":
    main()
