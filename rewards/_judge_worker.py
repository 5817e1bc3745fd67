"""The local judge's process: `python -m rewards._judge_worker MODEL_PATH REQUEST_FD RESPONSE_FD`.

Loads the judge model once (on the GPU when there is one, bf16 there; fp32 on the CPU), answers "ready", then reads
one JSON request per line — ["generate", chat requests, temperature, max_tokens, values or null] or ["stop"] — and
writes one JSON line back: ["ok", [reply, ...]] or ["error", "why"]. Started and stopped by rewards.judge.LocalBackend.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any


def expected_scores(model: Any, tokenizer: Any, requests: list[list[dict[str, str]]], values: list[int]) -> list[str]:
    """G-Eval-style scoring: the judge's reply is prefilled with "Score: " and its next-token probabilities over the
    scale's values give an expected score, so every request gets a score (a small judge rarely writes one)."""
    import torch

    ids = []
    for value in values:
        tokens = tokenizer.encode(str(value), add_special_tokens=False)
        if len(tokens) != 1:
            raise ValueError(f"score_mode 'expected' needs each value of the scale to be one token, and {value} is "
                             f"{len(tokens)} for this judge's tokenizer: use a scale such as [1, 5] or [1, 9]")
        ids.append(tokens[0])
    texts = [tokenizer.apply_chat_template(r, add_generation_prompt=True, tokenize=False) + "Score: " for r in requests]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        probs = model(**batch).logits[:, -1].float().softmax(-1)[:, ids]
    out = []
    for row in probs:
        share = row / row.sum()
        expected = float((share * torch.tensor(values, dtype=share.dtype, device=share.device)).sum())
        spread = ", ".join(f"{v}={p:.2f}" for v, p in zip(values, share.tolist()))
        out.append(f"Score: {expected:.3f} (expected value of the next token; P {spread}; the scale's values held "
                   f"{float(row.sum()):.0%} of it)")
    return out


def generate(model: Any, tokenizer: Any, requests: list[list[dict[str, str]]], temperature: float,
             max_tokens: int) -> list[str]:
    """Batched replies (left padding), greedy at temperature 0."""
    import torch

    batch = tokenizer.apply_chat_template(requests, add_generation_prompt=True, padding=True, return_tensors="pt",
                                          return_dict=True).to(model.device)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=max_tokens, do_sample=temperature > 0,
                             temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                             pad_token_id=tokenizer.pad_token_id)
    return [t.strip() for t in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]


def main() -> None:
    model_path, requests_in, replies_out = sys.argv[1], os.fdopen(int(sys.argv[2]), "r", encoding="utf-8"), \
        os.fdopen(int(sys.argv[3]), "w", encoding="utf-8")

    def send(kind: str, detail: Any) -> None:
        replies_out.write(json.dumps([kind, detail]) + "\n")
        replies_out.flush()

    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cuda = torch.cuda.is_available()
        dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to("cuda" if cuda else "cpu").eval()
    except Exception as exc:  # noqa: BLE001 - any load failure is the one sentence the run shows
        send("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return
    send("ready", None)
    for line in requests_in:
        message = json.loads(line)
        if message[0] == "stop":
            return
        _, requests, temperature, max_tokens, values = message
        try:
            send("ok", expected_scores(model, tokenizer, requests, values) if values else
                 generate(model, tokenizer, requests, temperature, max_tokens))
        except Exception as exc:  # noqa: BLE001
            send("error", f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
