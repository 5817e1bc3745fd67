"""Issue 17: no command destroys a run folder, `--validate-only` catches what a run would fail on, exit codes and
messages as documented, prompt stops, health alerts in the CLI. Written against the CLI as a user calls it
(`app.train.main([...])`, the export's `main`, and one `python -m app.train` subprocess for SIGTERM)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import train as cli
from app.engine.core import runs
from app.engine.core.spec import RewardSpec, RunSpec
from app.engine.evaluation import export as exp

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "arithmetic-grpo.yaml")


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and mode: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fake_run(parent: Path, state: str, step: int, max_steps: int = 40, adapter: bool = True) -> Path:
    """A run folder as a finished/stopped run leaves it (no model needed): spec, status, metrics, a checkpoint,
    an adapter."""
    spec = RunSpec(name="fake", rewards=[RewardSpec(name="numeric_answer")]).with_overrides(
        [f"training.max_steps={max_steps}"])
    run_dir = runs.create_run_dir(spec, parent)
    runs.update_status(run_dir, state=state, step=step, max_steps=max_steps, started_at=time.time() - 60)
    runs.append_jsonl(run_dir / "metrics.jsonl", {"step": step, "loss": 0.5, "reward": 0.25})
    ckpt = run_dir / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text("{}")
    (ckpt / runs.COMPLETE_MARKER).write_text("1")
    if adapter:
        (run_dir / "adapter").mkdir()
        (run_dir / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 16}))
        (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    return run_dir


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- work destroyed ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [".", "adapter", "adapter/inner", ".."])
def test_export_onto_its_own_source_is_refused_and_the_run_is_intact(tmp_path, capsys, target):
    run_dir = fake_run(tmp_path / "runs", "finished", 40)
    before = snapshot(tmp_path)
    out_dir = os.path.normpath(run_dir / target)
    assert exp.main([str(run_dir), "--out", out_dir, "--overwrite", "--no-check"]) == 2
    err = capsys.readouterr().err
    assert "own source" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_export_onto_an_existing_file_is_one_sentence_and_keeps_the_file(tmp_path, capsys):
    run_dir = fake_run(tmp_path / "runs", "finished", 40)
    target = tmp_path / "model.bin"
    target.write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert exp.main([str(run_dir), "--out", str(target), *extra, "--no-check"]) == 2
        assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "mine"


def test_export_overwrite_replaces_an_earlier_export_but_never_other_folders(tmp_path, capsys):
    run_dir = fake_run(tmp_path / "runs", "finished", 40)
    out_dir = tmp_path / "exports" / "adapter"
    assert exp.main([str(run_dir), "--out", str(out_dir), "--no-check"]) == 0
    assert (out_dir / "adapter_model.safetensors").read_bytes() == b"weights"
    assert out_dir.stat().st_mode & 0o777 == 0o777 & ~_umask()  # not the temporary folder's 0700
    assert exp.main([str(run_dir), "--out", str(out_dir), "--no-check"]) == 2  # exists: needs --overwrite
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"newer weights")
    assert exp.main([str(run_dir), "--out", str(out_dir), "--overwrite", "--no-check"]) == 0
    assert (out_dir / "adapter_model.safetensors").read_bytes() == b"newer weights"
    assert [p.name for p in out_dir.parent.iterdir()] == ["adapter"]  # no temporary or replaced folder left
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    capsys.readouterr()
    assert exp.main([str(run_dir), "--out", str(notes), "--overwrite", "--no-check"]) == 2
    assert "does not hold an earlier export" in capsys.readouterr().err
    assert (notes / "todo.txt").read_text() == "keep me"


def test_resume_of_a_finished_run_is_refused_and_changes_nothing(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "finished", 40)
    before = snapshot(run_dir)
    code, out, err = run_cli(capsys, "--resume", str(run_dir))
    assert code == 2
    assert ("finished at step 40 of 40; start a new run, or raise training.max_steps with --set to train it "
            "further") in err
    assert snapshot(run_dir) == before


def test_run_dir_onto_an_existing_run_or_the_users_folder_is_refused(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "finished", 40)
    before = snapshot(run_dir)
    code, _, err = run_cli(capsys, RECIPE, "--run-dir", str(run_dir))
    assert code == 2 and "already holds a run (finished)" in err and "--resume" in err
    assert snapshot(run_dir) == before and runs.read_status(run_dir)["state"] == "finished"
    own = tmp_path / "my-experiment"
    own.mkdir()
    (own / "spec.yaml").write_text(Path(RECIPE).read_text() + "# my notes\n")
    before = snapshot(own)
    code, _, err = run_cli(capsys, str(own / "spec.yaml"), "--run-dir", str(own))
    assert code == 2 and "already exists and is not empty" in err
    assert snapshot(own) == before


def test_resume_with_a_bad_override_writes_nothing(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "stopped", 20)
    before = snapshot(run_dir)
    code, _, err = run_cli(capsys, "--resume", str(run_dir), "--set", "data.source=/missing.jsonl")
    assert code == 2 and err.startswith("error: data.source:") and "does not exist" in err
    assert snapshot(run_dir) == before  # spec.yaml keeps its data source, the run stays resumable
    assert runs.read_status(run_dir)["state"] == "stopped"
    code, _, err = run_cli(capsys, "--resume", str(run_dir), "--set", "method=sft")
    assert code == 2 and "method: cannot change when resuming" in err
    assert snapshot(run_dir) == before


def test_resume_while_the_worker_is_alive_is_refused_with_its_pid(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "stopped", 20)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        runs.update_status(run_dir, state="running", pid=worker.pid, pid_started_at=runs.process_start_time(worker.pid))
        before = snapshot(run_dir)
        code, _, err = run_cli(capsys, "--resume", str(run_dir))
        assert code == 2 and f"still running in worker pid {worker.pid}" in err
        assert snapshot(run_dir) == before
    finally:
        worker.kill()
        worker.wait()


def test_spec_together_with_resume_is_an_error(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "stopped", 20)
    with pytest.raises(SystemExit) as exc:
        cli.main([RECIPE, "--resume", str(run_dir)])
    assert exc.value.code == 2 and "not both" in capsys.readouterr().err


def test_atomic_writes_keep_the_files_permissions(tmp_path):
    run_dir = fake_run(tmp_path, "stopped", 20)
    for mode in (0o644, 0o640, 0o600):
        os.chmod(run_dir / "status.json", mode)
        runs.update_status(run_dir, note="x")
        assert (run_dir / "status.json").stat().st_mode & 0o777 == mode
    runs.write_atomic(tmp_path / "new.txt", "x")
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_a_folder_prepared_for_a_launch_is_the_one_run_dir_that_may_exist(tmp_path):
    """The app makes the folder, then starts `python -m app.train RUN/spec.yaml --run-dir RUN`: that is allowed, a
    folder whose worker has started is not."""
    run_dir = runs.create_run_dir(RunSpec(), tmp_path)
    assert runs.is_prepared_run_dir(run_dir)
    runs.create_run_dir(RunSpec(), run_dir=run_dir)  # the worker fills its prepared folder
    runs.update_status(run_dir, state="running", started_at=time.time())
    assert not runs.is_prepared_run_dir(run_dir)
    with pytest.raises(runs.RunFolderError):
        runs.create_run_dir(RunSpec(), run_dir=run_dir)


# -- validation: "spec OK" means the run gets past set-up, and the real run refuses the same way -----------------------
def _bad_reward_file(tmp_path: Path) -> list[str]:
    path = tmp_path / "my_reward.py"
    path.write_text("def my_reward(completions, **kwargs)\n    return [1.0 for _ in completions]\n")
    return ["--set", f"rewards=[{{file: {path}}}]"]


def _late_null_prompt(tmp_path: Path) -> list[str]:
    lines = [json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(80)]
    lines.insert(10, "")  # a blank line: the file's line numbers run one ahead of the rows from here
    lines[61] = json.dumps({"prompt": None, "answer": "61"})  # row 61, on line 62
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return ["--set", f"data.source={tmp_path / 'rows.jsonl'}", "--set", "data.eval_size=8"]


def _duplicate_sections(tmp_path: Path) -> list[str]:
    path = tmp_path / "twice.yaml"
    path.write_text(Path(RECIPE).read_text() + "training:\n  learning_rate: 1.0e-4\n")
    return [f"@{path}"]


VALIDATION_CASES = {
    "reward file with a syntax error": (_bad_reward_file, "rewards[0].file", "line 1: expected ':'"),
    "reward_timeout_s zero": (["--set", "reward_timeout_s=0"], "reward_timeout_s", "(0, 3600]"),
    "reward_timeout_s negative": (["--set", "reward_timeout_s=-1"], "reward_timeout_s", "(0, 3600]"),
    "temperature NaN": (["--set", "generation.temperature=.nan"], "generation.temperature", "finite"),
    "temperature infinite": (["--set", "generation.temperature=.inf"], "generation.temperature", "finite"),
    "unknown scheduler": (["--set", "training.lr_scheduler_type=cosin"], "training.lr_scheduler_type",
                          "did you mean 'cosine'"),
    "unknown optimizer": (["--set", "training.optim=adam_w"], "training.optim", "unknown name 'adam_w'"),
    "num_iterations 0": (["--set", "grpo.num_iterations=0"], "grpo.num_iterations", "at least 1"),
    "failure rate above 1": (["--set", "reward_max_failure_rate=5"], "reward_max_failure_rate", "[0, 1]"),
    "failure rate below 0": (["--set", "reward_max_failure_rate=-0.1"], "reward_max_failure_rate", "[0, 1]"),
    "null prompt after row 50": (_late_null_prompt, "data.source", "rows.jsonl: line 62 has an empty prompt"),
    "missing eval_source": (["--set", "data.eval_source=/missing/eval.jsonl"], "data.eval_source", "does not exist"),
    "duplicate YAML sections": (_duplicate_sections, "training", "given twice (lines"),
}


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_validate_only_and_the_run_refuse_what_would_fail_after_setup(tmp_path, capsys, case):
    make_args, field, fragment = VALIDATION_CASES[case]
    args = make_args(tmp_path) if callable(make_args) else list(make_args)
    spec = args.pop(0)[1:] if args and args[0].startswith("@") else RECIPE
    code, out, err = run_cli(capsys, spec, "--validate-only", *args)
    assert code == 2 and "spec OK" not in out
    assert err.startswith(f"error: {field}: ") and fragment in err, err
    runs_dir = tmp_path / "runs"
    code, out, err2 = run_cli(capsys, spec, "--runs-dir", str(runs_dir), "--no-progress", *args)
    assert code == 2 and err2 == err  # the same check, the same sentence
    assert not runs_dir.exists()  # nothing created


def test_validate_only_passes_a_good_spec(capsys, tmp_path):
    code, out, err = run_cli(capsys, RECIPE, "--validate-only", "--runs-dir", str(tmp_path / "runs"))
    assert (code, out.strip(), err) == (0, "spec OK", "")
    assert not (tmp_path / "runs").exists()


def test_a_bad_csv_row_is_named_by_its_line(tmp_path, capsys):
    path = tmp_path / "rows.csv"
    path.write_text('prompt,answer\n"a question\nover two lines",1\nWhat is 2?,2\n"",3\n' + "What?,4\n" * 10)
    code, _, err = run_cli(capsys, RECIPE, "--validate-only", "--set", f"data.source={path}",
                           "--set", "data.eval_size=2")
    assert code == 2 and "rows.csv: line 5 has an empty prompt" in err


# -- sentences, not tracebacks -------------------------------------------------------------------------------------------
def test_places_and_files_that_cannot_be_used_get_one_sentence(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    cases = [
        ([RECIPE, "--run-dir", str(a_file)], "is a file"),
        ([RECIPE, "--runs-dir", str(a_file)], "is a file"),
        ([RECIPE, "--run-dir", str(a_file / "run")], "is a file"),
        ([str(tmp_path / "folder.yaml")], "is a folder, not a YAML file"),
        ([str(tmp_path / "latin1.yaml")], "is not UTF-8 text (byte 0xe9 on line 1)"),
        ([RECIPE, "--set", "training.learning_rate=[1e-4"], "training.learning_rate: cannot read the value"),
        ([RECIPE, "--set", "=3"], "expected field=value"),
    ]
    if Path("/proc/self").exists():  # a virtual file system: access() says writable, mkdir fails
        cases.append(([RECIPE, "--runs-dir", "/proc/rft-workbench-runs"], "Cannot create"))
    for argv in cases:
        for mode in (["--validate-only"], ["--no-progress"]):
            code, out, err = run_cli(capsys, *argv[0], *mode)
            assert code == 2, (argv, err)
            assert err.startswith("error: ") and argv[1] in err and "Traceback" not in err, err
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_runs_folder_is_one_sentence(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for mode in ("--validate-only", "--no-progress"):
            code, _, err = run_cli(capsys, RECIPE, "--runs-dir", str(locked / "runs"), mode)
            assert code == 2 and "Cannot create" in err
    finally:
        locked.chmod(0o755)


def test_a_failed_run_exits_1_with_its_error_on_stderr(tmp_path, capsys):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # passes the folder check, fails to load
    code, out, err = run_cli(capsys, RECIPE, "--runs-dir", str(tmp_path / "runs"), "--no-progress",
                             "--set", f"model={broken}", "--set", "backend=trl")
    assert code == 1
    assert "Run failed:" in err and "Run failed" not in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and status["error"] and status["traceback"]


# -- tiny-model runs: alerts, --status, resume of a finished run, prompt stops --------------------------------------------
def tiny_spec_file(tmp_path: Path, model_dir: Path, **settings: object) -> str:
    spec = RunSpec(method="grpo", model=str(model_dir), backend="trl", rewards=[RewardSpec(name="numeric_answer")])
    values = {"data.task_params": "{n: 40}", "data.eval_size": 4, "training.max_steps": 5,
              "training.per_device_train_batch_size": 4, "generation.num_generations": 4,
              "generation.max_completion_length": 4, "generation.max_length": 64, "logging.save_steps": 100,
              "logging.eval_at_start": False, "logging.eval_at_end": False, **settings}
    spec = spec.with_overrides([f"{k}={v}" for k, v in values.items()])
    path = tmp_path / "tiny.yaml"
    path.write_text(spec.to_yaml())
    return str(path)


def test_cli_shows_alerts_and_status_and_trains_a_finished_run_further_only_when_asked(tiny_model_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, tiny_spec_file(tmp_path, tiny_model_dir), "--run-dir", str(run_dir), "--no-progress")
    assert code == 0, err
    # The random tiny model never answers right: the reward is 0 at every step, and the CLI says so once.
    assert out.count("Reward flat at zero") == 1 and "[health] warning at step 5: Reward flat at zero." in out
    code, out, _ = run_cli(capsys, "--status", str(run_dir))
    assert code == 0 and "finished at step 5 of 5" in out and "last     step 5:" in out
    assert "Reward flat at zero" in out
    code, _, err = run_cli(capsys, "--resume", str(run_dir), "--no-progress")
    assert code == 2 and "finished at step 5 of 5; start a new run, or raise training.max_steps" in err
    code, out, err = run_cli(capsys, "--resume", str(run_dir), "--max-steps", "6", "--no-progress")
    assert code == 0, err
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["step"] == 6
    assert RunSpec.load(run_dir / "spec.yaml").training.max_steps == 6  # written once the resumed worker started
    assert (run_dir / "adapter-step5" / "adapter_model.safetensors").exists()  # the earlier final adapter is kept
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()


def test_sigterm_during_the_start_evaluation_stops_within_seconds(tiny_model_dir, tmp_path):
    # 640 held-out rows × 400 tokens: the start evaluation takes ~10 s on a CPU, in 10 batches of 64 (with 64 rows, it
    # took 1.5 s, and a signal sent after 1 s could land after it).
    spec = tiny_spec_file(tmp_path, tiny_model_dir, **{"data.task_params": "{n: 1000}", "data.eval_size": 640,
                                                        "logging.eval_at_start": True, "logging.eval_max_new_tokens": 400})
    run_dir = tmp_path / "run"
    log = tmp_path / "out.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.train", spec, "--run-dir", str(run_dir), "--no-progress"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        deadline = time.time() + 240
        while "[eval step 0] evaluating" not in log.read_text() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.5)  # inside generate
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 3, log.read_text()
        assert time.time() - sent < 15, "the stop waited for the evaluation to finish"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped" and "start-of-run evaluation" in status["stop_reason"]
    assert "SIGTERM" in status["stop_reason"] and status["step"] == 0
    assert "accuracy" not in log.read_text()  # the evaluation did not run to its end
    records = runs.read_jsonl(run_dir / "metrics.jsonl")[0]
    assert not [r for r in records if "loss" in r]  # no training step after the signal


def test_a_stop_during_a_periodic_evaluation_stops_at_that_step_with_a_checkpoint(tiny_model_dir, tmp_path, capsys,
                                                                              monkeypatch):
    from app.engine.evaluation import evaluate as ev

    real = ev.evaluate
    calls = []

    def evaluate_then_stop(*args, **kwargs):  # the Stop button pressed while the step-1 evaluation generates
        calls.append(1)
        runs.request_stop(run_dir, signal_worker=False)
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "evaluate", evaluate_then_stop)
    run_dir = tmp_path / "run"
    spec = tiny_spec_file(tmp_path, tiny_model_dir, **{"logging.eval_every": 1})
    code, out, err = run_cli(capsys, spec, "--run-dir", str(run_dir), "--no-progress")
    assert code == 3, err
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped" and status["step"] == 1 and len(calls) == 1
    assert runs.latest_checkpoint(run_dir).name == "checkpoint-1"  # resumable from the step it stopped at
    records = runs.read_jsonl(run_dir / "metrics.jsonl")[0]
    assert max(r["step"] for r in records) == 1 and any(r.get("eval/stopped") for r in records)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
