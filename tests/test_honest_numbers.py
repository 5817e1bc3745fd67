"""Honest numbers: leak-free held-out splits, one definition of accuracy, step times without evaluations, playground
advantages that follow the spec, and results over several seeds with confidence intervals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.engine.core import runs
from app.engine.core.spec import DataSpec, RunSpec, SpecError
from app.engine.data.sources import DataError, load_data
from app.engine.data.splits import overlap, prompt_key
from app.engine.data.tasks import arithmetic_key
from app.engine.evaluation import method_compare as mc
from app.engine.evaluation.evaluate import (
    NO_ACCURACY,
    accuracy,
    correctness_reward,
    table_accuracy,
)
from app.engine.evaluation.stats import (
    bootstrap_difference,
    kept_step_seconds,
    parse_seeds,
    resolvable_difference,
    summarize_arm,
)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# -- leak-free splits ---------------------------------------------------------------------------------------------
def test_no_held_out_addition_has_its_commuted_twin_in_training():
    data = load_data(DataSpec(source="builtin:arithmetic", eval_size=64))
    held = {arithmetic_key(r["prompt"]) for r in data.eval}
    assert len(held) == 64  # 64 distinct unordered pairs
    assert not any(arithmetic_key(r["prompt"]) in held for r in data.train)
    report = data.split
    assert report.dropped_train_rows > 40  # most held-out a + b have a b + a twin among the 2,500 generated rows
    assert report.dropped_example and arithmetic_key(report.dropped_example["train"]) == arithmetic_key(
        report.dropped_example["held_out"])
    assert f"dropped {report.dropped_train_rows} training rows that repeat held-out questions" in report.sentence()


def test_an_exact_duplicate_prompt_is_never_on_both_sides(tmp_path):
    rows = [{"prompt": f"question {i}", "answer": str(i)} for i in range(20)]
    rows += [{"prompt": "question 3", "answer": "3"}] * 5  # the same question five more times
    data = load_data(DataSpec(source=write_jsonl(tmp_path / "d.jsonl", rows), eval_size=6, seed=1))
    assert overlap(data.train, data.eval) == 0
    assert len({prompt_key(r) for r in data.eval}) == len(data.eval) == 6
    assert len(data.train) + len(data.eval) + data.split.dropped_train_rows == len(rows)


def test_chat_prompts_that_differ_in_whitespace_case_or_system_prompt_are_one_question(tmp_path):
    def chat(text: str, system: str | None = None) -> dict:
        turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return {"prompt": turns, "answer": "5"}

    rows = [chat(f"What is {i} squared?") for i in range(10)]
    rows += [chat("  what IS 2\n squared?  ", system="Be brief."), chat("What is 2 squared?")]
    data = load_data(DataSpec(source=write_jsonl(tmp_path / "c.jsonl", rows), eval_size=4, seed=0))
    held = {prompt_key(r) for r in data.eval}
    assert not any(prompt_key(r) in held for r in data.train)
    assert len(data.train) + len(data.eval) + data.split.dropped_train_rows == 12
    if "what is 2 squared?" in held:
        assert data.split.dropped_train_rows == 2


def test_eval_source_equal_to_source_trains_only_on_what_is_not_held_out(tmp_path):
    path = write_jsonl(tmp_path / "same.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in range(30)])
    data = load_data(DataSpec(source=path, eval_source=path, eval_size=8))
    assert len(data.eval) == 8 and len(data.train) == 22 and data.split.dropped_train_rows == 8
    assert overlap(data.train, data.eval) == 0
    # Every row of the source is a held-out question: nothing is left to train on, said before any model loads.
    spec = RunSpec.from_dict({"method": "grpo", "rewards": [{"name": "numeric_answer"}],
                              "data": {"source": path, "eval_source": path, "eval_size": 30}})
    with pytest.raises(SpecError, match="training would learn the test"):
        spec.validate()


def test_an_eval_size_the_data_cannot_spare_is_one_sentence(tmp_path):
    path = write_jsonl(tmp_path / "small.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in range(10)])
    with pytest.raises(DataError, match=r"data.eval_size is 64, but .* has only 10 rows with 10 distinct questions"):
        load_data(DataSpec(source=path, eval_size=64))
    spec = RunSpec.from_dict({"method": "sft", "data": {"source": path, "eval_size": 10}})
    with pytest.raises(SpecError) as info:
        spec.validate()
    assert info.value.field == "data.eval_size" and "no training rows would remain" in str(info.value)


def test_the_profiler_counts_duplicates_by_the_split_key():
    from app.engine.data.profile import profile_dataset

    rows = [{"prompt": "What is 1 + 1?", "answer": "2"}, {"prompt": "what is 1 +  1?", "answer": "2"},
            {"prompt": "What is 2 + 2?", "answer": "4"}]
    profile = profile_dataset(rows)
    assert profile.n_duplicate_prompts == 1
    assert any("1 rows repeat an earlier prompt (e.g. row 2 repeats row 1)" in w for w in profile.warnings)


def test_compare_never_passes_training_rows_off_as_held_out(tmp_path):
    from app.engine.evaluation import compare as cmp

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = RunSpec.from_dict({"method": "sft", "data": {"source": "builtin:arithmetic", "eval_size": 0,
                                                         "task_params": {"n": 20}}})
    (run_dir / "spec.yaml").write_text(spec.to_yaml())
    with pytest.raises(cmp.CompareError, match="held out no rows.*seen in training"):
        cmp.held_out_rows(run_dir)
    rows, _system = cmp.training_rows(run_dir, 3)
    assert len(rows) == 3


# -- one accuracy -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scores, value, n_scored, n_unscored", [
    ([1.0, 0.0, 1.0, 0.0], 0.5, 4, 0),
    ([1.0, None, None, 0.0], 0.5, 2, 2),  # rows the reward does not apply to are left out, and counted
    ([None, None], None, 0, 2),  # nothing scored: no accuracy
    ([0.999999999999, 0.5, float("nan")], 0.5, 2, 1),  # full marks allow float noise; NaN is "not scored"
    ([], None, 0, 0),
])
def test_accuracy_is_the_share_of_scored_rows_with_full_marks(scores, value, n_scored, n_unscored):
    acc = accuracy(scores)
    assert (acc.value, acc.n_scored, acc.n_unscored) == (value, n_scored, n_unscored)


@pytest.mark.parametrize("names, registry, expected", [
    (["numeric_answer"], ["numeric_answer"], "numeric_answer"),
    (["format_tags", "gsm"], ["format_tags", "gsm8k_answer"], "gsm"),  # the correctness reward, by its metric name
    (["format_tags", "length"], ["format_tags", "length"], None),  # a format reward never becomes "accuracy"
    (["my_reward"], [None], None),  # user code: mean reward only
])
def test_only_a_correctness_reward_defines_accuracy(names, registry, expected):
    assert correctness_reward(names, registry) == expected


def test_weighted_rewards_do_not_change_accuracy():
    from rewards import score

    rows = [{"prompt": "What is 2 + 2?", "completion": c, "answer": "4"} for c in ("4", "5", "4 is the answer")]
    table = score(rows, [("numeric_answer", 0.3), ("length", 2.0)])
    acc = table_accuracy(table.rows, "numeric_answer")
    assert acc.n_correct == 2 and acc.n_scored == 3
    assert table_accuracy(table.rows, None) == NO_ACCURACY


# -- clean timings ------------------------------------------------------------------------------------------------
def test_step_time_excludes_the_periodic_evaluation(tiny_model_dir, tmp_path, monkeypatch):
    import time as real_time

    from app.engine.evaluation import evaluate as evaluate_module
    from app.engine.training import callbacks as callbacks_module
    from app.engine.training.worker import train

    class Clock:
        """The real clock, plus 100 s that pass during each evaluation (deterministic, no sleeping)."""

        offset = 0.0

        def perf_counter(self) -> float:
            return real_time.perf_counter() + self.offset

        def time(self) -> float:
            return real_time.time() + self.offset

    clock = Clock()
    real_generate = evaluate_module.generate_completions

    def slow_generate(*args, **kwargs):
        clock.offset += 100.0
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "generate_completions", slow_generate)
    monkeypatch.setattr(evaluate_module, "time", clock)
    monkeypatch.setattr(callbacks_module, "time", clock)
    spec = RunSpec.from_dict({
        "method": "sft", "model": str(tiny_model_dir), "backend": "trl",
        "data": {"source": "builtin:arithmetic", "task_params": {"n": 40}, "eval_size": 4},
        "rewards": [{"name": "numeric_answer"}],
        "training": {"max_steps": 3, "per_device_train_batch_size": 4},
        "generation": {"max_length": 64, "max_completion_length": 4},
        "logging": {"eval_every": 1, "save_steps": 100, "eval_max_new_tokens": 4},
    })
    result = train(spec, runs_dir=tmp_path, progress_bar=False, log=lambda m: None)
    assert result.ok, result.error
    records, _ = runs.read_jsonl(result.run_dir / "metrics.jsonl")
    steps = [r for r in records if "step_time" in r]
    evals = [r for r in records if "eval/seconds" in r and not r.get("final")]  # the final line repeats step 3
    assert len(steps) == 3 and len(evals) == 4  # step 0 and every step
    assert all(r["eval/seconds"] >= 100 for r in evals)
    assert all(r["step_time"] < 100 for r in steps), [r["step_time"] for r in steps]
    status = runs.read_status(result.run_dir)
    assert status["split"]["held_out"] == 4 and "dropped_train_rows" in status["split"]
    outcomes = runs.read_jsonl(result.run_dir / runs.EVALS_FILE)[0]
    assert [o["step"] for o in outcomes] == [0, 1, 2, 3] and all(len(o["correct"]) == 4 for o in outcomes)


def test_train_time_counts_each_kept_step_once():
    records = [{"step": s, "step_time": 2.0} for s in (1, 2, 3, 4)]
    records += [{"step": 3, "eval/seconds": 50.0}]  # an evaluation line: not training time
    records += [{"step": s, "step_time": 3.0} for s in (3, 4, 5)]  # resumed from checkpoint-2: 3 and 4 redone
    assert kept_step_seconds(records) == 2 * 2.0 + 3 * 3.0
    assert kept_step_seconds([{"step": 10, "step_time": 1.5}]) == 15.0  # one line covering ten steps


# -- playground advantages ----------------------------------------------------------------------------------------
def test_playground_advantages_follow_the_spec():
    from app.engine.evaluation import playground as pg

    rows = pg.typed_rows("What is 2 + 2?", "4\n5\n4\n6", "4")
    funcs = [(pg.build_rewards([("numeric_answer", 1.0, {})])[0][0][0], 1.0)]
    none = pg.run_playground(rows, funcs, group_size=4, spec={"method": "grpo", "grpo": {"scale_rewards": "none"}})
    assert [r[-1] for r in none.rows] == [0.5, -0.5, 0.5, -0.5]  # reward minus the group mean
    assert "scale_rewards: none" in none.advantage_note
    group = pg.run_playground(rows, funcs, group_size=4, spec={"method": "grpo", "grpo": {"scale_rewards": "group"}})
    assert [r[-1] for r in group.rows] == [0.866, -0.866, 0.866, -0.866]
    prefix = pg.run_playground(rows, funcs, group_size=4, spec={"method": "prefix_rft"})
    assert [r[-1] for r in prefix.rows] == [0.5, -0.5, 0.5, -0.5] and "Prefix-RFT" in prefix.advantage_note


# -- seeds and intervals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [("42,x", "not an integer"), ("1,2,1", "listed twice"), ("4.5", "integer")])
def test_bad_seeds_are_one_sentence(text, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)


def test_intervals_on_fixed_inputs():
    outcomes = {1: [1.0, 0.0] * 64, 2: [1.0, 1.0, 0.0, 0.0] * 32, 3: [1.0, 0.0, 0.0, 0.0] * 32}
    arm = summarize_arm({k: sum(v) / len(v) for k, v in outcomes.items()}, outcomes)
    assert arm.n_seeds == 3 and arm.n_rows == 128 and arm.interval == "seeds × rows"
    assert arm.mean == pytest.approx((0.5 + 0.5 + 0.25) / 3)
    assert arm.min == 0.25 and arm.max == 0.5 and arm.std == pytest.approx(0.1443, abs=1e-3)
    assert arm.ci_low < arm.mean < arm.ci_high and arm.ci_low > 0.25 and arm.ci_high < 0.6
    assert summarize_arm({1: 0.5, 2: 0.5}, {1: [1.0, 0.0] * 64, 2: [0.0, 1.0] * 64}).ci_high < 0.65
    single = summarize_arm({1: 0.5}, {1: [1.0, 0.0] * 64})
    assert single.single_seed and "single seed" in single.text() and single.interval == "rows (single seed)"
    # A sure win is resolved, identical arms are not.
    better = bootstrap_difference([[1.0] * 100] * 2, [[0.0, 1.0] * 50] * 2)
    assert better[0] == pytest.approx(0.5) and better[1] > 0.3
    same = bootstrap_difference([[1.0, 0.0] * 50] * 2, [[0.0, 1.0] * 50] * 2)
    assert same[1] < 0 < same[2]
    assert resolvable_difference(128, 3) < resolvable_difference(64, 3)


def test_a_comparison_over_seeds_reports_mean_interval_and_each_run(tiny_model_dir, tmp_path):
    from test_method_compare import in_process, tiny_config

    config = tiny_config(tiny_model_dir, methods=["sft", "grpo"], steps=2, seeds=[3, 5])
    folder = mc.run_comparison(config, tmp_path / "cmp", tmp_path / "runs", launcher=in_process(), poll_seconds=0.01)
    result = mc.read_comparison(folder)
    assert [(m.key, m.seed) for m in result.methods] == [("sft", 3), ("grpo", 3), ("sft", 5), ("grpo", 5)]
    specs = [RunSpec.load(Path(m.run_dirs[0]) / "spec.yaml") for m in result.methods]
    assert [s.seed for s in specs] == [3, 3, 5, 5] and len({s.data.seed for s in specs}) == 1  # same held-out rows
    arms = result.arms
    assert [a.label for a in arms] == ["SFT", "GRPO"] and all(a.final.n_seeds == 2 for a in arms)
    assert all(a.final.ci_low is not None and a.final.interval == "seeds × rows" for a in arms)
    headers, rows = mc.results_table(result)
    assert headers[3] == "held-out accuracy (greedy): mean [95 % CI]" and rows[0][2] == "2/2"
    text = (folder / "table.md").read_text()
    assert "seeds 3, 5" in text and "Pairwise differences" in text and "cannot be told apart" in text
    assert "| SFT | 3 | finished |" in text  # each run is listed too
    figure = mc.curves_figure(result)
    assert any(t.fill == "toself" for t in figure.data)  # the interval band
    assert mc.cli_command(config).count("--seeds 3,5") == 1
    assert "runs (2 seeds × 2 methods)" in mc.status_line(result)


def test_a_single_seed_result_is_labelled_as_such(tiny_model_dir, tmp_path):
    from test_method_compare import in_process, tiny_config

    folder = mc.run_comparison(tiny_config(tiny_model_dir, methods=["sft"], steps=1), tmp_path / "cmp",
                               tmp_path / "runs", launcher=in_process(), poll_seconds=0.01)
    headers, _rows = mc.results_table(mc.read_comparison(folder))
    assert "held-out accuracy (greedy, single seed)" in headers
    assert "single seed" in (folder / "table.md").read_text()
    from app.engine.advice.decision import EVIDENCE

    assert all("seed" in text for text in EVIDENCE.values())


def test_comparisons_run_side_by_side_merge_into_one_table(tmp_path):
    """Two comparison processes (other methods, same settings and seeds) become one comparison of all methods."""
    def fake_run(name: str, final: list[float]) -> str:
        run_dir = tmp_path / name
        run_dir.mkdir()
        runs.update_status(run_dir, state="finished", step=4, started_at=1.0, ended_at=2.0)
        final = final * 16  # 128 held-out rows
        for step, outcomes in ((0, [0.0] * 128), (4, final)):
            runs.append_jsonl(run_dir / "metrics.jsonl", {"step": step, "eval/accuracy": sum(outcomes) / 128})
            runs.append_jsonl(run_dir / runs.EVALS_FILE, {"step": step, "correct": outcomes})
        return str(run_dir)

    folders = []
    for key, finals in (("sft", ([0.0] * 6 + [1.0] * 2, [0.0] * 5 + [1.0] * 3)),
                        ("grpo", ([1.0] * 6 + [0.0] * 2, [1.0] * 7 + [0.0]))):
        config = mc.CompareConfig(methods=[key], steps=4, eval_size=128, seeds=[1, 2])
        state = {"config": config.to_dict(), "state": "finished", "methods": [
            {"key": key, "label": mc.METHOD_LABELS[key], "seed": seed, "state": "finished",
             "runs": [{"run_dir": fake_run(f"{key}-{seed}", final), "max_steps": 4}]}
            for seed, final in zip((1, 2), finals)]}
        folder = tmp_path / f"cmp-{key}"
        folder.mkdir()
        (folder / mc.COMPARISON_FILE).write_text(json.dumps(state))
        folders.append(folder)
    merged = mc.read_comparison(mc.merge_comparisons(folders, tmp_path / "all"))
    assert [(m.key, m.seed) for m in merged.methods] == [("sft", 1), ("grpo", 1), ("sft", 2), ("grpo", 2)]
    assert [a.final.mean for a in merged.arms] == [pytest.approx(5 / 16), pytest.approx(13 / 16)]
    headers, rows = mc.differences_table(merged)
    assert rows[0][:2] == ["SFT", "GRPO"] and rows[0][-1] == "GRPO better"
    other = mc.CompareConfig(methods=["dft"], steps=5, eval_size=128, seeds=[1, 2])
    (tmp_path / "cmp-dft").mkdir()
    (tmp_path / "cmp-dft" / mc.COMPARISON_FILE).write_text(json.dumps(
        {"config": other.to_dict(), "state": "finished", "methods": []}))
    with pytest.raises(mc.CompareConfigError, match="differ in steps"):
        mc.merge_comparisons([folders[0], tmp_path / "cmp-dft"], tmp_path / "bad")
