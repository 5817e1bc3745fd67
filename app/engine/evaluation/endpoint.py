"""A model behind an OpenAI-compatible chat-completions endpoint (`python -m app.serve`, vLLM, Ollama, a hosted
API) as a column of *4 · Compare*: `generate_completions` hands it the chat messages and it answers over HTTP, so
the same scoring path scores it like any local model."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENDPOINT_PREFIX = "endpoint::"


class EndpointError(ValueError):
    """A served model failed to answer; the message names the endpoint and why."""


class RemoteModel:
    """A model whose replies come from outside this process (`generate_completions` hands it the prompts): a served
    endpoint, or the generation worker's model (generation_worker.WorkerModel)."""

    def generate(self, prompts: Sequence[Any], max_new_tokens: int, do_sample: bool, temperature: float,
                 num_return_sequences: int = 1) -> tuple[list[str], list[int]]:
        raise NotImplementedError


@dataclass
class EndpointModel(RemoteModel):
    """`base_url` (…/v1) and the model name the server expects; the key, if any, from `api_key_env`."""

    base_url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = 120.0
    concurrency: int = 4

    def generate(self, prompts: Sequence[Any], max_new_tokens: int, do_sample: bool, temperature: float,
                 num_return_sequences: int = 1) -> tuple[list[str], list[int]]:
        """One reply per prompt (and per return sequence, consecutive), with their token counts as reported."""
        import openai

        key = os.environ.get(self.api_key_env, "") if self.api_key_env else "not-needed"
        client = openai.OpenAI(base_url=self.base_url, api_key=key or "not-needed", timeout=self.timeout_s,
                               max_retries=1)

        def one(messages: Any) -> tuple[str, int]:
            messages = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
            try:
                reply = client.chat.completions.create(model=self.model, messages=messages,
                                                       max_tokens=max_new_tokens,
                                                       temperature=temperature if do_sample else 0.0)
            except Exception as exc:  # noqa: BLE001 - the compare view shows one sentence
                raise EndpointError(f"The endpoint {self.base_url} (model {self.model!r}) failed: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                                   ) from None
            usage = getattr(reply, "usage", None)
            return reply.choices[0].message.content or "", int(getattr(usage, "completion_tokens", 0) or 0)

        jobs = [p for p in prompts for _ in range(max(1, num_return_sequences))]
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(jobs)))) as pool:
            done = list(pool.map(one, jobs))
        return [t for t, _ in done], [n for _, n in done]


def saved_endpoints(path: Path) -> list[tuple[str, str]]:
    """(base_url, model) of the endpoints added to *4 · Compare* (kept in the data folder across restarts)."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [(str(i["base_url"]), str(i["model"])) for i in items if isinstance(i, dict) and "base_url" in i
            and "model" in i]


def save_endpoint(path: Path, base_url: str, model: str) -> None:
    """Add an endpoint to the saved list (written atomically; a repeat is not added twice)."""
    items = saved_endpoints(path)
    if (base_url, model) not in items:
        items.append((base_url, model))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([{"base_url": b, "model": m} for b, m in items], indent=1), encoding="utf-8")
    os.replace(tmp, path)


def endpoint_key(base_url: str, model: str) -> str:
    """The Compare tab's key of an endpoint column: endpoint::BASE_URL::MODEL."""
    return f"{ENDPOINT_PREFIX}{base_url.rstrip('/')}::{model}"


def parse_endpoint_key(key: str) -> tuple[str, str]:
    base_url, _, model = key[len(ENDPOINT_PREFIX):].partition("::")
    return base_url, model


__all__ = ["EndpointModel", "EndpointError", "ENDPOINT_PREFIX", "endpoint_key", "parse_endpoint_key",
           "saved_endpoints", "save_endpoint"]
