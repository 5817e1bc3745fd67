"""The GPU check: GRPO step time and peak VRAM of plain TRL + PEFT against the engine on Unsloth, on one CUDA GPU,
with no network. Sized to finish in under 8 minutes on one H100/H200.

    bash bench/gpu_check.sh                 # on the GPU machine: installs the carried wheels, then runs this
    python bench/gpu_check.py --dry-run     # anywhere: builds the model config and prints the plan, runs nothing

No model can be downloaded there, so it builds a randomly initialised Llama of about 0.5 B parameters from a config
(and a byte-level tokenizer whose vocabulary is padded to the model's), saves it once, and runs each variant in its
own process (Unsloth patches TRL on import), interleaved A B C A B C over `--rounds`:

- plain: TRL's GRPOTrainer + a PEFT LoraConfig (all-linear), bf16, as a user writes it;
- engine: the workbench's `train()` on `backend: unsloth` (Unsloth's GRPO path), the same configuration;
- engine-4bit: the same with `load_in_4bit: true`, where bitsandbytes is importable.

A random model rarely samples its end-of-sequence token, so every completion runs to `--completion-tokens` (the
mean completion length is printed to show it). Then, where two GPUs exist, one 2-process DDP step of the plain
variant (`torchrun --nproc_per_node 2`). Prints each variant's median step time after warm-up, peak VRAM, and the
engine's ratios to plain.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# ~0.5 B parameters: Llama layout with grouped-query attention, a 32k vocabulary, tied embeddings.
MODEL_CONFIG = dict(vocab_size=32000, hidden_size=1280, intermediate_size=3584, num_hidden_layers=24,
                    num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048,
                    tie_word_embeddings=True, rms_norm_eps=1e-5)
# One GRPO configuration for every variant: 4 prompts × 8 completions, LoRA r=16 on all linear layers.
RUN = dict(prompts_per_step=4, num_generations=8, learning_rate=1e-5, lora_r=16, seed=0)
# --smoke: the same code paths on a CPU with a tiny model (what the test suite runs, so the script cannot rot).
SMOKE_CONFIG = dict(MODEL_CONFIG, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2)
VARIANTS = ("plain", "engine", "engine-4bit")
PROMPTS = [f"Write a short story about the number {i}." for i in range(64)]


def parameter_count(config: dict) -> int:
    """Parameters of the model of `config`, counted on the meta device (nothing allocated)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**config))
    return sum(p.numel() for p in model.parameters())


def build_model(folder: Path, model_config: dict) -> Path:
    """Save the random model (bf16) and a byte-level BPE tokenizer padded to the model's vocabulary size."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from app.engine.training.backend import CHATML_TEMPLATE

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    filler = [f"<t{i}>" for i in range(model_config["vocab_size"] - len(specials) - len(alphabet))]
    vocab = {token: i for i, token in enumerate(specials + alphabet + filler)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                  additional_special_tokens=specials)
    tok.chat_template = CHATML_TEMPLATE
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save_pretrained(tmp)
    torch.manual_seed(RUN["seed"])
    config = LlamaConfig(**model_config, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder


def length_reward(completions, **kwargs) -> list[float]:
    """Any reward with spread across a group will do for timing: the share of letters in the completion."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isalpha() for ch in t) / max(1, len(t)) for t in texts]


class StepTimer:
    """TrainerCallback collecting wall time per optimizer step and mean completion length."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self):
                self.times: list[float] = []
                self.lengths: list[float] = []
                self._t = 0.0

            def on_step_begin(self, args, state, control, **kwargs):
                self._t = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.times.append(time.perf_counter() - self._t)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "completions/mean_length" in logs:
                    self.lengths.append(float(logs["completions/mean_length"]))

        return _Timer()


def run_plain(model_dir: Path, steps: int, tokens: int, out_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    cuda = torch.cuda.is_available()
    if not cuda:  # --smoke: TRL's Triton log-prob kernel is missing on CPU-only torch (the engine supplies one)
        from app.engine.training.cpu_kernels import ensure_trl_logprob_kernel

        ensure_trl_logprob_kernel()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS])
    config = GRPOConfig(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=RUN["prompts_per_step"] * RUN[
            "num_generations"] // max(1, int(os.environ.get("WORLD_SIZE", "1"))),
        num_generations=RUN["num_generations"], max_completion_length=tokens, learning_rate=RUN["learning_rate"],
        bf16=cuda, use_cpu=not cuda, logging_steps=1, save_strategy="no", report_to=[], seed=RUN["seed"], beta=0.0,
        loss_type="dapo", num_completions_to_print=0, use_vllm=False)
    lora = LoraConfig(r=RUN["lora_r"], lora_alpha=2 * RUN["lora_r"], target_modules="all-linear",
                      task_type="CAUSAL_LM")
    timer = StepTimer()
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=[length_reward], args=config,
                          train_dataset=rows, peft_config=lora, callbacks=[timer])
    trainer.train()
    return {"times": timer.times, "lengths": timer.lengths}


LETTERS_REWARD = ("def letters(completions, **kwargs):\n"
                  "    texts = [c if isinstance(c, str) else c[0]['content'] for c in completions]\n"
                  "    return [sum(ch.isalpha() for ch in t) / max(1, len(t)) for t in texts]\n")


def engine_spec(model_dir: Path, data: Path, steps: int, tokens: int, four_bit: bool):
    """The engine variant's RunSpec: RUN's configuration on `backend: unsloth`, no evaluations, no checkpoints."""
    from app.engine.core.spec import RewardSpec, RunSpec

    spec = RunSpec(method="grpo", model=str(model_dir), backend="unsloth", load_in_4bit=four_bit,
                   seed=RUN["seed"], rewards=[RewardSpec(source=LETTERS_REWARD)])
    return spec.with_overrides([
        f"data.source={data}", "data.eval_size=0", f"training.max_steps={steps}",
        f"training.learning_rate={RUN['learning_rate']}",
        f"training.per_device_train_batch_size={RUN['prompts_per_step'] * RUN['num_generations']}",
        f"generation.num_generations={RUN['num_generations']}", f"generation.max_completion_length={tokens}",
        f"lora.r={RUN['lora_r']}", f"lora.alpha={2 * RUN['lora_r']}", "logging.eval_at_start=false",
        "logging.eval_at_end=false", f"logging.save_steps={steps + 1}", "logging.sample_every=1000",
    ])


def write_prompts(folder: Path) -> Path:
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return data


def run_engine(model_dir: Path, steps: int, tokens: int, out_dir: Path, four_bit: bool) -> dict:
    from app.engine.core import runs
    from app.engine.training.worker import train

    spec = engine_spec(model_dir, write_prompts(out_dir), steps, tokens, four_bit)
    result = train(spec, runs_dir=out_dir / "runs", progress_bar=False, log=lambda m: print(m, flush=True))
    status = runs.read_status(result.run_dir)
    if result.state != "finished":
        raise RuntimeError(f"engine run {result.state}: {status.get('error')}")
    records = runs.read_jsonl(result.run_dir / "metrics.jsonl")[0]
    return {"times": [r["step_time"] for r in records if "step_time" in r],
            "lengths": [r["completions/mean_length"] for r in records if "completions/mean_length" in r],
            "backend": status.get("backend"), "dtype": status.get("dtype")}


def dry_run(args: argparse.Namespace, variants: list[str]) -> None:
    """What can be checked without a GPU: the model config saves and loads, and the engine variants' RunSpecs
    validate against it (their data file, their reward code compiled)."""
    from transformers import AutoConfig, LlamaConfig

    from app.engine.core.fields import SpecError

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        LlamaConfig(**MODEL_CONFIG).save_pretrained(folder)
        assert AutoConfig.from_pretrained(folder).num_hidden_layers == MODEL_CONFIG["num_hidden_layers"]
        data = write_prompts(folder)
        for variant in (v for v in variants if v.startswith("engine")):
            spec = engine_spec(folder, data, args.steps, args.completion_tokens, variant == "engine-4bit")
            problems = [p for p in spec.problems(check_files=True) if p.field not in ("load_in_4bit",)]
            if problems:
                raise SpecError(problems[0].field, f"{variant}: {problems[0].problem}")
            print(f"spec         {variant}: backend {spec.backend}, load_in_4bit {spec.load_in_4bit}, valid")


def child(args: argparse.Namespace) -> int:
    """One variant in this process; prints one JSON line."""
    import resource

    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out_dir = Path(tempfile.mkdtemp(prefix=f"gpu-check-{args.variant}-"))
    start = time.perf_counter()
    if args.variant == "plain":
        result = run_plain(Path(args.model_dir), args.steps, args.completion_tokens, out_dir)
    else:
        result = run_engine(Path(args.model_dir), args.steps, args.completion_tokens, out_dir,
                            four_bit=args.variant == "engine-4bit")
    result.update(variant=args.variant, wall=time.perf_counter() - start,
                  peak_vram_gb=torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
                  peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, rank=int(os.environ.get("RANK", "0")))
    if result["rank"] == 0:
        print("RESULT " + json.dumps(result), flush=True)
    return 0


def plan(args: argparse.Namespace) -> list[str]:
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    return variants


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="build the model config and print the plan; run nothing")
    p.add_argument("--steps", type=int, default=6, help="GRPO steps per variant and round")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the median")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--completion-tokens", type=int, default=128)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--model-dir", default=None, help="where the random model is saved (default: a temp folder)")
    p.add_argument("--smoke", action="store_true",
                   help="run plain and engine on this machine's CPU with a tiny model (a test of the script itself)")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variant:
        return child(args)
    variants = plan(args)
    model_config = SMOKE_CONFIG if args.smoke else MODEL_CONFIG
    params = parameter_count(model_config)
    print(f"model        random Llama, {params / 1e9:.3f} B parameters ({model_config['num_hidden_layers']} layers, "
          f"hidden {model_config['hidden_size']}, vocab {model_config['vocab_size']}), bf16 on a GPU")
    print(f"step         {RUN['prompts_per_step']} prompts × {RUN['num_generations']} completions × "
          f"{args.completion_tokens} tokens, LoRA r={RUN['lora_r']} all-linear; {args.steps} steps "
          f"({args.warmup} warm-up) × {args.rounds} round(s)")
    print(f"variants     {', '.join(variants)} (each in its own process, interleaved)")
    if args.dry_run:
        dry_run(args, variants)
        print("ddp          a 2-process step of plain, where two GPUs exist")
        print("dry run: nothing run")
        return 0
    import torch

    if not torch.cuda.is_available() and not args.smoke:
        raise SystemExit("error: no CUDA GPU here; `--dry-run` prints the plan on any machine, `--smoke` runs it "
                         "on the CPU with a tiny model")
    if torch.cuda.is_available():
        print(f"device       {torch.cuda.get_device_name(0)} × {torch.cuda.device_count()}, torch {torch.__version__}")
    if "engine-4bit" in variants and not (_importable("bitsandbytes") and torch.cuda.is_available()):
        print("engine-4bit  skipped: needs a CUDA GPU and bitsandbytes")
        variants.remove("engine-4bit")
    default_dir = Path(tempfile.gettempdir()) / ("gpu-check-smoke-model" if args.smoke else "gpu-check-model")
    model_dir = Path(args.model_dir or default_dir)
    t = time.perf_counter()
    build_model(model_dir, model_config)
    print(f"model saved  {model_dir} ({time.perf_counter() - t:.0f} s)", flush=True)
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            results[variant].append(_run_child(variant, model_dir, args))
    base = _median_step(results.get("plain", []), args.warmup)
    memory = "peak VRAM GB" if torch.cuda.is_available() else "peak RSS GB"
    print(f"\n{'variant':<12} {'step s':>8} {'ratio':>6} {memory:>13} {'tokens':>7}  wall s")
    for variant, rs in results.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            print(f"{variant:<12} failed: {rs[0]['error'] if rs else 'not run'}")
            continue
        step = _median_step(ok, args.warmup)
        ratio = f"{step / base:.2f}" if base and step else "-"
        vram = max(r["peak_vram_gb"] if torch.cuda.is_available() else r["peak_rss_gb"] for r in ok)
        length = statistics.mean(x for r in ok for x in r["lengths"]) if any(r["lengths"] for r in ok) else float("nan")
        walls = ", ".join(f"{r['wall']:.0f}" for r in ok)
        ran_on = f"  ({ok[0]['backend']}, {ok[0]['dtype']})" if ok[0].get("backend") else ""
        print(f"{variant:<12} {step:8.2f} {ratio:>6} {vram:13.2f} {length:7.0f}  {walls}{ran_on}")
    if torch.cuda.device_count() >= 2 and "plain" in variants:
        ddp = _run_child("plain", model_dir, argparse.Namespace(**{**vars(args), "steps": 2}), processes=2)
        print("ddp 2 GPUs   " + (f"{ddp['times'][-1]:.2f} s/step, peak VRAM {ddp['peak_vram_gb']:.2f} GB (rank 0)"
                                 if "error" not in ddp else f"failed: {ddp['error']}"))
    else:
        print("ddp          skipped: one GPU")
    return 0


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _median_step(results: list[dict], warmup: int) -> float | None:
    times = [t for r in results for t in r.get("times", [])[warmup:]]
    return statistics.median(times) if times else None


def _run_child(variant: str, model_dir: Path, args: argparse.Namespace, processes: int = 1) -> dict:
    script = [str(Path(__file__).resolve()), "--variant", variant, "--model-dir", str(model_dir),
              "--steps", str(args.steps), "--completion-tokens", str(args.completion_tokens)]
    command = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), *script]
               if processes > 1 else [sys.executable, *script])
    print(f"running      {variant}{f' on {processes} processes' if processes > 1 else ''} …", flush=True)
    proc = subprocess.run(command, capture_output=True, text=True, cwd=str(ROOT),
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get(
                              "PYTHONPATH")]))))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
    print("\n".join("    " + line for line in tail), flush=True)
    errors = [line for line in tail if "Error" in line or "error" in line]
    return {"variant": variant, "error": (errors or tail or [f"exit code {proc.returncode}"])[-1].strip()}


if __name__ == "__main__":
    raise SystemExit(main())
