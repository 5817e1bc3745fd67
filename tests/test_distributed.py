"""Runs on several processes (`distributed.processes`): 2 CPU processes over gloo, through the CLI as a user starts
them. One run folder written by rank 0 alone, the same metric keys as a one-process run, a stop that ends every rank
at one step with one checkpoint, a resume on 2 processes, a rank that dies named in the status, validation."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.engine.core import runs
from app.engine.core.spec import RewardSpec, RunSpec

ROOT = Path(__file__).resolve().parents[1]


def tiny_spec(model_dir: Path, method: str = "grpo", **settings: object) -> RunSpec:
    base = {"backend": "trl", "data.task_params": "{n: 64}", "data.eval_size": 4, "training.max_steps": 2,
            "training.per_device_train_batch_size": 4, "generation.num_generations": 4,
            "generation.max_completion_length": 4, "generation.max_length": 64, "logging.save_steps": 100,
            "distributed.processes": 2}
    base.update(settings)
    spec = RunSpec(method=method, model=str(model_dir), rewards=[RewardSpec(name="numeric_answer")])
    return spec.with_overrides([f"{k}={v}" for k, v in base.items()])


def start(spec: RunSpec, run_dir: Path, *extra: str) -> subprocess.Popen:
    spec_file = run_dir.parent / f"{run_dir.name}.yaml"
    spec_file.write_text(spec.to_yaml())
    return subprocess.Popen([sys.executable, "-m", "app.train", str(spec_file), "--run-dir", str(run_dir),
                             "--no-progress", *extra], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.train", *args, "--no-progress"], cwd=ROOT, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)


def rank_processes(run_dir: Path) -> list[int]:
    """Live processes of the run's ranks (their command line names the run folder)."""
    found = subprocess.run(["pgrep", "-f", "--", f"--rank-of {run_dir}"], capture_output=True, text=True).stdout.split()
    alive = []
    for pid in found:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    alive.append(int(pid))
        except OSError:
            continue
    return alive


def wait_for(predicate, timeout: float = 300, what: str = "", run_dir: Path | None = None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        status = runs.read_status(run_dir) if run_dir else {}
        if status.get("state") in ("failed", "finished"):
            raise AssertionError(f"the run {status['state']} while waiting for {what}: {status.get('error')}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def train_records(run_dir: Path) -> list[dict]:
    return [r for r in runs.read_jsonl(run_dir / "metrics.jsonl")[0] if "loss" in r]


def test_two_processes_write_one_run_folder_with_the_one_process_metric_keys(tiny_model_dir, tmp_path):
    # grpo.skip_zero_advantage is one-process only (it adds `rows_trained`, and a step without an informative row
    # logs no entropy): off in both, so that the folders compare like with like.
    same = {"grpo.skip_zero_advantage": "false"}
    one = cli(str(_spec_file(tiny_spec(tiny_model_dir, **{"distributed.processes": 1}, **same), tmp_path / "one.yaml")),
              "--run-dir", str(tmp_path / "one"))
    two = cli(str(_spec_file(tiny_spec(tiny_model_dir, **same), tmp_path / "two.yaml")), "--run-dir", str(tmp_path / "two"))
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    status = runs.read_status(tmp_path / "two")
    assert status["state"] == "finished" and status["processes"] == 2 and status["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "one.yaml", "two", "two.yaml"]  # no rank folders
    keys = [set(r) - {"time"} for r in train_records(tmp_path / "two")]
    assert [r["step"] for r in train_records(tmp_path / "two")] == [1, 2]  # once per step: rank 0 only
    assert keys == [set(r) - {"time"} for r in train_records(tmp_path / "one")]
    samples = runs.read_jsonl(tmp_path / "two" / "samples.jsonl")[0]
    assert len([s for s in samples if s["step"] == 1]) == 8  # both ranks' completions: 2 × 4 per step
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "two" / "adapter")


def _spec_file(spec: RunSpec, path: Path) -> Path:
    path.write_text(spec.to_yaml())
    return path


def test_sigterm_stops_every_rank_at_one_step_with_one_checkpoint_and_resume_continues_on_two(tiny_model_dir,
                                                                                              tmp_path):
    run_dir = tmp_path / "run"
    proc = start(tiny_spec(tiny_model_dir, **{"training.max_steps": 500, "logging.eval_at_start": "false"}), run_dir)
    wait_for(lambda: (runs.read_status(run_dir).get("step") or 0) >= 2, what="step 2", run_dir=run_dir)
    assert len(rank_processes(run_dir)) == 2
    os.kill(proc.pid, signal.SIGTERM)  # the launcher: what Ctrl-C or a scheduler's stop reaches
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 3, out[-3000:]
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped"
    stopped_at = status["step"]
    assert [c.name for c in runs.checkpoints(run_dir)] == [f"checkpoint-{stopped_at}"]
    wait_for(lambda: not rank_processes(run_dir), timeout=30, what="every rank to exit")

    resumed = cli("--resume", str(run_dir), "--max-steps", str(stopped_at + 2))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["processes"] == 2 and status["step"] == stopped_at + 2
    assert [r["step"] for r in train_records(run_dir)] == list(range(1, stopped_at + 3))


def test_a_rank_that_dies_fails_the_run_naming_it_and_stops_the_others(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(tiny_spec(tiny_model_dir, **{"training.max_steps": 500, "logging.eval_at_start": "false"}), run_dir)
    wait_for(lambda: (runs.read_status(run_dir).get("step") or 0) >= 1, what="step 1", run_dir=run_dir)
    rank1 = [pid for pid in rank_processes(run_dir)
             if b"RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")]
    assert len(rank1) == 1
    os.kill(rank1[0], signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-3000:]
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and status["failed_rank"] == 1
    assert status["error"].startswith("rank 1 of 2 failed: killed by SIGKILL")
    wait_for(lambda: not rank_processes(run_dir), timeout=30, what="every rank to exit")


def test_two_process_sft_run(tiny_model_dir, tmp_path):
    spec = tiny_spec(tiny_model_dir, method="sft")
    proc = cli(str(_spec_file(spec, tmp_path / "sft.yaml")), "--run-dir", str(tmp_path / "sft"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = runs.read_status(tmp_path / "sft")
    assert status["state"] == "finished" and status["processes"] == 2
    assert [r["step"] for r in train_records(tmp_path / "sft")] == [1, 2]
    assert (tmp_path / "sft" / "adapter" / "adapter_model.safetensors").exists()


def fields(spec: RunSpec, check_files: bool = True) -> dict[str, str]:
    return {p.field: p.problem for p in spec.problems(check_files=check_files) if p.field.startswith("distributed")}


def test_validation_says_what_this_machine_cannot_do_in_one_sentence(tiny_model_dir, tmp_path):
    cores = os.cpu_count() or 1
    too_many = fields(tiny_spec(tiny_model_dir, **{"distributed.processes": cores + 1}))
    assert too_many == {"distributed.processes": f"asks for {cores + 1} CPU processes but this machine has {cores} "
                                                 f"CPU core{'s' if cores != 1 else ''}"}
    assert "distributed.processes" in fields(tiny_spec(tiny_model_dir, **{"distributed.processes": 0}), False)
    assert "unknown strategy" in fields(tiny_spec(tiny_model_dir, **{"distributed.strategy": "horovod"}), False)[
        "distributed.strategy"]
    fsdp = fields(tiny_spec(tiny_model_dir, **{"distributed.strategy": "fsdp"}))
    if not __import__("torch").cuda.is_available():
        assert "fsdp needs CUDA GPUs" in fsdp["distributed.strategy"]
    missing = fields(tiny_spec(tiny_model_dir, **{"distributed.strategy": "deepspeed_zero2",
                                                  "distributed.config_file": str(tmp_path / "ds.json")}))
    assert "does not exist" in missing["distributed.config_file"]
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        zero3 = fields(tiny_spec(tiny_model_dir, **{"distributed.strategy": "deepspeed_zero3"}))
        assert "pip install deepspeed" in zero3["distributed.strategy"]
    assert fields(tiny_spec(tiny_model_dir)) == {}
    # --validate-only says it before anything starts, and no folder is made.
    proc = cli(str(_spec_file(tiny_spec(tiny_model_dir, **{"distributed.processes": cores + 1}), tmp_path / "x.yaml")),
               "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2 and "distributed.processes" in proc.stderr and not (tmp_path / "runs").exists()


def test_the_shipped_strategy_files_reach_the_trainer_arguments(tiny_model_dir, monkeypatch):
    import json

    from app.engine.training import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    for strategy, key in (("fsdp", "fsdp_config"), ("deepspeed_zero2", "deepspeed"), ("deepspeed_zero3", "deepspeed")):
        args = distributed.trainer_args(tiny_spec(tiny_model_dir, **{"distributed.strategy": strategy}), cuda=True)
        assert args["ddp_backend"] == "nccl" and Path(args[key]).is_file()
        json.loads(Path(args[key]).read_text())
    assert distributed.trainer_args(tiny_spec(tiny_model_dir), cuda=False) == {
        "ddp_backend": "gloo", "ddp_find_unused_parameters": False}
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.trainer_args(tiny_spec(tiny_model_dir), cuda=False) == {}


@pytest.mark.e2e
def test_two_process_grpo_on_the_default_model_through_the_cli(tmp_path):
    small = ["data.eval_size=4", "generation.num_generations=4", "training.per_device_train_batch_size=4",
             "generation.max_completion_length=8", "logging.eval_max_new_tokens=8", "training.max_steps=2",
             "logging.eval_every=0", "distributed.processes=2"]
    proc = cli(str(ROOT / "recipes" / "arithmetic-grpo.yaml"), "--run-dir", str(tmp_path / "run"),
               *[a for item in small for a in ("--set", item)], "--set", "training.keep_best=null", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = runs.read_status(tmp_path / "run")
    assert status["state"] == "finished" and status["processes"] == 2 and status["backend"] == "trl"
    assert [r["step"] for r in train_records(tmp_path / "run")] == [1, 2]
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(status["model_path"]), tmp_path / "run" / "adapter")
