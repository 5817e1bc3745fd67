"""The app's logic without a browser: folders, launching under the one-GPU rule, incremental run reading, the reward
playground, the spec form, the wizard's inputs, building the page, and the command line's exposure rules."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from app.engine.advice import presets
from app.engine.core import folders, processes, run_reader, runs, spawn
from app.engine.core.spec import METHODS, RewardSpec, RunSpec, SpecError
from app.engine.evaluation import playground as pg


# -- folders -----------------------------------------------------------------------------------------------------------
def test_paths_from_arguments_environment_and_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("RFT_WORKBENCH_HOME", raising=False)
    p = folders.resolve_paths(tmp_path / "r")
    assert p.runs_dir == (tmp_path / "r").resolve() and p.data_dir == tmp_path.resolve()
    assert p.preferences_file == tmp_path.resolve() / "preferences" / "pairs.jsonl"
    assert p.user_rewards_dir == tmp_path.resolve() / "user_rewards"
    monkeypatch.setenv("RFT_WORKBENCH_HOME", str(tmp_path / "home"))
    assert folders.resolve_paths(tmp_path / "r").data_dir == (tmp_path / "home").resolve()
    assert folders.resolve_paths(tmp_path / "r", tmp_path / "d").data_dir == (tmp_path / "d").resolve()
    monkeypatch.setenv("RFT_WORKBENCH_RUNS", str(tmp_path / "env-runs"))
    assert folders.resolve_paths().runs_dir == (tmp_path / "env-runs").resolve()


def test_only_the_apps_own_folders_are_served(tmp_path):
    p = folders.resolve_paths(tmp_path / "runs", tmp_path).ensure()
    served = [Path(s) for s in p.served()]
    assert tmp_path.resolve() not in served  # never the whole data dir (it may be the user's working folder)
    assert all(s.is_dir() and tmp_path.resolve() in s.parents for s in served)


def test_store_upload_keeps_a_lasting_copy(tmp_path):
    p = folders.resolve_paths(tmp_path / "runs", tmp_path).ensure()
    upload = tmp_path / "tmp" / "my data.jsonl"
    upload.parent.mkdir()
    upload.write_text('{"prompt": "a", "answer": "1"}\n')
    first = folders.store_upload(upload, p)
    assert first.parent == p.datasets_dir and first.name == "my-data.jsonl"
    assert folders.store_upload(upload, p) == first  # same content, same file
    upload.write_text('{"prompt": "b", "answer": "2"}\n')
    second = folders.store_upload(upload, p)
    assert second != first and second.read_text() == upload.read_text()


# -- defaults ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("gpu", [False, True])
def test_method_defaults_make_valid_specs(method, gpu):
    spec = presets.spec_with(RunSpec(rewards=[RewardSpec(name="numeric_answer")]), presets.method_defaults(method, gpu))
    assert spec.method == method
    spec.validate(check_files=False)


@pytest.mark.parametrize("answers, method", [
    (dict(has_preferences=False, has_labels=True, verifiable=True, n_examples=40, has_demonstrations=False), "grpo"),
    (dict(has_preferences=False, has_labels=True, verifiable=True, n_examples=40, has_demonstrations=True),
     "prefix_rft"),
    (dict(has_preferences=False, has_labels=True, verifiable=True, n_examples=5000, reasoning_helps=False), "sft"),
    (dict(has_preferences=False, has_labels=False, verifiable=False), "dpo"),
])
def test_recommended_spec_carries_the_recommendation_and_the_data(tmp_path, answers, method):
    from app.engine.advice.decision import Answers, recommend

    rec = recommend(Answers(**answers))
    pairs = tmp_path / "pairs.jsonl"
    data = {"source": "builtin:arithmetic", "task_params": {"n": 96}, "eval_size": 32, "format": "prompt_completion"}
    spec = presets.recommended_spec(rec, None, data, gpu=False, preferences_file=pairs)
    assert spec.method == method
    if method == "dpo":  # no pairs in the data yet: the run reads the pairs the app collects
        assert spec.data.source == str(pairs)
    else:
        assert (spec.data.source, spec.data.task_params, spec.data.eval_size) == ("builtin:arithmetic", {"n": 96}, 32)
        assert spec.problems() == []
    if method == "prefix_rft":
        assert spec.grpo.loss_type == "dr_grpo" and spec.grpo.beta == 0.0


def test_preference_spec_trains_dpo_on_the_collected_pairs(tmp_path):
    """The collection loop's 'Train DPO on these pairs' button: DPO defaults, the pairs file, no GRPO rewards."""
    from app.engine.data.preferences import write_arithmetic_pairs

    pairs = tmp_path / "pairs.jsonl"
    write_arithmetic_pairs(pairs, n=40)
    grpo = presets.spec_with(None, presets.method_defaults("grpo"))
    spec = presets.preference_spec(grpo.to_dict(), pairs, gpu=False)
    assert (spec.method, spec.data.source, spec.rewards) == ("dpo", str(pairs), [])
    assert spec.training.learning_rate == presets.method_defaults("dpo")["training"]["learning_rate"]
    assert spec.problems() == []


def test_recommended_spec_refuses_a_method_it_cannot_train():
    from types import SimpleNamespace

    with pytest.raises(ValueError, match="not available"):
        presets.recommended_spec(SimpleNamespace(method="orpo", spec_overrides={}))


def test_merge_nested_and_spec_with_errors():
    assert presets.merge_nested({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 3}, "l": [2]}) == {
        "a": {"b": 3, "c": 2}, "l": [2]}
    with pytest.raises(SpecError, match="training.max_stepz"):
        presets.spec_with(None, {"training": {"max_stepz": 3}})


# -- launching -----------------------------------------------------------------------------------------------------------
def fake_active_run(runs_dir: Path, name: str = "busy") -> Path:
    import psutil

    run_dir = runs.create_run_dir(RunSpec(name=name), runs_dir)
    runs.update_status(run_dir, state="running", pid=os.getpid(), pid_started_at=psutil.Process().create_time())
    return run_dir


def test_a_second_run_is_refused_on_a_gpu_and_warned_about_on_a_cpu(tmp_path):
    assert processes.launch_check(tmp_path, gpu=True) is None
    fake_active_run(tmp_path)
    with pytest.raises(processes.LaunchRefused, match="one run at a time holds it"):
        processes.launch_check(tmp_path, gpu=True)
    assert "share this machine's CPU" in processes.launch_check(tmp_path, gpu=False)
    spec = RunSpec(rewards=[RewardSpec(name="numeric_answer")])
    with pytest.raises(processes.LaunchRefused):
        processes.start_run(spec, tmp_path, gpu=True)
    assert len(runs.list_runs(tmp_path)) == 1  # nothing was created


def test_runs_get_the_gpus_they_ask_for_among_the_free_ones(tmp_path):
    """Several GPUs: a run asking for `distributed.processes` GPUs gets free ones, or a sentence naming who holds
    them; a run started by hand (no recorded devices) counts as holding its processes' worth from GPU 0."""
    first = fake_active_run(tmp_path, "first")
    runs.update_status(first, devices=[0, 1])
    assert processes.allot_devices(tmp_path, 2, total=4) == [2, 3]
    with pytest.raises(processes.LaunchRefused, match="'first' holds 2 of this machine's 4 GPUs; this run asks "
                                                      "for 3 and 2 are free"):
        processes.allot_devices(tmp_path, 3, total=4)
    by_hand = fake_active_run(tmp_path, "by-hand")
    runs.update_status(by_hand, processes=1)
    assert processes.allot_devices(tmp_path, 1, total=4) == [3]
    assert processes.allot_devices(tmp_path, 2, total=4, exclude=by_hand) == [2, 3]
    assert processes.launch_check(tmp_path, gpu=True, wanted=1, total=4) is None
    with pytest.raises(processes.LaunchRefused, match="asks for 2 and 1 is free"):
        processes.launch_check(tmp_path, gpu=True, wanted=2, total=4)
    with pytest.raises(processes.LaunchRefused, match="asks for 8 GPUs and this machine has 4"):
        processes.allot_devices(tmp_path / "empty", 8, total=4)
    # The app's launch records the GPUs it gave the worker (its CUDA_VISIBLE_DEVICES), for the next launch to skip.
    spec = RunSpec(rewards=[RewardSpec(name="numeric_answer")])
    run_dir = runs.create_run_dir(spec, tmp_path / "other")
    proc = runs.launch_run(run_dir, extra_args=["--validate-only"], devices=[3])
    assert runs.read_json(run_dir / "status.json")["devices"] == [3]
    proc.wait(timeout=300)


def test_a_running_method_comparison_holds_the_gpu_between_its_runs(tmp_path):
    """Between two methods of a comparison no run is active, yet the comparison will start the next one: on a GPU a
    launch from 3 · Train is refused until the comparison ends; on a CPU it is not."""
    import json

    import psutil

    from app.engine.evaluation import method_compare as mc

    folder = tmp_path / "data" / "comparisons" / "20261130-000000-arithmetic"
    folder.mkdir(parents=True)
    state = {"state": "running", "pid": os.getpid(), "pid_started_at": psutil.Process().create_time(), "methods": []}
    (folder / mc.COMPARISON_FILE).write_text(json.dumps(state))
    with pytest.raises(processes.LaunchRefused, match="method comparison"):
        processes.launch_check(tmp_path / "runs", gpu=True, data_dir=tmp_path / "data")
    assert processes.launch_check(tmp_path / "runs", gpu=False, data_dir=tmp_path / "data") is None
    (folder / mc.COMPARISON_FILE).write_text(json.dumps({**state, "state": "finished"}))
    assert processes.launch_check(tmp_path / "runs", gpu=True, data_dir=tmp_path / "data") is None


def test_an_invalid_spec_is_refused_before_anything_is_created(tmp_path):
    with pytest.raises(SpecError, match="GRPO needs at least one reward"):
        processes.start_run(RunSpec(rewards=[]), tmp_path, gpu=False)
    assert not list(tmp_path.iterdir())


def test_start_run_returns_at_once_and_the_worker_writes_the_folder(tmp_path):
    bad = RunSpec(rewards=[RewardSpec(name="numeric_answer")], model="default")
    bad.data.source = "builtin:arithmetic"
    start = time.time()
    run_dir, warning = processes.start_run(bad, tmp_path, gpu=False, extra_args=["--validate-only"])
    assert time.time() - start < 5 and warning is None
    assert (run_dir / "spec.yaml").exists() and runs.read_status(run_dir)["state"] == "queued"
    proc = spawn.child(run_dir)
    assert proc.wait(timeout=120) == 0
    assert "spec OK" in (run_dir / "train.log").read_text()


def test_stop_and_resume_messages(tmp_path):
    run_dir = runs.create_run_dir(RunSpec(), tmp_path)
    runs.update_status(run_dir, state="finished")
    assert "not running" in processes.stop_run(run_dir)
    with pytest.raises(processes.LaunchRefused, match="finished"):
        processes.resume_run(run_dir, gpu=False)
    import subprocess

    import psutil

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        active = runs.create_run_dir(RunSpec(name="active"), tmp_path)
        runs.update_status(active, state="running", pid=sleeper.pid,
                           pid_started_at=psutil.Process(sleeper.pid).create_time())
        with pytest.raises(processes.LaunchRefused, match="already running"):
            processes.resume_run(active, gpu=False)
        assert "Stop requested" in processes.stop_run(active)
        assert runs.stop_requested(active) and sleeper.wait(timeout=10) != 0  # SIGTERM reached the worker
    finally:
        sleeper.kill()


# -- reading runs --------------------------------------------------------------------------------------------------------
def test_run_reader_reads_only_new_lines_and_tolerates_a_torn_line(tmp_path):
    run_dir = runs.create_run_dir(RunSpec(name="r"), tmp_path)
    reader = run_reader.RunReader()
    assert reader.snapshot(run_dir).records == []
    runs.append_jsonl(run_dir / "metrics.jsonl", {"step": 1, "loss": 1.0})
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')  # being written
    snap = reader.snapshot(run_dir)
    assert [r["step"] for r in snap.records] == [1]
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('ss": 0.5}\n')
    snap2 = reader.snapshot(run_dir)
    assert [r["step"] for r in snap2.records] == [1, 2] and snap2.version != snap.version
    assert snap2.spec.name == "r" and snap2.method == "grpo"
    (run_dir / "metrics.jsonl").write_text('{"step": 7}\n')  # replaced (a new file): read again from the start
    assert [r["step"] for r in reader.snapshot(run_dir).records] == [7]


def test_samples_by_step_and_eval_samples():
    samples = [{"step": s, "index": i} for s in (2, 4) for i in range(2)]
    assert run_reader.sample_steps(samples) == [2, 4]
    assert {s["step"] for s in run_reader.samples_at(samples, None)} == {4}
    assert {s["step"] for s in run_reader.samples_at(samples, 3)} in ({2}, {4})
    assert run_reader.samples_at([], 1) == []
    records = [{"step": 0, "eval/samples": [{"prompt": "p"}]}, {"step": 1, "loss": 1}]
    assert run_reader.eval_samples(records) == [{"prompt": "p", "step": 0}]


def test_runs_table_choices_pick_and_log_tail(tmp_path):
    old = runs.create_run_dir(RunSpec(name="old"), tmp_path)
    runs.update_status(old, state="finished", final_eval={"eval/accuracy": 0.5}, created_at=time.time() - 100)
    new = runs.create_run_dir(RunSpec(name="new"), tmp_path)
    runs.update_status(new, state="stopped")
    headers, rows = run_reader.runs_table(tmp_path)
    assert headers[0] == "run" and [r[0] for r in rows] == ["new", "old"] and rows[1][5] == "50%"
    assert [v for _, v in run_reader.run_choices(tmp_path)] == [new.name, old.name]
    assert run_reader.pick_run(tmp_path) == new
    active = fake_active_run(tmp_path, "active")
    runs.update_status(active, created_at=time.time() - 1000)
    assert run_reader.pick_run(tmp_path) == active  # an active run wins over newer ones
    (new / "train.log").write_text("x" * 100 + "\rprogress\n")
    assert run_reader.log_tail(new, chars=20).endswith("\nprogress\n")
    assert run_reader.log_tail(tmp_path / "missing") == ""


# -- reward playground ---------------------------------------------------------------------------------------------------
def test_typed_completions_split_by_line_or_separator():
    assert pg.split_completions("a\n\nb\n") == ["a", "b"]
    assert pg.split_completions("line 1\nline 2\n---\nsecond\n---\n") == ["line 1\nline 2", "second"]
    rows = pg.typed_rows("Q?", "1\n2", answer=" 2 ", columns={"tests": ["x"]})
    assert rows == [{"tests": ["x"], "answer": "2", "prompt": "Q?", "completion": "1"},
                    {"tests": ["x"], "answer": "2", "prompt": "Q?", "completion": "2"}]
    with pytest.raises(pg.PlaygroundError, match="at least one completion"):
        pg.typed_rows("Q", "  \n")
    with pytest.raises(pg.PlaygroundError, match="JSON object"):
        pg.parse_columns("[1]")


def test_reward_table_rows_are_checked():
    assert pg.parse_reward_rows([["numeric_answer", 1, "{}"], ["", 2, ""], ["length", "0.5", '{"max_length": 9}']]) == [
        ("numeric_answer", 1.0, {}), ("length", 0.5, {"max_length": 9})]
    with pytest.raises(pg.PlaygroundError, match="Weight of length"):
        pg.parse_reward_rows([["length", "heavy", "{}"]])
    with pytest.raises(pg.PlaygroundError, match="not valid JSON"):
        pg.parse_reward_rows([["length", 1, "{max: 3}"]])
    with pytest.raises(pg.PlaygroundError, match="tolerance"):
        pg.build_rewards([("numeric_answer", 1.0, {"tolerence": 1})])
    with pytest.raises(pg.PlaygroundError, match="at least one"):
        pg.build_rewards([])


def test_playground_scores_a_group_with_advantages_and_flags_zero_variance():
    funcs, user = pg.build_rewards([("numeric_answer", 1.0, {})])
    assert user is None
    rows = pg.typed_rows("What is 17 + 25?", "42\n41\n42\n40", answer="42")
    result = pg.run_playground(rows, funcs, group_size=len(rows))
    assert result.headers == ["#", "completion", "numeric_answer", "total", "advantage"]
    assert [r[-1] for r in result.rows] == pytest.approx([0.866, -0.866, 0.866, -0.866], abs=1e-3)
    assert result.groups[0]["zero_variance"] is False and not result.zero_variance
    flat = pg.run_playground(pg.typed_rows("Q", "41\n40", answer="42"), funcs, group_size=2)
    assert flat.zero_variance and flat.groups[0]["zero_variance"]
    rows = pg.dataset_rows("builtin:arithmetic", 3)
    table = pg.run_playground(rows, funcs)
    assert [r[2] for r in table.rows] == [1.0, 1.0, 1.0] and "advantage" not in table.headers  # references score 1


def test_user_reward_errors_carry_line_numbers_and_prints_are_captured():
    import rewards

    code = "def mine(completions, **kwargs):\n    print('n =', len(completions))\n    return [len(c) / 0 for c in completions]\n"
    funcs, user = pg.build_rewards([], code, 2.0)
    try:
        result = pg.run_playground(pg.typed_rows("Q", "a\nb"), funcs, group_size=2)
    finally:
        user.close()
    assert result.errors == ["mine · completions 1, 2: line 3 in mine: ZeroDivisionError: division by zero"]
    assert result.prints == {"mine": "n = 2\n"} and "line 3" in result.tracebacks["mine"]
    assert result.summary_rows[0][:2] == ["mine", 2.0]
    with pytest.raises(rewards.RewardCodeError) as info:
        pg.build_rewards([], "def mine(completions, **kwargs)\n    return []\n")
    assert info.value.line == 1


def test_prompt_row_and_reference_completion():
    assert pg.prompt_row(None, prompt=" Q ", answer="4") == {"prompt": "Q", "answer": "4"}
    row = pg.prompt_row("builtin:arithmetic", index=2)
    assert row["prompt"].startswith("What is") and "completion" not in row
    assert pg.reference_completion({"messages": [{"role": "user", "content": "q"},
                                                 {"role": "assistant", "content": "a"}]}) == "a"
    with pytest.raises(pg.PlaygroundError):
        pg.prompt_row(None)
    with pytest.raises(pg.PlaygroundError, match="does not exist"):
        pg.dataset_rows("/no/such.jsonl")


def test_sample_rows_from_a_model(tiny_model_dir):
    rows = pg.sample_rows({"prompt": "Hi", "answer": "1"}, f"base::{tiny_model_dir}", n=3, max_new_tokens=4)
    assert len(rows) == 3 and all(r["answer"] == "1" and r["prompt"][-1]["content"] == "Hi" for r in rows)
    with pytest.raises(pg.PlaygroundError, match="between 2"):
        pg.sample_rows({"prompt": "Hi"}, f"base::{tiny_model_dir}", n=1)


def test_save_and_list_user_rewards(tmp_path):
    import rewards

    path = pg.save_user_reward(rewards.USER_REWARD_TEMPLATE, "My reward!", tmp_path)
    assert path.name == "My_reward.py" and path.read_text() == rewards.USER_REWARD_TEMPLATE
    assert pg.list_user_rewards(tmp_path) == [path]
    with pytest.raises(rewards.RewardCodeError):
        pg.save_user_reward("def broken(:\n", "x", tmp_path)
    with pytest.raises(pg.PlaygroundError):
        pg.reward_file_name("!!!")
    specs = pg.reward_specs([("numeric_answer", 1.0, {})], path, 0.5)
    assert specs[-1] == {"file": str(path), "weight": 0.5}
    spec = RunSpec.from_dict({"rewards": specs})
    spec.validate(check_files=False)


# -- UI helpers (no browser) ---------------------------------------------------------------------------------------------
def test_train_form_round_trips_the_spec():
    from app.ui import train

    spec = RunSpec(rewards=[RewardSpec(name="numeric_answer")]).to_dict()
    values = train.spec_to_form(spec)
    assert len(values) == len(train.FIELDS) and len(set(train.FIELD_IDS.values())) == len(train.FIELDS)
    values[[f[0] for f in train.FIELDS].index("training.max_steps")] = 3.0  # gr.Number gives floats
    values[[f[0] for f in train.FIELDS].index("data.train_size")] = None
    new = train.form_to_spec(spec, values)
    assert new.training.max_steps == 3 and isinstance(new.training.max_steps, int)
    assert new.rewards[0].name == "numeric_answer"  # fields not in the form are kept
    paths = [f[0] for f in train.FIELDS]
    values[paths.index("logging.report_to")] = ["tensorboard", "trackio"]  # the tracker checkboxes
    values[paths.index("logging.report_to_optional")] = True
    picked = train.form_to_spec(spec, values).logging
    assert picked.report_to == ["tensorboard", "trackio"] and picked.report_to_optional
    values[paths.index("logging.report_to")] = ["nosuch"]
    with pytest.raises(SpecError, match="logging.report_to"):
        train.form_to_spec(spec, values).validate()
    values[paths.index("logging.report_to")] = []
    values[[f[0] for f in train.FIELDS].index("training.learning_rate")] = "fast"
    with pytest.raises(SpecError, match="training.learning_rate"):
        train.form_to_spec(spec, values)


def recommend_method(answers) -> str:
    from app.engine.advice.decision import recommend

    return recommend(answers).method


def test_wizard_inputs_to_answers():
    from app.ui import decide

    assert decide.parse_count("2,500") == 2500 and decide.parse_count("") is None and decide.parse_count("x") is None
    answers = decide.answers_from_inputs(["No", "Yes", "Yes", "Not sure", "No", "Not sure", "64"], ["numeric_answer"])
    assert (answers.has_preferences, answers.has_labels, answers.verifiable, answers.reasoning_helps,
            answers.has_demonstrations, answers.model_can_judge, answers.n_examples) == (False, True, True, None,
                                                                                           False, None, 64)
    rlaif = decide.answers_from_inputs(["No", "No", "No", "Not sure", "Not sure", "Yes", ""], None)
    assert recommend_method(rlaif) == "grpo"  # question 7: a model judge, with GRPO
    from app.engine.advice.decision import recommend

    html = decide.recommendation_html(recommend(answers))
    assert "GRPO" in html and "<script" not in html


def test_status_and_samples_rendering(tmp_path):
    from app.ui import train

    run_dir = runs.create_run_dir(RunSpec(name="<b>x</b>"), tmp_path)
    runs.update_status(run_dir, state="failed", error="boom <script>", traceback="Traceback...", step=3,
                       max_steps=10, started_at=time.time() - 65)
    html = train.status_html(run_reader.RunReader().snapshot(run_dir))
    assert "failed" in html and "boom &lt;script&gt;" in html and "&lt;b&gt;x&lt;/b&gt;" in html and "1:0" in html
    runs.update_status(run_dir, state="running", trackers={"tensorboard": f"{run_dir}/tensorboard"},
                       trackers_skipped={"wandb": "wandb is not installed: pip install -r requirements-trackers.txt"})
    html = train.status_html(run_reader.RunReader().snapshot(run_dir))
    assert f"tensorboard → {run_dir}/tensorboard" in html and "Tracker wandb skipped: wandb is not installed" in html
    frame = train.samples_frame([{"step": 1, "index": 0, "prompt": "p", "completion": "c",
                                  "rewards": {"numeric_answer": 1.0}, "advantage": 0.12345}])
    assert list(frame.columns) == ["#", "prompt", "completion", "numeric_answer", "advantage"]
    assert frame.iloc[0]["advantage"] == 0.123


def test_build_demo_without_launching(tmp_path):
    from app.ui.shell import build_demo, launch_kwargs

    demo = build_demo(tmp_path / "runs", tmp_path / "data")
    ctx = demo.wb_context
    for key in ("decide.rec_html", "rewards.code", "train.launch_btn", "train.timer", "compare.models"):
        assert key in ctx.components
    kwargs = launch_kwargs(ctx.paths)
    assert kwargs["max_file_size"] == "50mb" and str(tmp_path / "runs") in kwargs["allowed_paths"]
    assert str(tmp_path) not in kwargs["allowed_paths"]


# -- command line ----------------------------------------------------------------------------------------------------------
def test_exposing_the_server_requires_a_login():
    from app.__main__ import check_exposure, parse_args

    assert check_exposure(parse_args([])) is None
    assert check_exposure(parse_args(["--host", "::1"])) is None
    for argv in (["--host", "0.0.0.0"], ["--share"], ["--host", "192.168.1.5", "--auth", "nopassword"]):
        with pytest.raises(SystemExit) as info:
            check_exposure(parse_args(argv))
        assert "auth" in str(info.value)
    assert check_exposure(parse_args(["--host", "0.0.0.0", "--auth", "me:s3:cret"])) == ("me", "s3:cret")


def test_cli_refuses_host_without_auth_before_starting(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "app", "--host", "0.0.0.0", "--runs-dir", str(tmp_path)],
                          cwd=root, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(root)))
    assert proc.returncode != 0 and "--auth USER:PASSWORD" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_json_records_from_the_playground_are_plain():
    funcs, _ = pg.build_rewards([("numeric_answer", 1.0, {})])
    result = pg.run_playground(pg.typed_rows("Q", "1\n2", answer="1"), funcs, group_size=2)
    json.dumps(result.records)


def test_train_form_components_follow_the_fields_order(tmp_path):
    from app.ui import train
    from app.ui.shell import build_demo

    ctx = build_demo(tmp_path / "runs").wb_context
    for path, *_ in train.FIELDS:
        assert ctx.components[f"train.{path}"].elem_id == train.FIELD_IDS[path]
    assert train.section_visible("DPO", "dpo") and not train.section_visible("DPO", "grpo")
    assert train.section_visible("GRPO", "prefix_rft") and train.section_visible("Training", "sft")
