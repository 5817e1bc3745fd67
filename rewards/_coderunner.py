"""Runs one generated program against its tests, in a fresh `python -I -c` process (see `rewards.code`).

Stdlib only and self-contained: `rewards.code` sends `_limits.py` followed by this file as the `-c` program,
with argv `MEMORY_MB TEST_TIMEOUT_S ALLOW_NETWORK` and the job as JSON on stdin:
    {"program": "...", "mode": "assert" | "io", "tests": [...]}
assert mode: the program runs once as module `solution`; each test is code run in its namespace (passes if it
raises nothing). io mode: each test {"input", "output"} runs the program as `__main__` with that stdin and
compares its stdout (trailing whitespace ignored).
Results go to `results.txt` in the working folder, one line per test as soon as it is known ("P 3", "F 3 why"),
so a hard kill on timeout still leaves the tests that finished. Each line starts with an HMAC of its text under
the job's one-time `key` (removed from the job before the program runs): a program that writes "P 0" into the file
itself, or copies a line it read there, cannot pass a test it failed.
"""
import contextlib
import hashlib
import hmac
import io
import json
import os
import signal
import sys


class _TimeLimit(BaseException):
    """Raised by the alarm; a BaseException so a program's `except Exception` cannot swallow it."""


def _alarm(signum, frame):
    raise _TimeLimit()


def _norm_output(text):
    lines = [line.rstrip() for line in str(text).replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def _why(exc):
    if isinstance(exc, _TimeLimit):
        return "time limit"
    if isinstance(exc, MemoryError):
        return "memory limit"
    text = str(exc).replace("\n", " ")[:200]
    return type(exc).__name__ + (": " + text if text else "")


def _run(code, namespace, timeout, stdin_text=None):
    """Run code under the per-test alarm; returns (stdout, exception or None)."""
    out = io.StringIO()
    old_stdin = sys.stdin
    if stdin_text is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(str(stdin_text).encode()), encoding="utf-8")
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            try:
                exec(code, namespace)
            except SystemExit as exc:  # exit(0) ends a stdin/stdout program normally
                if exc.code not in (None, 0):
                    raise RuntimeError(f"exit code {exc.code}") from None
        return out.getvalue(), None
    except BaseException as exc:  # noqa: BLE001 - everything a program does wrong is a failed test
        return out.getvalue(), exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdin = old_stdin


def run_job(job, timeout, report):
    program = job.get("program", "")
    tests = job.get("tests", [])
    try:
        code = compile(program, "<solution>", "exec")
    except (SyntaxError, ValueError) as exc:
        report(f"E syntax error: {exc}")
        for i in range(len(tests)):
            report(f"F {i} syntax error")
        return
    if job.get("mode") == "io":
        for i, test in enumerate(tests):
            stdout, exc = _run(code, {"__name__": "__main__"}, timeout, test.get("input", ""))
            if exc is not None:
                report(f"F {i} {_why(exc)}")
            elif _norm_output(stdout) == _norm_output(test.get("output", "")):
                report(f"P {i}")
            else:
                report(f"F {i} wrong output")
        return
    namespace = {"__name__": "solution"}
    _, exc = _run(code, namespace, timeout, "")
    if exc is not None:
        report(f"E program failed: {_why(exc)}")
        for i in range(len(tests)):
            report(f"F {i} program failed")
        return
    for i, test in enumerate(tests):
        try:
            test_code = compile(test, f"<test {i}>", "exec")
        except (SyntaxError, ValueError) as exc:
            report(f"F {i} test does not compile: {exc}")
            continue
        _, exc = _run(test_code, namespace, timeout, "")
        report(f"P {i}" if exc is None else f"F {i} {_why(exc)}")


def runner_main(argv):
    memory_mb, timeout, allow_network = int(argv[0]), float(argv[1]), argv[2] == "1"
    job = json.loads(sys.stdin.read())
    key = str(job.pop("key", "")).encode()
    sys.stdin = io.StringIO("")
    fd = os.open("results.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def report(line):
        line = line.replace("\n", " ")
        mac = hmac.new(key, line.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
        os.write(fd, (mac + " " + line + "\n").encode("utf-8", "replace"))

    quiet_threads_env()  # noqa: F821 - defined by _limits.py, which precedes this file
    apply_limits(memory_mb=memory_mb, cpu_s=timeout * max(1, len(job.get("tests", []))) + 2, nofile=64,  # noqa: F821
                 fsize_mb=16)
    if not allow_network:
        block_network()  # noqa: F821
    signal.signal(signal.SIGALRM, _alarm)
    run_job(job, timeout, report)


if __name__ == "__main__":
    runner_main(sys.argv[1:])
