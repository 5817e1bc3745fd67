"""KTO, added through the method protocol alone: its rows (single marks, and pairs read as two marks), the thumbs
file 4 · Compare writes, validation, and a 2-step CLI run on the default model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine import methods
from app.engine.advice.decision import Answers, recommend
from app.engine.core import runs
from app.engine.core.spec import RunSpec, SpecError
from app.engine.data.sources import column_problem, load_data, to_trl_dataset
from app.engine.methods.kto import append_thumb, count_thumbs
from app.engine.presentation import charts

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "preference-kto.yaml"


def kto_spec(source: str, **changes) -> RunSpec:
    spec = RunSpec.from_dict({"method": "kto", "data": {"source": source, "eval_size": 2}})
    return spec.with_overrides([f"{k}={v}" for k, v in changes.items()]) if changes else spec


def test_thumbs_file_from_compare_is_valid_kto_data(tmp_path):
    path = tmp_path / "preferences" / "thumbs.jsonl"
    questions = [(f"What is {a} + {b}?", str(a + b), str(a + b + 1)) for a, b in ((2, 3), (4, 5), (6, 1), (7, 2))]
    for prompt, right, wrong in questions:
        append_thumb(path, [{"role": "user", "content": prompt}], right, True, meta={"model": "base"})
        append_thumb(path, [{"role": "user", "content": prompt}], wrong, False, meta={"model": "base"})
    assert count_thumbs(path) == (4, 4)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first["label"] is True and first["completion"] == [{"role": "assistant", "content": "5"}]
    spec = kto_spec(str(path))
    assert spec.problems() == []
    data = load_data(spec.data)
    ds = to_trl_dataset(data.train, "kto")
    assert set(ds.column_names) == {"prompt", "completion", "label"}
    assert {r["label"] for r in ds} == {True, False}
    with pytest.raises(ValueError, match="empty 'completion'"):
        append_thumb(path, "What is 1 + 1?", "  ", True)


def test_pairs_read_as_two_marks_and_bad_rows_are_named():
    rows = [{"prompt": "What is 1 + 2?", "chosen": "3", "rejected": "4"}]
    marks = methods.get("kto").trl_rows(rows)
    assert [m["label"] for m in marks] == [True, False]
    assert [m["completion"][0]["content"] for m in marks] == ["3", "4"]
    assert "label" in column_problem("kto", [{"prompt": "x", "completion": "y", "label": "yes"}])
    assert "both good and bad" in column_problem("kto", [{"prompt": "x", "completion": "y", "label": True}])
    assert "line 2" in column_problem("kto", [{"prompt": "a", "completion": "b", "label": True},
                                              {"prompt": "", "completion": "c", "label": False}],
                                      where=lambda i: f"line {i + 1}")


def test_kto_section_is_validated():
    spec = RunSpec.from_dict({"method": "kto", "data": {"source": "app/data/arithmetic_pairs.jsonl"},
                              "kto": {"beta": 0, "loss_type": "sigmoid"}})
    fields = [p.field for p in spec.problems(check_files=False)]
    assert fields == ["kto.beta", "kto.loss_type"]
    with pytest.raises(SpecError, match="at least 2 rows"):
        spec.with_overrides(["kto.beta=0.1", "kto.loss_type=kto", "training.per_device_train_batch_size=1"]).validate(
            check_files=False)


def test_decision_tree_offers_kto_beside_dpo():
    rec = recommend(Answers(has_labels=False, verifiable=False))
    assert rec.method == "dpo"
    assert "kto" in [m for m, _why in rec.alternatives]


@pytest.mark.e2e
def test_two_step_kto_through_the_cli_on_the_default_model(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "app.train", str(RECIPE), "--run-dir", str(run_dir), "--max-steps", "2", "--no-progress",
         "--set", "data.eval_size=4", "--set", "logging.eval_max_new_tokens=8"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["step"] == 2
    records = runs.read_jsonl(run_dir / "metrics.jsonl")[0]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all({"rewards/chosen", "rewards/rejected", "rewards/margins", "kl"} <= r.keys() for r in steps)
    evals = [r for r in records if "eval/preference_accuracy" in r]
    assert [r["step"] for r in evals] == [0, 2] and evals[0]["eval/preference_n"] == 4
    figs = charts.dashboard(records, "kto")
    assert [t.name for t in figs["reward"].data] == ["👍 replies", "👎 replies", "margin (👍 − 👎)"]
    assert (run_dir / "adapter" / "adapter_config.json").exists()
