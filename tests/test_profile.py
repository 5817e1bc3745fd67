"""Dataset profiling and file loading: formats, answer kinds, verifiability, demonstrations, clear errors."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.engine.data.profile import (
    SAMPLE_ROWS,
    answer_kind,
    final_answer,
    load_rows,
    profile_dataset,
)

GSM8K_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"  # ../shared beside the repository

ARITHMETIC = [
    {"prompt": f"What is {a} + {b}? Reply with only the number.", "answer": str(a + b)}
    for a in range(1, 11) for b in range(1, 6)
]
GSM8K_LIKE = [
    {"question": "Tom has 3 apples and buys 5 more. How many apples does he have?",
     "answer": "Tom starts with 3 apples.\nHe buys 5 more, so 3 + 5 = <<3+5=8>>8.\n#### 8"},
    {"question": "A shop sells 12 boxes of 100 pens. How many pens is that?",
     "answer": "Each box holds 100 pens.\n12 boxes hold 12 * 100 = <<12*100=1200>>1,200 pens.\n#### 1,200"},
    {"question": "The temperature was 6 degrees and fell by 10. What is it now?",
     "answer": "It starts at 6 degrees.\nIt falls by 10, so 6 - 10 = <<6-10=-4>>-4.\n#### -4"},
    {"question": "Ann runs 2.5 km a day for 3 days. How far does she run?",
     "answer": "Each day she runs 2.5 km.\nOver 3 days: 2.5 * 3 = <<2.5*3=7.5>>7.5 km.\n#### 7.5"},
]


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# -- kinds and formats ----------------------------------------------------------------------------------------
def test_arithmetic_rows_are_numeric_and_verifiable() -> None:
    p = profile_dataset(ARITHMETIC)
    assert p.format == "prompt_only"
    assert (p.prompt_column, p.answer_column) == ("prompt", "answer")
    assert p.answer_kind == "numeric" and p.verifiable is True and p.verifiable_confidence == 1.0
    assert p.suggested_rewards[0] == "numeric_answer"
    assert "100% of answers are numbers" in p.reasons[0] and "numeric_answer" in p.reasons[0]
    assert p.labelled_share == 1.0 and p.n_labelled == len(ARITHMETIC)
    assert p.demonstration_column is None
    assert p.reasoning_helps is True  # numeric tasks
    assert p.warnings == []
    assert p.to_dict()["prompt_length"]["max"] == max(len(r["prompt"]) for r in ARITHMETIC)


def test_gsm8k_like_rows() -> None:
    p = profile_dataset(GSM8K_LIKE * 5)
    assert p.format == "prompt_only" and p.prompt_column == "question"
    assert p.answer_kind == "numeric" and p.verifiable is True
    assert p.demonstration_column == "answer" and p.reasoning_helps is True
    assert p.suggested_rewards == ["gsm8k_answer", "numeric_answer"]
    assert any("rename" in w for w in p.warnings)  # TRL wants 'prompt'
    assert any("repeat an earlier prompt" in w for w in p.warnings)


@pytest.mark.skipif(not GSM8K_FILE.exists(), reason="shared GSM8K copy not present")
def test_real_gsm8k_head() -> None:
    with GSM8K_FILE.open(encoding="utf-8") as f:
        rows = [json.loads(next(f)) for _ in range(200)]
    p = profile_dataset(rows)
    assert p.n_rows == 200 and p.answer_kind == "numeric" and p.verifiable is True
    assert p.answer_kind_shares["numeric"] >= 0.95
    assert p.demonstration_column == "answer" and p.reasoning_helps is True
    assert "####" in p.reasons[0]


@pytest.mark.parametrize(
    "text, final",
    [("so 3 + 5 = 8.\n#### 8", "8"), ("Thus $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
     ("First add 2 and 2, then double it to get 8.\nThe answer is 8.", "8"), ("Paris", "Paris")],
)
def test_final_answer(text: str, final: str) -> None:
    assert final_answer(text) == final


@pytest.mark.parametrize(
    "value, kind",
    [("7", "numeric"), ("-3.5", "numeric"), ("1,234", "numeric"), ("−4", "numeric"), (12, "numeric"),
     ("$12", "numeric"), ("#### 42", "numeric"), ("\\frac{1}{2}", "math"), ("\\boxed{3\\sqrt{2}}", "math"),
     ("x^2 + 1", "math"), ('{"a": 1}', "json"), ({"a": 1}, "json"), ("[1, 2]", "json"), ("B", "choice"),
     ("```python\nprint(1)\n```", "code_tests"), ("Paris", "short_text"),
     ("It costs $5 and $10 in total for the two items.", "long_text")],
)
def test_answer_kind(value: object, kind: str) -> None:
    assert answer_kind(value) == kind


def test_conversational_rows() -> None:
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Capital number {i}?"},
                      {"role": "assistant", "content": "The capital is a city where the government sits, usually."}]}
        for i in range(10)
    ]
    p = profile_dataset(rows)
    assert p.format == "conversational" and p.prompt_column == "messages" and p.answer_column == "messages"
    assert p.labelled_share == 1.0 and p.answer_kind == "long_text"
    assert p.prompt_length.p50 < len(json.dumps(rows[0]))  # the reply is not counted in the prompt


def test_preference_rows() -> None:
    rows = [{"prompt": f"Greet user {i}", "chosen": "Hello, nice to meet you!", "rejected": "What do you want?"}
            for i in range(10)]
    p = profile_dataset(rows)
    assert p.format == "preference" and p.answer_column == "chosen" and p.demonstration_column is None


def test_prompt_completion_and_text_formats() -> None:
    p = profile_dataset([{"prompt": f"Q{i}", "completion": f"Answer {i} is a long free-form reply with words."}
                         for i in range(5)])
    assert p.format == "prompt_completion" and p.answer_column == "completion"
    p = profile_dataset([{"text": f"Plain document {i} with a few words."} for i in range(5)])
    assert p.format == "text" and p.prompt_column is None and p.answer_column is None
    p = profile_dataset([{"text": f"Movie {i} was great", "label": "positive" if i % 2 else "negative"}
                         for i in range(30)])
    assert p.format == "prompt_only" and p.prompt_column == "text" and p.answer_kind == "choice"
    assert p.suggested_rewards == ["exact_answer"] and "2 distinct values" in p.reasons[0]


def test_json_answers() -> None:
    rows = [{"prompt": f"Give name and age of person {i} as JSON.", "answer": json.dumps({"name": f"P{i}", "age": i})}
            for i in range(20)]
    p = profile_dataset(rows)
    assert p.answer_kind == "json" and p.verifiable is True
    assert p.suggested_rewards == ["json_valid", "json_schema"]


def test_latex_answers() -> None:
    answers = ["\\frac{1}{2}", "\\sqrt{3}", "2\\pi", "\\frac{3}{4}", "x^2 - 1"]
    p = profile_dataset([{"problem": f"Problem {i}", "answer": a} for i, a in enumerate(answers)])
    assert p.answer_kind == "math" and p.verifiable is True and p.suggested_rewards == ["math_equivalence"]


def test_math_solutions_with_boxed_answers_are_demonstrations() -> None:
    rows = [{"problem": f"Solve x + {i} = 2{i}.",
             "solution": f"Subtract {i} from both sides.\nThen x = 2{i} - {i}, so $x = \\boxed{{{int(f'2{i}') - i}}}$."}
            for i in range(1, 9)]
    p = profile_dataset(rows)
    assert p.answer_column == "solution" and p.demonstration_column == "solution"
    assert p.answer_kind == "math" and p.reasoning_helps is True


def test_code_with_tests() -> None:
    rows = [{"prompt": f"Write add_{i}(x) returning x + {i}.", "answer": f"def add_{i}(x):\n    return x + {i}",
             "test_list": [f"assert add_{i}(1) == {1 + i}"]} for i in range(6)]
    p = profile_dataset(rows)
    assert p.answer_kind == "code_tests" and p.tests_column == "test_list"
    assert p.verifiable is True and p.suggested_rewards == ["python_tests"]


def test_free_text_is_not_verifiable() -> None:
    rows = [{"instruction": f"Write a short note to colleague {i}.",
             "output": f"Dear colleague {i}, thank you for your help this week; the report reads much better now."}
            for i in range(20)]
    p = profile_dataset(rows)
    assert p.answer_kind == "long_text" and p.verifiable is False
    assert "not verifiable" in p.reasons[0]
    assert p.reasoning_helps is False


def test_no_answers_leaves_verifiable_unknown() -> None:
    p = profile_dataset([{"prompt": f"Tell a joke about {i}"} for i in range(5)])
    assert p.answer_column is None and p.verifiable is None and p.answer_kind is None and p.n_labelled == 0


def test_weird_values_and_warnings() -> None:
    rows = [
        {"prompt": "Same question", "answer": 3},
        {"prompt": "Same question", "answer": "4"},
        {"prompt": None, "answer": None},
        {"prompt": ["nested", ["list"]], "answer": [1, [2]], "extra": {"a": None}},
        {"prompt": 42, "answer": float("nan")},
        {"prompt": "Long " * 2000, "answer": "5"},
    ]
    p = profile_dataset(rows)
    warnings = " ".join(p.warnings)
    assert "repeat an earlier prompt (e.g. row 2 repeats row 1)" in warnings
    assert "empty 'prompt' (first: row 3)" in warnings
    assert "longer than 8,000 characters" in warnings
    assert "mixes" in warnings
    assert "have no 'answer' value" in warnings
    assert p.n_labelled == 4
    columns = {c.name: c for c in p.columns}
    assert columns["extra"].fill_rate == round(1 / 6, 3) and columns["answer"].types == ["list", "number", "text"]
    json.dumps(p.to_dict())  # plain data all the way down


def test_large_dataset_is_sampled_quickly() -> None:
    rows = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(20_000)]
    start = time.perf_counter()
    p = profile_dataset(rows)
    assert time.perf_counter() - start < 2.0
    assert p.n_rows == 20_000 and p.n_sampled == SAMPLE_ROWS and p.answer_kind == "numeric"


def test_rows_must_be_dicts() -> None:
    with pytest.raises(ValueError, match="no rows"):
        profile_dataset([])
    with pytest.raises(ValueError, match="Row 2 is a list"):
        profile_dataset([{"prompt": "a"}, ["b"]])


# -- files ----------------------------------------------------------------------------------------------------
def test_load_jsonl_json_csv(tmp_path: Path) -> None:
    jsonl = _write(tmp_path, "d.jsonl", '{"prompt": "a", "answer": "1"}\n\n{"prompt": "b", "answer": "2"}\n')
    assert load_rows(jsonl) == [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "2"}]
    as_json = _write(tmp_path, "d.json", json.dumps({"data": [{"prompt": "a"}]}))
    assert load_rows(as_json) == [{"prompt": "a"}]
    lines_in_json = _write(tmp_path, "lines.json", '{"prompt": "a"}\n{"prompt": "b"}\n')
    assert len(load_rows(lines_in_json)) == 2
    csv_file = _write(tmp_path, "d.csv", '\ufeffprompt,answer\n"What is 1,\nand 2?",3\nWhat is 2?,4\n')
    assert load_rows(csv_file) == [
        {"prompt": "What is 1,\nand 2?", "answer": "3"}, {"prompt": "What is 2?", "answer": "4"}
    ]
    profile = profile_dataset(csv_file)
    assert profile.source == str(csv_file) and profile.answer_kind == "numeric"


def test_bad_json_line_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c",\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 3: not valid JSON"):
        load_rows(path)


def test_non_utf8_bytes_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "latin.jsonl", '{"prompt": "a"}\n'.encode() + b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"latin\.jsonl, line 2: not valid UTF-8 \(byte 0xe9 at column 16\)"):
        load_rows(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"empty\.jsonl is empty"):
        load_rows(_write(tmp_path, "empty.jsonl", ""))
    with pytest.raises(ValueError, match="is empty"):
        load_rows(_write(tmp_path, "blank.csv", "\n \n"))
    with pytest.raises(ValueError, match="has no rows"):
        load_rows(_write(tmp_path, "header.csv", "prompt,answer\n"))
    with pytest.raises(ValueError, match="has no rows"):
        load_rows(_write(tmp_path, "list.json", "[]"))
    with pytest.raises(ValueError, match="does not exist"):
        load_rows(tmp_path / "nope.jsonl")


def test_rows_that_are_not_objects(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"line 2: expected a JSON object \{\.\.\.\}, got a list"):
        load_rows(_write(tmp_path, "d.jsonl", '{"prompt": "a"}\n["b"]\n'))
    with pytest.raises(ValueError, match=r"item 2 of the JSON list is a string"):
        load_rows(_write(tmp_path, "d.json", '[{"prompt": "a"}, "b"]'))
    with pytest.raises(ValueError, match=r"line 2: not valid JSON"):
        load_rows(_write(tmp_path, "broken.json", '[{"prompt": "a"},\n {"prompt": }]'))


def test_bad_csv_record_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "prompt,answer\nWhat is 1?,1\nWhat is 2?,2,extra\n")
    with pytest.raises(ValueError, match=r"d\.csv, line 3: expected 2 fields \(as in the header\), found 3"):
        load_rows(path)
    with pytest.raises(ValueError, match="appears more than once"):
        load_rows(_write(tmp_path, "dup.csv", "prompt,prompt\na,b\n"))


def test_unsupported_file_type(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        load_rows(_write(tmp_path, "notes.txt", "hello"))
