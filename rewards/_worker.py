"""The sandboxed reward worker: `python -m rewards._worker REQUEST_FD RESPONSE_FD MEMORY_MB ALLOW_NETWORK`.

It loads one user reward from source and answers calls until told to exit or its request pipe closes (the parent
died). Messages are length-prefixed JSON both ways (`multiprocessing.connection` framing): JSON rather than pickle,
so nothing but plain data crosses, in either direction.

Requests:  {"op": "load", "source", "function", "filename"}  {"op": "call", "kwargs", "n", "cpu_s"}  {"op": "exit"}
Responses: {"ok": true, ...} or {"ok": false, "error": "line 3 in f: ZeroDivisionError: ...", "line", "traceback"}

Runs in its own temporary working folder (its cwd), under the limits of `rewards._limits`.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import json
import linecache
import math
import numbers
import os
import sys
import time
import traceback
import types
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from rewards import _limits

MAX_PRINTS = 20_000  # characters of captured output kept per call
MAX_ERROR = 2_000


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit // 2] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-limit // 2 :]


def describe(exc: BaseException, filename: str, memory_mb: int | None = None) -> tuple[str, int | None, str]:
    """A one-line message naming the user's line, that line number, and a traceback of the user's frames only."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if f.filename == filename]
    line = mine[-1].lineno if mine else getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    where = ""
    if mine:
        named = [f.name for f in mine if not f.name.startswith("<")]  # skip <listcomp>, <lambda>, <module>
        where = f"line {line}" + (f" in {named[-1]}" if named else "") + ": "
    elif line:
        where = f"line {line}: "
    if isinstance(exc, SystemExit):
        what = f"called sys.exit({exc.code!r}); a reward must return its scores, not exit"
    elif isinstance(exc, MemoryError):
        what = "MemoryError: out of memory" + (f" (the sandbox allows {memory_mb} MB)" if memory_mb else "")
    else:
        text = str(exc)
        what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    shown = traceback.format_list(mine) if mine else []
    tb_text = "Traceback (your code):\n" + "".join(shown) + "".join(traceback.format_exception_only(type(exc), exc))
    return _clip(where + what, MAX_ERROR), line, _clip(tb_text, 8 * MAX_ERROR)


def check_scores(result: Any, n: int) -> tuple[list[float | None], list[str | None], str | None]:
    """Validate a reward's return value: (scores, per-sample errors, batch error or None)."""
    if hasattr(result, "tolist") and not isinstance(result, (list, tuple)):  # numpy array, torch tensor
        result = result.tolist()
    if not isinstance(result, (list, tuple)):
        kind = type(result).__name__
        return [None] * n, [None] * n, f"returned a {kind}, not a list of {n} scores (one per completion)"
    if len(result) != n:
        return [None] * n, [None] * n, f"returned {len(result)} scores for {n} completions"
    scores: list[float | None] = []
    errors: list[str | None] = []
    for i, value in enumerate(result):
        if value is None:
            scores.append(None)
            errors.append(None)
        elif isinstance(value, numbers.Real):  # bool, int, float, numpy scalars
            number = float(value)
            if math.isfinite(number):
                scores.append(number)
                errors.append(None)
            else:
                scores.append(None)
                errors.append(f"score {i} is {number}, not a finite number")
        else:
            scores.append(None)
            errors.append(f"score {i} is a {type(value).__name__} ({_clip(repr(value), 80)}), not a number or None")
    return scores, errors, None


class Worker:
    def __init__(self, requests: Connection, responses: Connection, memory_mb: int):
        self.requests, self.responses, self.memory_mb = requests, responses, memory_mb
        self.fn: Callable[..., Any] | None = None
        self.filename = "<reward>"
        self.accepts_all = True
        self.params: set[str] = set()
        self.required: list[str] = []
        self.is_async = False
        self.log_path = os.path.abspath("stdio.log")

    # -- output capture ----------------------------------------------------------------------------------------------
    def _fd_output_since(self, offset: int) -> str:
        # text written straight to file descriptors 1/2 (C extensions, os.write) lands in stdio.log
        try:
            size = os.path.getsize(self.log_path)
            if size <= offset:
                return ""
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(MAX_PRINTS)
            if size > 2**20:
                os.truncate(self.log_path, 0)  # stdio.log is opened O_APPEND: writes continue at the new end
            return data.decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    # -- operations --------------------------------------------------------------------------------------------------
    def load(self, msg: dict) -> dict:
        source, function, self.filename = msg["source"], msg["function"], msg.get("filename", "<reward>")
        linecache.cache[self.filename] = (len(source), None, source.splitlines(True), self.filename)
        module = types.ModuleType("user_reward")
        module.__file__ = self.filename
        sys.modules["user_reward"] = module
        buf = io.StringIO()
        offset = self._log_size()
        try:
            code = compile(source, self.filename, "exec")
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                exec(code, module.__dict__)
        except BaseException as exc:  # noqa: BLE001 - any failure of user code is reported, never fatal
            error, line, tb_text = describe(exc, self.filename, self.memory_mb)
            return {"ok": False, "error": error, "line": line, "traceback": tb_text,
                    "prints": _clip(buf.getvalue() + self._fd_output_since(offset), MAX_PRINTS)}
        fn = module.__dict__.get(function)
        if not callable(fn):
            return {"ok": False, "error": f"{function} is not a function after running the code", "line": None,
                    "traceback": "", "prints": buf.getvalue()}
        self.fn = fn
        target = inspect.unwrap(fn)
        self.is_async = inspect.iscoroutinefunction(target)
        try:
            sig = inspect.signature(fn)
            params = sig.parameters.values()
            self.accepts_all = any(p.kind is p.VAR_KEYWORD for p in params)
            self.params = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            self.required = [p.name for p in params if p.default is p.empty
                             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        except (TypeError, ValueError):
            self.accepts_all, self.params, self.required = True, set(), []
        return {"ok": True, "prints": _clip(buf.getvalue() + self._fd_output_since(offset), MAX_PRINTS)}

    def call(self, msg: dict) -> dict:
        assert self.fn is not None, "load first"
        n = int(msg["n"])
        kwargs: dict[str, Any] = dict(msg["kwargs"])
        metrics: list[list[Any]] = []
        extras: list[list[Any]] = []
        if "trainer_state" in kwargs and isinstance(kwargs["trainer_state"], dict):
            kwargs["trainer_state"] = types.SimpleNamespace(**kwargs["trainer_state"])
        if msg.get("log_metric"):  # recorded here, replayed on TRL's real log_metric by the parent
            kwargs["log_metric"] = lambda name, value: metrics.append([str(name), value])
        if msg.get("log_extra"):
            kwargs["log_extra"] = lambda column, values: extras.append([str(column), list(values)])
        if not self.accepts_all:
            missing = [p for p in self.required if p not in kwargs]
            if missing:
                have = ", ".join(sorted(k for k in kwargs if k not in ("trainer_state", "log_metric", "log_extra")))
                return {"ok": False, "line": None, "traceback": "", "prints": "",
                        "error": f"the function needs {', '.join(map(repr, missing))}, which the batch does not have "
                                 f"(it has: {have}); add **kwargs or rename the parameter to a column"}
            kwargs = {k: v for k, v in kwargs.items() if k in self.params}
        buf = io.StringIO()
        offset = self._log_size()
        _limits.set_cpu_budget(float(msg.get("cpu_s", 15)))
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                result = self.fn(**kwargs)
                if inspect.isawaitable(result):
                    result = asyncio.run(_await(result))
                if inspect.isgenerator(result):
                    raise TypeError("returned a generator; return a list (wrap it in list(...))")
        except BaseException as exc:  # noqa: BLE001 - includes SystemExit and KeyboardInterrupt from user code
            error, line, tb_text = describe(exc, self.filename, self.memory_mb)
            return {"ok": False, "error": error, "line": line, "traceback": tb_text,
                    "prints": _clip(buf.getvalue() + self._fd_output_since(offset), MAX_PRINTS),
                    "seconds": time.perf_counter() - start}
        seconds = time.perf_counter() - start
        scores, errors, batch_error = check_scores(result, n)
        prints = _clip(buf.getvalue() + self._fd_output_since(offset), MAX_PRINTS)
        if batch_error:
            return {"ok": False, "error": batch_error, "line": None, "traceback": "", "prints": prints,
                    "seconds": seconds}
        return {"ok": True, "scores": scores, "errors": errors, "prints": prints, "seconds": seconds,
                "metrics": _plain(metrics), "extras": _plain(extras)}

    def serve(self) -> None:
        while True:
            try:
                raw = self.requests.recv_bytes()
            except (EOFError, OSError):
                return  # the parent is gone
            msg = json.loads(raw)
            op = msg.get("op")
            if op == "exit":
                return
            reply = self.load(msg) if op == "load" else self.call(msg) if op == "call" else {
                "ok": False, "error": f"unknown op {op!r}", "line": None, "traceback": ""}
            try:
                data = json.dumps(reply, allow_nan=False, default=str).encode()
            except ValueError:  # a NaN slipped into metrics or extras
                reply.pop("metrics", None)
                reply.pop("extras", None)
                data = json.dumps(reply, allow_nan=False, default=str).encode()
            self.responses.send_bytes(data)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _plain(value: Any) -> Any:
    """Make metrics/extras JSON-safe: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
        return _plain(float(value))
    return value


def main(argv: list[str]) -> int:
    request_fd, response_fd, memory_mb, allow_network = int(argv[0]), int(argv[1]), int(argv[2]), argv[3] == "1"
    requests = Connection(request_fd, writable=False)
    responses = Connection(response_fd, readable=False)
    _limits.quiet_threads_env()
    _limits.apply_limits(memory_mb=memory_mb, nofile=256, fsize_mb=64)
    if not allow_network:
        _limits.block_network()
    sys.stdin = io.StringIO("")  # user code must not wait on the parent's terminal
    Worker(requests, responses, memory_mb).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
