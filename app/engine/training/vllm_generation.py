"""vLLM rollouts for GRPO-family runs (`generation.vllm`): the checks made before anything loads, and the
`trl vllm-serve` server a run may start for itself.

TRL does the generation: `use_vllm` with `vllm_mode` colocate (vLLM in the training process) or server (TRL's
client sends the server the weights after each optimizer step and waits up to `vllm_server_timeout` for it to
answer). The workbench only checks the machine, and in server mode with `vllm_server_devices` starts the server on
those GPUs beside the run and stops it with the run.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

SERVER_LOG = "vllm-server.log"  # in the run folder


def environment_problem(mode: str) -> str | None:
    """Why vLLM generation cannot run on this machine, in one sentence; None where it can."""
    if mode == "off":
        return None
    import torch

    if not torch.cuda.is_available():
        return (f"vLLM generation ({mode}) needs a CUDA GPU and this machine has none; set generation.vllm: off "
                "(transformers' generate) on a CPU")
    if importlib.util.find_spec("vllm") is None:
        return f"vLLM generation ({mode}) needs vllm installed (pip install vllm); or set generation.vllm: off"
    return None


def _answers(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def server_problem(g: Any) -> str | None:
    """Server mode: the port must be free when the run starts its own server, and a server must answer when the
    run connects to one already running."""
    if g.vllm != "server":
        return None
    where = f"{g.vllm_server_host}:{g.vllm_server_port}"
    if g.vllm_server_devices:
        if _answers(g.vllm_server_host, g.vllm_server_port, timeout_s=0.5):
            return (f"port {g.vllm_server_port} on {g.vllm_server_host} is in use, so the run cannot start its vLLM "
                    "server there; choose another generation.vllm_server_port, or use the server there "
                    "(generation.vllm_server_devices: null)")
        return None
    if not _answers(g.vllm_server_host, g.vllm_server_port):
        return (f"no vLLM server answers at {where}; start one (CUDA_VISIBLE_DEVICES=1 trl vllm-serve --model MODEL "
                f"--port {g.vllm_server_port}) or let the run start it (generation.vllm_server_devices: '1')")
    return None


def server_command(model_path: str, g: Any) -> list[str]:
    """`trl vllm-serve` for the run's base model (TRL sends the LoRA-merged weights after each step)."""
    trl_cli = shutil.which("trl") or str(Path(sys.executable).with_name("trl"))
    return [trl_cli, "vllm-serve", "--model", model_path, "--host", g.vllm_server_host,
            "--port", str(g.vllm_server_port), "--gpu_memory_utilization", str(g.vllm_gpu_memory_utilization)]


def start_server(model_path: str, g: Any, run_dir: Path) -> subprocess.Popen:
    """Start the run's `trl vllm-serve` on `g.vllm_server_devices`, output in the run folder's vllm-server.log;
    returns at once (TRL's client waits for it to answer)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(g.vllm_server_devices))
    with open(run_dir / SERVER_LOG, "ab") as log:
        return subprocess.Popen(server_command(model_path, g), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def stop_server(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Stop the server and every process it started (its own session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


__all__ = ["SERVER_LOG", "environment_problem", "server_problem", "server_command", "start_server", "stop_server"]
