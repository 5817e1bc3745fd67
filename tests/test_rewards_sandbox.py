"""User-written rewards: validation messages that point at the line, and every hostile case in the sandbox."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import textwrap
import time

import pytest

import rewards
from rewards import RewardCodeError, load_user_reward, load_user_reward_file
from rewards.sandbox import MAX_SOURCE_BYTES

FAST = dict(timeout_s=1.5, memory_mb=512)  # short limits keep the hostile cases quick

GOOD = textwrap.dedent('''\
    import re

    def last_number(completions, answer, **kwargs):
        print("scoring", len(completions))
        out = []
        for c, a in zip(completions, answer):
            text = c if isinstance(c, str) else c[-1]["content"]
            nums = re.findall(r"-?\\d+", text)
            out.append(None if a is None else float(bool(nums) and nums[-1] == str(a)))
        return out
''')

# One reward whose behaviour the completion picks: each hostile case costs its own call only.
HOSTILE = textwrap.dedent('''\
    import math, os, sys

    def chaos(completions, **kwargs):
        what = completions[0]
        if what == "raise":
            return [1 / 0]
        if what == "exit":
            sys.exit(3)
        if what == "_exit":
            os._exit(7)
        if what == "loop":
            while True:
                pass
        if what == "swallow-loop":
            while True:
                try:
                    pass
                except BaseException:
                    pass
        if what == "memory":
            blob = bytearray(10 ** 11)
        if what == "memory-grow":
            hog = []
            while True:
                hog.append(bytearray(10 ** 7))  # grows the address space until RLIMIT_AS stops it
        if what == "type":
            return 1.0
        if what == "length":
            return [1.0]
        if what == "nan":
            return [math.nan] + [0.5] * (len(completions) - 1)
        if what == "inf":
            return [math.inf] * len(completions)
        if what == "string":
            return ["1.0"] * len(completions)
        if what == "generator":
            return (1.0 for _ in completions)
        if what == "segfault":
            import ctypes
            ctypes.string_at(0)
        if what == "network":
            import urllib.request
            urllib.request.urlopen("http://example.com", timeout=1)
        if what == "big-file":
            with open("big.bin", "wb") as fh:
                fh.write(b"x" * (65 * 2 ** 20))
        if what == "flood":
            print("x" * 1_000_000)
        if what == "recursion":
            def down(n):
                return down(n + 1)
            down(0)
        return [1.0] * len(completions)
''')


@pytest.fixture(scope="module")
def chaos():
    reward = load_user_reward(HOSTILE, timeout_s=1.5, memory_mb=256)
    yield reward
    reward.close()


# --- loading and validation ---------------------------------------------------------------------------------------


def test_good_reward_runs_like_trl_calls_it():
    with load_user_reward(GOOD) as reward:
        assert reward.__name__ == "last_number"
        assert reward(["17 + 25 = 42", "43", "x"], answer=[42, "42", None]) == [1.0, 0.0, None]
        assert reward.last_prints.strip() == "scoring 3"
        assert reward.last_errors == [None, None, None]
        out = reward(prompts=[[{"role": "user", "content": "q"}]], completions=[[{"role": "assistant", "content": "42"}]],
                     completion_ids=[[1, 2]], answer=["42"], trainer_state=object(), log_extra=print, log_metric=print)
        assert out == [1.0]


def test_name_override_and_repr():
    with load_user_reward(GOOD, name="my_accuracy") as reward:
        assert reward.__name__ == "my_accuracy"
        assert "warm" in repr(reward)


@pytest.mark.parametrize("source,line,words", [
    ("def f(completions, **kw)\n    return []\n", 1, "expected ':'"),
    ("import re\n\ndef f(completions, **kw):\n    return [1.0 for c in completions\n", 4, "never closed"),
    ("def f(completions, **kw):\n    return []\n  x = 1\n", 3, "indent"),
    ("x = 1\nreturn x\n", 2, "'return' outside function"),
    ("", 1, "empty"),
    ("# just a comment\nx = 1\n", 1, "no reward function"),
    ("import os\n\ndef score(text):\n    return 1.0\n", 3, "def score(text)"),
    ("def a(completions, **kw):\n    return []\n\ndef b(completions, **kw):\n    return []\n", 4, "several functions"),
    ("import numpy_that_does_not_exist\n\ndef f(completions, **kw):\n    return []\n", 1, "ModuleNotFoundError"),
    ("def f(completions, **kw):\n    return []\n\nTABLE = {}\nTABLE['a'] + 1\n", 5, "KeyError"),
    ("def f(completions, /, **kw):\n    return []\n", 1, "cannot take a reward call"),
])
def test_errors_name_the_line(source, line, words):
    with pytest.raises(RewardCodeError) as err:
        load_user_reward(source, **FAST)
    assert err.value.line == line
    assert str(err.value).startswith(f"line {line}:")
    assert words in str(err.value)


def test_helpers_with_underscore_and_without_completions_are_fine():
    source = "def _norm(t):\n    return t.strip()\n\ndef helper(t):\n    return t\n\ndef r(completions, **kw):\n" \
             "    return [float(_norm(c) == 'a') for c in completions]\n"
    with load_user_reward(source, **FAST) as reward:
        assert reward.__name__ == "r" and reward(["a ", "b"]) == [1.0, 0.0]


def test_function_choice_and_signature_without_kwargs():
    source = "def a(completions, **kw):\n    return [1.0] * len(completions)\n\n" \
             "def b(completions, answer):\n    return [float(c == x) for c, x in zip(completions, answer)]\n"
    with load_user_reward(source, function="b", **FAST) as reward:
        # TRL passes prompts, completion_ids, trainer_state...: only the named parameters are given to b
        assert reward(["1", "2"], answer=["1", "1"], prompts=["p", "p"], trainer_state=None) == [1.0, 0.0]
        assert reward(["1"], solution=["1"]) == [None]
        assert "needs 'answer'" in reward.last_errors[0] and "solution" in reward.last_errors[0]
    with pytest.raises(RewardCodeError, match="no top-level function named 'c'"):
        load_user_reward(source, function="c")


def test_sample_rows_check_the_return_value_and_runtime_errors():
    rows = [{"prompt": "What is 17 + 25?", "completion": "42", "answer": "42"}]
    with load_user_reward(GOOD, sample_rows=rows, **FAST) as reward:
        assert reward(["42"], answer=["42"]) == [1.0]
    wrong_type = "import math\n\ndef f(completions, **kw):\n    return math.nan\n"
    with pytest.raises(RewardCodeError) as err:
        load_user_reward(wrong_type, sample_rows=rows, **FAST)
    assert err.value.line == 3 and str(err.value).startswith("line 3 in f: returned a float")
    nan = "def f(completions, **kw):\n    return [float('nan')] * len(completions)\n"
    with pytest.raises(RewardCodeError, match=r"^line 1 in f: score 0 is nan"):
        load_user_reward(nan, sample_rows=rows, **FAST)
    crash = "def f(completions, answer, **kw):\n    x = {}\n    return [x[a] for a in answer]\n"
    with pytest.raises(RewardCodeError) as err:
        load_user_reward(crash, sample_rows=rows, **FAST)
    assert err.value.line == 3 and "KeyError: '42'" in str(err.value) and "sample row 0" in str(err.value)
    assert "x[a]" in err.value.detail


def test_size_cap():
    source = "def f(completions, **kw):\n    return [1.0] * len(completions)\n" + "#" * MAX_SOURCE_BYTES
    with pytest.raises(RewardCodeError, match="limit is 256 kB") as err:
        load_user_reward(source)
    assert err.value.line is None


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="'timeout_s'"):
        load_user_reward(GOOD, timeout_s=0)
    with pytest.raises(ValueError, match="'memory_mb'"):
        load_user_reward(GOOD, memory_mb=16)


def test_top_level_endless_loop(monkeypatch):
    monkeypatch.setattr(rewards.sandbox, "LOAD_TIMEOUT_S", 1.0)
    with pytest.raises(RewardCodeError, match="top level took over"):
        load_user_reward("while True:\n    pass\n\ndef f(completions, **kw):\n    return []\n", timeout_s=0.5)


def test_load_from_file(tmp_path):
    path = tmp_path / "my_reward.py"
    path.write_text("def f(completions, **kw):\n    return [len(c) / 10 for c in completions]\n")
    with load_user_reward_file(path, **FAST) as reward:
        assert reward(["abc"]) == [0.3]
    path.write_text("def f(completions, **kw):\n    x = )\n")
    with pytest.raises(RewardCodeError) as err:
        load_user_reward_file(path)
    assert str(err.value).startswith(f"{path}: line 2:") and err.value.line == 2
    with pytest.raises(RewardCodeError, match="no such file"):
        load_user_reward_file(tmp_path / "missing.py")


def test_runtime_error_names_the_users_line():
    source = "def f(completions, **kw):\n    total = 0\n    return [1 / total for c in completions]\n"
    with load_user_reward(source, **FAST) as reward:
        assert reward(["a", "b"]) == [None, None]
        assert reward.last_errors == ["line 3 in f: ZeroDivisionError: division by zero"] * 2
        assert 'line 3' in reward.last_traceback and "ZeroDivisionError" in reward.last_traceback


# --- hostile cases: each costs its batch, never the caller, and the next call works ---------------------------------


@pytest.mark.parametrize("case,error_words", [
    ("raise", "ZeroDivisionError"),
    ("exit", r"sys\.exit\(3\)"),
    ("_exit", "exited with code 7"),
    ("loop", r"timed out after 1\.5 s"),
    ("swallow-loop", "timed out"),
    ("memory", "MemoryError"),
    ("memory-grow", "MemoryError|timed out"),  # which limit stops it first depends on the machine's load
    ("type", "returned a float, not a list of 2 scores"),
    ("length", "returned 1 scores for 2 completions"),
    ("string", r"is a str \('1\.0'\), not a number"),
    ("generator", "generator"),
    ("segfault", "segmentation fault"),
    ("network", "network access is disabled"),
    ("recursion", "RecursionError"),
    ("big-file", "File too large"),
])
def test_hostile_case_costs_only_its_batch(chaos, case, error_words):
    start = time.monotonic()
    assert chaos([case, "b"]) == [None, None]
    assert time.monotonic() - start < 5
    assert all(re.search(error_words, e) for e in chaos.last_errors), chaos.last_errors
    assert chaos(["fine", "b"]) == [1.0, 1.0]  # the next call works (the worker restarted if it had to)
    assert chaos.last_errors == [None, None]


def test_nan_and_inf_are_per_sample(chaos):
    assert chaos(["nan", "b", "c"]) == [None, 0.5, 0.5]
    assert chaos.last_errors[0] == "score 0 is nan, not a finite number" and chaos.last_errors[1:] == [None, None]
    assert chaos(["inf", "b"]) == [None, None]


def test_print_flood_is_truncated(chaos):
    assert chaos(["flood"]) == [1.0]
    assert 10_000 < len(chaos.last_prints) < 30_000 and "characters cut" in chaos.last_prints


def test_worker_is_kept_warm_and_replaced_after_a_timeout(chaos):
    chaos(["fine"])
    pid = chaos._proc.proc.pid
    for _ in range(5):
        chaos(["fine"])
    assert chaos._proc.proc.pid == pid
    chaos(["loop"])
    assert chaos._proc is None  # killed; restarts lazily
    chaos(["fine"])
    assert chaos._proc.proc.pid != pid


def test_limits_are_applied_in_the_worker():
    source = textwrap.dedent('''\
        import resource

        def limits(completions, **kwargs):
            names = ["RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CORE"]
            print({n: resource.getrlimit(getattr(resource, n))[0] for n in names})
            return [0.0] * len(completions)
    ''')
    with load_user_reward(source, timeout_s=2, memory_mb=300) as reward:
        reward(["a"])
        seen = eval(reward.last_prints)  # noqa: S307 - our own test output
    assert seen["RLIMIT_AS"] == 300 * 2**20
    assert 0 < seen["RLIMIT_CPU"] <= 2 + 5 + 60  # re-armed per call: CPU used so far + timeout + 5 s
    assert seen["RLIMIT_NOFILE"] == 256 and seen["RLIMIT_FSIZE"] == 64 * 2**20 and seen["RLIMIT_CORE"] == 0


def test_forked_child_gets_its_own_worker():
    reward = load_user_reward(GOOD, **FAST)
    parent_worker = reward._proc.proc.pid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child must not talk to (or kill) the parent's worker
        try:
            ok = reward(["42"], answer=["42"]) == [1.0] and reward._proc.proc.pid != parent_worker
            reward.close()
            os.write(write_end, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read_end, 1) == b"1"
    assert reward(["42"], answer=["42"]) == [1.0] and reward._proc.proc.pid == parent_worker
    reward.close()


def test_error_score_option():
    with load_user_reward("def f(completions, **kw):\n    raise ValueError('no')\n", error_score=0.0, **FAST) as r:
        assert r(["a"]) == [0.0] and "ValueError: no" in r.last_errors[0]


# --- isolation -----------------------------------------------------------------------------------------------------

SECRET_HOLDER = {"value": "parent-only"}


def test_no_access_to_parent_objects_env_secrets_or_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("RFT_PLAIN_SETTING", "visible")
    source = textwrap.dedent('''\
        import os, sys

        def probe(completions, **kwargs):
            main = sys.modules.get("__main__")
            seen = {
                "parent_global": hasattr(main, "SECRET_HOLDER") or "test_rewards_sandbox" in sys.modules,
                "token": os.environ.get("HF_TOKEN"),
                "plain": os.environ.get("RFT_PLAIN_SETTING"),
                "cwd": os.getcwd(),
                "pid": os.getpid(),
            }
            print(seen)
            open("scratch.txt", "w").write("temporary")
            return [1.0] * len(completions)
    ''')
    monkeypatch.chdir(tmp_path)
    reward = load_user_reward(source, **FAST)
    assert reward(["a"]) == [1.0]
    seen = eval(reward.last_prints)  # noqa: S307 - our own test output
    assert seen["parent_global"] is False
    assert seen["token"] is None and seen["plain"] == "visible"
    assert seen["pid"] != os.getpid()
    assert seen["cwd"] != str(tmp_path) and os.path.basename(seen["cwd"]).startswith("rft-reward-")
    assert os.path.exists(os.path.join(seen["cwd"], "scratch.txt"))
    assert not (tmp_path / "scratch.txt").exists()
    reward.close()
    assert not os.path.exists(seen["cwd"])  # its folder is removed with it
    assert not reward.alive
    assert reward(["a"]) == [1.0]  # a closed reward restarts on demand
    reward.close()


def test_trainer_state_and_logging_cross_as_plain_data():
    class State:
        global_step, max_steps, epoch = 3, 10, 0.5
        model = object()  # not sent

    metrics, extras = [], []
    source = textwrap.dedent('''\
        def scheduled(completions, trainer_state=None, log_metric=None, log_extra=None, **kwargs):
            log_metric("progress", trainer_state.global_step / trainer_state.max_steps)
            log_extra("note", ["seen"] * len(completions))
            return [float(hasattr(trainer_state, "model"))] * len(completions)
    ''')
    with load_user_reward(source, **FAST) as reward:
        out = reward(["a", "b"], trainer_state=State(), log_metric=lambda k, v: metrics.append((k, v)),
                     log_extra=lambda k, v: extras.append((k, v)))
    assert out == [0.0, 0.0]
    assert metrics == [("progress", 0.3)] and extras == [("note", ["seen", "seen"])]


# --- pickling --------------------------------------------------------------------------------------------------------


def _call_in_child(blob: bytes) -> tuple[list, str]:
    reward = pickle.loads(blob)
    try:
        return reward(["42", "41"], answer=["42", "42"]), reward.__name__
    finally:
        reward.close()


def test_pickling_carries_the_source_not_the_process():
    reward = load_user_reward(GOOD, **FAST)
    blob = pickle.dumps(reward)
    assert len(blob) < 10_000
    copy = pickle.loads(blob)
    assert copy.__name__ == "last_number" and not copy.alive
    assert copy(["42"], answer=["42"]) == [1.0] and copy.alive
    assert copy._proc.proc.pid != reward._proc.proc.pid
    copy.close()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_call_in_child, (blob,)) == ([1.0, 0.0], "last_number")
    reward.close()


def test_close_all():
    a = load_user_reward(GOOD, **FAST)
    b = load_user_reward(GOOD, **FAST)
    assert a.alive and b.alive
    rewards.close_all()
    assert not a.alive and not b.alive


# --- with guard, dry run and the failure threshold -------------------------------------------------------------------


def test_guarded_sandbox_counts_errors_and_trips_threshold(chaos):
    g = rewards.guard(chaos)
    assert g.__name__ == "chaos"
    for _ in range(8):
        g(["fine", "b"])
    for _ in range(3):
        g(["raise", "b"])
    assert g(["nan", "b"]) == [None, 0.5]
    assert g.calls == 12 and g.failed_calls == 4
    assert g.pop_error_count() == 3 * 2 + 1
    with pytest.raises(rewards.RewardFailureThresholdExceeded) as err:
        rewards.check_failure_threshold([g], max_rate=0.2, min_calls=10)
    assert "'chaos'" in str(err.value) and "nan" in str(err.value)


def test_dry_run_with_sandboxed_rewards():
    bad = load_user_reward("def bad(completions, **kw):\n    return [float('nan')] * len(completions)\n", **FAST)
    good = load_user_reward(GOOD, **FAST)
    rows = [{"prompt": "What is 17 + 25?", "completion": [{"role": "assistant", "content": "42"}], "answer": "42"}] * 3
    results = rewards.dry_run([rewards.guard(good), bad], rows)
    assert results[0].ok and results[0].scores == [1.0] * 3 and "scoring 3" in results[0].prints
    assert not results[1].ok and results[1].problem.startswith("row 0: score 0 is nan")
    with pytest.raises(rewards.DryRunError, match="bad: row 0"):
        rewards.check_dry_run(results)
    bad.close()
    good.close()


def test_warm_call_overhead_is_small():
    with load_user_reward(GOOD) as reward:
        batch = dict(completions=["17 + 25 = 42"] * 16, answer=["42"] * 16)
        reward(**batch)
        timings = []
        for _ in range(20):
            start = time.perf_counter()
            reward(**batch)
            timings.append(time.perf_counter() - start)
        per_call = sorted(timings)[len(timings) // 2]
    assert per_call < 0.05  # the benchmark aims at <= 20 ms; this only guards against gross regressions


def test_templates_load_and_pass_a_dry_run():
    rows = [{"prompt": "What is 17 + 25?", "completion": c, "answer": "42", "keywords": ["42"]}
            for c in ["<reasoning>17 + 25</reasoning><answer>42</answer>", "41"]]
    for title, source in rewards.EXAMPLES.items():
        with load_user_reward(source, **FAST) as reward:
            results = rewards.dry_run([reward], rows)
            assert results[0].ok, (title, results[0].problem)
    with load_user_reward(rewards.USER_REWARD_TEMPLATE, **FAST) as reward:
        assert reward(["17 + 25 = 42", "41", "x"], answer=["42", "42", None]) == [1.0, 0.0, None]
