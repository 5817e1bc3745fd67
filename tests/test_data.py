"""Data: the built-in task, held-out splits, TRL dataset forms and column checks."""
from __future__ import annotations

import json

import pytest

from app.engine.core.spec import DataSpec
from app.engine.data.sources import (
    DataError,
    column_problem,
    load_data,
    load_source_rows,
    split_rows,
    to_trl_rows,
)
from app.engine.data.tasks import arithmetic_rows


def test_arithmetic_is_seeded_distinct_and_correct():
    rows = arithmetic_rows(n=200, seed=3)
    assert rows == arithmetic_rows(n=200, seed=3)
    assert rows != arithmetic_rows(n=200, seed=4)
    assert len({r["prompt"] for r in rows}) == 200
    for r in rows:
        a, b = (int(x) for x in r["solution"].split(" =")[0].split(" + "))
        assert r["answer"] == str(a + b) == r["completion"]
        assert r["prompt"] == f"What is {a} + {b}? Reply with only the number."


def test_held_out_rows_never_overlap_training():
    data = load_data(DataSpec(source="builtin:arithmetic", eval_size=64))
    train_prompts = {r["prompt"] for r in data.train}
    assert len(data.eval) == 64
    assert not train_prompts & {r["prompt"] for r in data.eval}
    # Every row is held out, trained on, or dropped as a commuted twin of a held-out question.
    assert len(data.train) + len(data.eval) + data.split.dropped_train_rows == 2500


def test_file_split_is_seeded_and_refuses_a_split_without_training_rows(tmp_path):
    rows = [{"prompt": f"q{i}", "answer": str(i)} for i in range(10)]
    with pytest.raises(ValueError, match="no training rows would remain"):
        split_rows(rows, eval_size=100, seed=0)
    train, held = split_rows(rows, eval_size=5, seed=0)
    assert len(held) == 5 and len(train) == 5
    assert split_rows(rows, 3, 0) == split_rows(rows, 3, 0)


def test_jsonl_file_source(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"q{i}", "answer": i}) for i in range(6)) + "\n")
    data = load_data(DataSpec(source=str(path), eval_size=2))
    assert len(data.train) == 4 and len(data.eval) == 2


@pytest.mark.parametrize(
    "content, words",
    [(b"", "empty"), (b'{"prompt": 1}\n{bad json\n', "line 2"), (b"\xff\xfe\x00garbage", "UTF-8")],
)
def test_bad_files_give_one_clear_sentence(tmp_path, content, words):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_source_rows(str(path))
    assert words.lower() in str(info.value).lower()
    assert "bad.jsonl" in str(info.value)


def test_missing_file_and_unknown_task():
    with pytest.raises(DataError, match="does not exist"):
        load_source_rows("/nope/data.jsonl")
    with pytest.raises(DataError, match="unknown built-in task"):
        load_source_rows("builtin:chess")


def test_trl_forms_per_method():
    row = {"prompt": "What is 1 + 2?", "answer": "3", "completion": "3"}
    grpo = to_trl_rows([row], "grpo", system_prompt="Be brief.")[0]
    assert grpo["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1 + 2?"}]
    assert grpo["answer"] == "3"  # passed to reward functions
    sft = to_trl_rows([row], "sft")[0]
    assert sft == {"prompt": [{"role": "user", "content": "What is 1 + 2?"}], "completion": [{"role": "assistant", "content": "3"}]}
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    assert to_trl_rows([chat], "dft")[0] == chat
    assert to_trl_rows([chat], "grpo")[0]["prompt"] == [{"role": "user", "content": "hi"}]


def test_column_problems_name_what_is_missing():
    assert "prompt" in column_problem("grpo", [{"question": "x"}])
    assert "completion" in column_problem("sft", [{"prompt": "x"}])
    assert column_problem("sft", [{"prompt": "x", "answer": "y"}]) is None
    assert column_problem("dft", [{"messages": []}]) is None
    assert "empty prompt" in column_problem("grpo", [{"prompt": "  "}])


def test_mixed_number_and_text_answers_become_text():
    from app.engine.data.sources import to_trl_dataset

    ds = to_trl_dataset([{"prompt": "a", "answer": 3}, {"prompt": "b", "answer": "4"}], "grpo")
    assert ds["answer"] == ["3", "4"]
