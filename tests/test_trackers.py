"""Experiment trackers and TRL's completion logs on a tiny random Llama: what TensorBoard and trackio received
equals metrics.jsonl, a tracker that cannot start stops the run before the model loads (or is skipped when
optional), and `log_completions` writes TRL's parquet files."""
from __future__ import annotations

import math
import sqlite3

from app.engine.core import runs
from app.engine.core.validation import spec_problems
from app.engine.training import trackers
from app.engine.training.worker import train
from tests.test_worker_tiny import tiny_spec


def _train_scalars(run_dir) -> dict[tuple[int, str], float]:
    """metrics.jsonl's training records as {(step, key): value}, the keys as the trainer logged them."""
    out = {}
    for record in runs.read_jsonl(run_dir / "metrics.jsonl")[0]:
        if "loss" not in record:
            continue
        for key, value in record.items():
            if key not in ("step", "time", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                out[(record["step"], key)] = float(value)
    return out


def _tensorboard_scalars(logdir) -> dict[tuple[int, str], float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(logdir.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {logdir}"
    out = {}
    for path in files:
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for event in acc.Scalars(tag):
                out[(event.step, tag.removeprefix("train/"))] = event.value
    return out


def _trackio_scalars(store, run_name: str) -> dict[tuple[int, str], float]:
    import json

    db = store / f"{trackers.PROJECT}.db"
    assert db.exists(), f"no trackio store at {db}"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT step, metrics FROM metrics WHERE run_name = ?", (run_name,)).fetchall()
    out = {}
    for step, metrics in rows:
        for key, value in json.loads(metrics).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[(step, key.removeprefix("train/"))] = float(value)
    return out


def _same(expected: dict, got: dict, what: str) -> None:
    missing = [k for k in expected if k not in got]
    assert not missing, f"{what} lacks {missing[:5]}"
    wrong = [(k, expected[k], got[k]) for k in expected
             if not math.isclose(expected[k], got[k], rel_tol=1e-5, abs_tol=1e-6)]
    assert not wrong, f"{what} differs: {wrong[:5]}"


def test_tensorboard_and_trackio_get_the_same_scalars_as_metrics_jsonl(tiny_model_dir, tmp_path, monkeypatch):
    store = tmp_path / "trackio"
    monkeypatch.setenv("TRACKIO_DIR", str(store))
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    import trackio.utils

    monkeypatch.setattr(trackio.utils, "TRACKIO_DIR", store)  # read at import time by trackio's storage
    import trackio.sqlite_storage

    monkeypatch.setattr(trackio.sqlite_storage, "TRACKIO_DIR", store, raising=False)
    spec = tiny_spec(tiny_model_dir, **{"logging.report_to": "[tensorboard, trackio]"})
    result = train(spec, runs_dir=tmp_path / "runs", progress_bar=False, log=lambda m: None)
    assert result.state == "finished", runs.read_status(result.run_dir).get("traceback")
    status = runs.read_status(result.run_dir)
    assert set(status["trackers"]) == {"tensorboard", "trackio"}
    assert str(result.run_dir / "tensorboard") in status["trackers"]["tensorboard"]
    expected = _train_scalars(result.run_dir)
    assert {step for step, _ in expected} == {1, 2} and len(expected) > 10
    _same(expected, _tensorboard_scalars(result.run_dir / "tensorboard"), "TensorBoard")
    _same(expected, _trackio_scalars(store, result.run_dir.name), "trackio")


def test_a_tracker_that_cannot_start_stops_the_run_before_the_model_loads(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trackers, "_installed", lambda module: module != "wandb")
    spec = tiny_spec(tiny_model_dir, **{"logging.report_to": "[wandb]"})
    result = train(spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    status = runs.read_status(result.run_dir)
    assert result.state == "failed"
    assert "logging.report_to: wandb is not installed: pip install wandb" in status["error"]
    assert "model_path" not in status  # stopped before the model was resolved

    spec = tiny_spec(tiny_model_dir, **{"logging.report_to": "[wandb]", "logging.report_to_optional": "true"})
    result = train(spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    status = runs.read_status(result.run_dir)
    assert result.state == "finished" and status["trackers"] == {}
    assert "wandb is not installed" in status["trackers_skipped"]["wandb"]


def test_validation_names_the_allowed_trackers_and_the_methods_that_log_completions(tiny_model_dir):
    spec = tiny_spec(tiny_model_dir, **{"logging.report_to": "[tensorbord]"})
    (problem,) = [p for p in spec_problems(spec, check_files=False) if p.field == "logging.report_to"]
    assert "unknown tracker 'tensorbord'; choose from tensorboard, trackio, wandb, mlflow" in problem.problem
    spec = tiny_spec(tiny_model_dir, "sft", **{"logging.log_completions": "true"})
    assert any(p.field == "logging.log_completions" for p in spec_problems(spec, check_files=False))
def test_log_completions_writes_trls_parquet_files(tiny_model_dir, tmp_path):
    import pandas as pd

    spec = tiny_spec(tiny_model_dir, **{"logging.log_completions": "true"})
    result = train(spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    assert result.state == "finished", runs.read_status(result.run_dir).get("traceback")
    files = sorted((result.run_dir / "checkpoints" / "completions").glob("completions_*.parquet"))
    assert [f.name for f in files] == ["completions_00001.parquet", "completions_00002.parquet"]
    frame = pd.read_parquet(files[0])
    assert len(frame) == 4 and {"step", "prompt", "completion", "numeric_answer", "advantage"} <= set(frame.columns)
