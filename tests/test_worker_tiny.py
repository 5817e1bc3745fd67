"""The worker in-process on a tiny random Llama (fast): run folder contents, samples, stop flag, reward failures."""
from __future__ import annotations

import pytest

from app.engine.core import runs
from app.engine.core.spec import RewardSpec, RunSpec
from app.engine.training.worker import train


def tiny_spec(model_dir, method: str = "grpo", **overrides) -> RunSpec:
    spec = RunSpec(
        method=method,
        model=str(model_dir),
        backend="trl",  # keeps Unsloth's import-time patching out of the test process
        rewards=[RewardSpec(name="numeric_answer")],
    )
    settings = {
        "data.task_params": "{n: 40}",
        "data.eval_size": 4,
        "training.max_steps": 2,
        "training.per_device_train_batch_size": 4,
        "generation.num_generations": 4,
        "generation.max_completion_length": 4,
        "generation.max_length": 64,
        "logging.save_steps": 1,
        **overrides,
    }
    return spec.with_overrides([f"{k}={v}" for k, v in settings.items()])


@pytest.mark.parametrize("method", ["grpo", "sft", "dft"])
def test_each_method_writes_a_complete_run_folder(tiny_model_dir, tmp_path, method):
    result = train(tiny_spec(tiny_model_dir, method), runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    assert result.state == "finished", runs.read_status(result.run_dir).get("traceback")
    status = runs.read_status(result.run_dir)
    assert status["backend"] == "trl" and status["dtype"] == "float32" and status["step"] == 2
    records = runs.read_jsonl(result.run_dir / "metrics.jsonl")[0]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert [r["step"] for r in records if "eval/accuracy" in r] == [0, 2]
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert [c.name for c in runs.checkpoints(result.run_dir)] == ["checkpoint-1", "checkpoint-2"]
    if method == "grpo":
        samples = runs.read_jsonl(result.run_dir / "samples.jsonl")[0]
        assert len(samples) == 8  # 4 completions × 2 steps
        assert all(isinstance(s["advantage"], float) for s in samples)


def test_periodic_evaluation_at_the_last_step_is_not_run_twice(tiny_model_dir, tmp_path):
    spec = tiny_spec(tiny_model_dir, **{"logging.eval_every": 1})
    result = train(spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    evals = [r for r in runs.read_jsonl(result.run_dir / "metrics.jsonl")[0] if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 1, 2, 2]  # start, each step, and the final record
    assert evals[-1]["final"] and evals[-1]["eval/seconds"] == evals[-2]["eval/seconds"]  # the same evaluation


def test_stop_file_stops_at_the_next_step_with_a_checkpoint(tiny_model_dir, tmp_path):
    spec = tiny_spec(tiny_model_dir, **{"training.max_steps": 5, "logging.save_steps": 100})
    run_dir = runs.create_run_dir(spec, tmp_path)
    (run_dir / runs.STOP_FILE).write_text("now")
    # A stale STOP file from before the start is cleared; request the stop once training runs instead.
    from app.engine.training import callbacks

    original = callbacks.RunFolderCallback.on_step_begin

    def stop_soon(self, args, state, control, **kw):
        if state.global_step == 1:
            runs.request_stop(self.run_dir, signal_worker=False)
        return original(self, args, state, control, **kw)

    callbacks.RunFolderCallback.on_step_begin = stop_soon
    try:
        result = train(spec, run_dir=run_dir, progress_bar=False, log=lambda m: None)
    finally:
        callbacks.RunFolderCallback.on_step_begin = original
    assert result.state == "stopped"
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped" and status["step"] == 2
    assert runs.latest_checkpoint(run_dir).name == "checkpoint-2"
    assert not (run_dir / "adapter").exists()


def test_failing_user_reward_stops_the_run_naming_it(tiny_model_dir, tmp_path):
    # Passes the dry run (reference answers are integers), fails on the tiny model's random text.
    source = (
        "def strict_int(completions, **kwargs):\n"
        "    return [float(int(c[0]['content'].strip())) for c in completions]\n"
    )
    spec = tiny_spec(tiny_model_dir, **{"training.max_steps": 30})
    spec.rewards = [RewardSpec(name="numeric_answer"), RewardSpec(source=source)]
    spec.logging.eval_at_start = False
    result = train(spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    assert result.state == "failed"
    assert "strict_int" in result.error and "invalid literal" in result.error
    status = runs.read_status(result.run_dir)
    assert status["state"] == "failed" and status["step"] < 30
    records = runs.read_jsonl(result.run_dir / "metrics.jsonl")[0]
    assert any(r.get("reward_errors/strict_int") for r in records)


def test_rewards_of_one_kind_get_their_own_metrics_and_the_dry_run_calls_like_grpo(tiny_model_dir, tmp_path):
    """Two `format_tags` rewards log apart (format_tags, format_tags_2); a user reward that reads the chat form GRPO
    passes (prompts[i][-1]["content"], completions[i][0]["content"]) passes the dry run and scores in training."""
    source = (
        "def asks_a_question(prompts, completions, **kwargs):\n"
        "    return [1.0 if p[-1]['content'].startswith('What') and isinstance(c[0]['content'], str) else 0.0\n"
        "            for p, c in zip(prompts, completions)]\n"
    )
    spec = tiny_spec(tiny_model_dir, **{"logging.eval_at_start": False})
    spec.rewards = [RewardSpec(name="format_tags", params={"tags": ["answer"]}),
                    RewardSpec(name="format_tags", params={"tags": ["reasoning"]}), RewardSpec(source=source)]
    result = train(spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    assert result.state == "finished", runs.read_status(result.run_dir).get("error")
    steps = [r for r in runs.read_jsonl(result.run_dir / "metrics.jsonl")[0] if "loss" in r]
    assert {"rewards/format_tags/mean", "rewards/format_tags_2/mean"} <= steps[0].keys()
    assert all(r["rewards/asks_a_question/mean"] == 1.0 for r in steps)


def test_stop_asked_while_the_worker_starts_is_kept(tiny_model_dir, tmp_path):
    """The app's Stop during a worker's start-up (a queued run, no SIGTERM handler yet) writes only the STOP file;
    the worker keeps it (it is newer than the process) and ends stopped at its first step boundary."""
    spec = tiny_spec(tiny_model_dir, **{"training.max_steps": 50, "logging.eval_at_start": False})
    run_dir = runs.create_run_dir(spec, tmp_path)
    proc = runs.launch_run(run_dir, extra_args=["--no-progress"])
    status = runs.read_status(run_dir)  # the interpreter is still starting: queued, with the launcher's pid
    assert status["state"] == "queued" and status["pid"] == proc.pid
    runs.request_stop(run_dir)  # no signal: it would kill a process that is still importing
    assert proc.wait(timeout=300) == 3, (run_dir / "train.log").read_text()[-2000:]
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped" and status["step"] < 50
