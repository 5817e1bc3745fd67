"""Benchmark of the rewards package (not a test): built-in throughput and the sandbox's per-call overhead.

    python bench/bench_rewards.py            # prints the tables
    python bench/bench_rewards.py --json results.json

1. Each built-in scores 1,000 completions, called in batches of 16 (a GRPO step's shape), best of 3 runs.
   Aims: regex and numeric rewards <= 50 ms for the 1,000; math-verify is reported as measured. `python_tests`
   starts one process per completion, so it runs on 64 completions and is reported per completion.
2. A user reward run in the sandbox against the same function called in-process, warm, per batch call of 16
   (and 256) completions. Aim: <= 20 ms overhead per call.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rewards  # noqa: E402

N = 1000
BATCH = 16
AIM_MS = {"numeric_answer": 50, "gsm8k_answer": 50, "exact_answer": 50, "format_tags": 50, "regex": 50}
USER_SOURCE = '''\
import re

def last_number(completions, answer, **kwargs):
    out = []
    for c, a in zip(completions, answer):
        text = c if isinstance(c, str) else c[-1]["content"]
        nums = re.findall(r"-?\\d+", text)
        out.append(None if a is None else float(bool(nums) and nums[-1] == str(a)))
    return out
'''


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_1min": load}


def arithmetic_rows(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for _ in range(N):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        right = a + b
        got = right if rng.random() < 0.5 else right + rng.choice([-2, -1, 1, 10])
        form = rng.randrange(5)
        completion = [
            f"{got}",
            f"{a} + {b} = {got}",
            f"<reasoning>\nWe add {a} and {b}.\n{a} + {b} = {got}\n</reasoning>\n<answer>\n{got}\n</answer>",
            f"Let me think. {a} plus {b} is {got}. The answer is {got}.",
            f"First, {a} + {b}. " * rng.randint(1, 6) + f"So the result is \\boxed{{{got}}}",
        ][form]
        rows.append({"prompt": f"What is {a} + {b}? Reply with only the number.", "completion": completion,
                     "answer": str(right), "solution": f"{a} + {b} = {right}\n#### {right}"})
    return rows


def math_rows(rng: random.Random) -> list[dict[str, Any]]:
    golds = [("\\frac{1}{2}", ["0.5", "\\boxed{\\frac{1}{2}}", "$\\frac{2}{4}$", "1/3"]),
             ("\\sqrt{2}", ["\\boxed{\\sqrt{2}}", "$\\sqrt{2}$", "1.41"]),
             ("3", ["\\boxed{3}", "x = 3", "The answer is $3$.", "\\boxed{-3}"]),
             ("\\frac{\\pi}{4}", ["\\boxed{\\frac{\\pi}{4}}", "$45^\\circ$", "\\boxed{\\pi/4}"])]
    rows = []
    for _ in range(N):
        gold, answers = rng.choice(golds)
        rows.append({"completion": "Working... " * rng.randint(1, 4) + rng.choice(answers), "answer": gold})
    return rows


def json_rows(rng: random.Random) -> list[dict[str, Any]]:
    forms = ['{"name": "Ada", "age": 36}', 'Sure:\n```json\n{"name": "Ada", "age": 36}\n```',
             '{"name": "Ada", "age": "36"}', "{name: Ada}", 'Here you go: {"name": "Bob", "age": 7} done']
    return [{"completion": rng.choice(forms)} for _ in range(N)]


def code_rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    bad = "```python\ndef add(a, b):\n    return a - b\n```"
    tests = "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0"
    return [{"completion": rng.choice([good, bad]), "tests": tests} for _ in range(n)]


def time_reward(fn: Callable[..., Any], rows: list[dict[str, Any]], repeats: int = 3) -> tuple[float, float]:
    """Best wall time (s) of scoring all rows in batches of BATCH, as TRL would call the reward, and the CPU time
    of this process in that run (less sensitive to other load on the machine; child processes not included)."""
    batches = []
    for start in range(0, len(rows), BATCH):
        completions, kwargs = rewards.scoring.batch_kwargs(rows[start : start + BATCH])
        batches.append((completions, kwargs))
    fn(batches[0][0], **batches[0][1])  # warm-up (imports, caches)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for completions, kwargs in batches:
            fn(completions, **kwargs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, best_cpu = wall, cpu
    return best, best_cpu


def bench_builtins(rng: random.Random) -> list[dict[str, Any]]:
    arith, maths, js = arithmetic_rows(rng), math_rows(rng), json_rows(rng)
    schema = {"type": "object", "required": ["name", "age"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    cases: list[tuple[str, Callable[..., Any], list[dict[str, Any]]]] = [
        ("numeric_answer", rewards.get("numeric_answer"), arith),
        ("exact_answer", rewards.get("exact_answer"), arith),
        ("gsm8k_answer", rewards.get("gsm8k_answer", answer_column="solution"), arith),
        ("format_tags", rewards.get("format_tags"), arith),
        ("regex", rewards.get("regex", pattern=r"<answer>\s*\d+\s*</answer>"), arith),
        ("length", rewards.get("length"), arith),
        ("repetition", rewards.get("repetition"), arith),
        ("similarity", rewards.get("similarity", reference_column="solution"), arith),
        ("json_valid", rewards.get("json_valid"), js),
        ("json_schema", rewards.get("json_schema", schema=schema), js),
        ("math_equivalence", rewards.get("math_equivalence"), maths),
        ("cosine_length", rewards.get("cosine_length"), maths),
        ("weighted", rewards.get("weighted", rewards=[("numeric_answer", 1.0), ("format_tags", 0.5)]), arith),
    ]
    results = []
    for name, fn, rows in cases:
        repeats = 1 if name in ("math_equivalence", "cosine_length") else 3
        seconds, cpu = time_reward(fn, rows, repeats)
        results.append({"reward": name, "n": len(rows), "ms": seconds * 1000, "cpu_ms": cpu * 1000,
                        "us_per_completion": seconds * 1e6 / len(rows), "aim_ms": AIM_MS.get(name)})
    code_n = 64
    seconds, cpu = time_reward(rewards.get("python_tests"), code_rows(rng, code_n), repeats=1)
    results.append({"reward": "python_tests", "n": code_n, "ms": seconds * 1000, "cpu_ms": None,
                    "us_per_completion": seconds * 1e6 / code_n, "aim_ms": None})
    return results


def bench_sandbox(rng: random.Random, calls: int = 200) -> list[dict[str, Any]]:
    namespace: dict[str, Any] = {}
    exec(compile(USER_SOURCE, "<bench>", "exec"), namespace)
    in_process = namespace["last_number"]
    t0 = time.perf_counter()
    sandboxed = rewards.load_user_reward(USER_SOURCE)
    cold_start_ms = (time.perf_counter() - t0) * 1000
    rows = arithmetic_rows(rng)
    results = []
    try:
        for batch in (BATCH, 256):
            completions, kwargs = rewards.scoring.batch_kwargs(rows[:batch])
            kwargs.pop("prompts")
            assert sandboxed(completions, **kwargs) == in_process(completions, **kwargs)
            timings = {}
            for label, fn in (("in_process", in_process), ("sandbox", sandboxed)):
                per_call = []
                for _ in range(calls if batch == BATCH else calls // 4):
                    t = time.perf_counter()
                    fn(completions, **kwargs)
                    per_call.append(time.perf_counter() - t)
                timings[label] = statistics.median(per_call) * 1000
            results.append({"batch": batch, "in_process_ms": timings["in_process"], "sandbox_ms": timings["sandbox"],
                            "overhead_ms": timings["sandbox"] - timings["in_process"],
                            "ratio": timings["sandbox"] / timings["in_process"], "cold_start_ms": cold_start_ms})
    finally:
        sandboxed.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    info = machine()
    print(f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
          f"load average {info['load_avg_1min']:.1f} at start")
    print("Command: python bench/bench_rewards.py\n")

    builtins = bench_builtins(rng)
    print(f"Built-ins: {N} completions each (python_tests: 64), batches of {BATCH}, best of 3 (math: 1 run)")
    print(f"{'reward':18} {'n':>5} {'total ms':>10} {'CPU ms':>8} {'us/compl.':>10} {'aim ms':>7} {'ratio to aim':>12}")
    for r in builtins:
        aim = f"{r['aim_ms']}" if r["aim_ms"] else "-"
        ratio = f"{r['ms'] / r['aim_ms']:.2f}" if r["aim_ms"] else "-"
        cpu = f"{r['cpu_ms']:.1f}" if r["cpu_ms"] is not None else "-"
        print(f"{r['reward']:18} {r['n']:>5} {r['ms']:>10.1f} {cpu:>8} {r['us_per_completion']:>10.1f} {aim:>7} "
              f"{ratio:>12}")

    sandbox = bench_sandbox(rng)
    print(f"\nSandboxed user reward vs the same function in-process (warm, median per call); "
          f"cold start {sandbox[0]['cold_start_ms']:.0f} ms")
    print(f"{'batch':>5} {'in-process ms':>14} {'sandbox ms':>11} {'overhead ms':>12} {'ratio':>8} {'aim ms':>7}")
    for r in sandbox:
        print(f"{r['batch']:>5} {r['in_process_ms']:>14.3f} {r['sandbox_ms']:>11.3f} {r['overhead_ms']:>12.3f} "
              f"{r['ratio']:>8.1f} {20:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "builtins": builtins, "sandbox": sandbox}, indent=2))


if __name__ == "__main__":
    main()
