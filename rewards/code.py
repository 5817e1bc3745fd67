"""Code reward: extract a fenced Python block and run it against the row's test cases, in the sandbox.

Each completion's program runs in a fresh `python -I` process (no state leaks between completions), in its own
temporary folder, under the sandbox limits (address space, CPU time, open files, file size, no internet sockets)
with a per-test time limit and a wall-time limit per completion. Several completions run in parallel.
Like the user-reward sandbox, this isolates mistakes, not attackers (see docs/rewards.md).

Test formats accepted in the tests column (a Python value, or the same as a JSON string):
    "assert add(1, 2) == 3\\nassert add(0, 0) == 0"      Python code: each top-level assert is one test
    ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]   one test per string
    [{"input": "1 2\\n", "output": "3\\n"}, ...]          stdin/stdout tests (the program reads input())
    {"inputs": [...], "outputs": [...]}                  APPS style
    {"test_cases": [{"input":..., "output":...}, ...]}   open-r1 `verification_info` style
"""
from __future__ import annotations

import ast
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

from rewards.base import Reward, check_number, column

_FENCE = re.compile(r"```[ \t]*([\w+\-.]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def extract_code(text: str, require_fence: bool = False) -> str | None:
    """The last fenced Python block of a completion (```python or a bare ```), else the whole completion if it
    parses as Python and `require_fence` is False; None if there is no code.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    >>> extract_code("def f(): return 1")
    'def f(): return 1'
    >>> extract_code("def f(): return 1", require_fence=True) is None
    True
    >>> extract_code("I cannot solve this.") is None
    True
    """
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in _PYTHON_TAGS]
    if blocks:
        return blocks[-1] if blocks[-1].strip() else None
    if require_fence or not text.strip():
        return None
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    return text


def _split_asserts(code: str) -> list[str]:
    """Split test code into tests at its top-level asserts; other statements run with the next assert.

    The runner keeps one namespace for all tests, so the file still runs in order, and a failing assert costs
    only its own test.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise ValueError(f"the tests are not valid Python (line {exc.lineno}: {exc.msg})") from None
    tests: list[str] = []
    pending: list[str] = []
    for node in tree.body:
        pending.append(ast.get_source_segment(code, node) or "")
        if isinstance(node, ast.Assert):
            tests.append("\n".join(pending))
            pending = []
    if not tests:
        return [code]  # no top-level assert (e.g. a check() function and its call): the whole text is one test
    if pending:
        tests[-1] += "\n" + "\n".join(pending)
    return tests


def parse_tests(value: Any) -> dict[str, Any] | None:
    """A tests-column value as a job: {"mode": "assert" | "io", "tests": [...]}; None if there are no tests.

    >>> parse_tests("assert f(1) == 2\\nassert f(2) == 3")["tests"]
    ['assert f(1) == 2', 'assert f(2) == 3']
    >>> parse_tests('[{"input": "1 2", "output": "3"}]')
    {'mode': 'io', 'tests': [{'input': '1 2', 'output': '3'}]}
    >>> parse_tests({"inputs": ["1\\n"], "outputs": ["2\\n"]})["mode"]
    'io'
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[0] in "[{":
            try:
                return parse_tests(json.loads(text))
            except ValueError:
                pass  # a Python list or dict literal: read as code below
        return {"mode": "assert", "tests": _split_asserts(text)}
    if isinstance(value, dict):
        if "test_cases" in value:
            return parse_tests(value["test_cases"])
        if "inputs" in value and "outputs" in value:
            pairs = zip(value["inputs"], value["outputs"])
            return {"mode": "io", "tests": [{"input": _text(i), "output": _text(o)} for i, o in pairs]}
        if "input" in value and "output" in value:
            return {"mode": "io", "tests": [{"input": _text(value["input"]), "output": _text(value["output"])}]}
        raise ValueError(f"a tests dict needs 'inputs'/'outputs', 'input'/'output' or 'test_cases'; got keys "
                         f"{sorted(value)}")
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        if all(isinstance(t, str) for t in value):
            return {"mode": "assert", "tests": list(value)}
        if all(isinstance(t, dict) for t in value):
            tests = []
            for t in value:
                given = t.get("input", t.get("stdin"))
                expected = t.get("output", t.get("expected_output", t.get("stdout")))
                if given is None or expected is None:
                    raise ValueError(f"a stdin/stdout test needs 'input' and 'output'; got keys {sorted(t)}")
                tests.append({"input": _text(given), "output": _text(expected)})
            return {"mode": "io", "tests": tests}
    raise ValueError(f"cannot read tests of type {type(value).__name__}")


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "\n".join(map(str, value))
    return str(value)


@lru_cache(maxsize=1)
def _runner_source() -> str:
    here = Path(__file__).resolve().parent
    return (here / "_limits.py").read_text() + "\n\n" + (here / "_coderunner.py").read_text()


def run_tests(program: str, job: dict[str, Any], test_timeout_s: float = 2.0, timeout_s: float = 10.0,
              memory_mb: int = 1024, allow_network: bool = False) -> tuple[list[bool], str | None]:
    """Run a program against a job of tests in a fresh sandboxed process; returns (passed per test, error or None).

    >>> run_tests("def add(a, b):\\n    return a + b", parse_tests(["assert add(1, 2) == 3", "assert add(1, 1) == 3"]))
    ([True, False], None)
    """
    n = len(job["tests"])
    key = secrets.token_hex(16)  # signs the runner's result lines (see _coderunner)
    folder = tempfile.mkdtemp(prefix="rft-code-")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": folder, "TMPDIR": folder,
           "LANG": os.environ.get("LANG", "C.UTF-8"), "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
    error = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _runner_source(), str(memory_mb), str(test_timeout_s),
             "1" if allow_network else "0"],
            cwd=folder, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.communicate(json.dumps({**job, "program": program, "key": key}).encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout_s:g} s"
            try:
                os.killpg(proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        if error is None and proc.returncode not in (0, None):
            error = f"the test process ended with code {proc.returncode}"
        passed = [False] * n
        try:
            lines = Path(folder, "results.txt").read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        for signed in lines:
            mac, _, line = signed.partition(" ")
            if not hmac.compare_digest(mac, hmac.new(key.encode(), line.encode("utf-8", "replace"),
                                                     hashlib.sha256).hexdigest()):
                continue  # not written by the runner (the program wrote into the file): ignored
            kind, _, rest = line.partition(" ")
            if kind == "P":
                i = int(rest.split(" ", 1)[0])
                if 0 <= i < n:
                    passed[i] = True
            elif kind == "E" and error is None:
                error = rest
        return passed, error
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class PythonTests(Reward):
    """Scores code by the share of tests it passes (see `make_python_tests`)."""

    kind = "python_tests"
    param_names = ("tests_column", "binary", "require_fence", "test_timeout_s", "timeout_s", "memory_mb",
                   "max_parallel")

    def __init__(self, tests_column: str = "tests", binary: bool = False, require_fence: bool = False,
                 test_timeout_s: float = 2.0, timeout_s: float = 10.0, memory_mb: int = 1024,
                 max_parallel: int | None = None, name: str | None = None):
        super().__init__(name)
        if not isinstance(tests_column, str) or not tests_column:
            raise ValueError(f"parameter 'tests_column' must be a column name, got {tests_column!r}")
        check_number("test_timeout_s", test_timeout_s, low=0.05, high=600)
        check_number("timeout_s", timeout_s, low=0.1, high=3600)
        check_number("memory_mb", memory_mb, low=128, integer=True)
        check_number("max_parallel", max_parallel, low=1, integer=True, allow_none=True)
        self.tests_column, self.binary, self.require_fence = tests_column, bool(binary), bool(require_fence)
        self.test_timeout_s, self.timeout_s, self.memory_mb = float(test_timeout_s), float(timeout_s), memory_mb
        self.max_parallel = max_parallel
        self.last_details: list[str | None] = []  # why each completion lost points, for display

    def _score_one(self, text: str, tests: Any) -> tuple[float | None, str | None]:
        job = parse_tests(tests)
        if job is None or not job["tests"]:
            return None, "no tests for this row"
        program = extract_code(text, self.require_fence)
        if program is None:
            return 0.0, "no Python code found"
        passed, error = run_tests(program, job, self.test_timeout_s, self.timeout_s, self.memory_mb)
        rate = sum(passed) / len(passed)
        score = float(rate == 1.0) if self.binary else round(rate, 6)
        return score, error

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        tests = column(kwargs, self.tests_column, len(texts), self.__name__, "tests_column")
        jobs = list(zip(texts, tests))
        workers = self.max_parallel or max(1, min(len(jobs), os.cpu_count() or 1))
        if workers == 1 or len(jobs) == 1:
            results = [self._score_one(t, c) for t, c in jobs]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(lambda job: self._score_one(*job), jobs))
        self.last_details = [detail for _, detail in results]
        return [score for score, _ in results]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["last_details"] = []
        return state


def make_python_tests(tests_column: str = "tests", binary: bool = False, require_fence: bool = False,
                      test_timeout_s: float = 2.0, timeout_s: float = 10.0, memory_mb: int = 1024,
                      max_parallel: int | None = None, name: str | None = None) -> PythonTests:
    """Reward for code: the share of the row's tests that the completion's Python code passes, in [0, 1].

    The program is the last ```python (or bare ```) block, else the whole completion if it parses as Python.
    Each completion runs in a fresh sandboxed process (see the module docstring for the test formats). A
    completion with no code scores 0.0; a row with no tests gets None.

    Args:
        tests_column: dataset column holding the tests.
        binary: 1.0 only if every test passes (open-r1's `binary_code_reward`), else the pass rate.
        require_fence: only accept code inside a fenced block.
        test_timeout_s: time limit of one test.
        timeout_s: wall-time limit of one completion (all its tests); the process is killed past it.
        memory_mb: address-space limit of the process.
        max_parallel: completions run at once (default: the number of CPU cores).
        name: `__name__` of the reward; default "python_tests".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`.

    >>> reward = make_python_tests()
    >>> good = "```python\\ndef add(a, b):\\n    return a + b\\n```"
    >>> half = "```python\\ndef add(a, b):\\n    return 3\\n```"
    >>> reward([good, half, "no code"], tests=["assert add(1, 2) == 3\\nassert add(2, 2) == 4"] * 3)
    [1.0, 0.5, 0.0]
    >>> io = [{"input": "2 3\\n", "output": "5\\n"}]
    >>> reward(["```python\\na, b = map(int, input().split())\\nprint(a + b)\\n```"], tests=[io])
    [1.0]
    """
    return PythonTests(tests_column, binary, require_fence, test_timeout_s, timeout_s, memory_mb, max_parallel, name)


__all__ = ["PythonTests", "make_python_tests", "extract_code", "parse_tests", "run_tests"]
