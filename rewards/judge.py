"""LLM-as-judge rewards, for tasks no program can check (summaries, tone, helpfulness):

    rewards.get("llm_judge", rubric=rubrics.HELPFULNESS, backend="local", model="default")
    rewards.get("llm_judge", rubric="...{prompt}...{completion}...", backend="openai",
                base_url="http://127.0.0.1:8000/v1", model="my-judge", api_key_env="JUDGE_API_KEY")
    rewards.get("llm_judge_group", rubric=rubrics.GROUP_HELPFULNESS, ...)   # all of a prompt's group at once (RULER)

`llm_judge` asks the judge once per completion with the rubric filled in (`{prompt}`, `{completion}` and any dataset
column, e.g. `{reference}`) and reads a score from its reply: a number on `scale` (e.g. 1–10, as "Score: 7", "7/10"
or a bare "7") or, with `json_field`, a field of a JSON object; the score is mapped to [0, 1]. `llm_judge_group` shows
the judge every completion of one prompt together, numbered, and reads one score per completion, so the scores are
relative to each other — a sharper signal for GRPO's group-relative advantages than independent scores.

Backends: `local` runs any Hugging Face model folder or hub id (the embedded default model with `model: default`)
in a worker process of its own, kept loaded, batched, on the GPU when there is one. `openai` calls any
OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp's server, `transformers serve`, a hosted API) through the
`openai` client, at the `base_url` the user gives and nowhere else; the API key is read from the environment
variable named by `api_key_env` (never stored). Requests run concurrently (`concurrency`), each with a timeout and
`retries` with exponential back-off (the client's own). A reply that cannot be read, a timeout or a failed request
scores None for that completion and is counted as a reward error (`reward_errors/<name>`); identical requests are
cached for the run. Each judge reply is kept (`judge_reply`) so the run's samples and the playground can show it.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rewards.base import TRAINER_KEYS, Reward, check_choice, check_number
from rewards.rubrics import RUBRICS
from rewards.text import completion_text, prompt_text

BACKENDS = ("local", "openai")
SCORE_MODES = ("reply", "expected")  # read the score the judge writes, or its expected value (local judges)
CACHE_SIZE = 20_000  # judged requests remembered per reward (a run of 500 steps × 16 completions fits)
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `rewards` imports from


@dataclass
class Judgement:
    """One judge call: the parsed score in [0, 1] (None: unreadable or failed), the raw reply, why it failed."""

    score: float | None
    reply: str | None
    seconds: float
    error: str | None = None
    cached: bool = False


# -- reading a score from a reply -------------------------------------------------------------------------------------
def _scaled(value: float, scale: tuple[float, float]) -> float | None:
    low, high = scale
    if not math.isfinite(value) or value < low or value > high:
        return None
    return (value - low) / (high - low)


def _json_objects(reply: str) -> list[Any]:
    """JSON values found in a reply: a ```json fence, the whole text, or each {...} / [...] span."""
    found = []
    fence = re.search(r"```(?:json)?\s*(.*?)```", reply, re.DOTALL)
    candidates = ([fence.group(1)] if fence else []) + [reply]
    decoder = json.JSONDecoder()
    for text in candidates:
        for start in (i for i, ch in enumerate(text) if ch in "{["):
            try:
                value, _ = decoder.raw_decode(text[start:])
            except ValueError:
                continue
            found.append(value)
            break
    return found


def parse_score(reply: str | None, scale: Sequence[float] = (1, 10), json_field: str | None = None) -> float | None:
    """The judge's score from its reply, mapped from `scale` to [0, 1]; None when no score can be read or it is off
    the scale (never a guess between two numbers).

    >>> parse_score("Score: 8", (1, 10)), parse_score("I'd rate it 7/10.", (1, 10)), parse_score("10", (0, 10))
    (0.7777777777777778, 0.6666666666666666, 1.0)
    >>> parse_score('{"score": 4, "why": "clear"}', (1, 5), json_field="score")
    0.75
    >>> parse_score("Between 3 and 4.", (1, 5)) is None, parse_score("Score: 12", (1, 10)) is None
    (True, True)
    """
    if not reply:
        return None
    scale = (float(scale[0]), float(scale[1]))
    if json_field:
        for value in _json_objects(reply):
            if isinstance(value, dict) and isinstance(value.get(json_field), (int, float, str)):
                try:
                    return _scaled(float(value[json_field]), scale)
                except ValueError:
                    return None
        return None
    text = reply.replace("**", "")
    # "Score: 7", "rating of 7" — but not "a score of 1 to 10", which restates the scale
    labelled = re.findall(rf"(?:score|rating|grade)\s*(?:is|of|=|:)?\s*({_NUMBER})(?!\s*(?:to|-|–)\s*\d)", text,
                          re.IGNORECASE)
    if labelled:
        return _scaled(float(labelled[-1]), scale)
    out_of = re.findall(rf"({_NUMBER})\s*(?:/|out of)\s*{_NUMBER}", text, re.IGNORECASE)
    if out_of:
        return _scaled(float(out_of[-1]), scale)
    numbers = re.findall(_NUMBER, text)
    if len(numbers) == 1:
        return _scaled(float(numbers[0]), scale)
    return None


def parse_group_scores(reply: str | None, n: int, scale: Sequence[float] = (1, 10)) -> list[float | None]:
    """One score per completion of a group from a group judge's reply: a JSON list of n numbers, a JSON object
    {"1": s1, …}, or lines "1: s1" / "Reply 1: s1"; [None] * n when it does not give exactly one score each.

    >>> parse_group_scores("[10, 2, 5]", 3)
    [1.0, 0.1111111111111111, 0.4444444444444444]
    >>> parse_group_scores("Reply 1: 3\\nReply 2: 5", 2, (1, 5))
    [0.5, 1.0]
    >>> parse_group_scores("1: 3", 2, (1, 5))
    [None, None]
    """
    if not reply:
        return [None] * n
    scale = (float(scale[0]), float(scale[1]))
    values: list[Any] | None = None
    for found in _json_objects(reply):
        if isinstance(found, list):
            values = found
        elif isinstance(found, dict):
            scores = found.get("scores", found)
            if isinstance(scores, list):
                values = scores
            elif isinstance(scores, dict):
                try:
                    values = [scores.get(str(i + 1), scores.get(i + 1)) for i in range(n)]
                except AttributeError:
                    values = None
        if values is not None:
            break
    if values is None:
        lines = re.findall(rf"^\W*(?:reply|completion|answer|response)?\s*#?(\d+)\s*[:=)\-]\s*(?:score\s*:?\s*)?"
                           rf"({_NUMBER})", reply.replace("**", ""), re.IGNORECASE | re.MULTILINE)
        by_index = {int(i): float(s) for i, s in lines}
        if sorted(by_index) == list(range(1, n + 1)):
            values = [by_index[i + 1] for i in range(n)]
    if not isinstance(values, list) or len(values) != n:
        return [None] * n
    out: list[float | None] = []
    for value in values:
        try:
            out.append(_scaled(float(value), scale))
        except (TypeError, ValueError):
            out.append(None)
    return out


# -- backends ---------------------------------------------------------------------------------------------------------
Messages = list[dict[str, str]]
Reply = tuple[str | None, str | None, float]  # (the judge's text, why the request failed, seconds it took)


class OpenAIBackend:
    """An OpenAI-compatible chat-completions endpoint, through the `openai` client (timeouts, retries, back-off)."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None, timeout_s: float, retries: int,
                 concurrency: int):
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.timeout_s, self.retries, self.concurrency = timeout_s, retries, concurrency
        self._client: Any = None

    def _api_key(self) -> str:
        if not self.api_key_env:
            return "not-needed"  # local servers (vLLM, transformers serve, llama.cpp) accept any key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ValueError(f"the environment variable {self.api_key_env} (api_key_env) is not set, so the judge has "
                             "no API key; export it before the run (it is never written to the run folder)")
        return key

    def client(self) -> Any:
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise ValueError("the openai backend needs the openai package: pip install openai") from None
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key(), timeout=self.timeout_s,
                                         max_retries=self.retries)
        return self._client

    def complete(self, requests: list[Messages], temperature: float, max_tokens: int) -> list[Reply]:
        client = self.client()

        def one(messages: Messages) -> Reply:
            start = time.perf_counter()
            try:
                reply = client.chat.completions.create(model=self.model, messages=messages, temperature=temperature,
                                                       max_tokens=max_tokens)
                return reply.choices[0].message.content or "", None, time.perf_counter() - start
            except Exception as exc:  # noqa: BLE001 - every failure of one request is that completion's error
                return None, _describe_request_error(exc, self), time.perf_counter() - start

        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(requests)))) as pool:
            return list(pool.map(one, requests))

    def __getstate__(self) -> dict[str, Any]:  # the client holds sockets and locks: rebuilt where unpickled
        return {**self.__dict__, "_client": None}


def _describe_request_error(exc: BaseException, backend: OpenAIBackend) -> str:
    name = type(exc).__name__
    if name == "APITimeoutError":
        return f"the judge did not answer within {backend.timeout_s:g} s (timeout_s), {backend.retries} retries"
    if name == "APIConnectionError":
        return f"cannot reach the judge at {backend.base_url} (is the server running? base_url)"
    if name == "AuthenticationError":
        return f"the judge server at {backend.base_url} refused the API key from {backend.api_key_env} (api_key_env)"
    status = getattr(exc, "status_code", None)
    if status in (400, 404, 422):  # what servers answer for a model they do not serve (vLLM 404, transformers 400)
        detail = str(getattr(exc, "body", None) or "")[:160]
        detail = f": {detail}" if detail else ""
        return (f"the judge server at {backend.base_url} rejected the request (HTTP {status}{detail}); does it serve "
                f"the model {backend.model!r}? (model)")
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{name}: {message[:200]}"


def _resolve_model(model: str) -> str:
    """A model folder for `model`: the workbench's resolver when installed alongside (it knows `default`, the
    embedded SmolLM2), else the name as given (a folder or hub id transformers loads)."""
    try:
        resolve = importlib.import_module("app.engine.training.models").resolve_model
    except ImportError:
        return model
    return str(resolve(model))


class LocalBackend:
    """A Hugging Face model in a worker process of its own, loaded on first use and kept loaded; batched."""

    LOAD_TIMEOUT_S = 600.0

    def __init__(self, model: str, timeout_s: float, batch_size: int):
        self.model, self.timeout_s, self.batch_size = model, timeout_s, batch_size
        self._proc: Any = None
        self._send: Any = None
        self._recv: Any = None
        self._lock = threading.Lock()
        self._call_lock = threading.Lock()  # one batch in flight: requests and replies pair up in order

    def _start(self) -> None:
        """Start `python -m rewards._judge_worker` (a fresh interpreter: no CUDA or thread state inherited from the
        trainer, no re-import of the caller's main module) and wait until it has loaded the model."""
        path = _resolve_model(self.model)
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        path_entries = [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path_entries if p))
        try:
            proc = subprocess.Popen([sys.executable, "-m", "rewards._judge_worker", path, str(req_r), str(resp_w)],
                                    pass_fds=(req_r, resp_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, env=env)
        finally:
            os.close(req_r)
            os.close(resp_w)
        self._proc, self._send, self._recv = proc, os.fdopen(req_w, "w", encoding="utf-8"), \
            os.fdopen(resp_r, "r", encoding="utf-8")
        reply = self._read(self.LOAD_TIMEOUT_S)
        if reply is None or reply[0] != "ready":
            detail = reply[1] if reply else self._exit_detail()
            self.stop()
            raise ValueError(f"the local judge {self.model!r} could not be loaded: {detail}")

    def _read(self, timeout_s: float) -> list[Any] | None:
        """The worker's next message, or None when it sends none within `timeout_s` or has died."""
        ready, _, _ = select.select([self._recv], [], [], timeout_s)
        line = self._recv.readline() if ready else ""
        return json.loads(line) if line else None

    def _exit_detail(self) -> str:
        if self._proc is None or self._proc.poll() is None:
            return f"no answer within {self.LOAD_TIMEOUT_S:.0f} s"
        tail = (self._proc.stderr.read() or b"").decode("utf-8", "replace").strip().splitlines()
        return f"its process exited with code {self._proc.returncode}" + (f" ({tail[-1][:200]})" if tail else "")

    def stop(self) -> None:
        """End the worker process (politely, then by force)."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            try:
                self._send.write(json.dumps(["stop"]) + "\n")
                self._send.flush()
            except (OSError, ValueError):
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for stream in (self._send, self._recv, proc.stderr):
                try:
                    stream.close()
                except (OSError, AttributeError):
                    pass

    def complete(self, requests: list[Messages], temperature: float, max_tokens: int,
                 values: list[int] | None = None) -> list[Reply]:
        """The judge's replies; with `values` (score_mode 'expected') each reply states the expected score."""
        with self._call_lock:
            return self._complete(requests, temperature, max_tokens, values)

    def _complete(self, requests: list[Messages], temperature: float, max_tokens: int,
                  values: list[int] | None) -> list[Reply]:
        if self._proc is None or self._proc.poll() is not None:
            self.stop()
            self._start()
        out: list[Reply] = []
        for i in range(0, len(requests), self.batch_size):
            chunk = requests[i:i + self.batch_size]
            start = time.perf_counter()
            self._send.write(json.dumps(["generate", chunk, temperature, max_tokens, values]) + "\n")
            self._send.flush()
            reply = self._read(self.timeout_s)
            each = (time.perf_counter() - start) / len(chunk)  # one batched call: its time shared out
            if reply is None:  # stuck past its timeout, or dead: restarted on the next call
                error = (f"the local judge did not answer within {self.timeout_s:g} s (timeout_s)"
                         if self._proc.poll() is None else f"the local judge stopped: {self._exit_detail()}")
                self.stop()
                return out + [(None, error, each)] * (len(requests) - len(out))
            kind, detail = reply
            out += [(text, None, each) for text in detail] if kind == "ok" else [(None, detail, each)] * len(chunk)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "timeout_s": self.timeout_s, "batch_size": self.batch_size, "_proc": None,
                "_send": None, "_recv": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._call_lock = threading.Lock(), threading.Lock()


# -- the rewards ------------------------------------------------------------------------------------------------------
class _JudgeBase(Reward):
    param_names = ("rubric", "scale", "json_field", "score_mode", "backend", "model", "base_url", "api_key_env",
                   "system", "temperature", "max_tokens", "timeout_s", "retries", "concurrency")

    def __init__(self, rubric: str, scale: Sequence[float], json_field: str | None, score_mode: str, backend: str,
                 model: str,
                 base_url: str | None, api_key_env: str | None, system: str | None, temperature: float,
                 max_tokens: int, timeout_s: float, retries: int, concurrency: int, name: str | None):
        super().__init__(name)
        rubric = RUBRICS.get(rubric, rubric) if isinstance(rubric, str) else rubric  # a ready rubric by name
        if not isinstance(rubric, str) or "{completion" not in rubric:
            raise ValueError("parameter 'rubric' must contain {completion} (or {completions} for a group judge): "
                             "without it the judge never sees the reply it scores")
        check_choice("backend", backend, BACKENDS)
        check_choice("score_mode", score_mode, SCORE_MODES)
        if score_mode == "expected" and backend != "local":
            raise ValueError("score_mode 'expected' reads the judge's token probabilities, which only the local "
                             "backend has: use backend 'local', or score_mode 'reply'")
        if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and all(isinstance(v, (int, float))
                                                                             for v in scale) and scale[0] < scale[1]):
            raise ValueError(f"parameter 'scale' must be [low, high] with low < high, got {scale!r}")
        check_number("temperature", temperature, 0, 2)
        check_number("max_tokens", max_tokens, 1, 4096, integer=True)
        check_number("timeout_s", timeout_s, 0.1, 3600)
        check_number("retries", retries, 0, 10, integer=True)
        check_number("concurrency", concurrency, 1, 64, integer=True)
        if backend == "openai" and not base_url:
            raise ValueError("the openai backend needs base_url, the endpoint to call (e.g. http://127.0.0.1:8000/v1 "
                             "for vLLM or transformers serve, https://api.openai.com/v1 for OpenAI)")
        if not isinstance(model, str) or not model.strip():
            raise ValueError("parameter 'model' must name the judge model")
        if score_mode == "expected" and not all(float(v).is_integer() for v in scale):
            raise ValueError(f"score_mode 'expected' needs an integer scale, got {scale!r}")
        self.rubric, self.scale, self.json_field, self.backend, self.model = rubric, list(scale), json_field, \
            backend, model
        self.score_mode = score_mode
        self.base_url, self.api_key_env, self.system, self.temperature = base_url, api_key_env, system, temperature
        self.max_tokens, self.timeout_s, self.retries, self.concurrency = max_tokens, timeout_s, retries, concurrency
        self._backend: Any = (OpenAIBackend(base_url, model, api_key_env, timeout_s, retries, concurrency)
                              if backend == "openai" else LocalBackend(model, timeout_s, max(concurrency, 8)))
        if backend == "openai":
            self._backend._api_key()  # a missing key variable is refused now, not at the first training step
        self._cache: OrderedDict[str, Judgement] = OrderedDict()
        self._replies: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0  # judge requests sent (cache hits excluded)
        self.last_judgements: list[Judgement] = []

    def _fields(self, i: int, prompts: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        fields = {k: (v[i] if isinstance(v, (list, tuple)) and i < len(v) else v)
                  for k, v in kwargs.items() if k not in TRAINER_KEYS}
        fields["prompt"] = prompt_text(prompts[i]) if i < len(prompts) else ""
        return fields

    def _fill(self, fields: dict[str, Any]) -> str:
        try:
            return self.rubric.format_map(fields)
        except KeyError as exc:
            have = ", ".join(sorted(k for k in fields if k not in ("completion", "completions"))) or "(none)"
            raise ValueError(f"the rubric names {{{exc.args[0]}}}, which this data has no column for (it has: "
                             f"{have})") from None
        except (IndexError, ValueError) as exc:
            raise ValueError(f"the rubric is not a valid template ({exc}); write literal braces as {{{{ and }}}}") \
                from None

    def _messages(self, text: str) -> Messages:
        return ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user",
                                                                                           "content": text}]

    def _ask(self, texts: list[str]) -> list[Judgement]:
        """Judge each filled-in rubric, from the cache where the same request was made before."""
        out: list[Judgement | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                hit = self._cache.get(text)
                if hit is not None:
                    self._cache.move_to_end(text)
                    out[i] = Judgement(hit.score, hit.reply, 0.0, hit.error, cached=True)
                else:
                    todo.setdefault(text, []).append(i)
        if todo:
            values = (list(range(int(self.scale[0]), int(self.scale[1]) + 1)) if self.score_mode == "expected"
                      else None)
            messages = [self._messages(t) for t in todo]
            replies = (self._backend.complete(messages, self.temperature, self.max_tokens, values) if values else
                       self._backend.complete(messages, self.temperature, self.max_tokens))
            with self._lock:
                self.calls += len(todo)
            for (text, indices), (reply, error, seconds) in zip(todo.items(), replies):
                judged = Judgement(None, reply, seconds, error)
                if error is None:
                    with self._lock:
                        self._cache[text] = judged
                        while len(self._cache) > CACHE_SIZE:
                            self._cache.popitem(last=False)
                for i in indices:
                    out[i] = judged
        return [j for j in out if j is not None]

    def _remember(self, prompt: str, completion: str, reply: str | None) -> None:
        with self._lock:
            self._replies[(prompt, completion)] = reply
            while len(self._replies) > CACHE_SIZE:
                self._replies.popitem(last=False)

    def reply_for(self, prompt: Any, completion: Any) -> str | None:
        """The judge's reply for this (prompt, completion) in this run, if it was judged. `prompt` may also be the
        chat-templated text TRL logs: then the judged question it contains is looked up."""
        key = (prompt_text(prompt), completion_text(completion))
        with self._lock:
            if key in self._replies:
                return self._replies[key]
            if isinstance(prompt, str):
                for (question, text), reply in reversed(self._replies.items()):
                    if text == key[1] and question and question in prompt:
                        return reply
        return None

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        return self.score_with_errors(completions, **kwargs)[0]

    def score_with_errors(self, completions: Sequence[Any], **kwargs: Any
                          ) -> tuple[list[float | None], list[str | None]]:
        judged = self.judge(completions, **kwargs)
        self.last_judgements = judged  # the playground shows each reply, its score and its time
        return [j.score for j in judged], [j.error for j in judged]

    def judge(self, completions: Sequence[Any], **kwargs: Any) -> list[Judgement]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        """Stop the local judge's process (it also ends with the process that started it)."""
        if isinstance(self._backend, LocalBackend):
            self._backend.stop()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class LLMJudge(_JudgeBase):
    kind = "llm_judge"

    def judge(self, completions: Sequence[Any], **kwargs: Any) -> list[Judgement]:
        """Each completion judged on its own: a Judgement (score, reply, seconds, error) per completion."""
        texts = [completion_text(c) for c in completions]
        prompts = list(kwargs.get("prompts") or [])
        filled = [self._fill({**self._fields(i, prompts, kwargs), "completion": t}) for i, t in enumerate(texts)]
        judged = self._ask(filled)
        for i, j in enumerate(judged):
            if j.error is None:
                j.score = parse_score(j.reply, self.scale, self.json_field)
                if j.score is None:
                    j.error = (f"cannot read a score on {self.scale[0]:g}–{self.scale[1]:g} from the judge's reply "
                               f"{(j.reply or '')[:80]!r}")
            self._remember(self._fields(i, prompts, kwargs)["prompt"], texts[i], j.reply)
        return judged


class LLMGroupJudge(_JudgeBase):
    kind = "llm_judge_group"

    def judge(self, completions: Sequence[Any], **kwargs: Any) -> list[Judgement]:
        """The completions of each prompt judged together (consecutive completions with the same prompt form a
        group, as GRPO batches them); every completion of a group shares the judge's one reply."""
        texts = [completion_text(c) for c in completions]
        prompts = list(kwargs.get("prompts") or [])
        keys = [prompt_text(prompts[i]) if i < len(prompts) else "" for i in range(len(texts))]
        groups: list[list[int]] = []
        for i, key in enumerate(keys):
            if groups and keys[groups[-1][0]] == key:
                groups[-1].append(i)
            else:
                groups.append([i])
        filled = []
        for group in groups:
            listing = "\n\n".join(f"Reply {k + 1}:\n{texts[i]}" for k, i in enumerate(group))
            filled.append(self._fill({**self._fields(group[0], prompts, kwargs), "completions": listing,
                                      "completion": listing, "n": len(group)}))
        out: list[Judgement] = [Judgement(None, None, 0.0)] * len(texts)
        for group, j in zip(groups, self._ask(filled)):
            scores = parse_group_scores(j.reply, len(group), self.scale) if j.error is None else [None] * len(group)
            for k, i in enumerate(group):
                error = j.error or (None if scores[k] is not None else
                                    f"cannot read {len(group)} scores on {self.scale[0]:g}–{self.scale[1]:g} from the "
                                    f"group judge's reply {(j.reply or '')[:80]!r}")
                out[i] = Judgement(scores[k], j.reply, j.seconds / len(group), error, j.cached)
                self._remember(keys[i], texts[i], j.reply)
        return out


def _judge_kwargs(rubric: str, scale: Sequence[float], json_field: str | None, score_mode: str, backend: str,
                  model: str,
                  base_url: str | None, api_key_env: str | None, system: str | None, temperature: float,
                  max_tokens: int, timeout_s: float, retries: int, concurrency: int, name: str | None
                  ) -> dict[str, Any]:
    return dict(rubric=rubric, scale=scale, json_field=json_field, score_mode=score_mode, backend=backend, model=model,
                base_url=base_url,
                api_key_env=api_key_env, system=system, temperature=temperature, max_tokens=max_tokens,
                timeout_s=timeout_s, retries=retries, concurrency=concurrency, name=name)


def make_llm_judge(rubric: str = "helpfulness", scale: Sequence[float] = (1, 10), json_field: str | None = None,
                   score_mode: str = "reply", backend: str = "local", model: str = "default",
                   base_url: str | None = None,
                   api_key_env: str | None = None, system: str | None = None, temperature: float = 0.0,
                   max_tokens: int = 64, timeout_s: float = 60.0, retries: int = 2, concurrency: int = 8,
                   name: str | None = None) -> LLMJudge:
    """A model judges each completion against a rubric; its score, read from the reply, is mapped to [0, 1].

    Args:
        rubric: the judge's instructions, with {completion}, optionally {prompt} and any dataset column ({reference});
            or the name of a ready one in rewards.rubrics: helpfulness, faithfulness, style_guide, harmlessness,
            polite_and_short.
        scale: [low, high] of the score the rubric asks for; replies off the scale score None.
        json_field: read the score from this field of a JSON reply instead of a number in the text.
        score_mode: 'reply' (read the score the judge writes) or 'expected' (local backend: prefill "Score: " and
            take the expected value of the judge's next token over the scale's values, as G-Eval does; every
            completion gets a score, which small judges otherwise rarely write).
        backend: 'local' (a model in a worker process of its own) or 'openai' (an OpenAI-compatible endpoint).
        model: the judge: a model folder, a hub id or 'default' (local); the served model's name (openai).
        base_url: the OpenAI-compatible endpoint (openai backend), e.g. http://127.0.0.1:8000/v1. Nothing else is
            contacted.
        api_key_env: name of the environment variable holding the API key (openai backend); the key is never stored.
        system: an optional system prompt for the judge.
        temperature: the judge's sampling temperature (0: greedy, the same reply for the same request).
        max_tokens: the longest reply the judge may write.
        timeout_s: seconds one request (or one local batch) may take before it counts as an error.
        retries: retries of a failed request, with exponential back-off (openai backend).
        concurrency: requests in flight at once (openai) or the batch size (local, at least 8).
    """
    return LLMJudge(**_judge_kwargs(rubric, scale, json_field, score_mode, backend, model, base_url, api_key_env,
                                    system, temperature, max_tokens, timeout_s, retries, concurrency, name))


def make_llm_judge_group(rubric: str = "group_helpfulness", scale: Sequence[float] = (1, 10),
                         json_field: str | None = None, score_mode: str = "reply", backend: str = "local",
                         model: str = "default",
                         base_url: str | None = None,
                         api_key_env: str | None = None, system: str | None = None, temperature: float = 0.0,
                         max_tokens: int = 128, timeout_s: float = 120.0, retries: int = 2, concurrency: int = 4,
                         name: str | None = None) -> LLMGroupJudge:
    """A model sees all completions of one prompt together, numbered, and scores each relative to the others
    (as OpenPipe ART's RULER does); one judge call per group instead of one per completion.

    Args:
        rubric: the judge's instructions, with {completions} (the numbered replies), {n} (how many), optionally
            {prompt} and any dataset column; or a ready one by name: group_helpfulness.
        scale: [low, high] of each score; a reply that does not give exactly one on-scale score per completion
            scores the group None.
        json_field: unused by the group judge (it reads a JSON list or numbered lines).
        score_mode: only 'reply' for the group judge (it writes one score per completion).
        backend: 'local' or 'openai', as for llm_judge.
        model: the judge model (see llm_judge).
        base_url: the OpenAI-compatible endpoint (openai backend).
        api_key_env: name of the environment variable holding the API key (openai backend).
        system: an optional system prompt for the judge.
        temperature: the judge's sampling temperature.
        max_tokens: the longest reply the judge may write (it lists one score per completion).
        timeout_s: seconds one request may take before it counts as an error.
        retries: retries of a failed request, with exponential back-off (openai backend).
        concurrency: requests in flight at once (openai) or the batch size (local, at least 8).
    """
    if score_mode != "reply":
        raise ValueError("the group judge writes one score per completion: score_mode must be 'reply'")
    return LLMGroupJudge(**_judge_kwargs(rubric, scale, json_field, score_mode, backend, model, base_url,
                                         api_key_env, system, temperature, max_tokens, timeout_s, retries,
                                         concurrency, name))


def as_judge(fn: Any) -> LLMJudge | LLMGroupJudge | None:
    """The model judge `fn` is or guards (None when it is another reward)."""
    inner = getattr(fn, "fn", fn)
    return inner if isinstance(inner, _JudgeBase) else None


def judge_reply(fn: Any, prompt: Any, completion: Any) -> str | None:
    """The judge's reply behind a judged sample (None when `fn`, or the reward it guards, is not a judge)."""
    judge = as_judge(fn)
    return judge.reply_for(prompt, completion) if judge is not None else None


__all__ = ["BACKENDS", "Judgement", "LLMJudge", "LLMGroupJudge", "make_llm_judge", "make_llm_judge_group",
           "parse_score", "parse_group_scores", "as_judge", "judge_reply"]
