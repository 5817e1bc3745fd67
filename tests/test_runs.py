"""Run store: atomic status, JSONL readers that tolerate torn lines, dead-worker detection, checkpoints."""
from __future__ import annotations

import json
import subprocess
import sys

from app.engine.core import runs
from app.engine.core.spec import RunSpec


def test_read_jsonl_tolerates_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    runs.append_jsonl(path, {"step": 1, "loss": 0.5})
    with open(path, "a") as f:
        f.write('{"step": 2, "lo')  # a writer mid-line
    records, offset = runs.read_jsonl(path)
    assert records == [{"step": 1, "loss": 0.5}]
    with open(path, "a") as f:
        f.write('ss": 0.4}\n')
    more, offset2 = runs.read_jsonl(path, offset)
    assert more == [{"step": 2, "loss": 0.4}]
    assert runs.read_jsonl(path, offset2) == ([], offset2)


def test_read_jsonl_skips_corrupt_complete_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    records, _ = runs.read_jsonl(path)
    assert [r["step"] for r in records] == [1, 3]


def test_nan_is_written_as_null(tmp_path):
    path = tmp_path / "m.jsonl"
    runs.append_jsonl(path, {"reward": runs.clean_number(float("nan"))})
    assert json.loads(path.read_text()) == {"reward": None}


def test_status_is_replaced_atomically(tmp_path):
    runs.update_status(tmp_path, state="running", pid=123)
    runs.update_status(tmp_path, step=5)
    status = runs.read_json(tmp_path / "status.json")
    assert status["state"] == "running" and status["step"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_dead_worker_reads_as_failed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    runs.update_status(tmp_path, state="running", pid=proc.pid, error=None)
    (tmp_path / "spec.yaml").write_text(RunSpec().to_yaml())
    status = runs.read_status(tmp_path)
    assert status["state"] == "failed"
    assert "killed or ran out of memory" in status["error"]


def test_worker_dead_before_its_first_status_reads_as_failed_with_its_log(tmp_path):
    """launch_run records the pid at once: a worker that dies while importing (here: a bad spec path on purpose,
    so app.train exits 2 before writing any status) is no ghost 'queued' run; its log tail explains why."""
    run_dir = runs.create_run_dir(RunSpec(method="sft", name="dies early"), tmp_path)
    (run_dir / "spec.yaml").write_text("method: [unclosed\n")
    proc = runs.launch_run(run_dir)
    status = runs.read_status(run_dir)
    assert status["pid"] == proc.pid and status.get("pid_started_at")
    assert proc.wait(timeout=120) != 0
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and "train.log" in status["error"]
    assert (run_dir / "train.log").read_text().strip().splitlines()[-1] in status["error"]


def test_stop_of_a_queued_worker_waits_for_it_instead_of_killing_it(tmp_path):
    """A queued worker has no SIGTERM handler yet: the stop goes through the STOP file only, and the worker keeps a
    STOP file newer than its own start (clear_stale_stop removes only older ones)."""
    import time

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        runs.update_status(tmp_path, state="queued", pid=sleeper.pid)
        runs.request_stop(tmp_path)
        time.sleep(0.3)
        assert sleeper.poll() is None and runs.stop_requested(tmp_path)
        runs.clear_stale_stop(tmp_path, since=time.time() - 60)  # the request came after the worker started: kept
        assert runs.stop_requested(tmp_path)
        runs.clear_stale_stop(tmp_path, since=time.time() + 1)  # an older request (an earlier stop): removed
        assert not runs.stop_requested(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_live_worker_reads_as_running(tmp_path):
    import os

    runs.update_status(tmp_path, state="running", pid=os.getpid())
    assert runs.read_status(tmp_path)["state"] == "running"


def test_only_complete_checkpoints_count(tmp_path):
    base = tmp_path / "checkpoints"
    for step, complete in ((10, True), (20, True), (30, False)):
        folder = base / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / runs.COMPLETE_MARKER).write_text("x")
    assert runs.latest_checkpoint(tmp_path).name == "checkpoint-20"


def test_create_and_list_runs(tmp_path):
    spec = RunSpec(method="sft", name="my run")
    first = runs.create_run_dir(spec, tmp_path)
    second = runs.create_run_dir(spec, tmp_path)
    assert first != second
    assert RunSpec.load(first / "spec.yaml") == spec
    listed = runs.list_runs(tmp_path)
    assert {r.path for r in listed} == {first, second}
    assert all(r.state == "queued" for r in listed)
    runs.update_status(first, state="finished")
    runs.delete_run(first)
    assert not first.exists()
