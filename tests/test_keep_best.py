"""training.keep_best: a run that peaks and falls back ends with the adapter of its best evaluation."""
from __future__ import annotations

import itertools

import pytest

from app.engine.core import runs
from app.engine.core.spec import RunSpec, SpecError


def tiny_spec(model_dir, **training) -> RunSpec:
    return RunSpec.from_dict({
        "method": "sft", "model": str(model_dir), "backend": "trl",
        "data": {"source": "builtin:arithmetic", "task_params": {"n": 40}, "eval_size": 4},
        "rewards": [{"name": "numeric_answer"}],
        "training": {"max_steps": 3, "per_device_train_batch_size": 4, **training},
        "generation": {"max_length": 64, "max_completion_length": 4},
        "logging": {"eval_every": 1, "save_steps": 100, "eval_max_new_tokens": 4},
    })


def test_keep_best_keeps_the_checkpoint_with_the_best_evaluation(tiny_model_dir, tmp_path, monkeypatch):
    from app.engine.evaluation import evaluate as evaluate_module
    from app.engine.training.worker import train

    real = evaluate_module.evaluate
    accuracies = itertools.chain([0.0, 0.5, 0.9, 0.2], itertools.repeat(0.2))  # steps 0, 1, 2, 3: peak at step 2

    def scripted(*args, **kwargs):
        result = real(*args, **kwargs)
        result.accuracy = next(accuracies)
        return result

    monkeypatch.setattr(evaluate_module, "evaluate", scripted)
    result = train(tiny_spec(tiny_model_dir, keep_best="eval/accuracy"), runs_dir=tmp_path, progress_bar=False,
                   log=lambda m: None)
    assert result.ok, result.error
    best = runs.read_status(result.run_dir)["best"]
    assert (best["step"], best["value"], best["kept"], best["last_step"], best["last_value"]) == (2, 0.9, True, 3, 0.2)
    assert result.final_metrics["eval/accuracy"] == 0.9 and result.final_metrics["kept_best_step"] == 2
    kept = (result.run_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    assert kept == (result.run_dir / "best-adapter" / "adapter_model.safetensors").read_bytes()
    assert (result.run_dir / "adapter" / "tokenizer_config.json").exists()  # the tokenizer stays beside it


def test_keep_best_needs_a_known_metric_and_periodic_evaluations(tiny_model_dir):
    with pytest.raises(SpecError, match="training.keep_best: unknown metric 'accuracy'"):
        tiny_spec(tiny_model_dir, keep_best="accuracy").validate(check_files=False)
    spec = tiny_spec(tiny_model_dir, keep_best="eval/accuracy").with_overrides(["logging.eval_every=0"])
    with pytest.raises(SpecError, match="set logging.eval_every"):
        spec.validate(check_files=False)


def test_keep_best_on_real_evaluations_records_which_step_it_kept(tiny_model_dir, tmp_path):
    from app.engine.training.worker import train

    result = train(tiny_spec(tiny_model_dir, keep_best="eval/reward", max_steps=2), runs_dir=tmp_path,
                   progress_bar=False, log=lambda m: None)
    assert result.ok, result.error
    best = runs.read_status(result.run_dir)["best"]
    assert best["kept"] is True
    if "last_step" in best:  # step 1 scored higher than step 2: its adapter was put in place
        assert best["step"] == 1 and result.final_metrics["kept_best_step"] == 1
    else:  # the last step is the best: adapter/ is the last step's, as without keep_best
        assert best["step"] == 2 and "kept_best_step" not in result.final_metrics
