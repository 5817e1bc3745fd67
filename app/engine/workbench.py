"""Services the web app needs around runs, with no Gradio: where the app keeps its files, per-method defaults,
starting runs under the one-GPU rule, and reading run folders incrementally for the live view.

Folders (see docs/app.md):

    runs dir   --runs-dir, else $RFT_WORKBENCH_RUNS, else ./runs             one folder per run
    data dir   --data-dir, else $RFT_WORKBENCH_HOME, else the runs dir's parent
      user_rewards/         rewards written in the playground (.py), reusable in runs and notebooks
      preferences/pairs.jsonl  preference pairs marked in the Compare tab (TRL's format, for DPO)
      datasets/             uploaded datasets, copied here so runs can read them after the upload is gone
      exports/              exported adapters and merged models

Only these folders (and the runs dir) are served to the browser (Gradio `allowed_paths`).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine import runs
from app.engine.spec import RunSpec, SpecError

USER_REWARDS = "user_rewards"
PREFERENCES = "preferences"
DATASETS = "datasets"
EXPORTS = "exports"
LOG_TAIL_CHARS = 20_000  # the end of train.log shown in the page


class LaunchRefused(RuntimeError):
    """A run cannot start now (another run holds the GPU, the spec is invalid...); the message says why."""


@dataclass(frozen=True)
class WorkbenchPaths:
    """The folders the app reads and writes."""

    runs_dir: Path
    data_dir: Path

    @property
    def user_rewards_dir(self) -> Path:
        return self.data_dir / USER_REWARDS

    @property
    def preferences_file(self) -> Path:
        return self.data_dir / PREFERENCES / "pairs.jsonl"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / DATASETS

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / EXPORTS

    def served(self) -> list[str]:
        """Folders the browser may download from (Gradio `allowed_paths`): never the whole data dir's parent."""
        return [str(p) for p in (self.runs_dir, self.user_rewards_dir, self.preferences_file.parent, self.datasets_dir,
                                 self.exports_dir)]

    def ensure(self) -> "WorkbenchPaths":
        for folder in (self.runs_dir, self.user_rewards_dir, self.preferences_file.parent, self.datasets_dir,
                       self.exports_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def resolve_paths(runs_dir: str | os.PathLike[str] | None = None,
                  data_dir: str | os.PathLike[str] | None = None) -> WorkbenchPaths:
    """Folders from arguments, then $RFT_WORKBENCH_RUNS / $RFT_WORKBENCH_HOME, then defaults (see module doc)."""
    runs_path = Path(runs_dir).expanduser().resolve() if runs_dir else runs.default_runs_dir()
    if data_dir:
        data_path = Path(data_dir).expanduser().resolve()
    elif os.environ.get("RFT_WORKBENCH_HOME"):
        data_path = Path(os.environ["RFT_WORKBENCH_HOME"]).expanduser().resolve()
    else:
        data_path = runs_path.parent
    return WorkbenchPaths(runs_path, data_path)


# -- datasets ------------------------------------------------------------------------------------------------------
def _slug(text: str, default: str = "file") -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:60] or default


def store_upload(upload: str | os.PathLike[str], paths: WorkbenchPaths) -> Path:
    """Copy an uploaded dataset (a temporary file) into the datasets folder and return its lasting path. The same
    content uploaded twice maps to the same file."""
    src = Path(upload)
    if not src.exists():
        raise FileNotFoundError(f"The upload {src.name} is gone; upload it again.")
    paths.datasets_dir.mkdir(parents=True, exist_ok=True)
    name = _slug(src.name, "dataset")
    target = paths.datasets_dir / name
    if target.exists() and target.read_bytes() != src.read_bytes():
        stem, suffix = os.path.splitext(name)
        target = paths.datasets_dir / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"
    if not target.exists():
        shutil.copyfile(src, target)
    return target


# -- defaults --------------------------------------------------------------------------------------------------------
def gpu_available() -> bool:
    """Whether a CUDA GPU is visible to this process (imports torch lazily)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def method_defaults(method: str, gpu: bool = False) -> dict[str, Any]:
    """Sensible RunSpec values (nested dict) for `method` on this hardware: small and quick on a CPU, larger
    batches and longer completions on a GPU. Matches the recipes/ files for the CPU case."""
    if method in ("sft", "dft"):
        return {
            "method": method,
            "training": {"learning_rate": 2e-4, "max_steps": 100 if gpu else 40,
                         "per_device_train_batch_size": 16 if gpu else 8},
            "generation": {"max_length": 512 if gpu else 256, "max_completion_length": 64 if gpu else 32},
            "logging": {"eval_every": 0, "save_steps": 50 if gpu else 20},
        }
    if method == "dpo":  # preference pairs: a smaller step, one row = one pair (two sequences)
        return {
            "method": method,
            "training": {"learning_rate": 5e-5, "max_steps": 100 if gpu else 30,
                         "per_device_train_batch_size": 16 if gpu else 8},
            "generation": {"max_length": 512 if gpu else 128, "max_completion_length": 64 if gpu else 16},
            "dpo": {"beta": 0.1, "loss_type": "sigmoid"},
            "logging": {"save_steps": 50 if gpu else 30},
        }
    rl: dict[str, Any] = {  # grpo, prefix_rft
        "method": method,
        "training": {"learning_rate": 1e-4 if gpu else 2e-4, "max_steps": 200 if gpu else 40,
                     "per_device_train_batch_size": 32 if gpu else 16},
        "generation": {"num_generations": 8, "max_completion_length": 128 if gpu else 16, "temperature": 1.0},
        "grpo": {"loss_type": "dapo", "beta": 0.0, "scale_rewards": "group"},
        "logging": {"sample_every": 1, "save_steps": 50 if gpu else 20},
    }
    if method == "prefix_rft":  # the paper's setting: Dr. GRPO advantages, no KL term
        rl["grpo"] = {"loss_type": "dr_grpo", "beta": 0.0, "scale_rewards": "none"}
    return rl


def merge_nested(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, recursively for mappings (lists and values replace)."""
    out = dict(base)
    for key, value in (changes or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_nested(out[key], value)
        else:
            out[key] = value
    return out


def spec_with(spec: RunSpec | dict[str, Any] | None, changes: dict[str, Any]) -> RunSpec:
    """A RunSpec from `spec` (or the defaults) with nested `changes`; raises SpecError for bad fields."""
    data = spec.to_dict() if isinstance(spec, RunSpec) else dict(spec or RunSpec().to_dict())
    return RunSpec.from_dict(merge_nested(data, changes))


def recommended_spec(
    recommendation: Any,
    base: RunSpec | dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    gpu: bool | None = None,
    preferences_file: str | os.PathLike[str] | None = None,
) -> RunSpec:
    """The RunSpec a decision-tree recommendation (`decision.Recommendation`) leads to: `base` (or the defaults)
    with the method's per-hardware defaults, the recommendation's overrides and the profiled dataset.

    `data`: what the profiler found — `source`, `task_params`, `eval_size`, `demonstration_column`, `format`.
    A DPO recommendation without preference data trains on `preferences_file` (the pairs the app collects).
    Raises SpecError (a bad field) or ValueError (a method this version cannot train)."""
    from app.engine.spec import METHODS, RL_METHODS

    method, data = recommendation.method, dict(data or {})
    if method not in METHODS:
        raise ValueError(f"{method} training is not available in this version")
    defaults = method_defaults(method, gpu_available() if gpu is None else gpu)
    changes = merge_nested(defaults, {k: v for k, v in recommendation.spec_overrides.items() if k != "method"})
    changes["method"] = method
    if method == "prefix_rft":  # its loss settings are fixed by the method (Dr. GRPO, no KL)
        changes["grpo"] = defaults["grpo"]
        if data.get("demonstration_column"):
            changes["prefix"] = {"demonstration_column": data["demonstration_column"]}
    if data.get("source"):
        changes["data"] = {"source": data["source"], "task_params": data.get("task_params") or {},
                           "eval_size": int(data.get("eval_size") or 64)}
    if method in RL_METHODS and not changes.get("rewards"):
        changes["rewards"] = [{"name": "exact_answer", "weight": 1.0}]
    if method == "dpo" and data.get("format") != "preference" and preferences_file is not None:
        changes["data"] = _pairs_data(preferences_file)
    return spec_with(base, changes)


def _pairs_data(pairs_file: str | os.PathLike[str]) -> dict[str, Any]:
    return {"source": str(pairs_file), "task_params": {}, "eval_size": 8}


def preference_spec(base: RunSpec | dict[str, Any] | None, pairs_file: str | os.PathLike[str],
                    gpu: bool | None = None) -> RunSpec:
    """A DPO RunSpec that trains on `pairs_file` (the pairs the app collects), with DPO's defaults for this hardware
    and `base`'s model, seed and LoRA settings. Raises SpecError for a bad field."""
    changes = method_defaults("dpo", gpu_available() if gpu is None else gpu)
    changes["data"] = _pairs_data(pairs_file)
    changes["rewards"] = []  # DPO learns from the pairs; GRPO rewards in `base` do not apply
    return spec_with(base, changes)


# -- starting and stopping runs --------------------------------------------------------------------------------------
_PROCS: dict[str, subprocess.Popen] = {}
_PROCS_LOCK = threading.Lock()


def _track(run_dir: Path, proc: subprocess.Popen) -> None:
    with _PROCS_LOCK:
        _PROCS[str(run_dir)] = proc


def reap() -> None:
    """Collect exited worker processes started by this app (no zombies)."""
    with _PROCS_LOCK:
        for key, proc in list(_PROCS.items()):
            if proc.poll() is not None:
                del _PROCS[key]


def active_runs(runs_dir: Path) -> list[runs.RunInfo]:
    """Runs whose worker is queued or running (dead workers read as failed)."""
    reap()
    return [r for r in runs.list_runs(runs_dir) if r.state in runs.ACTIVE_STATES]


def launch_check(runs_dir: Path, gpu: bool | None = None, data_dir: Path | None = None) -> str | None:
    """None when a run may start now; raises LaunchRefused when another run, or a method comparison under
    `data_dir` (it starts its runs one after another), holds the only GPU. On a CPU a second run may start but
    shares the cores: the returned text warns about that."""
    gpu = gpu_available() if gpu is None else gpu
    if gpu and data_dir is not None:
        from app.engine import method_compare as mc

        comparing = [f for f in mc.list_comparisons(data_dir) if mc.read_state(f).get("state") in mc.ACTIVE]
        if comparing:
            raise LaunchRefused(
                f"The method comparison {comparing[0].name} is running on the GPU (its methods train one after "
                "another); one run at a time holds it. Stop the comparison (4 · Compare) or wait for it to finish.")
    busy = active_runs(runs_dir)
    if not busy:
        return None
    names = ", ".join(r.name for r in busy)
    if gpu:
        raise LaunchRefused(
            f"Run '{names}' is still {busy[0].state} on the GPU; one run at a time holds it. Stop it (or wait for it "
            "to finish), then launch again.")
    return (f"Run '{names}' is also training: both share this machine's CPU cores, so each runs slower. "
            "Stop one if you need the other's results sooner.")


def start_run(spec: RunSpec, runs_dir: Path, gpu: bool | None = None,
              extra_args: list[str] | None = None, data_dir: Path | None = None) -> tuple[Path, str | None]:
    """Validate `spec`, create its run folder and start the worker process; returns (run folder, warning or None)
    at once (training happens in the worker). Raises SpecError for an invalid spec, LaunchRefused when the GPU is
    taken (by a run, or by a comparison under `data_dir`)."""
    spec.validate()
    warning = launch_check(Path(runs_dir), gpu, data_dir)
    run_dir = runs.create_run_dir(spec, Path(runs_dir))
    proc = runs.launch_run(run_dir, extra_args=["--no-progress", *(extra_args or [])])
    _track(run_dir, proc)
    return run_dir, warning


def resume_run(run_dir: Path, gpu: bool | None = None, data_dir: Path | None = None) -> str | None:
    """Continue a stopped or failed run from its last complete checkpoint (same folder, same charts)."""
    status = runs.read_status(run_dir)
    if status.get("state") in runs.ACTIVE_STATES:
        raise LaunchRefused(f"Run {Path(run_dir).name} is already {status['state']}.")
    if status.get("state") == "finished":
        raise LaunchRefused(f"Run {Path(run_dir).name} has finished; launch a new run to train further.")
    warning = launch_check(Path(run_dir).parent, gpu, data_dir)
    runs.update_status(run_dir, state="queued", error=None, traceback=None, pid=None)  # launch_run records the new one
    proc = runs.launch_run(run_dir, extra_args=["--no-progress"], resume=True)
    _track(Path(run_dir), proc)
    return warning


def stop_run(run_dir: Path) -> str:
    """Ask a run to stop at its next step boundary (it saves a checkpoint first). Returns what happened."""
    status = runs.read_status(run_dir)
    if status.get("state") not in runs.ACTIVE_STATES:
        return f"Run {Path(run_dir).name} is not running ({status.get('state')})."
    runs.request_stop(run_dir)
    return f"Stop requested: {Path(run_dir).name} stops after the current step and saves a checkpoint."


# -- reading runs ------------------------------------------------------------------------------------------------------
@dataclass
class RunSnapshot:
    """What the live view shows of one run, read from its folder."""

    run_dir: Path
    status: dict[str, Any]
    spec: RunSpec | None
    records: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    version: tuple[Any, ...] = ()  # changes whenever any of the files changed

    @property
    def method(self) -> str:
        return self.spec.method if self.spec else str(self.status.get("method", "grpo"))


@dataclass
class _Tail:
    offset: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    inode: int | None = None


class RunReader:
    """Incremental reader of run folders, shared by every browser session: each poll reads only new lines."""

    def __init__(self) -> None:
        self._tails: dict[str, _Tail] = {}
        self._lock = threading.Lock()

    def _tail(self, path: Path) -> list[dict[str, Any]]:
        key = str(path)
        with self._lock:
            tail = self._tails.setdefault(key, _Tail())
            try:
                st = path.stat()
            except FileNotFoundError:
                self._tails[key] = _Tail()
                return []
            if tail.inode != st.st_ino or st.st_size < tail.offset:  # replaced or truncated: start again
                tail.offset, tail.records, tail.inode = 0, [], st.st_ino
            if st.st_size > tail.offset:
                new, tail.offset = runs.read_jsonl(path, tail.offset)
                tail.records.extend(new)
            return tail.records

    def snapshot(self, run_dir: Path | str) -> RunSnapshot:
        run_dir = Path(run_dir)
        reap()
        status = runs.read_status(run_dir)
        try:
            spec = RunSpec.load(run_dir / "spec.yaml")
        except SpecError:
            spec = None
        records = list(self._tail(run_dir / "metrics.jsonl"))
        samples = list(self._tail(run_dir / "samples.jsonl"))
        version = (status.get("state"), status.get("step"), status.get("updated_at"), len(records), len(samples))
        return RunSnapshot(run_dir, status, spec, records, samples, version)

    def forget(self, run_dir: Path | str) -> None:
        with self._lock:
            for name in ("metrics.jsonl", "samples.jsonl"):
                self._tails.pop(str(Path(run_dir) / name), None)


READER = RunReader()


def sample_steps(samples: list[dict[str, Any]]) -> list[int]:
    """Steps that have sample completions, ascending."""
    return sorted({int(s["step"]) for s in samples if isinstance(s.get("step"), (int, float))})


def samples_at(samples: list[dict[str, Any]], step: int | None) -> list[dict[str, Any]]:
    """The sample completions written at `step` (the latest step when None)."""
    steps = sample_steps(samples)
    if not steps:
        return []
    if step is None or step not in steps:
        step = steps[-1] if step is None else min(steps, key=lambda s: abs(s - step))
    return [s for s in samples if s.get("step") == step]


def eval_samples(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Samples of the latest held-out evaluation (prompt, completion, scores, total), with its step."""
    for r in reversed(records):
        if r.get("eval/samples"):
            return [{**s, "step": r.get("step")} for s in r["eval/samples"]]
    return []


def log_tail(run_dir: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The last `chars` characters of the run's train.log (the worker's output)."""
    path = Path(run_dir) / "train.log"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - chars))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return text.replace("\r", "\n")


def run_choices(runs_dir: Path) -> list[tuple[str, str]]:
    """(label, folder name) for a run picker, newest first."""
    out = []
    for r in runs.list_runs(runs_dir):
        step = f"{r.step or 0}/{r.max_steps}" if r.max_steps else ""
        out.append((f"{r.name} · {r.method} · {r.state} {step}".strip() + f" · {r.path.name}", r.path.name))
    return out


def runs_table(runs_dir: Path) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows) of the past-runs table, newest first."""
    headers = ["run", "method", "state", "step", "created", "final accuracy", "folder"]
    rows = []
    for r in runs.list_runs(runs_dir):
        status = runs.read_status(r.path)
        acc = (status.get("final_eval") or {}).get("eval/accuracy")
        rows.append([
            r.name, r.method, r.state, f"{r.step or 0}/{r.max_steps or '?'}",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
            "" if acc is None else f"{acc:.0%}", r.path.name,
        ])
    return headers, rows


def pick_run(runs_dir: Path) -> Path | None:
    """The run to show when a page opens: the newest active run, else the newest run."""
    all_runs = runs.list_runs(runs_dir)
    for r in all_runs:
        if r.state in runs.ACTIVE_STATES:
            return r.path
    return all_runs[0].path if all_runs else None


__all__ = [
    "WorkbenchPaths", "resolve_paths", "store_upload", "method_defaults", "merge_nested", "spec_with", "gpu_available",
    "LaunchRefused", "launch_check", "start_run", "resume_run", "stop_run", "active_runs", "reap", "RunSnapshot",
    "RunReader", "READER", "sample_steps", "samples_at", "eval_samples", "log_tail", "run_choices", "runs_table",
    "pick_run",
]
