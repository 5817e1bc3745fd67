"""TrainerCallbacks that turn a TRL run into a live run folder: metrics, samples, stop requests, markers, progress."""
from __future__ import annotations

import math
import resource
import time
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

import rewards
from app.engine.core import runs
from app.engine.training.distributed import any_rank


def peak_memory_mb() -> float:
    """Peak memory of this process: GPU allocator peak on CUDA, else peak RSS."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class RunFolderCallback(TrainerCallback):
    """Writes metrics.jsonl and samples.jsonl, honours stop requests, marks complete checkpoints.

    `trainer` is attached after the trainer is built: GRPO samples come from TRL's own record of the latest
    generation batch (prompts, completions, per-reward scores, advantages), so they match what was trained on.
    """

    def __init__(
        self,
        run_dir: Path,
        stop: Any,
        sample_every: int = 1,
        eval_every: int = 0,
        evaluate: Callable[[int], dict[str, Any]] | None = None,
        guarded_rewards: list[Any] | None = None,
        failure_check: Callable[[], None] | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.stop = stop
        self.sample_every = max(1, sample_every)
        self.eval_every = eval_every
        self.last_eval: tuple[int, dict[str, Any]] | None = None  # (step, metrics) of the latest periodic evaluation
        self.evaluate = evaluate
        self.guarded = guarded_rewards or []
        self.failure_check = failure_check
        self.trainer: Any = None
        self.trackers: list[Any] = []  # the experiment trackers' TrainerCallbacks (logging.report_to)
        self.stopped = False
        self.failure: BaseException | None = None
        self._step_start: float | None = None
        self._step_seconds = 0.0  # optimizer-step time since the last log line
        self._steps_timed = 0
        self._last_tokens: float | None = None
        self._last_sample_step = -1

    # -- step boundary: stop requests and reward failure threshold ------------------------------------------
    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        # step_time covers this step's rollouts, forward, backward and optimizer update only: what follows (a
        # periodic evaluation here, then the Trainer's log and save) is timed on its own (`eval/seconds`).
        if self._step_start is not None:
            self._step_seconds += time.perf_counter() - self._step_start
            self._steps_timed += 1
            self._step_start = None
        runs.update_status(self.run_dir, step=state.global_step, max_steps=state.max_steps)
        if self.failure_check is not None:
            try:
                self.failure_check()
            except Exception as exc:  # a reward failing too often: end the run with its message
                self.failure = exc
        # Several processes: every rank stops at this same step, or the others would wait for it forever.
        failed_somewhere, stop_somewhere = any_rank(self.failure is not None, self.stop.requested)
        if failed_somewhere:
            if self.failure is None:
                self.failure = RuntimeError("a reward failed too often on another rank of this run")
            control.should_training_stop = True
            return control
        if stop_somewhere:
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True  # a checkpoint at the step where we stopped, so resume loses nothing
        if self.eval_every and self.evaluate and state.global_step % self.eval_every == 0 and not self.stopped:
            self.last_eval = (state.global_step, self.evaluate(state.global_step))
            self._write({"step": state.global_step, **self.last_eval[1]})
            scalars = {k: v for k, v in self.last_eval[1].items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for tracker in self.trackers:  # the trainer logs only its own metrics: hand the evaluation over
                tracker.on_log(args, state, control, logs=dict(scalars))
        return control

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.exists():
            # Written only after the Trainer finished saving: resume trusts checkpoints with this marker only.
            (folder / runs.COMPLETE_MARKER).write_text(str(time.time()))
        return control

    # -- metrics --------------------------------------------------------------------------------------------
    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if any(k.startswith("train_") for k in logs) and "loss" not in logs:
            return  # the end-of-training summary (train_runtime…) is not a step
        extras: dict[str, Any] = {}
        if self._steps_timed:
            # Ours, not TRL's GRPO `step_time` (which leaves out the optimizer update): one definition for every method.
            extras["step_time"] = self._step_seconds / self._steps_timed
            tokens = logs.get("num_tokens")
            if tokens is not None and self._last_tokens is not None and self._step_seconds > 0:
                extras["tokens_per_second"] = (float(tokens) - self._last_tokens) / self._step_seconds
        tokens = logs.get("num_tokens")
        self._last_tokens = float(tokens) if tokens is not None else None
        self._step_seconds, self._steps_timed = 0.0, 0
        extras["peak_memory_mb"] = round(peak_memory_mb(), 1)
        for g in self.guarded:
            extras[f"reward_errors/{g.__name__}"] = g.pop_error_count()
        logs.update(extras)  # in place: the trackers' callbacks, called after this one, log the same scalars
        record: dict[str, Any] = {"step": state.global_step, "time": time.time()}
        record.update({k: runs.clean_number(_plain(v)) for k, v in logs.items()})
        self._write(record)
        if state.global_step - self._last_sample_step >= self.sample_every:
            self._write_samples(state.global_step)

    def _write(self, record: dict[str, Any]) -> None:
        runs.append_jsonl(self.run_dir / "metrics.jsonl", {k: runs.clean_number(v) for k, v in record.items()})

    def _write_samples(self, step: int) -> None:
        logs = getattr(self.trainer, "_logs", None)
        if not logs or not logs.get("prompt"):
            return
        self._last_sample_step = step
        prompts = list(logs["prompt"])
        completions = list(logs["completion"])
        advantages = list(logs.get("advantages", []))
        reward_cols = {name: list(values) for name, values in logs.get("rewards", {}).items()}
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            sample = {
                "step": step,
                "index": i,
                "prompt": _text(prompt),
                "completion": _text(completion),
                "rewards": {k: runs.clean_number(_plain(v[i])) for k, v in reward_cols.items() if i < len(v)},
                "advantage": runs.clean_number(_plain(advantages[i])) if i < len(advantages) else None,
            }
            replies = {g.__name__: reply for g in self.guarded
                       if (reply := rewards.judge_reply(g, prompt, completion)) is not None}
            if replies:
                sample["judge"] = replies  # what each model judge wrote about this completion
            runs.append_jsonl(self.run_dir / "samples.jsonl", sample)


class ProgressBarCallback(TrainerCallback):
    """A CLI progress bar with steps, ETA, and the latest reward/loss."""

    def __init__(self, initial: int = 0, enabled: bool = True):
        self.bar = None
        self.initial = initial
        self.enabled = enabled

    def on_train_begin(self, args, state, control, **kwargs):
        if self.enabled and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs:
            shown = {}
            for key in ("reward", "loss", "eval/accuracy"):
                value = logs.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    shown[key] = f"{value:.3f}"
            if shown:
                self.bar.set_postfix(shown, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, RuntimeError):
            return value.tolist()
    return value


def _text(value: Any) -> str:
    """Chat-form prompts/completions as readable text (the last message's content for a prompt)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [m.get("content", "") for m in value if isinstance(m, dict)]
        if parts:
            return parts[-1] if len(parts) > 1 and value[-1].get("role") != "assistant" else "".join(parts)
    return str(value)
