"""Held-out evaluation: the plain left-padded batches against the shared system prompt (the tokens every prompt of a
batch begins with computed once per batch), interleaved, on the recipe's held-out rows and the default model.

    python bench/bench_eval.py [recipes/arithmetic-grpo.yaml] [--adapter RUN/adapter] [--rounds 2]

Prints each round's seconds, the ratio of the best times (shared / plain) and how many greedy replies are identical.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "arithmetic-grpo.yaml"))
    p.add_argument("--adapter", help="a run's adapter folder (default: the base model)")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()

    import torch

    from app.engine.core.spec import RunSpec
    from app.engine.data.forms import prompt_messages
    from app.engine.data.sources import load_data
    from app.engine.evaluation.compare import ModelRef, load_model
    from app.engine.evaluation.evaluate import generate_completions

    spec = RunSpec.load(args.recipe)
    rows = load_data(spec.data).eval
    model, tok = load_model(ModelRef("bench", spec.model, args.adapter))
    messages = [prompt_messages(r, spec.data.system_prompt) for r in rows]
    tokens = spec.logging.eval_max_new_tokens or spec.generation.max_completion_length
    times: dict[bool, list[float]] = {False: [], True: []}
    replies: dict[bool, list[str]] = {}
    print(f"{len(rows)} held-out rows, {tokens} new tokens, batches of 64, {torch.get_num_threads()} CPU threads",
          flush=True)
    for r in range(args.rounds):
        for shared in (False, True):
            start = time.perf_counter()
            replies[shared] = generate_completions(model, tok, messages, max_new_tokens=tokens, batch_size=64,
                                                   shared_prefix=shared)[0]
            times[shared].append(time.perf_counter() - start)
            print(f"round {r + 1} {'shared' if shared else 'plain '}: {times[shared][-1]:.1f} s", flush=True)
    same = sum(a == b for a, b in zip(replies[True], replies[False]))
    print(f"shared / plain (best of {args.rounds}): {min(times[True]) / min(times[False]):.2f}   identical replies "
          f"{same} / {len(rows)}")


if __name__ == "__main__":
    main()
