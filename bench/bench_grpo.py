"""GRPO step time, peak memory and model FLOPs utilisation: the workbench engine against a plain TRL + PEFT script,
same configuration.

    python bench/bench_grpo.py [--steps 6] [--warmup 1] [--rounds 2] [--unsloth]

Each variant runs in its own process (Unsloth patches TRL on import, so it cannot share a process with plain
TRL), and the variants are interleaved (A B C A B C …, `--rounds` times) so that a shared machine's load changes
touch every variant alike: plain TRL + PEFT in fp32 (the baseline, as a user writes it), the engine forced to TRL
with each prompt computed once per group (`grpo.shared_prefix`, the default), the same without it (the lever on
its own), the engine on `backend: auto` (what a user gets here) and, with `--unsloth`, the engine forced to
Unsloth (on a CPU its bf16 backend, which `auto` skips on CPUs without native bf16; `--unsloth-steps` keeps it
short). Prints the median step time after warm-up, its ratio to the baseline's median, peak RSS, and each variant's
model FLOPs utilisation: the FLOPs its computation needs for a step (counted from the model config and the step's
token counts, `step_flops`) over step time × this CPU's fp32 matmul throughput measured in the same invocation.
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
    records: list[dict] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "num_tokens" in logs:
                records.append(dict(logs))

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
    return {"step_times": times, "tokens": step_tokens(records), "config": model.config.to_dict()}


def engine(steps: int, backend: str, shared_prefix: bool = True, dtype: str = "auto", skip_zero: bool = True) -> dict:
    from app.engine.core import runs
    from app.engine.core.spec import RunSpec
    from app.engine.training.worker import train

    c = CONFIG
    spec = RunSpec.load(ROOT / "recipes" / "arithmetic-grpo.yaml").with_overrides([
        f"backend={backend}", f"training.max_steps={steps}",
        f"training.per_device_train_batch_size={c['prompts_per_step'] * c['num_generations']}",
        f"generation.num_generations={c['num_generations']}", f"generation.max_completion_length={c['max_completion_length']}",
        f"training.learning_rate={c['learning_rate']}", f"lora.r={c['lora_r']}", f"lora.alpha={2 * c['lora_r']}",
        f"seed={c['seed']}", f"grpo.shared_prefix={str(shared_prefix).lower()}", f"dtype={dtype}",
        f"grpo.skip_zero_advantage={str(skip_zero).lower()}", "logging.eval_at_start=false", "logging.eval_at_end=false", "logging.save_steps=1000",
    ])
    result = train(spec, runs_dir=Path(tempfile.mkdtemp()), progress_bar=False, log=lambda m: None)
    records = runs.read_jsonl(result.run_dir / "metrics.jsonl")[0]
    status = runs.read_status(result.run_dir)
    from transformers import AutoConfig

    from app.engine.training.models import ensure_default_model

    return {"step_times": [r["step_time"] for r in records if "step_time" in r], "backend": status.get("backend"),
            "dtype": status.get("dtype"), "state": result.state, "tokens": step_tokens(records),
            "config": AutoConfig.from_pretrained(ensure_default_model()).to_dict()}


def step_tokens(records: list[dict]) -> list[tuple[float, float, float]]:
    """(prompt tokens, completion tokens, share of the rows that ran the training forward) of each logged step, from
    TRL's cumulative `num_tokens` (prompt and completion tokens, padding excluded), `completions/mean_length` and
    the engine's `rows_trained` (1.0 where every row trains)."""
    out, seen = [], 0.0
    batch = CONFIG["prompts_per_step"] * CONFIG["num_generations"]
    for r in records:
        if "num_tokens" not in r or "completions/mean_length" not in r:
            continue
        total = r["num_tokens"] - seen
        seen = r["num_tokens"]
        completion = r["completions/mean_length"] * batch
        out.append((total - completion, completion, r.get("rows_trained", 1.0)))
    return out


def step_flops(config: dict, prompt_tokens: float, completion_tokens: float, shared_prefix: bool,
               rows_trained: float = 1.0) -> float:
    """FLOPs a GRPO step's computation needs (no recomputation counted): generation (prefill of the prompts,
    one forward per new token with the LM head) and the training forward (the completion tokens through the LM
    head) plus its backward to the activations (as many FLOPs again; LoRA's own weight gradients are negligible).
    With `shared_prefix` each group's prompt counts once instead of once per completion; the training forward and
    backward count for the `rows_trained` share of the rows (zero-advantage rows skipped)."""
    h, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or h // heads
    per_token = layers * (2 * h * (heads * head_dim + 2 * kv * head_dim) + 2 * heads * head_dim * h
                          + 2 * 3 * h * config["intermediate_size"])  # the matmuls of one token through the layers
    lm_head = 2 * h * vocab
    batch, groups = CONFIG["prompts_per_step"] * CONFIG["num_generations"], CONFIG["prompts_per_step"]
    prompt_rows = prompt_tokens * (groups / batch if shared_prefix else 1.0)  # prompt tokens actually computed
    context = (prompt_tokens + completion_tokens) / batch
    attention = 2 * 2 * layers * heads * head_dim * context  # per token, scores and values over the context
    generation = prompt_rows * (per_token + attention) + completion_tokens * (per_token + attention + lm_head)
    forward = prompt_rows * (per_token + attention) + completion_tokens * (per_token + attention + lm_head)
    return generation + 2 * forward * rows_trained


def matmul_gflops(seconds: float = 3.0, n: int = 2048) -> float:
    """This CPU's fp32 matmul throughput with torch's thread count (best of repeated n×n products)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


# engine(...) arguments: backend, shared_prefix, dtype, skip_zero_advantage.
VARIANTS = {"plain": None, "engine-trl": ("trl", True), "engine-trl-no-skip": ("trl", True, "auto", False),
            "engine-trl-no-sharing": ("trl", False, "auto", False), "engine-auto": ("auto", True),
            "engine-unsloth": ("unsloth", True), "engine-trl-bf16": ("trl", True, "bfloat16")}


def child(variant: str, steps: int) -> None:
    out = plain_trl(steps) if variant == "plain" else engine(steps, *VARIANTS[variant])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1, help="first steps of each process not timed")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (A B C A B C …)")
    p.add_argument("--unsloth", action="store_true", help="also the engine forced to Unsloth")
    p.add_argument("--unsloth-steps", type=int, default=3, help="steps of the engine-unsloth variant")
    p.add_argument("--variants", help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        return child(args.variant, args.steps)
    import torch

    names = args.variants.split(",") if args.variants else [v for v in VARIANTS if v != "engine-unsloth" or args.unsloth]
    peaks = [matmul_gflops()]
    print(f"fp32 matmul {peaks[0]:.1f} GFLOP/s on {torch.get_num_threads()} threads", flush=True)
    results: dict[str, dict] = {}
    for rnd in range(args.rounds):
        for variant in names:
            steps = min(args.steps, args.unsloth_steps) if variant == "engine-unsloth" else args.steps
            proc = subprocess.run([sys.executable, __file__, "--variant", variant, "--steps", str(steps)],
                                  capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{variant} failed:\n{proc.stderr[-2000:]}")
                continue
            out = json.loads(line[-1][7:])
            r = results.setdefault(variant, {"times": [], "flops": [], "rss": [], "backend": out.get("backend", "trl"),
                                             "dtype": out.get("dtype", "float32")})
            kept = list(zip(out["step_times"], out["tokens"]))[args.warmup:] or list(zip(out["step_times"], out["tokens"]))
            sharing = variant != "plain" and variant != "engine-trl-no-sharing" and r["backend"] == "trl"
            r["times"] += [t for t, _ in kept]
            r["flops"] += [step_flops(out["config"], pt, ct, sharing, trained) for _, (pt, ct, trained) in kept]
            r["rss"].append(out["peak_rss_mb"])
            print(f"round {rnd + 1} {variant}: median {median([t for t, _ in kept]):.2f} s/step over {len(kept)} steps, "
                  f"backend {r['backend']}, peak RSS {out['peak_rss_mb']:.0f} MB", flush=True)
        peaks.append(matmul_gflops())
    peak = max(peaks)
    base = results.get("plain")
    print(f"\nGRPO, {CONFIG}, {args.steps} steps per process (first {args.warmup} not timed), {args.rounds} interleaved "
          f"rounds, {torch.get_num_threads()} CPU threads; fp32 matmul {peak:.1f} GFLOP/s (best of "
          f"{', '.join(f'{x:.0f}' for x in peaks)})")
    print(f"{'variant':22s} {'backend':8s} {'dtype':9s} {'s/step':>7s} {'ratio':>6s} {'GFLOP/step':>10s} {'MFU':>5s} "
          f"{'peak MB':>8s} {'ratio':>6s}")
    for name, r in results.items():
        t = median(r["times"])
        ratio_t = t / median(base["times"]) if base else float("nan")
        rss = max(r["rss"])
        ratio_m = rss / max(base["rss"]) if base else float("nan")
        flops = median(r["flops"])
        mfu = flops / t / (peak * 1e9)
        print(f"{name:22s} {r['backend']:8s} {r['dtype']:9s} {t:7.2f} {ratio_t:6.2f} {flops / 1e9:10.0f} {mfu:5.0%} "
              f"{rss:8.0f} {ratio_m:6.2f}")


if __name__ == "__main__":
    main()
