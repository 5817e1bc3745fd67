"""End to end on the real default model (SmolLM2-135M-Instruct), through the CLI worker, kept short for CI."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.engine.core import runs
from app.engine.core.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]
# Small but real: 1 prompt × 4 completions × 8 tokens per GRPO step, 4 held-out rows.
SMALL = [
    "data.eval_size=4",
    "generation.num_generations=4",
    "training.per_device_train_batch_size=4",
    "generation.max_completion_length=8",
    "logging.eval_max_new_tokens=8",
]

pytestmark = pytest.mark.e2e


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "app.train", *args, "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def metrics(run_dir: Path) -> list[dict]:
    return runs.read_jsonl(run_dir / "metrics.jsonl")[0]


def export_gguf_and_check(run_dir: Path, out_dir: Path) -> None:
    """q8_0 GGUF of the real model, loaded back by transformers' GGUF loader: its replies match the in-app model's
    within the export's tolerance (the command exits 3 when they do not)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "app.export", str(run_dir), "--out", str(out_dir), "--gguf", "q8_0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "matches the in-app model" in proc.stdout
    gguf = out_dir / f"{run_dir.name}-q8_0.gguf"
    assert 100e6 < gguf.stat().st_size < 200e6  # 135M parameters at ~8.5 bits
    assert (out_dir / "Modelfile").exists() and (out_dir / "README.md").exists()


@pytest.mark.parametrize("recipe", ["arithmetic-grpo", "arithmetic-sft", "arithmetic-dft", "arithmetic-prefix-rft"])
def test_two_step_run_writes_the_run_folder(recipe, tmp_path):
    run_dir = tmp_path / "run"
    proc = cli(str(ROOT / "recipes" / f"{recipe}.yaml"), "--run-dir", str(run_dir), "--max-steps", "2", *sets(SMALL))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["step"] == 2
    assert status["backend"] in ("unsloth", "trl") and status["device"] == "cpu" and status["dtype"]
    assert RunSpec.load(run_dir / "spec.yaml").training.max_steps == 2
    records = metrics(run_dir)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert {"learning_rate", "step_time", "peak_memory_mb"} <= r.keys()
    evals = [r for r in records if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 2]  # base model, then the trained one
    assert 0.0 <= evals[-1]["eval/accuracy"] <= 1.0
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert runs.latest_checkpoint(run_dir) is not None
    if recipe == "arithmetic-sft":  # the trained run goes to llama.cpp's format and back, through the CLI
        export_gguf_and_check(run_dir, tmp_path / "gguf")
    if recipe.endswith("prefix-rft"):  # the prefixed rollouts ran (their metrics come only from that loss)
        for r in steps:
            assert {"reward", "prefix/fraction_low", "prefix/tokens_updated_share"} <= r.keys()
    if recipe.endswith("grpo"):
        for r in steps:
            assert {"reward", "reward_std", "rewards/numeric_answer/mean", "completions/mean_length", "rows_trained"} <= r.keys()
            assert ("entropy" in r) == (r["rows_trained"] > 0)  # the loss's metrics cover the rows that trained
            assert "reward_errors/numeric_answer" in r
        samples = runs.read_jsonl(run_dir / "samples.jsonl")[0]
        assert {s["step"] for s in samples} == {1, 2}
        assert all({"prompt", "completion", "rewards", "advantage"} <= s.keys() for s in samples)
        assert all("numeric_answer" in s["rewards"] for s in samples)


def test_judge_grpo_recipe_trains_with_a_model_judge_and_keeps_its_replies(tmp_path):
    """recipes/judge-grpo.yaml as shipped (the default model as policy and as local judge), two steps."""
    run_dir = tmp_path / "run"
    proc = cli(str(ROOT / "recipes" / "judge-grpo.yaml"), "--run-dir", str(run_dir), "--max-steps", "2",
               *sets(SMALL + ["logging.eval_every=0"]))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = [r for r in metrics(run_dir) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert 0.0 <= r["rewards/llm_judge/mean"] <= 1.0 and r["reward_errors/llm_judge"] == 0
    evals = [r for r in metrics(run_dir) if "eval/reward" in r]
    assert [r["step"] for r in evals] == [0, 2] and evals[-1]["eval/accuracy"] is None  # no correctness reward
    samples = runs.read_jsonl(run_dir / "samples.jsonl")[0]
    assert samples and all(s["judge"]["llm_judge"].startswith("Score: ") for s in samples)


def test_bad_spec_stops_before_creating_a_run(tmp_path):
    proc = cli(str(ROOT / "recipes" / "arithmetic-grpo.yaml"), "--runs-dir", str(tmp_path), "--set", "rewards=[{name: no_such_reward}]")
    assert proc.returncode == 2
    assert "rewards[0].name" in proc.stderr and "no_such_reward" in proc.stderr
    assert not any(tmp_path.iterdir())


def _launch(tmp_path: Path, max_steps: int, extra: list[str] = ()) -> tuple[Path, subprocess.Popen]:
    spec = RunSpec.load(ROOT / "recipes" / "arithmetic-grpo.yaml").with_overrides(
        SMALL + [f"training.max_steps={max_steps}", "logging.save_steps=100", *extra]
    )
    run_dir = runs.create_run_dir(spec, tmp_path)
    return run_dir, runs.launch_run(run_dir, extra_args=["--no-progress"])


def _wait(predicate, timeout: float = 300, what: str = "") -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_stop_then_resume_continues_the_step_count(tmp_path):
    run_dir, proc = _launch(tmp_path, max_steps=4, extra=["logging.eval_at_start=false"])
    _wait(lambda: (runs.read_status(run_dir).get("step") or 0) >= 1, what="the first step")
    runs.request_stop(run_dir)
    assert proc.wait(timeout=300) == 3  # stopped
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped"
    stopped_at = status["step"]
    assert 1 <= stopped_at < 4
    ckpt = runs.latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name == f"checkpoint-{stopped_at}"

    resumed = runs.launch_run(run_dir, extra_args=["--no-progress"], resume=True)
    assert resumed.wait(timeout=300) == 0, (run_dir / "train.log").read_text()[-3000:]
    assert runs.read_status(run_dir)["state"] == "finished"
    train_steps = [r["step"] for r in metrics(run_dir) if "loss" in r]
    assert train_steps == list(range(1, 5)), train_steps  # appended, no restart at 1


def test_killed_worker_reads_as_failed_with_metrics_intact(tmp_path):
    run_dir, proc = _launch(tmp_path, max_steps=50, extra=["logging.eval_at_start=false"])
    _wait(lambda: len([r for r in metrics(run_dir) if "loss" in r]) >= 1, what="the first metrics line")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    status = runs.read_status(run_dir)
    assert status["state"] == "failed"
    assert "killed" in status["error"]
    assert [r for r in metrics(run_dir) if "loss" in r]
