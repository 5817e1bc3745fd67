"""`guard(fn)`: a reward that never raises, counts its errors, and can stop a run that fails too often.

TRL calls reward functions without try/except: one exception in one reward aborts the training step, and a NaN
poisons the weighted sum. A guarded reward turns exceptions, time-outs (reported by sandboxed rewards), NaN/inf,
wrong types and wrong lengths into `None` for the affected samples (TRL leaves those out), records why, and
counts them so the engine can log `reward_errors/<name>` and stop a run whose reward fails on more than a
threshold of recent calls (`check_failure_threshold`).
"""
from __future__ import annotations

import asyncio
import inspect
import math
import numbers
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

HISTORY = 1000  # calls remembered for recent_failure_rate


def reward_name(fn: Any) -> str:
    """The display / metric name of a reward callable (TRL's rule: `__name__`, unwrapping functools.partial)."""
    import functools

    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def _run_awaitable(awaitable: Any) -> Any:
    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    result: dict[str, Any] = {}

    def target() -> None:  # inside a running loop (a notebook): run it on a helper thread's own loop
        try:
            result["value"] = asyncio.run(wait())
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def describe_exception(exc: BaseException) -> str:
    """`Type: message (at file:line)` of where the exception was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    text = str(exc)
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


def normalize_scores(result: Any, n: int) -> tuple[list[float | None], list[str | None]]:
    """Check a reward's return value: floats stay, None stays None, anything else becomes None with an error.

    >>> normalize_scores([1, None, float("nan"), "x"], 4)
    ([1.0, None, None, None], [None, None, 'returned nan', "returned a str ('x'), not a number"])
    >>> normalize_scores([1.0], 2)
    ([None, None], ['returned 1 scores for 2 completions', 'returned 1 scores for 2 completions'])
    """
    if hasattr(result, "tolist") and not isinstance(result, (list, tuple)):
        result = result.tolist()
    if not isinstance(result, (list, tuple)):
        message = f"returned a {type(result).__name__}, not a list of {n} scores"
        return [None] * n, [message] * n
    if len(result) != n:
        message = f"returned {len(result)} scores for {n} completions"
        return [None] * n, [message] * n
    scores: list[float | None] = []
    errors: list[str | None] = []
    for value in result:
        if value is None:
            scores.append(None)
            errors.append(None)
        elif isinstance(value, numbers.Real):
            number = float(value)
            ok = math.isfinite(number)
            scores.append(number if ok else None)
            errors.append(None if ok else f"returned {number}")
        else:
            scores.append(None)
            errors.append(f"returned a {type(value).__name__} ({repr(value)[:60]}), not a number")
    return scores, errors


def invoke_reward(fn: Callable[..., Any], completions: Sequence[Any], kwargs: dict[str, Any]
                  ) -> tuple[list[float | None], list[str | None]]:
    """Call a reward as TRL does and check what it returns: (scores, per-sample errors). Raises what the reward
    raises; `call_reward` (training, scoring) and the dry run (which reports a raise apart) both call this.

    Sandboxed rewards report their own per-sample errors (`score_with_errors`); an awaitable result is awaited.
    """
    if hasattr(fn, "score_with_errors"):
        raw, inner = fn.score_with_errors(completions, **kwargs)
    else:
        raw, inner = fn(completions=completions, **kwargs), None
    if inspect.isawaitable(raw):
        raw = _run_awaitable(raw)
    n = len(completions)
    scores, errors = normalize_scores(raw, n)
    if inner:
        errors = [e or i for e, i in zip(errors, list(inner) + [None] * (n - len(inner)))]
        scores = [None if e else s for s, e in zip(scores, errors)]
    return scores, errors


def call_reward(fn: Callable[..., Any], completions: Sequence[Any], kwargs: dict[str, Any]
                ) -> tuple[list[float | None], list[str | None]]:
    """Call any reward safely: (scores, per-sample errors). Never raises (except KeyboardInterrupt): an exception
    marks every sample of the call, and so does a bad return value (see `invoke_reward`)."""
    try:
        return invoke_reward(fn, completions, kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a reward must not end the trainer either
        return [None] * len(completions), [describe_exception(exc)] * len(completions)


class GuardedReward:
    """A reward wrapped by `guard`: same call, same `__name__`, never raises. See the module docstring.

    Attributes: `fn` (the wrapped reward), `calls`, `failed_calls` (calls with any sample error), `last_error`,
    `last_errors` (per sample, last call), `total_seconds`, `error_score` (score given to failed samples).
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None, error_score: float | None = None):
        if not callable(fn):
            raise TypeError(f"guard() needs a callable reward, got {type(fn).__name__}")
        self.fn = fn
        self.__name__ = name or reward_name(fn)
        self.__qualname__ = self.__name__
        self.__doc__ = getattr(fn, "__doc__", None)
        self.error_score = error_score
        self.calls = 0
        self.failed_calls = 0
        self.last_error: str | None = None
        self.last_errors: list[str | None] = []
        self.total_seconds = 0.0
        self._pending_errors = 0
        self._history: deque[bool] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        completions = list(completions)
        start = time.perf_counter()
        scores, errors = call_reward(self.fn, completions, kwargs)
        seconds = time.perf_counter() - start
        n_errors = sum(e is not None for e in errors)
        with self._lock:
            self.calls += 1
            self.total_seconds += seconds
            self.last_errors = errors
            self._history.append(n_errors > 0)
            if n_errors:
                self.failed_calls += 1
                self._pending_errors += n_errors
                self.last_error = next(e for e in errors if e is not None)
        if n_errors and self.error_score is not None:
            scores = [self.error_score if e else s for s, e in zip(scores, errors)]
        return scores

    def pop_error_count(self) -> int:
        """Sample-level errors since the last pop (for the `reward_errors/<name>` metric)."""
        with self._lock:
            count, self._pending_errors = self._pending_errors, 0
            return count

    def recent_failure_rate(self, window_calls: int = 50) -> float:
        """Share of the last `window_calls` calls that had any error (0.0 before the first call)."""
        with self._lock:
            recent = list(self._history)[-window_calls:]
        return sum(recent) / len(recent) if recent else 0.0

    def close(self) -> None:
        """Close the wrapped reward if it holds a process (sandboxed rewards)."""
        close = getattr(self.fn, "close", None)
        if callable(close):
            close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<guarded {self.__name__}: {self.calls} calls, {self.failed_calls} with errors>"


def unique_names(names: Sequence[str]) -> list[str]:
    """`names` with repeats suffixed `_2`, `_3`, …: TRL keys its `rewards/<name>/mean` metrics by name, so two rewards
    of one kind (e.g. two `format_tags` with different tags) would otherwise share one chart and one error count.

    >>> unique_names(["format_tags", "numeric_answer", "format_tags"])
    ['format_tags', 'numeric_answer', 'format_tags_2']
    """
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def guard(fn: Callable[..., Any], name: str | None = None, error_score: float | None = None) -> GuardedReward:
    """Wrap a reward so it never raises: failures become None (or `error_score`) and are counted.

    Args:
        fn: any reward callable (a built-in, a sandboxed user reward, a plain function).
        name: `__name__` of the guarded reward (default: the reward's own), so TRL logs `rewards/<name>/mean`.
        error_score: score of failed samples; None (default) lets TRL leave them out.

    Returns:
        A picklable `GuardedReward`.

    >>> def fragile(completions, **kwargs):
    ...     return [1.0 / len(c) for c in completions]
    >>> safe = guard(fragile)
    >>> safe(["ab", ""]), safe.__name__, safe.failed_calls, safe.pop_error_count()
    ([None, None], 'fragile', 1, 2)
    >>> safe.last_error.split(" (at")[0]
    'ZeroDivisionError: float division by zero'
    """
    if isinstance(fn, GuardedReward) and name is None and error_score is None:
        return fn
    return GuardedReward(fn, name, error_score)


class RewardFailureThresholdExceeded(RuntimeError):
    """A reward failed on more than the allowed share of recent calls; the message names it and its last error."""

    def __init__(self, message: str, reward: str, rate: float, last_error: str | None):
        super().__init__(message)
        self.reward, self.rate, self.last_error = reward, rate, last_error


def check_failure_threshold(guarded: Sequence[GuardedReward], max_rate: float = 0.2, window_calls: int = 50,
                            min_calls: int = 10) -> None:
    """Raise RewardFailureThresholdExceeded if a reward failed in more than `max_rate` of its recent calls.

    Called by the engine after each step. Only rewards with at least `min_calls` calls are judged, over their
    last `window_calls` calls (a call is one batch, about one per step).

    >>> bad = guard(lambda completions, **kw: 1 / 0, name="bad")
    >>> for _ in range(10):
    ...     _ = bad(["x"])
    >>> check_failure_threshold([bad])
    Traceback (most recent call last):
    ...
    rewards.guard.RewardFailureThresholdExceeded: Reward 'bad' failed in 10 of its last 10 calls (100% > 20%). Last error: ZeroDivisionError: division by zero (at <doctest rewards.guard.check_failure_threshold[0]>:1). Fix it (try it on a few rows in the playground) or remove it from the run.
    """
    for g in guarded:
        if not isinstance(g, GuardedReward) or g.calls < min_calls:
            continue
        rate = g.recent_failure_rate(window_calls)
        if rate > max_rate:
            window = min(window_calls, g.calls, HISTORY)
            failed = round(rate * window)
            raise RewardFailureThresholdExceeded(
                f"Reward {g.__name__!r} failed in {failed} of its last {window} calls ({rate:.0%} > {max_rate:.0%}). "
                f"Last error: {g.last_error}. Fix it (try it on a few rows in the playground) or remove it from "
                "the run.",
                g.__name__, rate, g.last_error,
            )


__all__ = ["GuardedReward", "guard", "call_reward", "invoke_reward", "describe_exception", "normalize_scores",
           "reward_name", "RewardFailureThresholdExceeded", "check_failure_threshold"]
