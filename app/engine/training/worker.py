"""The training worker: one RunSpec in, one run folder out.

`train(spec)` runs in the calling process; `python -m app.train SPEC.yaml` runs it in its own. Order matters:
validate (no model), create the run folder, pick the backend (Unsloth must be imported before TRL), load data
and rewards (dry run), load the model, evaluate the base, train, save, evaluate the result.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from app.engine.core import runs
from app.engine.core.spec import RunSpec, SpecError
from app.engine.methods import EvalContext, TrainerParts
from app.engine.training.reward_funcs import build_rewards


@dataclass
class RunResult:
    """How a run ended."""

    run_dir: Path
    state: str  # finished | stopped | failed
    error: str | None = None
    final_metrics: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.state == "finished"


class StopFlag:
    """Set by SIGTERM/SIGINT or a STOP file in the run folder; checked at every step boundary."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.signalled: str | None = None

    def install(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.signalled = signal.Signals(signum).name

        self._previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def uninstall(self) -> None:
        for sig, previous in getattr(self, "_previous", {}).items():
            signal.signal(sig, previous)

    @property
    def requested(self) -> bool:
        return self.signalled is not None or runs.stop_requested(self.run_dir)

    @property
    def reason(self) -> str:
        return f"received {self.signalled}" if self.signalled else "stop requested from the app"


def pid_info() -> dict[str, Any]:
    """This process's pid and start time (lets readers tell a dead worker from a reused pid)."""
    return {"pid": os.getpid(), "pid_started_at": runs.process_start_time(os.getpid())}


class RunFailed(RuntimeError):
    """A run ended in an error the user must act on (message already user-facing)."""


class RunStopped(Exception):
    """A stop request (SIGTERM/SIGINT or the STOP file) honoured outside a training step: while the run set up, or
    during an evaluation. The message says where ("during the start-of-run evaluation")."""


def _check_stop(stop: StopFlag, where: str) -> None:
    if stop.requested:
        raise RunStopped(where)


def _say_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(
    spec: RunSpec,
    run_dir: Path | None = None,
    runs_dir: Path | None = None,
    resume: bool = False,
    progress_bar: bool = True,
    log: Callable[[str], None] = print,
    error_log: Callable[[str], None] | None = None,
    attached: bool = False,
    stop_dir: Path | None = None,
    checkpoints_from: Path | None = None,
) -> RunResult:
    """Run `spec` to completion in this process, writing the run folder. Never raises for run errors: they end in
    status `failed` with the error and traceback (and the error goes to `error_log`, default stderr).

    Problems found before anything is written raise instead, and leave no folder (or an existing one unchanged):
    SpecError for the spec, its data or rewards (`validation.check_run`, the same check as `--validate-only`), and
    RunFolderError for the folder (occupied, not writable, or not resumable: finished, or its worker alive). On
    resume, `spec` (the run's spec.yaml with any overrides) is written to the folder only once all checks passed.

    `attached`: one rank of a multi-process run (training/launcher.py), whose launcher made those checks and the
    folder; `stop_dir` is the run folder whose STOP file it obeys and `checkpoints_from` the one it resumes from
    (a rank > 0 trains in a scratch folder of its own)."""
    error_log = error_log or _say_error
    if attached:
        run_dir = Path(run_dir)
    else:
        if spec.distributed.processes > 1:
            raise SpecError("distributed.processes", "a multi-process run starts its processes from "
                                                     "`python -m app.train` or start_run(), not inside this one; "
                                                     "set 1 to train in this process")
        run_dir = prepare_run_folder(spec, run_dir, runs_dir, resume, log)
    stop = StopFlag(stop_dir or run_dir)
    stop.install()
    info = pid_info()
    if not attached:
        # A stop asked while this worker process started (launch_run recorded its pid) stands; an older STOP file
        # is left from an earlier stop. In-process callers (notebooks) count from this call instead. (The ranks of
        # a multi-process run leave this to their launcher.)
        launched = runs.read_json(run_dir / "status.json").get("pid") == info["pid"]
        runs.clear_stale_stop(run_dir, since=info["pid_started_at"] if launched else time.time())
    runs.update_status(
        run_dir, state="running", started_at=time.time(), error=None, traceback=None, max_steps=spec.training.max_steps,
        stop_reason=None, **info,
    )
    try:
        with contextlib.ExitStack() as cleanup:  # closes sandboxed reward workers however the run ends
            return _train(spec, run_dir, resume, stop, progress_bar, log, cleanup, checkpoints_from)
    except RunStopped as exc:  # before training, or inside an evaluation: what was logged so far stays
        ckpt = runs.latest_checkpoint(run_dir)
        runs.update_status(
            run_dir, state="stopped", ended_at=time.time(), error=None, stop_reason=f"{stop.reason} {exc}",
            checkpoint=str(ckpt) if ckpt else None, step=runs.read_json(run_dir / "status.json").get("step") or 0,
        )
        log(f"Stopped {exc} ({stop.reason}); resume with: python -m app.train --resume {run_dir}")
        return RunResult(run_dir, "stopped")
    except BaseException as exc:  # the run folder records every way a run can end
        message = str(exc) or type(exc).__name__
        state = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        runs.update_status(
            run_dir, state=state, error=message, error_type=type(exc).__name__, traceback=traceback.format_exc(),
            ended_at=time.time(),
        )
        (error_log if state == "failed" else log)(f"Run {state}: {message}")
        return RunResult(run_dir, state, message)
    finally:
        stop.uninstall()


# Fields a resumed run must keep: its checkpoints hold weights and optimizer state of exactly this model and adapter.
RESUME_FIXED_FIELDS = ("method", "model", "init_adapter", "lora.enabled", "lora.r", "lora.alpha", "lora.target_modules")


def check_resume(run_dir: Path, spec: RunSpec) -> dict[str, Any]:
    """Whether this process may continue `run_dir` with `spec` (its spec.yaml plus overrides): RunFolderError when
    the run cannot be resumed (`runs.check_resumable`), SpecError when `spec` changes a field its checkpoints
    depend on. Returns the run's status; writes nothing."""
    status = runs.check_resumable(run_dir, spec.training.max_steps)
    saved = RunSpec.load(run_dir / "spec.yaml").to_dict()
    new = spec.to_dict()
    for name in RESUME_FIXED_FIELDS:
        old_value, new_value = saved, new
        for part in name.split("."):
            old_value, new_value = old_value.get(part), new_value.get(part)
        if old_value != new_value:
            raise SpecError(name, f"cannot change when resuming (the checkpoints were trained with {old_value!r}, "
                                  f"not {new_value!r}); start a new run for it")
    return status


def prepare_run_folder(spec: RunSpec, run_dir: Path | None, runs_dir: Path | None, resume: bool,
                       log: Callable[[str], None]) -> Path:
    """Every check a run makes before it writes anything (`check_resume`, `validation.check_run`), then its folder:
    the resumed one prepared, or a new one made. Raises SpecError or RunFolderError, leaving nothing behind."""
    from app.engine.core.validation import check_run

    status: dict[str, Any] = {}
    if resume:
        if run_dir is None:
            raise ValueError("resume=True needs the run_dir of the run to continue")
        run_dir = Path(run_dir)
        status = check_resume(run_dir, spec)
    check_run(spec)
    if resume:
        _prepare_resume(run_dir, spec, status, log)
        return run_dir
    return runs.create_run_dir(spec, runs_dir, run_dir)


def _prepare_resume(run_dir: Path, spec: RunSpec, status: dict[str, Any], log: Callable[[str], None]) -> None:
    """The resumed worker's first writes, after every check passed: the spec with its overrides, and (a finished
    run trained further) its final adapter moved aside, so the new final adapter replaces nothing."""
    spec_file = run_dir / "spec.yaml"
    text = spec.to_yaml()
    if spec_file.read_text(encoding="utf-8") != text:
        runs.write_atomic(spec_file, text)
    if status.get("state") == "finished" and (run_dir / "adapter").exists():
        kept = run_dir / f"adapter-step{int(status.get('step') or 0)}"
        n = 1
        while kept.exists():
            n += 1
            kept = run_dir / f"adapter-step{int(status.get('step') or 0)}-{n}"
        os.rename(run_dir / "adapter", kept)
        runs.update_status(run_dir, adapter=str(kept), final_eval=None)
        log(f"Training further from step {status.get('step')}: the earlier final adapter is kept in {kept.name}/.")


def _has_start_eval(run_dir: Path) -> bool:
    """Whether the run already logged its start-of-run (step 0) evaluation (a resumed run does not repeat it)."""
    records = runs.read_jsonl(run_dir / "metrics.jsonl")[0]
    return any(r.get("step") == 0 and any(str(k).startswith("eval/") for k in r) for r in records)


def _train(
    spec: RunSpec, run_dir: Path, resume: bool, stop: StopFlag, progress_bar: bool, log: Callable[[str], None],
    cleanup: contextlib.ExitStack, checkpoints_from: Path | None = None,
) -> RunResult:
    from app.engine.training import vllm_generation
    from app.engine.training.backend import check_backend_request, choose_backend

    problem = check_backend_request(spec)  # generation.vllm's machine checks ran in check_run, before the folder
    if problem:
        raise RunFailed(problem)
    import torch

    from app.engine.training.backend import resolve_auto
    from app.engine.training.distributed import rank_and_world

    requested, why = resolve_auto(spec, torch.cuda.is_available(), rank_and_world()[1])
    info = choose_backend(requested, spec.dtype)  # before anything imports trl
    if why:
        info.reason = why
    runs.update_status(run_dir, backend=info.name, device=info.device, dtype=info.dtype, backend_reason=info.reason)
    log(f"Backend: {info.name} on {info.device} ({info.dtype}); {info.reason}")
    if info.name == "trl":
        from app.engine.training.cpu_kernels import ensure_trl_logprob_kernel

        ensure_trl_logprob_kernel()

    from app.engine.data.sources import load_data, to_trl_dataset
    from app.engine.evaluation.evaluate import (
        EvaluationStopped,
        correctness_reward,
        evaluate,
    )
    from app.engine.training.models import resolve_model
    from app.engine.training.trackers import PROJECT, TrackerError, spec_callback, start_trackers

    data = load_data(spec.data)
    if data.split is not None:  # what was held out, and which training rows were left out as repeats of it
        runs.update_status(run_dir, split=data.split.to_dict())
        log(data.split.sentence())
    funcs, weights, registry = build_rewards(spec)
    for fn in funcs:
        cleanup.callback(fn.close)
    # The rewards' dry run on these rows already ran in validation.check_run, before the folder was made.
    names = [f.__name__ for f in funcs]
    accuracy_reward = correctness_reward(names, registry)

    try:  # before the model loads: a tracker that cannot start costs the user nothing
        trackers = start_trackers(spec.logging.report_to, run_dir, spec.logging.report_to_optional, log)
    except TrackerError as exc:
        raise RunFailed(f"logging.report_to: {exc}") from None
    if spec.logging.report_to:
        runs.update_status(run_dir, trackers=trackers.where, trackers_skipped=trackers.skipped)
    _check_stop(stop, "before loading the model")
    model_path = resolve_model(spec.model, progress=lambda f, m: log(f"[model {f:.0%}] {m}"))
    runs.update_status(run_dir, model_path=model_path)
    if spec.generation.vllm == "server" and spec.generation.vllm_server_devices:
        server = vllm_generation.start_server(model_path, spec.generation, run_dir)
        cleanup.callback(vllm_generation.stop_server, server)  # stopped however the run ends
        log(f"vLLM server: trl vllm-serve on CUDA devices {spec.generation.vllm_server_devices}, "
            f"{spec.generation.vllm_server_host}:{spec.generation.vllm_server_port} (log: {vllm_generation.SERVER_LOG})")
    from app.engine.training.backend import load_model

    model, tokenizer, peft_cfg = load_model(spec, info, model_path)
    for note in info.model_notes:  # what loading chose where this model needed care
        log(f"Model: {note}")
    if info.model_notes:
        runs.update_status(run_dir, model_notes=info.model_notes)
    _check_stop(stop, "while loading the model")  # a signal during the load is only noted by the handler
    unsloth = info.name == "unsloth"
    eval_tokens = spec.logging.eval_max_new_tokens or spec.generation.max_completion_length

    method = spec.training_method
    data.eval = method.eval_rows(data.eval)
    eval_ctx = EvalContext(spec, model, tokenizer, unsloth, log)

    def run_eval(step: int) -> dict[str, Any]:
        pref = method.extra_evaluation(eval_ctx, data.eval, step)  # e.g. DPO's preference accuracy
        if not data.eval or not funcs:
            return pref
        log(f"[eval step {step}] evaluating on {len(data.eval)} held-out rows")  # may take minutes: say it starts
        result = evaluate(
            model, tokenizer, data.eval, funcs, weights, accuracy_reward=accuracy_reward,
            system_prompt=spec.data.system_prompt, max_new_tokens=eval_tokens, unsloth=unsloth,
            should_stop=lambda: stop.requested,  # SIGTERM/Stop ends an evaluation within a generation step
        )
        acc = f"{result.accuracy:.1%}" if result.accuracy is not None else "n/a"
        log(f"[eval step {step}] accuracy {acc}, reward {result.reward}, {result.seconds:.1f} s")
        # Per-row outcomes: what confidence intervals over seeds × held-out rows resample.
        runs.append_jsonl(run_dir / runs.EVALS_FILE, {"step": step, "reward": accuracy_reward,
                                                      "correct": result.outcomes, "total": result.totals})
        return {**pref, **result.metrics(), "eval/samples": result.samples}

    # A resumed run evaluates the base model only if its first start never finished that evaluation.
    if spec.logging.eval_at_start and not _has_start_eval(run_dir):
        try:
            metrics = run_eval(0)
        except EvaluationStopped:
            raise RunStopped("during the start-of-run evaluation") from None
        if metrics:
            runs.append_jsonl(run_dir / "metrics.jsonl", {"step": 0, "time": time.time(), **metrics})
    _check_stop(stop, "before training")

    train_ds = to_trl_dataset(data.train, spec.method, spec.data.system_prompt)
    common = common_args(spec, info, run_dir)
    common.update(report_to=trackers.report_to, run_name=run_dir.name, project=PROJECT)
    trainer = method.build_trainer(TrainerParts(spec, info, model, tokenizer, peft_cfg, train_ds, funcs, weights, common))
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    import rewards
    from app.engine.training.callbacks import ProgressBarCallback, RunFolderCallback

    best = BestKeeper(run_dir, spec.training.keep_best, runs.read_status(run_dir).get("best") if resume else None)

    def periodic_eval(step: int) -> dict[str, Any]:
        try:
            metrics = run_eval(step)
            best.consider(step, metrics, trainer.model, log)
            return metrics
        except EvaluationStopped:  # stop now, with a checkpoint of this step, instead of after one more step
            folder_cb.stopped = True
            trainer.control.should_training_stop = True
            trainer.control.should_save = True
            return {"eval/stopped": True}

    folder_cb = RunFolderCallback(
        run_dir, stop, sample_every=spec.logging.sample_every, eval_every=spec.logging.eval_every,
        evaluate=periodic_eval, guarded_rewards=funcs,
        failure_check=(lambda: rewards.check_failure_threshold(funcs, max_rate=spec.reward_max_failure_rate)) if funcs else None,
    )
    folder_cb.trainer = trainer
    trainer.add_callback(folder_cb)
    if trackers.report_to:  # folder_cb adds its timings to each log before the trackers' callbacks see it
        from transformers.integrations import get_reporting_integration_callbacks

        reporting = tuple(get_reporting_integration_callbacks(trackers.report_to))
        handler = trainer.callback_handler.callbacks
        folder_cb.trackers = [cb for cb in handler if isinstance(cb, reporting)]
        handler.remove(folder_cb)
        handler.insert(min(handler.index(cb) for cb in folder_cb.trackers), folder_cb)
    for cb in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(cb)
    trainer.add_callback(ProgressBarCallback(enabled=progress_bar))
    trainer.add_callback(_health_callback(run_dir, spec, log))  # after folder_cb: it reads what that one wrote
    if trackers.report_to:
        trainer.add_callback(spec_callback(spec.to_dict()))  # after the integrations' own on_train_begin

    checkpoint = runs.latest_checkpoint(checkpoints_from or run_dir) if resume else None
    if resume and checkpoint is None:
        log("No complete checkpoint found: starting this run again from step 0.")
    runs.update_status(run_dir, resumed_from=str(checkpoint) if checkpoint else None)
    _check_stop(stop, "before training")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    model = trainer.model  # TRL may have wrapped it (PEFT)

    if folder_cb.failure is not None:
        raise RunFailed(str(folder_cb.failure))
    if folder_cb.stopped:
        ckpt = runs.latest_checkpoint(run_dir)
        runs.update_status(
            run_dir, state="stopped", ended_at=time.time(), error=None, stop_reason=stop.reason,
            checkpoint=str(ckpt) if ckpt else None, step=trainer.state.global_step,
        )
        log(f"Stopped at step {trainer.state.global_step} ({stop.reason}); resume with: python -m app.train --resume {run_dir}")
        return RunResult(run_dir, "stopped")

    adapter_dir = run_dir / "adapter"
    trainer.save_model(str(adapter_dir))
    getattr(tokenizer, "tokenizer", tokenizer).save_pretrained(str(adapter_dir))
    final: dict[str, Any] = {}
    if spec.logging.eval_at_end:
        step = trainer.state.global_step
        if folder_cb.last_eval and folder_cb.last_eval[0] == step:  # the periodic evaluation just ran at this step
            final = folder_cb.last_eval[1]
        else:
            try:
                final = run_eval(step)
            except EvaluationStopped:  # trained and saved: a resume redoes only this evaluation
                raise RunStopped("during the final evaluation") from None
        if final:
            runs.append_jsonl(run_dir / "metrics.jsonl", {"step": trainer.state.global_step, "time": time.time(), **final, "final": True})
    kept = best.restore(adapter_dir, trainer.state.global_step, final, log)
    if kept is not None:
        final = kept
    runs.update_status(
        run_dir, state="finished", ended_at=time.time(), step=trainer.state.global_step, adapter=str(adapter_dir),
        final_eval={k: v for k, v in final.items() if k != "eval/samples"},
    )
    log(f"Finished: {run_dir}")
    return RunResult(run_dir, "finished", final_metrics=final)


class BestKeeper:
    """`training.keep_best`: saves the adapter whenever a periodic evaluation beats the best so far (into
    RUN/best-adapter/, a few MB with LoRA) and, at the end, puts it in adapter/ when the last step scored lower, so a
    run that peaks and collapses still ends with its best model. status.json's `best` says which step was kept."""

    FOLDER = "best-adapter"

    def __init__(self, run_dir: Path, metric: str | None, recorded: dict[str, Any] | None = None):
        self.run_dir, self.metric = Path(run_dir), metric
        self.step: int | None = None
        self.value: float | None = None
        self.metrics: dict[str, Any] = {}
        if metric and recorded and recorded.get("metric") == metric and (self.run_dir / self.FOLDER).exists():
            self.step, self.value = recorded.get("step"), recorded.get("value")  # a resumed run keeps its best
            self.metrics = recorded.get("eval") or {}

    def consider(self, step: int, metrics: dict[str, Any], model: Any, log: Callable[[str], None]) -> None:
        value = metrics.get(self.metric) if self.metric else None
        if not isinstance(value, (int, float)) or (self.value is not None and value <= self.value):
            return
        folder = self.run_dir / self.FOLDER
        model.save_pretrained(str(folder))
        self.step, self.value = step, float(value)
        self.metrics = {k: v for k, v in metrics.items() if k != "eval/samples"}
        runs.update_status(self.run_dir, best={"metric": self.metric, "step": step, "value": self.value,
                                               "eval": self.metrics, "kept": False})
        log(f"[keep_best] step {step}: {self.metric} {value:.4g}, the best so far (saved in {folder.name}/)")

    def restore(self, adapter_dir: Path, last_step: int, final: dict[str, Any], log: Callable[[str], None]
                ) -> dict[str, Any] | None:
        """Put the best adapter in `adapter_dir` when it beats the last step; returns its evaluation, else None."""
        if not self.metric or self.value is None:
            return None
        last = final.get(self.metric)
        if isinstance(last, (int, float)) and last >= self.value:
            runs.update_status(self.run_dir, best={"metric": self.metric, "step": last_step, "value": float(last),
                                                   "kept": True, "note": "the last step is the best"})
            return None
        import shutil

        for item in (self.run_dir / self.FOLDER).iterdir():  # adapter weights and config; the tokenizer stays
            shutil.copy2(item, adapter_dir / item.name)
        runs.update_status(self.run_dir, best={"metric": self.metric, "step": self.step, "value": self.value,
                                               "eval": self.metrics, "kept": True, "last_step": last_step,
                                               "last_value": last})
        log(f"[keep_best] adapter/ holds step {self.step} ({self.metric} {self.value:.4g}); the last step "
            f"{last_step} scored {last}")
        return {**self.metrics, "kept_best_step": self.step}


def _health_callback(run_dir: Path, spec: RunSpec, log: Callable[[str], None]) -> Any:
    """A TrainerCallback that logs each health alert (app.engine.advice.health, as the app shows them) once, when it first
    fires."""
    from transformers import TrainerCallback

    from app.engine.advice.health import AlertWatcher, alert_line

    class HealthLog(TrainerCallback):
        def __init__(self) -> None:
            self.watcher = AlertWatcher(run_dir, spec)

        def on_log(self, args, state, control, logs=None, **kwargs):
            for alert in self.watcher.poll():
                log(alert_line(alert))

    return HealthLog()


def common_args(spec: RunSpec, info: Any, run_dir: Path) -> dict[str, Any]:
    """TrainingArguments every method's TRL config shares (a method adds its own)."""
    from app.engine.training import distributed

    t, lg = spec.training, spec.logging
    cuda = info.device.startswith("cuda")
    return dict(
        output_dir=str(run_dir / "checkpoints"),
        learning_rate=t.learning_rate,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the steps
        lr_scheduler_type=t.lr_scheduler_type,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optim,
        gradient_checkpointing=t.gradient_checkpointing and info.name != "unsloth",
        logging_steps=lg.logging_steps,
        save_strategy="steps",
        save_steps=lg.save_steps,
        save_total_limit=lg.save_total_limit,
        seed=spec.seed,
        data_seed=spec.seed,
        report_to=[],
        use_cpu=not cuda,
        bf16=cuda and info.dtype == "bfloat16",
        fp16=cuda and info.dtype == "float16",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **distributed.trainer_args(spec, cuda),
    )


def train_from_yaml(path: str | Path, **kwargs: Any) -> RunResult:
    return train(RunSpec.load(path), **kwargs)


__all__ = ["train", "train_from_yaml", "check_resume", "prepare_run_folder", "pid_info", "RunResult", "RunFailed", "RunStopped", "SpecError"]
