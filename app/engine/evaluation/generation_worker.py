"""Generation outside the app's process: *4 · Compare*, preference collection and the playground's sampled
completions ask a worker process for replies instead of loading models into the app.

The worker (`python -m app.engine.evaluation.generation_worker FD_IN FD_OUT`) holds one model at a time on the
machine's device — bf16 on a CUDA GPU (4-bit where the run trained in 4-bit and bitsandbytes is importable; on
vLLM where it is installed, RFT_WORKBENCH_GENERATION_VLLM=0 turns that off), fp32 on a CPU — keeps it loaded
between calls, loads another when asked for another, and is stopped after
`IDLE_S` seconds without a call (or when the app exits), which frees the model's memory. The app's process never
imports CUDA, and a request runs while Gradio's other handlers keep answering.

It is on where a CUDA GPU is visible (models users bring there are too big for the app's process) and off on a CPU,
where nothing changes for the user; RFT_WORKBENCH_GENERATION_WORKER=1 or 0 forces it. Replies come from the same
`evaluate.generate_completions` either way (vLLM's own sampler where it is used), so greedy replies are the same
token for token.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from app.engine.evaluation.endpoint import EndpointError, RemoteModel

ENV = "RFT_WORKBENCH_GENERATION_WORKER"
IDLE_S = float(os.environ.get("RFT_WORKBENCH_GENERATION_IDLE_S", "600"))  # stop the worker after this long idle
LOAD_TIMEOUT_S = 900.0
CALL_TIMEOUT_S = 1800.0


class GenerationWorkerError(EndpointError):
    """The generation worker could not load the model or died; the message says which and why."""


def enabled() -> bool:
    forced = os.environ.get(ENV)
    if forced in ("0", "1"):
        return forced == "1"
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


@dataclass(frozen=True)
class Load:
    """What the worker loads: a base model (RunSpec model name) with an optional adapter or full model folder."""

    base: str
    adapter: str | None = None
    load_in_4bit: bool = False
    label: str = ""


@dataclass
class WorkerModel(RemoteModel):
    """A model living in the generation worker; `generate_completions` hands it the prompts (like an endpoint)."""

    load: Load

    def generate(self, prompts: Sequence[Any], max_new_tokens: int, do_sample: bool, temperature: float,
                 num_return_sequences: int = 1) -> tuple[list[str], list[int]]:
        return worker().generate(self.load, list(prompts), max_new_tokens, do_sample, temperature,
                                 num_return_sequences)


class GenerationWorker:
    """The client side: starts the worker on first use, sends one request at a time, stops it when idle."""

    def __init__(self, idle_s: float = IDLE_S):
        self.idle_s = idle_s
        self.proc: subprocess.Popen | None = None
        self.loaded: Load | None = None
        self.device: str | None = None
        self._send: Any = None
        self._recv: Any = None
        self._lock = threading.Lock()
        self._last_call = time.time()
        self._watchdog: threading.Thread | None = None

    # -- the process --------------------------------------------------------------------------------------------
    def _start(self) -> None:
        from app.engine.core import REPOSITORY

        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.engine.evaluation.generation_worker", str(req_r), str(resp_w)],
                pass_fds=(req_r, resp_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=env, cwd=str(REPOSITORY))
        finally:
            os.close(req_r)
            os.close(resp_w)
        self._send, self._recv = os.fdopen(req_w, "w", encoding="utf-8"), os.fdopen(resp_r, "r", encoding="utf-8")
        self.loaded = None
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._stop_when_idle, daemon=True, name="generation-worker-idle")
            self._watchdog.start()

    def _stop_when_idle(self) -> None:
        while True:
            time.sleep(min(5.0, max(0.2, self.idle_s / 4)))
            with self._lock:
                if self.proc is None:
                    return
                if time.time() - self._last_call > self.idle_s:
                    self._stop_locked()
                    return

    def _call(self, message: list[Any], timeout_s: float) -> Any:
        assert self.proc is not None and self._send is not None
        try:
            self._send.write(json.dumps(message) + "\n")
            self._send.flush()
        except (OSError, ValueError):
            raise GenerationWorkerError(self._died("while receiving a request")) from None
        ready, _, _ = select.select([self._recv], [], [], timeout_s)
        line = self._recv.readline() if ready else ""
        if not line:
            if self.proc.poll() is None:
                self._stop_locked()
                raise GenerationWorkerError(f"the generation worker gave no answer within {timeout_s:.0f} s")
            raise GenerationWorkerError(self._died(f"while working on {message[0]}"))
        kind, detail = json.loads(line)
        if kind != "ok":
            raise GenerationWorkerError(detail)
        return detail

    def _died(self, when: str) -> str:
        proc, self.proc = self.proc, None
        self.loaded = None
        code = proc.wait(10) if proc is not None else None
        tail = (proc.stderr.read() or b"").decode("utf-8", "replace").strip().splitlines() if proc else []
        why = f"exit code {code}" if code is None or code >= 0 else f"killed by signal {-code}"
        return (f"the generation worker (pid {proc.pid if proc else '?'}) died {when} ({why})"
                + (f": {tail[-1][:300]}" if tail else ""))

    def _stop_locked(self) -> None:
        proc, self.proc = self.proc, None
        self.loaded = None
        if proc is None:
            return
        try:
            self._send.write(json.dumps(["stop", None]) + "\n")
            self._send.flush()
        except (OSError, ValueError):
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for stream in (self._send, self._recv, proc.stderr):
            try:
                stream.close()
            except (OSError, AttributeError):
                pass

    # -- the API ------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the worker (its model's memory is freed); the next call starts it again."""
        with self._lock:
            self._stop_locked()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def generate(self, load: Load, prompts: list[Any], max_new_tokens: int, do_sample: bool, temperature: float,
                 num_return_sequences: int = 1) -> tuple[list[str], list[int]]:
        with self._lock:
            self._last_call = time.time()
            if self.proc is None or self.proc.poll() is not None:
                if self.proc is not None:
                    self._died("between calls")  # collect it; a fresh one starts below
                self._start()
            if self.loaded != load:
                self.loaded = None  # the worker drops its model before it loads the next (and keeps none on failure)
                info = self._call(["load", load.__dict__], LOAD_TIMEOUT_S)
                self.loaded, self.device = load, info.get("device")
            texts, lengths = self._call(["generate", dict(prompts=prompts, max_new_tokens=max_new_tokens,
                                                          do_sample=do_sample, temperature=temperature,
                                                          num_return_sequences=num_return_sequences)],
                                        CALL_TIMEOUT_S)
            self._last_call = time.time()
            return texts, lengths


_WORKER: GenerationWorker | None = None
_WORKER_LOCK = threading.Lock()


def worker() -> GenerationWorker:
    """The process's one generation worker (stopped when the process exits)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = GenerationWorker()
            atexit.register(_WORKER.stop)
        return _WORKER


# -- the worker process -----------------------------------------------------------------------------------------
def _load(load: Load) -> tuple[Any, Any, str]:
    import torch

    from app.engine.evaluation.loading import load_local

    cuda = torch.cuda.is_available()
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    quantization = None
    if cuda and load.load_in_4bit:
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is not None:
            from transformers import BitsAndBytesConfig

            quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
    model, tokenizer = load_local(load.base, load.adapter, dtype=dtype, device="cuda" if cuda else "cpu",
                                  quantization=quantization)
    where = f"{'cuda' if cuda else 'cpu'} ({'4-bit' if quantization else str(dtype).replace('torch.', '')})"
    return model, tokenizer, where


class VLLMModel:
    """The worker's model on vLLM (a CUDA GPU with vllm installed, not 4-bit): the adapter is merged and saved once
    into a temporary folder vLLM loads; replies are sampled with the same settings `generate_completions` uses."""

    def __init__(self, folder: Any, tokenizer: Any):
        from vllm import LLM

        self.folder = folder  # a TemporaryDirectory holding the merged model (removed with this object)
        self.tokenizer = tokenizer
        share = float(os.environ.get("RFT_WORKBENCH_VLLM_MEMORY", "0.5"))
        self.llm = LLM(model=self.folder.name, gpu_memory_utilization=share, enforce_eager=True)

    def generate(self, prompts: list[Any], max_new_tokens: int, do_sample: bool = False, temperature: float = 1.0,
                 num_return_sequences: int = 1, **_: Any) -> tuple[list[str], list[int]]:
        from vllm import SamplingParams

        texts = [p if isinstance(p, str) else self.tokenizer.apply_chat_template(p, tokenize=False,
                                                                                 add_generation_prompt=True)
                 for p in prompts]
        params = SamplingParams(n=num_return_sequences, max_tokens=max_new_tokens,
                                temperature=temperature if do_sample else 0.0, top_p=1.0)
        outputs = self.llm.generate(texts, params, use_tqdm=False)
        replies = [c for o in outputs for c in o.outputs]
        return [c.text for c in replies], [len(c.token_ids) for c in replies]


def _use_vllm(load: Load) -> bool:
    import importlib.util

    import torch

    return (torch.cuda.is_available() and not load.load_in_4bit and importlib.util.find_spec("vllm") is not None
            and os.environ.get("RFT_WORKBENCH_GENERATION_VLLM", "1") != "0")


def main(argv: list[str] | None = None) -> None:
    argv = argv if argv is not None else sys.argv[1:]
    requests_in = os.fdopen(int(argv[0]), "r", encoding="utf-8")
    replies_out = os.fdopen(int(argv[1]), "w", encoding="utf-8")

    def send(kind: str, detail: Any) -> None:
        replies_out.write(json.dumps([kind, detail]) + "\n")
        replies_out.flush()

    from app.engine.evaluation.evaluate import generate_completions

    model = tokenizer = None
    for line in requests_in:
        kind, detail = json.loads(line)
        if kind == "stop":
            return
        try:
            if kind == "load":
                model = tokenizer = None  # the previous model's memory goes before the next one loads
                load = Load(**detail)
                model, tokenizer, where = _load(load)
                if _use_vllm(load):
                    import gc
                    import tempfile

                    import torch

                    folder = tempfile.TemporaryDirectory(prefix="rft-vllm-")
                    model.save_pretrained(folder.name)
                    tokenizer.save_pretrained(folder.name)
                    model = None  # its GPU memory goes to vLLM
                    gc.collect()
                    torch.cuda.empty_cache()
                    model, where = VLLMModel(folder, tokenizer), where + ", vLLM"
                send("ok", {"device": where})
            elif kind == "generate":
                if model is None:
                    raise RuntimeError("no model loaded")
                if isinstance(model, VLLMModel):
                    send("ok", list(model.generate(**detail)))
                else:
                    send("ok", list(generate_completions(model, tokenizer, **detail)))
            else:
                raise ValueError(f"unknown request {kind!r}")
        except Exception as exc:  # noqa: BLE001 - one sentence back to the app
            send("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")


if __name__ == "__main__":
    main()


__all__ = ["ENV", "GenerationWorker", "GenerationWorkerError", "Load", "WorkerModel", "enabled", "worker"]
