"""Model-judge rewards: reading scores from judge replies, the openai backend against a real OpenAI-compatible server
on loopback (`transformers serve` with the default model), the local backend, timeouts, errors and the cache."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rewards
from rewards.judge import parse_group_scores, parse_score

QUESTION = [{"role": "user", "content": "My parcel has not arrived yet."}]
REPLIES = ["Thank you for telling us! We're sorry; we'll send a new one today.", "Not my problem."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("reply, scale, field, expected", [
    ("Score: 8", (1, 10), None, 7 / 9),
    ("**Score:** 10", (1, 10), None, 1.0),
    ("I'd rate it 7/10.", (1, 10), None, 6 / 9),
    ("I give it 4 out of 5", (1, 5), None, 0.75),
    ("3", (1, 5), None, 0.5),
    ("Rating = 0.5", (0, 1), None, 0.5),
    ("You can add a score of 1 to 10 to your score.", (1, 10), None, None),  # restates the scale: no score
    ("Between 3 and 4.", (1, 5), None, None),  # two candidates: never a guess
    ("Score: 12", (1, 10), None, None),  # off the scale
    ("", (1, 10), None, None),
    ("I'm sorry, I cannot rate this.", (1, 10), None, None),
    ('{"score": 4, "reason": "clear"}', (1, 5), "score", 0.75),
    ('Here you go:\n```json\n{"score": "5"}\n```', (1, 5), "score", 1.0),
    ('{"verdict": "good"}', (1, 5), "score", None),
    ("Score: 4", (1, 5), "score", None),  # asked for JSON, got text
])
def test_scores_are_read_from_judge_replies(reply, scale, field, expected):
    got = parse_score(reply, scale, field)
    assert (got is None and expected is None) or got == pytest.approx(expected)


@pytest.mark.parametrize("reply, n, expected", [
    ("[10, 2, 5]", 3, [1.0, 1 / 9, 4 / 9]),
    ('{"scores": [1, 10]}', 2, [0.0, 1.0]),
    ('{"1": 10, "2": 1}', 2, [1.0, 0.0]),
    ("Reply 1: 4\nReply 2: 7\nReply 3: 1", 3, [1 / 3, 2 / 3, 0.0]),
    ("1) 10\n2) 10", 2, [1.0, 1.0]),
    ("[9, 2]", 3, [None, None, None]),  # not one score per reply
    ("Reply 1: 4", 2, [None, None]),
    ("They are all fine.", 2, [None, None]),
    ("[11, 5]", 2, [None, 4 / 9]),  # the off-scale one alone is None
])
def test_group_scores_are_read_from_a_group_judges_reply(reply, n, expected):
    got = parse_group_scores(reply, n, (1, 10))
    assert len(got) == n
    for g, e in zip(got, expected):
        assert (g is None and e is None) or g == pytest.approx(e)


def test_bad_judge_settings_are_one_sentence_before_anything_runs(monkeypatch):
    with pytest.raises(ValueError, match=r"rubric' must contain \{completion\}"):
        rewards.get("llm_judge", rubric="Is this polite? {prompt}")
    with pytest.raises(ValueError, match="needs base_url"):
        rewards.get("llm_judge", backend="openai", model="judge")
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_JUDGE_KEY .*is not set"):
        rewards.get("llm_judge", backend="openai", base_url="http://127.0.0.1:9/v1", model="m",
                    api_key_env="NO_SUCH_JUDGE_KEY")
    with pytest.raises(ValueError, match="scale"):
        rewards.get("llm_judge", scale=[10, 1])
    with pytest.raises(ValueError, match="backend"):
        rewards.get("llm_judge", backend="ollama")
    judge = rewards.get("llm_judge", rubric="Compare {completion} with {reference}", backend="openai",
                        base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ValueError, match=r"names \{reference\}, which this data has no column for"):
        judge(["hi"], prompts=[QUESTION])
    assert rewards.get("llm_judge", rubric="polite_and_short").rubric == rewards.rubrics.POLITE_AND_SHORT


def test_an_unreachable_endpoint_is_a_counted_error_and_fails_the_dry_run():
    port = free_port()  # nothing listens there
    judge = rewards.get("llm_judge", backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m",
                        retries=0, timeout_s=5)
    guarded = rewards.guard(judge)
    assert guarded(REPLIES, prompts=[QUESTION] * 2) == [None, None]
    assert guarded.pop_error_count() == 2 and f"cannot reach the judge at http://127.0.0.1:{port}/v1" in \
        guarded.last_error
    results = rewards.dry_run([guarded], [{"prompt": "hi", "completion": "hello"}])
    with pytest.raises(rewards.DryRunError, match="llm_judge: row 0: cannot reach the judge"):
        rewards.check_dry_run(results)


def test_a_judge_slower_than_the_timeout_is_an_error_not_a_hang():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(server.accept()[0]) for _ in range(8)], daemon=True).start()
    port = server.getsockname()[1]
    judge = rewards.get("llm_judge", backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m",
                        retries=0, timeout_s=0.5)
    start = time.perf_counter()
    scores, errors = judge.score_with_errors(REPLIES, prompts=[QUESTION] * 2)
    assert time.perf_counter() - start < 5  # both requests in flight at once, each cut at 0.5 s
    assert scores == [None, None] and all("did not answer within 0.5 s" in e for e in errors)
    server.close()


# -- a real OpenAI-compatible server ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def judge_server() -> dict:
    """`transformers serve` with the default model on loopback, started here and stopped after the module."""
    from app.engine.training.models import resolve_model

    model = str(resolve_model("default"))
    port = free_port()
    exe = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
    proc = subprocess.Popen([exe, "serve", model, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    import urllib.request

    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, "transformers serve exited"
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("transformers serve did not come up within 180 s")
    yield {"base_url": url + "/v1", "model": model}
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.e2e
def test_openai_backend_scores_through_a_real_server_and_caches(judge_server):
    judge = rewards.get("llm_judge", rubric="polite_and_short", backend="openai", max_tokens=24, **judge_server)
    judged = judge.judge(REPLIES, prompts=[QUESTION] * 2)
    assert judge.calls == 2 and all(j.reply for j in judged)  # the judge answered both
    for j in judged:  # a score on the scale, or an unreadable reply counted as an error (the 135M judge rambles)
        assert (j.score is not None and 0 <= j.score <= 1 and j.error is None) or "cannot read a score" in j.error
    again = judge.judge(REPLIES, prompts=[QUESTION] * 2)
    assert judge.calls == 2 and all(j.cached for j in again)  # identical requests: from the cache
    assert [j.reply for j in again] == [j.reply for j in judged]
    assert rewards.judge_reply(rewards.guard(judge), QUESTION, REPLIES[0]) == judged[0].reply
    # TRL logs chat-templated prompt text: the judged question inside it is found
    assert judge.reply_for("<|im_start|>user\nMy parcel has not arrived yet.<|im_end|>", REPLIES[1]) == judged[1].reply


@pytest.mark.e2e
def test_group_judge_makes_one_call_per_group(judge_server):
    judge = rewards.get("llm_judge_group", backend="openai", max_tokens=32, **judge_server)
    other = [{"role": "user", "content": "Where is my refund?"}]
    judged = judge.judge(REPLIES * 2, prompts=[QUESTION, QUESTION, other, other])
    assert judge.calls == 2  # two prompts, two groups
    assert judged[0].reply == judged[1].reply and judged[2].reply == judged[3].reply
    for j in judged:
        assert (j.score is not None and j.error is None) or "cannot read 2 scores" in j.error


@pytest.mark.e2e
def test_a_wrong_model_name_is_an_error_naming_it(judge_server):
    judge = rewards.get("llm_judge", backend="openai", base_url=judge_server["base_url"], model="no-such/judge-model",
                        retries=0, timeout_s=60)
    scores, errors = judge.score_with_errors(REPLIES[:1], prompts=[QUESTION])
    assert scores == [None] and "does it serve the model 'no-such/judge-model'" in errors[0]


@pytest.mark.e2e
def test_local_backend_keeps_one_judge_process_loaded():
    judge = rewards.get("llm_judge", rubric="polite_and_short", backend="local", model="default", max_tokens=16)
    try:
        first = judge.judge(REPLIES, prompts=[QUESTION] * 2)
        pid = judge._backend._proc.pid
        assert all(j.reply is not None and (j.error is None or "cannot read" in j.error) for j in first)
        judge.judge(["Sorry about that, we will fix it."], prompts=[QUESTION])
        assert judge._backend._proc.pid == pid and judge.calls == 3  # loaded once, batched
    finally:
        judge.close()
    assert judge._backend._proc is None


def test_the_playground_and_the_sample_table_show_what_the_judge_wrote():
    from app.engine.evaluation import playground as pg
    from app.ui.train import samples_frame

    port = free_port()
    funcs, _ = pg.build_rewards([("llm_judge", 1.0, {"backend": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                                                     "model": "m", "retries": 0})])
    result = pg.run_playground(pg.typed_rows("My parcel has not arrived yet.", "\n".join(REPLIES)), funcs,
                               group_size=2)
    assert result.judge_headers == pg.JUDGE_HEADERS and len(result.judge_rows) == 2
    assert all(row[1] == "llm_judge" and row[2] is None and "cannot reach the judge" in row[5]
               for row in result.judge_rows)
    pg.close_rewards(funcs)
    table = samples_frame([{"step": 1, "index": 0, "prompt": "p", "completion": "c", "rewards": {"llm_judge": 0.5},
                            "advantage": 0.0, "judge": {"llm_judge": "Score: 5"}}])
    assert list(table.columns)[-1] == "llm_judge reply" and table.iloc[0]["llm_judge reply"] == "Score: 5"


def test_every_ready_rubric_fills_with_its_example_row():
    for name, example in rewards.rubrics.EXAMPLES.items():
        kind = "llm_judge_group" if name.startswith("group") else "llm_judge"
        judge = rewards.get(kind, backend="openai", base_url="http://127.0.0.1:9/v1", model="m",
                            **{k: v for k, v in example["params"].items() if k != "rubric"}, rubric=name)
        fields = {**judge._fields(0, [example["row"]["prompt"]] if "prompt" in example["row"] else [],
                                  {k: [v] for k, v in example["row"].items() if k != "prompt"}),
                  "completion": example["completion"], "completions": example["completion"], "n": 1}
        text = judge._fill(fields)
        assert example["completion"] in text and "{" not in text.replace("{n}", ""), name
