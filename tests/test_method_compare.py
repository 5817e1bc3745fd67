"""Method comparison (app/engine/method_compare.py) on the tiny random Llama: the specs of each method, the SFT→GRPO
adapter hand-off (RunSpec.init_adapter), the table and charts from run folders, a failed method recorded while the
others go on, and a cancel request. Training runs in-process through a test launcher (fast, no subprocess)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.engine.core import runs
from app.engine.core.spec import RunSpec
from app.engine.evaluation import method_compare as mc

TINY = [
    "data.task_params={n: 40}",
    "training.per_device_train_batch_size=4",
    "generation.num_generations=4",
    "generation.max_completion_length=4",
    "generation.max_length=64",
    "logging.eval_max_new_tokens=4",
    "logging.save_steps=100",
]


def tiny_config(model_dir: Path, **changes) -> mc.CompareConfig:
    settings = dict(model=str(model_dir), steps=2, eval_every=1, eval_size=4, backend="trl", overrides=list(TINY))
    settings.update(changes)
    return mc.CompareConfig(**settings)


class _Exited:
    """What a finished worker subprocess looks like to the orchestrator."""

    def poll(self) -> int:
        return 0

    def wait(self) -> int:
        return 0


def in_process(outcomes: dict[str, str] | None = None, on_start=None):
    """A launcher that trains in this process; runs of a method in `outcomes` end in that state without training
    (as a crashed worker, or one that honoured a stop request, leaves its folder)."""
    from app.engine.training.worker import train

    def launch(run_dir: Path) -> _Exited:
        spec = RunSpec.load(run_dir / "spec.yaml")
        if on_start:
            on_start(run_dir, spec)
        if spec.method in (outcomes or {}):
            state = outcomes[spec.method]
            runs.update_status(run_dir, state=state, step=1, started_at=time.time(), ended_at=time.time(),
                               error="simulated crash" if state == "failed" else None)
        else:
            train(spec, run_dir=run_dir, progress_bar=False, log=lambda m: None)
        return _Exited()

    return launch


# -- specs ----------------------------------------------------------------------------------------------------------
def test_each_method_gets_the_same_task_model_seed_and_held_out_rows(tiny_model_dir):
    config = tiny_config(tiny_model_dir, steps=8, eval_every=2, seed=7)
    plan = mc.build_plan(config)
    assert list(plan) == list(mc.METHOD_KEYS)
    assert {k: [s.spec.method for s in v] for k, v in plan.items()} == {
        "sft": ["sft"], "dft": ["dft"], "grpo": ["grpo"], "sft_grpo": ["sft", "grpo"], "prefix_rft": ["prefix_rft"]}
    specs = [s.spec for stages in plan.values() for s in stages]
    for spec in specs:
        assert spec.model == str(tiny_model_dir) and spec.seed == 7 and spec.backend == "trl"
        assert spec.data.source == "builtin:arithmetic" and spec.data.eval_size == 4 and spec.data.seed == 0
        assert spec.logging.eval_every == 2
        assert spec.rewards[0].name == "numeric_answer"  # the one accuracy (GRPO's recipe adds a length bonus)
        assert spec.logging.eval_max_new_tokens == 4  # the same evaluation for every method
    assert [s.spec.training.max_steps for s in plan["grpo"]] == [8]
    sft, grpo = plan["sft_grpo"]
    assert (sft.spec.training.max_steps, grpo.spec.training.max_steps) == (2, 6)  # same budget in total
    assert grpo.step_offset == 2 and grpo.init_from_previous and not grpo.spec.logging.eval_at_start
    assert plan["prefix_rft"][0].spec.grpo.scale_rewards == "none"  # from the recipe, not overwritten


@pytest.mark.parametrize("changes, message", [
    (dict(methods=["sft", "ppo"]), "unknown method 'ppo'"),
    (dict(methods=[]), "at least one method"),
    (dict(steps=4, sft_steps=4), "1 ≤ sft_steps < steps"),
    (dict(task="mmlu"), "unknown task"),
    (dict(overrides=["training.learning_rate=-1"]), "training.learning_rate"),
])
def test_bad_settings_are_named_before_anything_runs(tiny_model_dir, changes, message):
    with pytest.raises((mc.CompareConfigError, ValueError), match=message):
        mc.build_plan(tiny_config(tiny_model_dir, **changes))


def test_gsm8k_rows_keep_the_worked_answer_as_target_and_demonstration(tmp_path):
    source = tmp_path / "gsm8k.jsonl"
    source.write_text(json.dumps({"question": "2 + 3?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"}) + "\n")
    (row,) = mc.gsm8k_rows(source)
    assert row["prompt"].startswith("2 + 3?\n") and "####" in row["prompt"]
    assert row["answer"] == row["completion"] == row["solution"] == "2 + 3 = <<2+3=5>>5\n#### 5"
    overrides = mc.prepare_task_data(mc.CompareConfig(task="gsm8k", data_source=str(source)), tmp_path / "cmp")
    assert "rewards=[{name: gsm8k_answer}]" in overrides and (tmp_path / "cmp" / "data" / "gsm8k.jsonl").exists()


# -- init_adapter ---------------------------------------------------------------------------------------------------
def test_init_adapter_validation(tmp_path, tiny_model_dir):
    spec = RunSpec(init_adapter=str(tmp_path / "missing"))
    assert [p.field for p in spec.problems(check_files=True) if p.field == "init_adapter"]
    assert not [p for p in spec.problems(check_files=False) if p.field == "init_adapter"]
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 32, "target_modules": ["q_proj"]}))
    # 'all-linear' (the default) is expanded for the model's architecture, here the tiny Llama's seven projections.
    on_tiny = RunSpec(model=str(tiny_model_dir), init_adapter=str(adapter))
    fields = {p.field for p in on_tiny.problems(check_files=False) + on_tiny.problems(check_files=True)}
    assert {"lora.r", "lora.target_modules"} <= fields and "lora.alpha" not in fields
    off = RunSpec(init_adapter=str(adapter)).with_overrides(["lora.enabled=false"])
    assert any(p.field == "init_adapter" and "lora.enabled" in p.problem for p in off.problems(check_files=False))


def test_sft_adapter_initialises_the_grpo_model(tiny_model_dir, tmp_path):
    """The hand-off itself: the GRPO stage's model starts with exactly the SFT run's trained LoRA weights."""
    import torch
    from peft.utils import load_peft_weights

    from app.engine.training.backend import choose_backend, load_model
    from app.engine.training.worker import train

    # Two SFT steps: the SFT recipe warms its learning rate up from 0 over its first step.
    config = tiny_config(tiny_model_dir, steps=3, sft_steps=2)
    sft_spec, grpo_spec = [s.spec for s in mc.build_stages(config, "sft_grpo")]
    result = train(sft_spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    assert result.ok, runs.read_status(result.run_dir).get("traceback")
    saved = load_peft_weights(str(result.run_dir / "adapter"), device="cpu")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in saved.items())  # SFT moved lora_B

    grpo_spec = grpo_spec.replace(init_adapter=str(result.run_dir / "adapter"))
    assert grpo_spec.problems(check_files=True) == []
    model, _tok, peft_cfg = load_model(grpo_spec, choose_backend("trl"), str(tiny_model_dir))
    assert peft_cfg is None  # already wrapped: the trainer must not add a fresh adapter on top
    state = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    assert set(saved) <= set(state)
    for key, tensor in saved.items():
        assert torch.equal(state[key].float(), tensor.float()), key
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)  # trainable, not frozen


def test_init_adapter_of_other_lora_targets_is_refused_by_validation(tiny_model_dir, tmp_path):
    from app.engine.training.worker import train

    sft_spec, grpo_spec = [s.spec for s in mc.build_stages(tiny_config(tiny_model_dir, steps=2), "sft_grpo")]
    sft_spec = sft_spec.with_overrides(["lora.target_modules=[q_proj, v_proj]"])
    done = train(sft_spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    spec = grpo_spec.replace(init_adapter=str(done.run_dir / "adapter"))
    problems = spec.problems(check_files=True)
    assert [p.field for p in problems] == ["lora.target_modules"]


# -- a whole comparison ---------------------------------------------------------------------------------------------
def test_comparison_records_a_failed_method_and_goes_on(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, methods=["sft", "dft", "sft_grpo", "prefix_rft"], steps=2, avg_k=2)
    lines: list[str] = []
    folder = mc.run_comparison(config, tmp_path / "cmp", tmp_path / "runs", progress=lines.append,
                               launcher=in_process({"dft": "failed"}), poll_seconds=0.01)
    result = mc.read_comparison(folder)
    assert result.state == "finished"
    by_key = {m.key: m for m in result.methods}
    assert [m.state for m in result.methods] == ["finished", "failed", "finished", "finished"]
    assert "simulated crash" in by_key["dft"].error
    assert by_key["dft"].final_accuracy is None and by_key["dft"].curve == []
    for key in ("sft", "sft_grpo", "prefix_rft"):
        m = by_key[key]
        assert [p[0] for p in m.curve] == [0, 1, 2] and m.steps == 2 and m.max_steps == 2
        assert m.final_accuracy is not None and m.wall_seconds is not None
        assert m.sampled and m.sampled["k"] == 2 and 0.0 <= m.sampled["avg_at_k"] <= m.sampled["pass_at_k"] <= 1.0
    assert len(by_key["sft_grpo"].run_dirs) == 2
    grpo_stage = RunSpec.load(Path(by_key["sft_grpo"].run_dirs[1]) / "spec.yaml")
    assert grpo_stage.method == "grpo" and grpo_stage.init_adapter == str(Path(by_key["sft_grpo"].run_dirs[0]) / "adapter")

    headers, rows = mc.results_table(result)
    assert headers[:2] == ["method", "state"] and "avg@2" in headers and "pass@2" in headers
    assert [r[0] for r in rows] == ["SFT", "DFT", "SFT→GRPO", "Prefix-RFT"]
    assert rows[1][-1] == by_key["dft"].error
    table = (folder / "table.md").read_text()
    assert "| SFT→GRPO | finished | 2/2 |" in table and "simulated crash" in table
    curves = mc.curves_figure(result)
    assert {t.name for t in curves.data} == {"SFT", "SFT→GRPO", "Prefix-RFT"}  # the failed one has no points
    assert len(mc.summary_figure(result).data) == 2  # greedy + avg@k bars
    assert any("Prefix-RFT" in line for line in lines)


def test_cancel_stops_the_current_method_and_skips_the_rest(tiny_model_dir, tmp_path):
    folder = tmp_path / "cmp"
    config = tiny_config(tiny_model_dir, methods=["sft", "grpo", "dft"], steps=3)
    cancel_during_grpo = lambda run_dir, spec: mc.request_cancel(folder) if spec.method == "grpo" else None  # noqa
    mc.run_comparison(config, folder, tmp_path / "runs", poll_seconds=0.01,
                      launcher=in_process({"grpo": "stopped"}, on_start=cancel_during_grpo))
    result = mc.read_comparison(folder)
    assert result.state == "stopped"
    assert [m.state for m in result.methods] == ["finished", "stopped", "cancelled"]
    grpo_run = Path(result.methods[1].run_dirs[0])
    assert (grpo_run / runs.STOP_FILE).exists()  # the stop request was passed on to the running worker
    assert result.methods[2].run_dirs == []
    assert "| DFT | cancelled |" in (folder / "table.md").read_text()


def test_read_comparison_joins_stage_curves_from_run_folders(tmp_path):
    """Table and charts from plain run folders (no training): SFT→GRPO's second stage is shifted by the first."""
    def fake_run(name: str, evals: list[tuple[int, float]], steps: int) -> Path:
        run_dir = tmp_path / name
        run_dir.mkdir()
        runs.update_status(run_dir, state="finished", step=steps, started_at=100.0, ended_at=160.0)
        for step, acc in evals:
            runs.append_jsonl(run_dir / "metrics.jsonl", {"step": step, "eval/accuracy": acc, "eval/reward": acc})
        runs.append_jsonl(run_dir / "metrics.jsonl", {"step": 1, "loss": 1.0, "step_time": 2.5})
        return run_dir

    sft = fake_run("sft", [(0, 0.3), (10, 0.6)], 10)
    grpo = fake_run("grpo", [(10, 0.7), (30, 0.8)], 30)
    state = {"config": mc.CompareConfig(steps=40, methods=["sft_grpo"]).to_dict(), "state": "finished",
             "methods": [{"key": "sft_grpo", "label": "SFT→GRPO", "state": "finished", "runs": [
                 {"run_dir": str(sft), "step_offset": 0, "max_steps": 10},
                 {"run_dir": str(grpo), "step_offset": 10, "max_steps": 30}]}]}
    folder = tmp_path / "cmp"
    folder.mkdir()
    (folder / mc.COMPARISON_FILE).write_text(json.dumps(state))
    (m,) = mc.read_comparison(folder).methods
    assert [(s, a) for s, a, _ in m.curve] == [(0, 0.3), (10, 0.6), (20, 0.7), (40, 0.8)]
    assert (m.steps, m.max_steps, m.final_accuracy, m.base_accuracy, m.best_accuracy) == (40, 40, 0.8, 0.3, 0.8)
    assert m.wall_seconds == 60.0 and m.train_seconds == 5.0
    text = mc.write_table(folder)
    assert "| SFT→GRPO | finished | 40/40 | 1:00 | 0:05 | 80.0% | 0.800 | 80.0% (40) | 30.0% |" in text


def test_command_status_and_version_for_the_app(tmp_path):
    config = mc.CompareConfig(steps=30, methods=["grpo", "prefix_rft"], avg_k=4, overrides=["training.learning_rate=1e-4"])
    command = mc.cli_command(config, tmp_path / "cmp")
    assert command.startswith("python -m app.compare_methods --methods grpo,prefix_rft --steps 30 --avg-k 4")
    assert "--set training.learning_rate=1e-4" in command and command.endswith(f"--out {tmp_path / 'cmp'}")
    from app.compare_methods import config_from_args, parse_args

    assert config_from_args(parse_args(command.split()[3:])) == config  # the shown command reproduces the config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runs.update_status(run_dir, state="running", step=3)
    state = {"config": config.to_dict(), "state": "running", "current": "grpo", "methods": [
        {"key": "grpo", "label": "GRPO", "state": "running", "runs": [{"run_dir": str(run_dir), "max_steps": 30}]},
        {"key": "prefix_rft", "label": "Prefix-RFT", "state": "queued", "runs": []}]}
    folder = tmp_path / "cmp"
    folder.mkdir()
    (folder / mc.COMPARISON_FILE).write_text(json.dumps(state))
    assert mc.status_line(mc.read_comparison(folder)) == "Running: 0 of 2 methods done; GRPO at step 3/30."
    before = mc.comparison_version(folder)
    runs.append_jsonl(run_dir / "metrics.jsonl", {"step": 4, "loss": 0.1})
    assert mc.comparison_version(folder) != before  # the app re-renders when a run writes
    assert mc.list_comparisons(tmp_path) == [] and mc.list_comparisons(tmp_path.parent) == []


def test_app_inputs_become_a_config():
    from app.ui.methods import config_from_inputs

    config = config_from_inputs(["sft", "grpo"], "arithmetic", " default ", 12.0, 32, 4, 7, 0)
    assert (config.methods, config.model, config.steps, config.eval_size, config.eval_every, config.seed) == (
        ["sft", "grpo"], "default", 12, 32, 4, 7)
    with pytest.raises(mc.CompareConfigError, match="steps"):
        config_from_inputs(["sft"], "arithmetic", "default", None, 32, 4, 7, 0)


def test_app_started_comparison_is_listed_at_once_and_a_refused_one_says_why(tmp_path):
    folder = tmp_path / "comparisons" / "x"
    config = mc.CompareConfig(methods=["sft"], model=str(tmp_path / "no-such-model"), steps=2)
    proc = mc.start_comparison_process(config, folder, tmp_path / "runs")
    assert mc.list_comparisons(tmp_path) == [folder]  # before the child process has even imported anything
    assert mc.read_state(folder)["state"] in ("queued", "failed")
    assert proc.wait(timeout=120) == 2  # the bad model is refused before anything trains
    assert "model" in (folder / "compare.log").read_text()
    state = mc.read_state(folder)
    assert state["state"] == "failed" and "no-such-model" in state["error"]  # the reason, shown by the app
    assert mc.status_line(mc.read_comparison(folder)).startswith("The comparison process failed (")
