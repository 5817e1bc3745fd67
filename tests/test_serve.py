"""`python -m app.serve`: a run's model (base + adapter) over the OpenAI chat-completions API on 127.0.0.1, through
`transformers serve`; its greedy reply equals the in-process generation, and it can be another run's judge."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import rewards
from app.engine.evaluation import serve

ROOT = Path(__file__).resolve().parents[1]
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat(base_url: str, model: str, messages: list, max_tokens: int = 8) -> str:
    body = json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}).encode()
    request = urllib.request.Request(base_url + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())["choices"][0]["message"]["content"]


def test_the_cli_serves_the_adapter_and_answers_like_the_in_process_model(run_with_adapter, tmp_path):
    from app.engine.evaluation.compare import ModelRef, load_model, run_base
    from app.engine.evaluation.evaluate import generate_completions

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), RFT_WORKBENCH_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "app.serve", str(run_with_adapter), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.time() + 300
        while time.time() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)
            lines.append(line)
            if line.startswith("Serving "):
                break
        else:
            pytest.fail("python -m app.serve did not start: " + "".join(lines[-10:]))
        base_url = f"http://127.0.0.1:{port}/v1"
        assert base_url in line
        model_dir = tmp_path / "home" / "exports" / ".served" / run_with_adapter.name
        assert (model_dir / "config.json").exists()  # the adapter merged once, where the app keeps exports
        served = chat(base_url, str(model_dir), QUESTION)
        model, tok = load_model(ModelRef("run", run_base(run_with_adapter), str(run_with_adapter / "adapter")))
        texts, _ = generate_completions(model, tok, [QUESTION], max_new_tokens=8)
        assert served.strip() == texts[0].strip()
        # ... a column of 4 · Compare: the same reply as the adapter loaded in the app
        from app.engine.evaluation import compare as cmp
        from app.engine.evaluation.endpoint import save_endpoint, saved_endpoints

        column = cmp.endpoint_ref(base_url, str(model_dir))
        assert cmp.parse_model_key(column.key) == column
        result = cmp.compare_models([column, cmp.parse_model_key(f"adapter::{run_with_adapter / 'adapter'}")],
                                    [{"prompt": "What is 2 + 2?"}], max_new_tokens=8)
        outputs = [result.outputs[label][0]["completion"].strip() for label in result.models]
        assert outputs[0] == outputs[1] == texts[0].strip()
        save_endpoint(tmp_path / "endpoints.json", base_url, str(model_dir))
        save_endpoint(tmp_path / "endpoints.json", base_url, str(model_dir))
        assert saved_endpoints(tmp_path / "endpoints.json") == [(base_url, str(model_dir))]
        # ... and another run's judge (the openai backend against it)
        judge = rewards.get("llm_judge", backend="openai", base_url=base_url, model=str(model_dir), max_tokens=8,
                            retries=0)
        (judged,) = judge.judge(["4"], prompts=[QUESTION])
        assert judged.reply is not None and (judged.error is None or "cannot read a score" in judged.error)
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode is not None


def test_serving_refuses_a_taken_port_and_a_missing_run(run_with_adapter, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(serve.ServeError, match="is taken"):
            serve.start(run_with_adapter, tmp_path, port=taken.getsockname()[1])
    with pytest.raises(serve.ServeError, match="port 70000"):
        serve.start(run_with_adapter, tmp_path, port=70000)
    with pytest.raises(serve.CompareError, match="does not exist"):
        serve.start(tmp_path / "missing", tmp_path, port=free_port())
    with pytest.raises(serve.CompareError, match="not an http"):
        from app.engine.evaluation.compare import endpoint_ref

        endpoint_ref("127.0.0.1:8000", "m")
    with pytest.raises(serve.ServeError, match="unknown engine"):
        serve.pick_engine("tgi")
    assert not (tmp_path / ".served").exists()
