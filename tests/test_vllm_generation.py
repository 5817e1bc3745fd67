"""generation.vllm: refused in one sentence where it cannot run (before anything loads), passed to TRL's GRPOConfig
where it can, and the server a run starts for itself stopped with the run."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from app.engine.core.spec import RewardSpec, RunSpec
from app.engine.training import vllm_generation


def grpo(*overrides: str) -> RunSpec:
    return RunSpec(rewards=[RewardSpec(name="numeric_answer")]).with_overrides(list(overrides))


def fields(spec: RunSpec, check_files: bool = False) -> list[str]:
    return [p.field for p in spec.problems(check_files=check_files)]


def test_settings_are_checked_without_the_machine():
    assert fields(grpo("generation.vllm=fast")) == ["generation.vllm"]
    assert fields(grpo("generation.vllm=colocate")) == []
    sft = RunSpec(method="sft").with_overrides(["generation.vllm=colocate"])
    assert "generation.vllm" in fields(sft)
    assert fields(grpo("generation.vllm=colocate", "fast_inference=true")) == ["generation.vllm"]
    assert fields(grpo("generation.vllm=server", "generation.vllm_server_port=0",
                       "generation.vllm_server_devices='1,x'", "generation.vllm_gpu_memory_utilization=1.5")) == [
        "generation.vllm_gpu_memory_utilization", "generation.vllm_server_port", "generation.vllm_server_devices"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the CPU machine's sentence")
def test_on_a_cpu_machine_validation_says_so_in_one_sentence(tiny_model_dir, tmp_path):
    spec = grpo("generation.vllm=colocate").replace(model=str(tiny_model_dir))
    problems = [p for p in spec.problems(check_files=True) if p.field == "generation.vllm"]
    assert len(problems) == 1 and "needs a CUDA GPU and this machine has none" in problems[0].problem
    # train() refuses it too, before it makes a run folder (a notebook may call it without validating first).
    from app.engine.core.fields import SpecError
    from app.engine.training.worker import train

    with pytest.raises(SpecError, match="needs a CUDA GPU"):
        train(spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_server_mode_checks_the_port(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        own = grpo("generation.vllm=server", f"generation.vllm_server_port={port}",
                   "generation.vllm_server_devices='1'").generation
        assert "is in use" in vllm_generation.server_problem(own)
        theirs = grpo("generation.vllm=server", f"generation.vllm_server_port={port}").generation
        assert vllm_generation.server_problem(theirs) is None  # something answers there
    assert "no vLLM server answers" in vllm_generation.server_problem(theirs)
    assert vllm_generation.server_problem(own) is None  # free now: the run may start its server there


def test_grpo_config_gets_trls_vllm_fields(tiny_model_dir, tmp_path):
    from types import SimpleNamespace

    from app.engine.methods.grpo import grpo_config, vllm_options

    assert vllm_options(grpo().generation) == {"use_vllm": False}
    spec = grpo("generation.vllm=server", "generation.vllm_server_port=8123", "generation.vllm_gpu_memory_utilization=0.5")
    parts = SimpleNamespace(spec=spec, common={"output_dir": str(tmp_path), "report_to": [], "bf16": False, "use_cpu": True}, reward_weights=[1.0])
    config = grpo_config(parts)
    assert (config.use_vllm, config.vllm_mode, config.vllm_server_host, config.vllm_server_port,
            config.vllm_gpu_memory_utilization) == (True, "server", "127.0.0.1", 8123, 0.5)


def test_grpo_config_gets_the_rollout_sampling_settings(tmp_path):
    from types import SimpleNamespace

    from app.engine.methods.grpo import grpo_config

    spec = grpo("generation.temperature=0.9", "generation.top_k=20", "generation.min_p=0.1")
    parts = SimpleNamespace(spec=spec, common={"output_dir": str(tmp_path), "report_to": [], "bf16": False, "use_cpu": True}, reward_weights=[1.0])
    config = grpo_config(parts)
    assert (config.temperature, config.top_p, config.top_k, config.min_p) == (0.9, 1.0, 20, 0.1)


def alive(pids: list[str]) -> list[str]:
    """The processes of `pids` still running (not exited, not zombies)."""
    running = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            running.append(pid)
    return running


def test_the_runs_server_is_stopped_with_its_children(monkeypatch, tmp_path):
    """start_server/stop_server on a stand-in process that starts a child of its own, as vLLM's engine does."""
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); " \
             "print('up', flush=True); time.sleep(600)"
    monkeypatch.setattr(vllm_generation, "server_command", lambda model, g: [sys.executable, "-c", script])
    g = grpo("generation.vllm=server", "generation.vllm_server_devices='0'").generation
    proc = vllm_generation.start_server("model", g, tmp_path)
    deadline = time.time() + 30
    while "up" not in (tmp_path / vllm_generation.SERVER_LOG).read_text() and time.time() < deadline:
        time.sleep(0.1)
    group = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(alive(group)) == 2  # the server and its child, in the server's own session
    vllm_generation.stop_server(proc)
    assert proc.poll() is not None
    time.sleep(0.5)
    assert not alive(group)  # none left (the orphaned child may linger as a zombie until init reaps it)


def test_server_command_is_trls():
    g = grpo("generation.vllm=server", "generation.vllm_server_port=8001").generation
    command = vllm_generation.server_command("/models/m", g)
    assert command[1:4] == ["vllm-serve", "--model", "/models/m"] and command[command.index("--port") + 1] == "8001"
