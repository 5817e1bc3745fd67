"""Log-probabilities of given replies under a model, tokenized as TRL's preference trainers tokenize a
conversational row (DPO's preference accuracy, KTO's reply scores)."""
from __future__ import annotations

from typing import Any, Sequence

Messages = list[dict[str, str]]


def reply_ids(tok: Any, prompt: Messages, reply: Messages) -> tuple[list[int], list[int]]:
    """(prompt ids, reply ids) as TRL's DPOTrainer tokenizes a conversational pair: the reply starts where the
    templated prompt and the templated prompt+reply diverge."""
    prompt_ids = tok.apply_chat_template(
        prompt, tokenize=True, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    full_ids = tok.apply_chat_template(prompt + reply, tokenize=True, return_dict=True)["input_ids"]
    n = 0
    while n < min(len(prompt_ids), len(full_ids)) and prompt_ids[n] == full_ids[n]:
        n += 1
    return list(full_ids[:n]), list(full_ids[n:])


def sequence_logps(
    model: Any, tokenizer: Any, pairs: Sequence[tuple[Messages, Messages]], batch_size: int = 8, max_length: int = 512,
) -> list[float]:
    """Sum of the log-probabilities of each reply given its prompt (what DPO compares), in eval mode."""
    import torch
    from trl.trainer.utils import selective_log_softmax

    tok = getattr(tokenizer, "tokenizer", tokenizer)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    device = next(model.parameters()).device
    encoded = []
    for prompt, reply in pairs:
        p, r = reply_ids(tok, prompt, reply)
        ids = (p + r)[:max_length]
        encoded.append((ids, min(len(p), len(ids))))
    out: list[float] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (ids, _) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
        logps = selective_log_softmax(logits[:, :-1], input_ids[:, 1:].to(device))
        for i, (ids, n_prompt) in enumerate(chunk):
            # tokens n_prompt .. len(ids)-1 are the reply; token t is predicted at position t-1
            out.append(float(logps[i, max(n_prompt - 1, 0) : len(ids) - 1].sum()))
    return out
