"""The generation worker: *4 · Compare*, preference pairs and the playground generate in a process of their own
(on a GPU machine by default; forced on here with RFT_WORKBENCH_GENERATION_WORKER=1). Same greedy replies as in the
app's process, one model kept loaded between calls, freed when idle, a dead worker named and replaced."""
from __future__ import annotations

import os
import signal
import time

import pytest

from app.engine.evaluation import compare as cmp
from app.engine.evaluation import generation_worker as gw

ROWS = [{"prompt": "What is 1 + 1?", "answer": "2"}, {"prompt": "Say a number.", "answer": "7"}]


@pytest.fixture
def worker_on(monkeypatch):
    monkeypatch.setenv(gw.ENV, "1")
    yield gw.worker()
    gw.worker().stop()


def test_compare_through_the_worker_gives_the_in_process_replies(worker_on, run_with_adapter, tiny_model_dir,
                                                                 monkeypatch):
    refs = [cmp.ModelRef("base", str(tiny_model_dir)), cmp.parse_model_key(f"adapter::{run_with_adapter / 'adapter'}")]
    cmp.clear_cache()
    remote = cmp.compare_models(refs, ROWS, [{"name": "numeric_answer"}], max_new_tokens=6)
    assert isinstance(cmp.load_model(refs[0])[0], gw.WorkerModel)
    assert not cmp._CACHE  # the app's process loaded no model
    assert worker_on.pid is not None and worker_on.device == "cpu (float32)"
    monkeypatch.setenv(gw.ENV, "0")
    local = cmp.compare_models(refs, ROWS, [{"name": "numeric_answer"}], max_new_tokens=6)
    for label in remote.models:
        assert [o["completion"] for o in remote.outputs[label]] == [o["completion"] for o in local.outputs[label]]
        assert [o["tokens"] for o in remote.outputs[label]] == [o["tokens"] for o in local.outputs[label]]
    cmp.clear_cache()


def test_one_model_stays_loaded_another_replaces_it_and_an_idle_worker_is_stopped(tiny_model_dir, run_with_adapter):
    worker = gw.GenerationWorker(idle_s=2)
    base = gw.Load(str(tiny_model_dir))
    tuned = gw.Load(str(tiny_model_dir), str(run_with_adapter / "adapter"))
    try:
        first, _ = worker.generate(base, ["Hi"], 4, False, 1.0)
        pid = worker.pid
        assert worker.generate(base, ["Hi"], 4, False, 1.0)[0] == first and worker.pid == pid
        assert worker.generate(tuned, ["Hi"], 4, False, 1.0)[0] != first  # merged adapter, same process
        assert worker.pid == pid and worker.loaded == tuned
        texts, lengths = worker.generate(tuned, ["Hi", "Yo"], 4, True, 1.0, num_return_sequences=2)
        assert len(texts) == len(lengths) == 4
        deadline = time.time() + 30
        while worker.pid is not None and time.time() < deadline:
            time.sleep(0.2)
        assert worker.pid is None and worker.loaded is None  # freed after 2 s without a call
        assert worker.generate(base, ["Hi"], 4, False, 1.0)[0] == first  # started again on demand
    finally:
        worker.stop()


def test_a_killed_worker_is_replaced_and_a_load_error_is_one_sentence(tiny_model_dir, tmp_path):
    worker = gw.GenerationWorker()
    base = gw.Load(str(tiny_model_dir))
    try:
        worker.generate(base, ["Hi"], 2, False, 1.0)
        old = worker.pid
        os.kill(old, signal.SIGKILL)
        time.sleep(0.5)
        worker.generate(base, ["Hi"], 2, False, 1.0)  # a fresh worker between calls
        assert worker.pid not in (None, old)
        (tmp_path / "config.json").write_text("{not json")
        with pytest.raises(gw.GenerationWorkerError) as failed:
            worker.generate(gw.Load(str(tmp_path)), ["Hi"], 2, False, 1.0)
        assert "\n" not in str(failed.value) and str(failed.value)
        assert worker.generate(base, ["Hi"], 2, False, 1.0)  # the worker survives a failed load
    finally:
        worker.stop()


def test_compare_names_a_worker_failure(worker_on, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(cmp.CompareError):
        cmp.compare_models([cmp.ModelRef("broken", str(tmp_path))], ROWS, max_new_tokens=2)


def test_the_worker_is_off_on_a_cpu_unless_asked(monkeypatch):
    monkeypatch.delenv(gw.ENV, raising=False)
    import torch

    assert gw.enabled() == torch.cuda.is_available()
    monkeypatch.setenv(gw.ENV, "1")
    assert gw.enabled()
