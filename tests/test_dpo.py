"""DPO (preference tuning): pairs files, validation messages, the worker on the tiny model, and a 2-step CLI run on
the default model (Unsloth or TRL, whichever `backend: auto` picks here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine.advice.decision import Answers, recommend
from app.engine.core import runs
from app.engine.core.spec import RunSpec, SpecError
from app.engine.data.preferences import (
    SHIPPED_PAIRS,
    SHIPPED_PAIRS_N,
    PairError,
    PairSample,
    append_pair,
    count_pairs,
    judged_prompts,
    normalize_pair,
    read_pairs,
    record_choice,
    skipped_path,
    to_trl_pairs,
    validate_pairs,
)
from app.engine.data.sources import column_problem, load_data, to_trl_dataset
from app.engine.data.tasks import arithmetic_pair_rows

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "preference-dpo.yaml"
PAIR_KEYS = {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"}
PREF_EVAL_KEYS = {"eval/preference_accuracy", "eval/preference_margin", "eval/logps/chosen", "eval/logps/rejected"}


def dpo_spec(source: str, **changes) -> RunSpec:
    spec = RunSpec.from_dict({"method": "dpo", "data": {"source": source, "eval_size": 2}})
    return spec.with_overrides([f"{k}={v}" for k, v in changes.items()]) if changes else spec


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- the pairs file ---------------------------------------------------------------------------------------------------
def test_append_pair_writes_trl_conversational_pairs_and_counts(tmp_path):
    path = tmp_path / "prefs" / "pairs.jsonl"
    assert count_pairs(path) == 0 and read_pairs(path) == []
    assert append_pair(path, "What is 2 + 3?", "5", "2 + 3 = 6", meta={"run": "r1"}) == 1
    chat_prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    assert append_pair(path, chat_prompt, [{"role": "assistant", "content": "Paris"}], "Lyon") == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # one flushed line per pair
    first = json.loads(lines[0])
    assert first == {
        "prompt": [{"role": "user", "content": "What is 2 + 3?"}],
        "chosen": [{"role": "assistant", "content": "5"}],
        "rejected": [{"role": "assistant", "content": "2 + 3 = 6"}],
        "meta": {"run": "r1"},
    }
    assert json.loads(lines[1])["prompt"] == chat_prompt
    assert validate_pairs(read_pairs(path)) == []


@pytest.mark.parametrize(
    "prompt, chosen, rejected, words",
    [
        ("Q?", "same", "same", "identical"),
        ("Q?", " same\n", "same", "identical"),
        ("Q?", "", "no", "empty 'chosen'"),
        ("Q?", "yes", "   ", "empty 'rejected'"),
        ("  ", "yes", "no", "empty 'prompt'"),
    ],
)
def test_append_pair_refuses_unusable_pairs(tmp_path, prompt, chosen, rejected, words):
    path = tmp_path / "pairs.jsonl"
    with pytest.raises(PairError, match=words):
        append_pair(path, prompt, chosen, rejected)
    assert count_pairs(path) == 0


def test_torn_last_line_is_tolerated_and_repaired(tmp_path):
    path = tmp_path / "pairs.jsonl"
    append_pair(path, "Q1", "a", "b")
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"prompt": "Q2", "chosen": "a", "rej')  # a write cut short by a crash
    assert count_pairs(path) == 1 and [r["prompt"][0]["content"] for r in read_pairs(path)] == ["Q1"]
    assert append_pair(path, "Q3", "a", "b") == 2  # the torn tail is dropped, the new pair starts on its own line
    assert [r["prompt"][0]["content"] for r in read_pairs(path)] == ["Q1", "Q3"]
    assert all(json.loads(line) for line in path.read_text().splitlines())
    # a complete last line without its newline (a hand-edited file) is kept
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"prompt": "Q4", "chosen": "x", "rejected": "y"}))
    assert count_pairs(path) == 3
    assert append_pair(path, "Q5", "a", "b") == 4


def test_record_choice_appends_pairs_and_keeps_ties_apart(tmp_path):
    path = tmp_path / "pairs.jsonl"
    sample = PairSample(prompt=[{"role": "user", "content": "Q"}], a="A reply", b="B reply", sources=("base", "run"))
    assert record_choice(path, sample, "b") == 1
    row = read_pairs(path)[0]
    assert row["chosen"][0]["content"] == "B reply" and row["rejected"][0]["content"] == "A reply"
    assert row["meta"]["chosen_source"] == "run"
    assert record_choice(path, sample, "tie") == 1 and record_choice(path, sample, "skip") == 1
    assert [r["choice"] for r in read_pairs(skipped_path(path))] == ["tie", "skip"]
    assert judged_prompts(path) == {"Q"}
    with pytest.raises(PairError):
        record_choice(path, sample, "both")
    from app.engine.data.preferences import next_unjudged

    prompts = [[{"role": "user", "content": q}] for q in ("Q", "R", "Q", "S")]
    assert [next_unjudged(prompts, i, path) for i in range(4)] == [1, 1, 3, 3]
    assert next_unjudged(prompts[:1], 0, path) == 1  # all judged: past the end


# -- formats and validation -------------------------------------------------------------------------------------------
def test_plain_chat_and_implicit_pairs_become_trl_conversational_rows():
    plain = {"prompt": "Q", "chosen": "good", "rejected": "bad", "answer": "1"}
    chat = {
        "prompt": [{"role": "user", "content": "Q"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }
    implicit = {
        "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}],
    }
    rows = to_trl_pairs([plain, chat, implicit], system_prompt="S")
    expected = {
        "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }
    assert rows == [expected] * 3  # extra columns (answer, meta) never reach TRL
    assert normalize_pair(plain)["answer"] == "1"  # …but stay for evaluation rewards
    assert validate_pairs([plain, chat, implicit]) == []


@pytest.mark.parametrize(
    "rows, words",
    [
        ([{"prompt": "Q", "completion": "A"}], ["no 'chosen' and 'rejected' columns", "'prompt', 'chosen' and 'rejected'"]),
        ([{"prompt": "Q", "chosen": "A"}], ["no 'rejected' column"]),
        ([{"prompt": "Q", "chosen": "A", "rejected": "B"}, {"prompt": "Q2", "chosen": "7", "rejected": "7"}],
         ["Row 2 has identical 'chosen' and 'rejected' ('7')"]),
        ([{"prompt": "Q", "chosen": "A", "rejected": "B"}, {}], ["Row 2 is empty"]),
        ([{"prompt": "", "chosen": "A", "rejected": "B"}], ["Row 1 has an empty 'prompt'"]),
        ([{"prompt": "Q", "chosen": "A", "rejected": None}], ["Row 1 has no 'rejected'"]),
        ([{"chosen": "A", "rejected": "B"}], ["Row 1 has no 'prompt'"]),
    ],
)
def test_bad_preference_files_are_rejected_by_validate(tmp_path, rows, words):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    spec = dpo_spec(str(path))
    with pytest.raises(SpecError) as info:
        spec.validate()
    assert info.value.field == "data.source"
    for w in words:
        assert w in str(info.value), str(info.value)


def test_many_problems_are_summarised_with_a_count():
    rows = [{"prompt": f"Q{i}", "chosen": "x", "rejected": "x"} for i in range(6)]
    message = column_problem("dpo", rows)
    assert message.startswith("6 of 6 preference rows cannot be used: Row 1 has identical")
    assert "(and 3 more)" in message


def test_dpo_spec_fields_are_validated():
    spec = RunSpec.from_dict({"method": "dpo", "dpo": {"beta": 0, "loss_type": "kto", "label_smoothing": 0.6}})
    fields = {p.field: str(p) for p in spec.problems(check_files=False)}
    assert "positive" in fields["dpo.beta"]
    assert "unknown loss 'kto'" in fields["dpo.loss_type"] and "sigmoid" in fields["dpo.loss_type"]
    assert "[0, 0.5)" in fields["dpo.label_smoothing"]
    exo = RunSpec.from_dict({"method": "dpo", "dpo": {"loss_type": "exo_pair"}})
    assert [p.field for p in exo.problems(check_files=False)] == ["dpo.label_smoothing"]
    assert RunSpec.from_dict({"method": "dpo", "dpo": {"sft_weight": -1}}).problems(check_files=False)[0].field == "dpo.sft_weight"


def test_arithmetic_prompts_are_not_pairs():
    with pytest.raises(SpecError, match="no 'chosen' and 'rejected' columns"):
        RunSpec.from_dict({"method": "dpo"}).validate()  # default data: builtin:arithmetic (prompt / answer)


# -- shipped data, recipe, decision tree ------------------------------------------------------------------------------
def test_shipped_pairs_file_matches_its_generator_and_is_valid():
    rows = [json.loads(line) for line in SHIPPED_PAIRS.read_text(encoding="utf-8").splitlines()]
    assert rows == arithmetic_pair_rows(n=SHIPPED_PAIRS_N, seed=0)
    assert validate_pairs(rows) == []
    assert all(r["chosen"] == r["answer"] != r["rejected"].split(" = ")[-1] for r in rows)
    assert sum(" = " in r["rejected"] for r in rows) == len(rows) // 2  # half "a + b = wrong", half a wrong number


def test_recipe_validates_from_any_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the shipped file is named relative to the project root
    spec = RunSpec.load(RECIPE)
    spec.validate()
    assert spec.method == "dpo" and spec.dpo.beta == 0.1 and spec.dpo.loss_type == "sigmoid"
    data = load_data(spec.data)
    assert len(data.eval) == 64 and len(data.train) == SHIPPED_PAIRS_N - 64
    ds = to_trl_dataset(data.train, "dpo")
    assert ds.column_names == ["prompt", "chosen", "rejected"]


@pytest.mark.parametrize("answers", [
    Answers(has_preferences=True),
    Answers(has_preferences=False, has_labels=False, verifiable=False),
], ids=["dpo_pairs", "dpo_collect"])
def test_decision_tree_dpo_leaves_carry_a_valid_dpo_spec(answers):
    rec = recommend(answers)
    assert rec.method == "dpo"
    spec = RunSpec.from_dict(rec.spec_overrides)
    assert spec.method == "dpo"
    spec.validate(check_files=False)
    spec.data.source = str(SHIPPED_PAIRS)  # once the user's pairs are there, the carried settings train
    spec.validate()


# -- training ---------------------------------------------------------------------------------------------------------
def tiny_dpo_spec(model_dir, source: str, **overrides) -> RunSpec:
    settings = {
        "method": "dpo",
        "model": str(model_dir),
        "backend": "trl",  # keeps Unsloth's import-time patching out of the test process
        "data.source": source,
        "data.eval_size": 2,
        "training.max_steps": 2,
        "training.per_device_train_batch_size": 2,
        "generation.max_length": 128,  # the byte-level tiny tokenizer spends ~60 tokens on the templated prompt
        "generation.max_completion_length": 4,
        "logging.save_steps": 1,
        **overrides,
    }
    return RunSpec().with_overrides([f"{k}={v}" for k, v in settings.items()])


def test_tiny_dpo_run_writes_metrics_and_evaluations(tiny_model_dir, tmp_path):
    from app.engine.training.worker import train

    spec = tiny_dpo_spec(tiny_model_dir, "builtin:arithmetic_pairs", **{"data.task_params": "{n: 24}"})
    spec = spec.with_overrides(["rewards=[{name: numeric_answer}]"])
    result = train(spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    assert result.state == "finished", runs.read_status(result.run_dir).get("traceback")
    status = runs.read_status(result.run_dir)
    assert status["backend"] == "trl" and status["step"] == 2
    records = runs.read_jsonl(result.run_dir / "metrics.jsonl")[0]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert PAIR_KEYS <= r.keys() and 0.0 <= r["rewards/accuracies"] <= 1.0
    evals = [r for r in records if "eval/preference_accuracy" in r]
    assert [r["step"] for r in evals] == [0, 2]
    for r in evals:
        assert PREF_EVAL_KEYS <= r.keys() and r["eval/preference_n"] == 2
        assert "eval/accuracy" in r  # the spec's rewards score greedy replies too
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert [c.name for c in runs.checkpoints(result.run_dir)] == ["checkpoint-1", "checkpoint-2"]


def test_pairs_from_append_pair_train_without_rewards(tiny_model_dir, tmp_path):
    from app.engine.training.worker import train

    path = tmp_path / "pairs.jsonl"
    for row in arithmetic_pair_rows(n=8):
        append_pair(path, row["prompt"], row["chosen"], row["rejected"], meta={"source": "test"})
    spec = tiny_dpo_spec(tiny_model_dir, str(path), **{"training.max_steps": 1})
    spec.validate()
    result = train(spec, runs_dir=tmp_path / "runs", progress_bar=False, log=lambda m: None)
    assert result.state == "finished", runs.read_status(result.run_dir).get("traceback")
    records = runs.read_jsonl(result.run_dir / "metrics.jsonl")[0]
    assert [r["step"] for r in records if "rewards/accuracies" in r] == [1]
    evals = [r for r in records if "eval/preference_accuracy" in r]
    assert [r["step"] for r in evals] == [0, 1]
    assert not any("eval/accuracy" in r for r in records)  # no rewards: the generation evaluation is skipped


def test_sample_pair_gives_two_replies(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from app.engine.evaluation.compare import sample_pair

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    sample = sample_pair(model, tok, "What is 2 + 3?", max_new_tokens=8, seed=0, system_prompt="Be brief.")
    assert sample.prompt[0] == {"role": "system", "content": "Be brief."}
    assert isinstance(sample.a, str) and isinstance(sample.b, str) and not sample.identical
    assert sample.a.strip() != sample.b.strip()
    two = sample_pair(model, tok, "Q", other_model=model, sources=("base", "run"), max_new_tokens=4, seed=1)
    assert sorted(two.sources) == ["base", "run"]


@pytest.mark.e2e
def test_two_step_dpo_through_the_cli_on_the_default_model(tmp_path):
    run_dir = tmp_path / "run"
    sets = [
        "data.eval_size=2", "training.per_device_train_batch_size=2", "generation.max_length=64", "rewards=[]",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "app.train", str(RECIPE), "--run-dir", str(run_dir), "--max-steps", "2",
         "--no-progress", *[a for s in sets for a in ("--set", s)]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["step"] == 2 and status["backend"] in ("unsloth", "trl")
    assert RunSpec.load(run_dir / "spec.yaml").method == "dpo"
    records = runs.read_jsonl(run_dir / "metrics.jsonl")[0]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert {"rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen"} <= r.keys()
        assert {"learning_rate", "step_time", "peak_memory_mb"} <= r.keys()
    evals = [r for r in records if "eval/preference_accuracy" in r]
    assert [r["step"] for r in evals] == [0, 2]
    assert not any("eval/accuracy" in r for r in records)
    assert (run_dir / "adapter" / "adapter_config.json").exists()
