"""Serve a tuned model over the OpenAI chat-completions API on 127.0.0.1, through a server made for it:

    python -m app.serve RUN_DIR [--port P] [--checkpoint N] [--engine auto|transformers|vllm]

The run's LoRA adapter is merged into its base model once (PEFT, kept under the exports folder's `.served/` and
re-merged when the adapter changes), and the merged folder is served by `transformers serve` on a CPU or by vLLM
(`vllm serve`) on a CUDA GPU where vllm is installed. Any chat client, evaluation harness or another run's
`llm_judge` (backend: openai) can then talk to it at http://127.0.0.1:PORT/v1.
"""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from app.engine.evaluation.compare import CompareError

ENGINES = ("auto", "transformers", "vllm")
HOST = "127.0.0.1"  # loopback only: the server runs whatever model it is given, with no authentication
DEFAULT_PORT = 8000
START_TIMEOUT_S = 600.0
SERVED_DIR = ".served"


class ServeError(CompareError):
    """The model cannot be served as asked; the message says why."""


@dataclass
class Served:
    """A running server: its process, the OpenAI base URL, and the model name requests must use."""

    proc: subprocess.Popen
    base_url: str
    model: str
    engine: str
    model_dir: Path

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def pick_engine(engine: str = "auto") -> str:
    """vLLM on a CUDA GPU where it is installed, else transformers serve; a named engine must be usable."""
    if engine not in ENGINES:
        raise ServeError(f"unknown engine {engine!r}; choose {', '.join(ENGINES)}")
    vllm_ok = importlib.util.find_spec("vllm") is not None and shutil.which("vllm") is not None
    if engine == "vllm" or (engine == "auto" and vllm_ok):
        import torch

        if not torch.cuda.is_available() or not vllm_ok:
            if engine == "vllm":
                raise ServeError("vLLM needs a CUDA GPU and `pip install vllm`; on a CPU use --engine transformers.")
        else:
            return "vllm"
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise ServeError("transformers serve needs FastAPI and uvicorn: pip install 'transformers[serving]'")
    return "transformers"


def served_model_dir(source: Path | str, exports_dir: Path, checkpoint: int | None = None,
                     progress: Callable[[float, str], None] | None = None) -> Path:
    """A plain model folder for the run: the merged export under exports/.served/, made (or remade, when the
    adapter is newer) with PEFT; a full fine-tuned model folder is served as it is."""
    from app.engine.evaluation.compare import is_adapter
    from app.engine.evaluation.export import export_merged, source_folder

    folder, run_dir = source_folder(source, checkpoint)
    if not is_adapter(folder):
        return folder
    name = (run_dir.name if run_dir else folder.name) + (f"-ckpt{checkpoint}" if checkpoint is not None else "")
    out = exports_dir / SERVED_DIR / name
    adapter_time = max(p.stat().st_mtime for p in folder.iterdir() if p.is_file())
    if (out / "config.json").exists() and (out / "config.json").stat().st_mtime >= adapter_time:
        return out
    export_merged(source, out, checkpoint=checkpoint, overwrite=True, progress=progress)
    return out


def serve_command(engine: str, model_dir: Path, port: int) -> list[str]:
    if engine == "vllm":
        return [shutil.which("vllm") or "vllm", "serve", str(model_dir), "--host", HOST, "--port", str(port)]
    exe = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
    return [exe, "serve", str(model_dir), "--host", HOST, "--port", str(port)]


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def start(source: Path | str, exports_dir: Path, port: int = DEFAULT_PORT, checkpoint: int | None = None,
          engine: str = "auto", progress: Callable[[float, str], None] | None = None,
          log: Path | None = None) -> Served:
    """Merge (once) and serve the run; returns when the server answers, or raises ServeError with its last words."""
    engine = pick_engine(engine)
    if not 0 < port < 65536:
        raise ServeError(f"port {port} is not a TCP port (1–65535)")
    if not _port_free(port):
        raise ServeError(f"port {port} on {HOST} is taken (another server?); choose another with --port")
    model_dir = served_model_dir(source, exports_dir, checkpoint, progress)
    if progress:
        progress(0.9, f"Starting {engine} serve on {HOST}:{port}")
    out: Any = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(serve_command(engine, model_dir, port), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    served = Served(proc, f"http://{HOST}:{port}/v1", str(model_dir), engine, model_dir)
    health = f"http://{HOST}:{port}/health"
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] if log else []
            raise ServeError(f"{engine} serve exited with code {proc.returncode}"
                             + (f": {tail[0][:200]}" if tail else ""))
        try:
            urllib.request.urlopen(health, timeout=2)
            return served
        except OSError:
            time.sleep(1)
    served.stop()
    raise ServeError(f"{engine} serve did not answer on {health} within {START_TIMEOUT_S:.0f} s")


_RUNNING: dict[str, Served] = {}  # the app's servers, by model folder: one each, stopped when the app exits


def serve_for_app(source: Path | str, exports_dir: Path, port: int = DEFAULT_PORT, checkpoint: int | None = None,
                  progress: Callable[[float, str], None] | None = None) -> Served:
    """`start`, for the app: a model already served (and alive) is returned as it is; all stop at exit."""
    model_dir = served_model_dir(source, exports_dir, checkpoint, progress)
    running = _RUNNING.get(str(model_dir))
    if running is not None and running.proc.poll() is None:
        return running
    served = start(source, exports_dir, port, checkpoint, progress=progress, log=exports_dir / SERVED_DIR /
                   f"{model_dir.name}.log")
    if not _RUNNING:
        atexit.register(stop_all)
    _RUNNING[str(model_dir)] = served
    return served


def stop_all() -> None:
    """Stop every server the app started."""
    while _RUNNING:
        _RUNNING.popitem()[1].stop()


def main(argv: list[str] | None = None) -> int:
    from app.engine.core.folders import resolve_paths

    p = argparse.ArgumentParser(prog="python -m app.serve", description="Serve a run's model (base + adapter) over "
                                "the OpenAI chat-completions API on 127.0.0.1.")
    p.add_argument("source", help="run folder (its final adapter, else its latest checkpoint), or an adapter folder")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--checkpoint", type=int, help="serve checkpoint-N of the run instead of the final adapter")
    p.add_argument("--engine", default="auto", choices=ENGINES, help="auto: vLLM on a CUDA GPU if installed, "
                   "else transformers serve")
    args = p.parse_args(argv)
    paths = resolve_paths()
    try:
        served = start(args.source, paths.exports_dir, args.port, args.checkpoint, args.engine,
                       progress=lambda f, m: print(f"[{f:.0%}] {m}", flush=True))
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Serving {Path(args.source).name} with {served.engine} at {served.base_url} (model {served.model!r}).")
    print(f"  curl {served.base_url}/chat/completions -H 'Content-Type: application/json' -d "
          f"'{{\"model\": \"{served.model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'")
    print("  As another run's judge: rewards: [{name: llm_judge, params: {backend: openai, base_url: "
          f"{served.base_url}, model: {served.model}}}]. Ctrl-C stops it.", flush=True)

    def stop(*_: Any) -> None:
        served.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        return served.proc.wait()
    except KeyboardInterrupt:
        served.stop()
        return 0
    finally:
        if served.proc.poll() is None:
            served.stop()


__all__ = ["ENGINES", "HOST", "Served", "ServeError", "pick_engine", "served_model_dir", "serve_command", "start",
           "serve_for_app", "stop_all", "main"]
