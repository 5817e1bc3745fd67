"""User-written rewards: validate the source, then run it in a sandboxed worker process.

    reward = load_user_reward(source, timeout_s=10, memory_mb=2048)
    reward(completions=["42"], answer=["42"])          # -> [1.0]; TRL's GRPOTrainer calls it the same way
    reward.last_prints, reward.last_errors             # what the code printed, per-sample errors of the last call
    reward.close()                                     # stops the worker (also done at exit)

What the sandbox does: the code runs in a separate Python process (`python -m rewards._worker`), kept warm
between calls, in its own temporary folder, with an address-space limit (RLIMIT_AS, default 2 GB), a CPU-time
limit per call, caps on open files and written file size, Python-level blocking of internet sockets, and a
wall-time limit per call (default 10 s) after which the process is killed and restarted on the next call. Only
plain JSON data crosses the pipe: the code cannot reach the trainer's objects. A crash, `sys.exit`, `os._exit`,
an infinite loop, a memory bomb, a wrong return type or NaN costs that call its scores (None, with the error
recorded per sample), never the caller.

What it does not do: it **isolates mistakes, not attackers**. The code runs as your user, can read your files and
can start processes; it is not a security boundary (like human-eval's `reliability_guard`). Run untrusted code in
a container, gVisor or a remote sandbox.
"""
from __future__ import annotations

import ast
import atexit
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

MAX_SOURCE_BYTES = 256 * 1024  # OpenAI's grader limit
DEFAULT_TIMEOUT_S = 10.0  # per batch call (verl's sandbox default)
DEFAULT_MEMORY_MB = 2048  # address space (OpenAI's grader limit)
LOAD_TIMEOUT_S = 60.0  # start the process and run the module's top level (imports such as sympy take a while)
MAX_RESPONSE_BYTES = 64 * 2**20
PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
# Environment variables that look like credentials are not passed to user code (it can print them by mistake).
_SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
# Keys TRL passes that are not data: replaced by plain stand-ins (trainer_state) or replayed (log_*) in the worker.
_NOT_DATA = ("log_extra", "log_metric", "environments")


class RewardCodeError(ValueError):
    """The user's reward source is not usable. `line` is the 1-based line it points at (None if not one line)."""

    def __init__(self, message: str, line: int | None = None, detail: str = ""):
        super().__init__(message)
        self.line = line
        self.detail = detail  # a traceback of the user's own frames, when the code failed while running


# --- static validation ------------------------------------------------------------------------------------------------


def _syntax_message(exc: SyntaxError, prefix: str = "") -> RewardCodeError:
    line = exc.lineno
    text = (exc.text or "").rstrip("\n")
    pointer = ""
    if text and exc.offset:
        pointer = "\n    " + text.strip() + "\n    " + " " * max(0, exc.offset - 1 - (len(text) - len(text.lstrip()))) + "^"
    where = f"line {line}: " if line else ""
    return RewardCodeError(f"{prefix}{where}{exc.msg}{pointer}", line)


def _fits(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether TRL's keyword call `f(prompts=..., completions=..., **columns)` can reach the function."""
    a = fn.args
    if any(p.arg == "completions" for p in a.posonlyargs):
        return False  # `def f(completions, /)` cannot receive completions=...
    required_posonly = len(a.posonlyargs) > len(a.defaults)
    named = [p.arg for p in a.args + a.kwonlyargs]
    return not required_posonly and ("completions" in named or a.kwarg is not None)


def _signature_text(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    try:
        return f"def {fn.name}({ast.unparse(fn.args)})"
    except Exception:  # pragma: no cover
        return f"def {fn.name}(...)"


def find_reward_function(source: str, function: str | None = None, filename: str = "<reward>") -> tuple[str, int]:
    """Check `source` statically and return (function name, its line). Raises RewardCodeError naming the line.

    Checks: size (256 kB), syntax (including compile-time errors such as `return` outside a function), and that
    exactly one public top-level function can take TRL's call (`completions` by keyword, or `**kwargs`).

    >>> find_reward_function("def helper(x):\\n    return x\\n\\ndef my_reward(completions, **kwargs):\\n    return [1.0]")
    ('my_reward', 4)
    >>> find_reward_function("def f(completions, **kw)\\n    return []")
    Traceback (most recent call last):
    ...
    rewards.sandbox.RewardCodeError: line 1: expected ':'
        def f(completions, **kw)
                                ^
    """
    prefix = "" if filename == "<reward>" else f"{filename}: "
    if not isinstance(source, str):
        raise RewardCodeError(f"{prefix}the reward source must be a string, got {type(source).__name__}")
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise RewardCodeError(f"{prefix}the source is {size / 1024:.0f} kB; the limit is {MAX_SOURCE_BYTES // 1024} kB")
    if not source.strip():
        raise RewardCodeError(
            f"{prefix}line 1: the source is empty; define `def my_reward(completions, **kwargs):` returning one "
            "score (float or None) per completion", 1)
    try:
        tree = ast.parse(source, filename)
        compile(tree, filename, "exec")
    except SyntaxError as exc:
        raise _syntax_message(exc, prefix) from None
    except ValueError as exc:  # e.g. null bytes
        raise RewardCodeError(f"{prefix}{exc}") from None
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if function is not None:
        chosen = [d for d in defs if d.name == function]
        if not chosen:
            names = ", ".join(d.name for d in defs) or "none"
            raise RewardCodeError(f"{prefix}no top-level function named {function!r} (defined: {names})")
        fn = chosen[-1]
        if not _fits(fn):
            raise RewardCodeError(_unfit_message(prefix, fn), fn.lineno)
        return fn.name, fn.lineno
    public = [d for d in defs if not d.name.startswith("_")]
    fitting = [d for d in public if _fits(d)]
    by_name: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for d in fitting:
        by_name[d.name] = d  # a redefinition replaces the earlier one, as at run time
    if len(by_name) == 1:
        fn = next(iter(by_name.values()))
        return fn.name, fn.lineno
    if len(by_name) > 1:
        listed = ", ".join(f"{d.name} (line {d.lineno})" for d in by_name.values())
        second = list(by_name.values())[1]
        raise RewardCodeError(
            f"{prefix}line {second.lineno}: several functions take `completions`: {listed}; keep one reward per "
            "source, and start helper names with '_'", second.lineno)
    if public:
        raise RewardCodeError(_unfit_message(prefix, public[0]), public[0].lineno)
    first = defs[0].lineno if defs else 1
    raise RewardCodeError(
        f"{prefix}line {first}: no reward function found; define `def my_reward(completions, **kwargs):` "
        "returning one score (float or None) per completion", first)


def _unfit_message(prefix: str, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    return (f"{prefix}line {fn.lineno}: `{_signature_text(fn)}` cannot take a reward call: TRL calls "
            f"f(prompts=[...], completions=[...], <each dataset column>=[...]); write "
            f"`def {fn.name}(completions, **kwargs):`")


# --- data to the worker ---------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _trainer_state(state: Any) -> dict[str, Any]:
    """The plain numbers of TRL's TrainerState that rewards use for schedules."""
    keys = ("global_step", "max_steps", "epoch", "num_train_epochs")
    return {k: getattr(state, k, None) for k in keys if isinstance(getattr(state, k, None), (int, float, type(None)))}


def _encode_call(kwargs: dict[str, Any], n: int, cpu_s: float) -> bytes:
    data = {k: v for k, v in kwargs.items() if k not in _NOT_DATA and not callable(v)}
    if "trainer_state" in data:
        data["trainer_state"] = _trainer_state(kwargs["trainer_state"])
    msg = {"op": "call", "kwargs": data, "n": n, "cpu_s": cpu_s,
           "log_metric": callable(kwargs.get("log_metric")), "log_extra": callable(kwargs.get("log_extra"))}
    return json.dumps(msg, default=_json_default).encode()


# --- the worker process -----------------------------------------------------------------------------------------------

_SIGNALS = {
    signal.SIGKILL: "was killed (SIGKILL; often the system running out of memory)",
    signal.SIGSEGV: "crashed (segmentation fault)",
    signal.SIGABRT: "aborted (SIGABRT)",
    signal.SIGXCPU: "used up its CPU-time limit (SIGXCPU)",
    signal.SIGXFSZ: "wrote a file over the 64 MB limit (SIGXFSZ)",
    signal.SIGBUS: "crashed (bus error)",
}


class _Process:
    """One worker process with its pipes and temporary folder."""

    def __init__(self, memory_mb: int, allow_network: bool):
        self.folder = tempfile.mkdtemp(prefix="rft-reward-")
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        env = {k: v for k, v in os.environ.items() if not _SECRET_ENV.search(k) and not k.startswith("PYTHON")}
        env.update(PYTHONPATH=PROJECT_ROOT, TMPDIR=self.folder, PYTHONDONTWRITEBYTECODE="1",
                   PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
        self.log_path = os.path.join(self.folder, "stdio.log")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rewards._worker", str(req_r), str(resp_w), str(memory_mb),
                 "1" if allow_network else "0"],
                pass_fds=(req_r, resp_w), cwd=self.folder, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=True,  # its own process group: a kill also takes its children
            )
        finally:
            log.close()
            os.close(req_r)
            os.close(resp_w)
        self.send = Connection(req_w, readable=False)
        self.recv = Connection(resp_r, writable=False)
        self.pid = os.getpid()  # the process that owns the pipes (a fork must not share them)

    def request(self, data: bytes, timeout: float) -> dict[str, Any]:
        """Send one request and wait for the reply. Raises TimeoutError or ConnectionError (worker gone)."""
        try:
            self.send.send_bytes(data)
        except (BrokenPipeError, OSError) as exc:
            raise ConnectionError(self.death_reason()) from exc
        if not self.recv.poll(timeout):
            raise TimeoutError
        try:
            raw = self.recv.recv_bytes(MAX_RESPONSE_BYTES)
        except (EOFError, OSError) as exc:
            raise ConnectionError(self.death_reason()) from exc
        try:
            return json.loads(raw)
        except ValueError as exc:  # something in the worker wrote into the pipe
            raise ConnectionError("the reward process sent a garbled reply") from exc

    def death_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the reward process stopped answering"
        if code < 0:
            try:
                what = _SIGNALS.get(signal.Signals(-code), f"was killed by signal {-code}")
            except ValueError:
                what = f"was killed by signal {-code}"
        else:
            what = f"exited with code {code} (os._exit or a fatal error)"
        tail = self.log_tail()
        return f"the reward process {what}" + (f"; its last output: {tail}" if tail else "")

    def log_tail(self, limit: int = 500) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(self.log_path) - limit))
                return " ".join(fh.read().decode("utf-8", "replace").split())
        except OSError:
            return ""

    def kill(self) -> None:
        """Kill the worker (and anything it started) and delete its folder; in a forked copy of the owner, only
        drop this copy's pipe ends: the worker belongs to the original process."""
        owner = self.pid == os.getpid()
        if owner:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        for conn in (self.send, self.recv):
            try:
                conn.close()
            except OSError:
                pass
        if owner:
            shutil.rmtree(self.folder, ignore_errors=True)

    def stop(self) -> None:
        """Ask the worker to exit, then make sure it did."""
        if self.pid == os.getpid() and self.proc.poll() is None:
            try:
                self.send.send_bytes(b'{"op": "exit"}')
                self.proc.wait(timeout=1)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


_LIVE: weakref.WeakSet[SandboxedReward] = weakref.WeakSet()


def close_all() -> None:
    """Stop every sandbox worker of this process (registered with atexit; safe to call any time)."""
    for reward in list(_LIVE):
        reward.close()


atexit.register(close_all)


class SandboxedReward:
    """A user reward running in a warm sandboxed worker; callable as `f(completions, **columns)` (TRL's form).

    Attributes after each call: `last_prints` (captured output), `last_errors` (per sample, None where fine),
    `last_traceback`, `last_seconds`. Pickling keeps the source and settings, not the process: the copy starts
    its own worker on its first call.
    """

    def __init__(self, source: str, function: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_mb: int = DEFAULT_MEMORY_MB, name: str | None = None, filename: str = "<reward>",
                 allow_network: bool = False, error_score: float | None = None):
        self.source, self.function, self.filename = source, function, filename
        self.timeout_s, self.memory_mb, self.allow_network = float(timeout_s), int(memory_mb), bool(allow_network)
        self.error_score = error_score
        self.__name__ = name or function
        self.__qualname__ = self.__name__
        self.last_prints = ""
        self.last_errors: list[str | None] = []
        self.last_traceback = ""
        self.last_seconds = 0.0
        self.calls = 0
        self.restarts = 0
        self._lock = threading.RLock()
        self._proc: _Process | None = None
        _LIVE.add(self)

    # -- pickling: the source travels, the process does not ---------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        keep = ("source", "function", "filename", "timeout_s", "memory_mb", "allow_network", "error_score",
                "__name__", "__qualname__")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.last_prints, self.last_errors, self.last_traceback, self.last_seconds = "", [], "", 0.0
        self.calls = self.restarts = 0
        self._lock = threading.RLock()
        self._proc = None
        _LIVE.add(self)

    # -- process management ----------------------------------------------------------------------------------------
    def _start(self) -> None:
        """Start a worker and load the code; raises RewardCodeError if the code fails at import time."""
        proc = _Process(self.memory_mb, self.allow_network)
        msg = {"op": "load", "source": self.source, "function": self.function, "filename": self.filename}
        try:
            reply = proc.request(json.dumps(msg).encode(), max(LOAD_TIMEOUT_S, self.timeout_s))
        except TimeoutError:
            proc.kill()
            raise RewardCodeError(
                f"{self._prefix()}running the code's top level took over {max(LOAD_TIMEOUT_S, self.timeout_s):.0f} s "
                "(an endless loop outside the function?)") from None
        except ConnectionError as exc:
            proc.kill()
            raise RewardCodeError(f"{self._prefix()}{exc}") from None
        if not reply.get("ok"):
            proc.stop()
            raise RewardCodeError(f"{self._prefix()}{reply.get('error')}", reply.get("line"), reply.get("traceback", ""))
        self.last_prints = reply.get("prints", "")
        self._proc = proc

    def _prefix(self) -> str:
        return "" if self.filename == "<reward>" else f"{self.filename}: "

    def warm(self) -> SandboxedReward:
        """Start the worker now (it otherwise starts on the first call)."""
        with self._lock:
            if self._proc is None or self._proc.pid != os.getpid():
                if self._proc is not None:
                    self._proc.kill()  # a forked copy: drop our ends of the parent's pipes, leave its worker alone
                self._proc = None
                self._start()
        return self

    def close(self) -> None:
        """Stop the worker and delete its folder. The reward still works: a later call starts a new worker."""
        with self._lock:
            if self._proc is not None:
                self._proc.stop()
                self._proc = None

    def __enter__(self) -> SandboxedReward:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def alive(self) -> bool:
        """Whether a worker process is running for this reward (in this process)."""
        proc = self._proc
        return proc is not None and proc.pid == os.getpid() and proc.proc.poll() is None

    # -- calls -------------------------------------------------------------------------------------------------------
    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        return self.score_with_errors(completions, **kwargs)[0]

    def score_with_errors(self, completions: Sequence[Any], **kwargs: Any) -> tuple[list[float | None], list[str | None]]:
        """Scores and per-sample errors of one call (what `__call__` returns, plus why samples are None)."""
        completions = list(completions)
        n = len(completions)
        with self._lock:
            self.calls += 1
            start = time.perf_counter()
            scores, errors = self._call(completions, kwargs, n)
            self.last_seconds = time.perf_counter() - start
            self.last_errors = errors
            return scores, errors

    def _fail(self, n: int, message: str, traceback_text: str = "") -> tuple[list[float | None], list[str | None]]:
        self.last_traceback = traceback_text
        return [self.error_score] * n, [message] * n

    def _call(self, completions: list[Any], kwargs: dict[str, Any], n: int) -> tuple[list[Any], list[str | None]]:
        self.last_prints, self.last_traceback = "", ""
        if n == 0:
            return [], []
        if self._proc is None or self._proc.pid != os.getpid() or self._proc.proc.poll() is not None:
            if self._proc is not None:
                self._proc.kill()
                self._proc = None
                self.restarts += 1
            try:
                self._start()
            except RewardCodeError as exc:
                return self._fail(n, f"could not start the reward: {exc}", exc.detail)
        assert self._proc is not None
        try:
            data = _encode_call({**kwargs, "completions": completions}, n, self.timeout_s + 5)
        except (TypeError, ValueError) as exc:
            return self._fail(n, f"the batch could not be sent to the sandbox: {exc}")
        try:
            reply = self._proc.request(data, self.timeout_s)
        except TimeoutError:
            self._proc.kill()
            self._proc = None
            self.restarts += 1
            return self._fail(n, f"timed out after {self.timeout_s:g} s (the worker was stopped and restarts on the "
                                 "next call)")
        except ConnectionError as exc:
            self._proc.kill()
            self._proc = None
            self.restarts += 1
            return self._fail(n, f"{exc} (it restarts on the next call)")
        self.last_prints = reply.get("prints", "")
        if not reply.get("ok"):
            return self._fail(n, reply.get("error") or "failed", reply.get("traceback", ""))
        self._replay_logs(reply, kwargs)
        scores = [self.error_score if (e is not None) else s for s, e in zip(reply["scores"], reply["errors"])]
        return scores, reply["errors"]

    @staticmethod
    def _replay_logs(reply: dict[str, Any], kwargs: dict[str, Any]) -> None:
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        try:
            if callable(log_metric):
                for name, value in reply.get("metrics") or []:
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        log_metric(name, value)
            if callable(log_extra):
                for column, values in reply.get("extras") or []:
                    log_extra(column, values)
        except Exception:  # logging must never cost the scores
            pass

    def __repr__(self) -> str:
        state = "warm" if self.alive else "cold"
        return (f"<sandboxed reward {self.__name__}: {self.function}() from {self.filename}, "
                f"timeout {self.timeout_s:g} s, {self.memory_mb} MB, {state}>")


def load_user_reward(source: str, timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
                     name: str | None = None, *, function: str | None = None, allow_network: bool = False,
                     error_score: float | None = None, filename: str = "<reward>",
                     sample_rows: Sequence[dict[str, Any]] | None = None) -> SandboxedReward:
    """Validate user reward source and start it in a sandboxed worker; returns a TRL-compatible reward callable.

    The source must define one public function that takes `completions` (and ideally `**kwargs`), returning one
    float or None per completion. Problems raise `RewardCodeError` whose message starts with "line N:" and whose
    `.line` is N: syntax errors, a missing or unfit function, an error while running the module's top level
    (a failed import, say). Errors inside the function are reported per call (see `SandboxedReward`).

    Args:
        source: Python source text (at most 256 kB).
        timeout_s: wall-time limit of one call (one batch); the worker is killed and restarted past it.
        memory_mb: address-space limit of the worker (RLIMIT_AS).
        name: the reward's `__name__` (metric `rewards/<name>/mean`); default: the function's name.
        function: which function to use, when the source defines several that take `completions`.
        allow_network: leave internet sockets enabled in the worker.
        error_score: the score of samples whose call failed (None: TRL leaves them out).
        filename: shown in messages (`load_user_reward_file` passes the path).
        sample_rows: if given, also call the reward once on these rows (dicts with `completion`, `prompt`,
            columns; at most 8 are used) and raise RewardCodeError if it fails or returns anything but one finite
            number or None per row; the message names the line (the function's, for a bad return value).

    Returns:
        A warm `SandboxedReward`.
    """
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not 0 < timeout_s <= 3600:
        raise ValueError(f"parameter 'timeout_s' must be a number of seconds in (0, 3600], got {timeout_s!r}")
    if not isinstance(memory_mb, int) or isinstance(memory_mb, bool) or memory_mb < 128:
        raise ValueError(f"parameter 'memory_mb' must be an integer >= 128, got {memory_mb!r}")
    fn_name, def_line = find_reward_function(source, function, filename)
    reward = SandboxedReward(source, fn_name, timeout_s, memory_mb, name, filename, allow_network, error_score)
    reward.warm()  # runs the top level now, so import errors name their line before training starts
    if sample_rows is not None:
        _check_on_rows(reward, sample_rows, def_line)
    return reward


def _check_on_rows(reward: SandboxedReward, rows: Sequence[dict[str, Any]], def_line: int) -> None:
    from rewards.scoring import dry_run

    result = dry_run([reward], rows)[0]
    if result.ok:
        return
    bad = [(i, e) for i, e in enumerate(result.errors) if e]
    row, error = bad[0] if bad else (0, result.problem or "failed")
    found = re.match(r"line (\d+)", error)
    if found:
        line, message = int(found.group(1)), f"{error} (sample row {row})"
    else:  # a bad return value: point at the function
        line, message = def_line, f"line {def_line} in {reward.function}: {error} (sample row {row})"
    detail = reward.last_traceback
    reward.close()
    raise RewardCodeError(f"{reward._prefix()}{message}", line, detail)


def load_user_reward_file(path: str | os.PathLike, timeout_s: float = DEFAULT_TIMEOUT_S,
                          memory_mb: int = DEFAULT_MEMORY_MB, name: str | None = None, **kwargs: Any) -> SandboxedReward:
    """`load_user_reward` for a .py file; messages start with the file's path. The name defaults to the function's."""
    path = Path(path).expanduser()
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RewardCodeError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RewardCodeError(f"{path}: cannot read it ({exc})") from None
    return load_user_reward(source, timeout_s, memory_mb, name, filename=str(path), **kwargs)


__all__ = ["SandboxedReward", "RewardCodeError", "load_user_reward", "load_user_reward_file", "find_reward_function",
           "close_all", "MAX_SOURCE_BYTES", "DEFAULT_TIMEOUT_S", "DEFAULT_MEMORY_MB"]
