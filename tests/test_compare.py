"""Compare view engine: models to pick, side-by-side generation and scoring, preference pairs."""
from __future__ import annotations

import json

import pytest

from app.engine.evaluation import compare as cmp


def test_available_models_lists_base_final_adapter_and_checkpoints(run_with_adapter, tiny_model_dir):
    refs = cmp.available_models(run_with_adapter.parent)
    labels = [r.label for r in refs]
    assert labels[0] == "base · SmolLM2-135M-Instruct"
    assert f"base · {tiny_model_dir}" in labels  # the run's own base model
    assert "tiny · final" in labels and "tiny · checkpoint-2" in labels
    final = next(r for r in refs if r.label == "tiny · final")
    assert final.base == str(tiny_model_dir) and final.adapter == str(run_with_adapter / "adapter")
    assert [r.label for r in cmp.available_models(run_with_adapter.parent, checkpoints=False)][-1] == "tiny · final"
    assert cmp.available_models(None) == [cmp.ModelRef("base · SmolLM2-135M-Instruct", "default")]


def test_model_keys_round_trip(run_with_adapter, tiny_model_dir):
    for ref in cmp.available_models(run_with_adapter.parent):
        back = cmp.parse_model_key(ref.key)
        assert (back.label, back.base, back.adapter) == (ref.label, ref.base, ref.adapter)
    with pytest.raises(cmp.CompareError, match="no longer exists"):
        cmp.parse_model_key("adapter::/no/such/folder")
    with pytest.raises(cmp.CompareError, match="Unknown model"):
        cmp.parse_model_key("something")


def test_prompt_rows_from_text():
    rows = cmp.prompt_rows_from_text("What is 2 + 2? => 4\n\n  Say hi  \nA => B => C")
    assert rows == [{"prompt": "What is 2 + 2?", "answer": "4"}, {"prompt": "Say hi"}, {"prompt": "A => B", "answer": "C"}]


def test_compare_generates_scores_and_summarises(run_with_adapter, tiny_model_dir):
    refs = [cmp.ModelRef("base", str(tiny_model_dir)), cmp.parse_model_key(f"adapter::{run_with_adapter / 'adapter'}")]
    rows = [{"prompt": "What is 1 + 1?", "answer": "2"}, {"prompt": "Say a number.", "answer": "7"}]
    notes = []
    result = cmp.compare_models(refs, rows, [{"name": "numeric_answer"}, {"name": "length", "weight": 0.5}],
                                max_new_tokens=6, progress=lambda f, m: notes.append((f, m)))
    assert result.models == ["base", "tiny · final"]
    assert result.prompts == ["What is 1 + 1?", "Say a number."] and result.references == ["2", "7"]
    assert result.reward_names == ["numeric_answer", "length"] and result.accuracy_reward == "numeric_answer"
    for label in result.models:
        outs = result.outputs[label]
        assert len(outs) == 2 and all(isinstance(o["completion"], str) and o["tokens"] <= 6 for o in outs)
        assert all(set(o["scores"]) == {"numeric_answer", "length"} for o in outs)
    # The perturbed adapter was merged: it does not answer exactly like the base model.
    assert [o["completion"] for o in result.outputs["base"]] != [o["completion"] for o in result.outputs["tiny · final"]]
    s = result.summary[0]
    assert s["model"] == "base" and s["n"] == 2 and 0.0 <= s["accuracy"] <= 1.0 and s["mean_length"] <= 6
    headers, table = result.table()
    assert headers == ["#", "prompt", "reference", "base", "reward A", "tiny · final", "reward B"]
    assert len(table) == 3 and table[-1][1] == "SUMMARY" and "accuracy" in table[-1][3]
    assert len(result.column_widths()) == len(headers)
    s_headers, s_rows = result.summary_table()
    assert s_headers[:3] == ["model", "mean reward", "accuracy"] and len(s_rows) == 2
    assert notes[-1] == (1.0, "Done") and all(0.0 <= f <= 1.0 for f, _ in notes)
    again = cmp.CompareResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.table() == result.table()


def test_compare_caches_models_and_rejects_bad_input(tiny_model_dir):
    ref = cmp.ModelRef("base", str(tiny_model_dir))
    first = cmp.load_model(ref)
    assert cmp.load_model(ref)[0] is first[0]
    cmp.clear_cache()
    assert cmp.load_model(ref)[0] is not first[0]
    with pytest.raises(cmp.CompareError, match="at least one model"):
        cmp.compare_models([], [{"prompt": "x"}])
    with pytest.raises(cmp.CompareError, match="at least one prompt"):
        cmp.compare_models([ref], [])
    with pytest.raises(cmp.CompareError, match="twice"):
        cmp.compare_models([ref, ref], [{"prompt": "x"}])
    with pytest.raises(cmp.CompareError, match="rewards"):
        cmp.compare_models([ref], [{"prompt": "x"}], [{"name": "no_such_reward"}])
    with pytest.raises(cmp.CompareError, match="Could not load"):
        cmp.load_model(cmp.ModelRef("broken", "/definitely/not/a/model"))


def test_compare_without_rewards_still_shows_outputs(tiny_model_dir):
    result = cmp.compare_models([cmp.ModelRef("base", str(tiny_model_dir))], [{"prompt": "hi"}], max_new_tokens=3)
    assert result.summary[0]["mean_reward"] is None and result.summary[0]["accuracy"] is None
    assert result.table()[0] == ["#", "prompt", "base", "reward A"]


def test_save_preference_appends_trl_conversational_pairs(tmp_path):
    path = tmp_path / "prefs" / "pairs.jsonl"
    assert cmp.count_preferences(path) == 0
    assert cmp.save_preference(path, "What is 2 + 2?", "4", "5") == 1
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert cmp.save_preference(path, prompt, "Hello!", "Go away.", meta={"chosen_model": "a"}) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
                        "chosen": [{"role": "assistant", "content": "4"}],
                        "rejected": [{"role": "assistant", "content": "5"}]}
    assert lines[1]["prompt"] == prompt and lines[1]["meta"] == {"chosen_model": "a"}
    from app.engine.data.profile import profile_dataset

    assert profile_dataset(str(path)).format == "preference"  # the decision tree sees a DPO dataset
    with pytest.raises(cmp.CompareError, match="identical"):
        cmp.save_preference(path, "p", "same", "same")
    with pytest.raises(cmp.CompareError, match="empty"):
        cmp.save_preference(path, "  ", "a", "b")
    assert cmp.count_preferences(path) == 2


