"""RunSpec: YAML round-trip, overrides, and validation messages that name the field."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.core.spec import RewardSpec, RunSpec, SpecError, field_help

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def grpo_spec(**changes) -> RunSpec:
    spec = RunSpec(method="grpo", rewards=[RewardSpec(name="numeric_answer")])
    return spec.with_overrides([f"{k}={v}" for k, v in changes.items()]) if changes else spec


def test_yaml_round_trip_keeps_every_field():
    spec = grpo_spec(**{"training.learning_rate": 1e-4, "generation.num_generations": 4, "data.task_params": "{n: 300}"})
    again = RunSpec.from_yaml(spec.to_yaml())
    assert again == spec
    assert again.data.task_params == {"n": 300}
    assert again.rewards[0].name == "numeric_answer"


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_load_and_validate(recipe):
    spec = RunSpec.load(recipe)
    spec.validate()
    assert RunSpec.from_yaml(spec.to_yaml()) == spec


def test_required_recipes_exist():
    for name in ("arithmetic-grpo", "arithmetic-sft", "arithmetic-dft"):
        assert (RECIPES / f"{name}.yaml").exists()


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"method": "ppo"}, "method", "unknown method"),
        ({"training.per_device_train_batch_size": 6}, "training.per_device_train_batch_size", "divisible"),
        ({"generation.num_generations": 1}, "generation.num_generations", "at least 2"),
        ({"grpo.loss_type": "foo"}, "grpo.loss_type", "unknown loss"),
        ({"training.learning_rate": -1}, "training.learning_rate", "positive"),
        ({"model": "/no/such/folder"}, "model", "does not exist"),
        ({"data.source": "/no/such/file.jsonl"}, "data.source", "does not exist"),
        ({"backend": "jax"}, "backend", "unknown backend"),
        ({"generation.top_k": -1}, "generation.top_k", "0 (off)"),
        ({"generation.min_p": 1.5}, "generation.min_p", "[0, 1)"),
    ],
)
def test_validation_names_field_and_problem(changes, field, words):
    spec = grpo_spec(**changes)
    with pytest.raises(SpecError) as info:
        spec.validate()
    assert info.value.field == field
    assert words in str(info.value)


def test_unknown_reward_is_reported_before_loading():
    spec = RunSpec(method="grpo", rewards=[RewardSpec(name="numeric_answr")])
    with pytest.raises(SpecError) as info:
        spec.validate()
    assert info.value.field == "rewards[0].name"
    assert "numeric_answer" in str(info.value)  # suggests the close name


def test_grpo_without_rewards_is_refused():
    with pytest.raises(SpecError, match="at least one reward"):
        RunSpec(method="grpo").validate()


def test_unknown_field_suggests_close_name():
    with pytest.raises(SpecError) as info:
        RunSpec.from_yaml("method: sft\ntraining:\n  learning_rat: 0.1\n")
    assert info.value.field == "training.learning_rat"
    assert "learning_rate" in str(info.value)


def test_wrong_type_names_field():
    with pytest.raises(SpecError) as info:
        RunSpec.from_yaml("training:\n  max_steps: many\n")
    assert info.value.field == "training.max_steps"


def test_missing_columns_for_method(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "hi", "answer": "1"}\n' * 10)
    spec = RunSpec(method="sft", data=RunSpec().data.__class__(source=str(data), eval_size=2))
    with pytest.raises(SpecError) as info:
        spec.validate()
    assert info.value.field == "data.source" and "prompt" in str(info.value)


def test_bad_data_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    for path in (empty, latin):
        spec = grpo_spec(**{"data.source": str(path)})
        with pytest.raises(SpecError) as info:
            spec.validate()
        assert info.value.field == "data.source"


def test_field_help_covers_nested_fields():
    helps = field_help()
    assert "generation.num_generations" in helps and helps["generation.num_generations"]
    assert "grpo.loss_type" in helps
