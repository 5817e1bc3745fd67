"""Experiment trackers beside the run folder: `logging.report_to: [tensorboard, trackio, wandb, mlflow]`.

The run folder stays the source of truth for the app's charts; a tracker gets the same scalars through the
transformers integration callbacks TRL already uses (`report_to`), with the run's folder name as the run name and
the RunSpec in the run's config. Each tracker is prepared before the model loads, so one that cannot start (not
installed, a bad key, an unreachable server) stops the run with one sentence, or, with
`logging.report_to_optional: true`, is skipped with a warning:

    tensorboard  event files in RUN_DIR/tensorboard           (tensorboard --logdir RUN_DIR/tensorboard)
    trackio      the local trackio store, project "rft-workbench" ($TRACKIO_DIR, else ~/.cache/huggingface/trackio;
                 trackio show --project rft-workbench)
    wandb        online with a key (WANDB_API_KEY or `wandb login`), else offline in RUN_DIR/wandb (wandb sync)
    mlflow       $MLFLOW_TRACKING_URI when set, else a local store beside the runs (RUNS_DIR/mlruns; mlflow ui)
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "trackio", "wandb", "mlflow")
PROJECT = "rft-workbench"  # trackio project, MLflow experiment, W&B project (unless the user's settings say else)
TENSORBOARD_DIR = "tensorboard"
INSTALL_HINT = "pip install -r requirements-trackers.txt"


class TrackerError(RuntimeError):
    """A tracker the run asked for cannot start; the message is one sentence naming it and the fix."""


@dataclass
class Trackers:
    """The trackers a run reports to, where each writes, and the ones skipped (with why)."""

    report_to: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _need(module: str, name: str) -> None:
    if not _installed(module):
        raise TrackerError(f"{name} is not installed: pip install {module} (or all trackers: {INSTALL_HINT}).")


def _tensorboard(run_dir: Path) -> str:
    _need("tensorboard", "tensorboard")
    logdir = run_dir / TENSORBOARD_DIR
    try:
        logdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackerError(f"tensorboard cannot write {logdir}: {exc.strerror or exc}.") from None
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(logdir)  # read by transformers' TensorBoardCallback
    return f"{logdir} (view: tensorboard --logdir {logdir})"


def _trackio(run_dir: Path) -> str:
    _need("trackio", "trackio")
    store = os.environ.get("TRACKIO_DIR") or str(Path(os.environ.get("HF_HOME") or "~/.cache/huggingface")
                                                 .expanduser() / "trackio")
    where = f"project {PROJECT!r}, run {run_dir.name!r} in {store}"
    if os.environ.get("TRACKIO_SPACE_ID"):
        where += f" (synced to the Space {os.environ['TRACKIO_SPACE_ID']})"
    return where + f" (view: trackio show --project {PROJECT})"


def _wandb(run_dir: Path) -> str:
    _need("wandb", "wandb")
    os.environ.setdefault("WANDB_PROJECT", PROJECT)
    os.environ.setdefault("WANDB_DIR", str(run_dir))
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "disabled") or (mode != "online" and not _wandb_key()):
        os.environ["WANDB_MODE"] = mode or "offline"
        return f"offline in {run_dir / 'wandb'} (upload later: wandb sync {run_dir / 'wandb'})"
    import wandb

    try:  # a bad key fails here, before the model loads, not in the trainer's first callback
        ok = wandb.login(key=os.environ.get("WANDB_API_KEY"), verify=True, timeout=20)
    except Exception as exc:  # noqa: BLE001 - wandb raises many kinds; all mean "cannot start"
        raise TrackerError(f"wandb cannot log in: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__} "
                           "(set WANDB_API_KEY, or WANDB_MODE=offline).") from None
    if ok is False:
        raise TrackerError("wandb cannot log in with this key (set WANDB_API_KEY, or WANDB_MODE=offline).")
    return f"online, project {os.environ['WANDB_PROJECT']!r}"


def _wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path("~/.netrc").expanduser()
    try:
        return "api.wandb.ai" in netrc.read_text(encoding="utf-8")
    except OSError:
        return False


def _mlflow(run_dir: Path) -> str:
    _need("mlflow", "mlflow")
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", PROJECT)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        store = run_dir.parent / "mlruns"
        os.environ["MLFLOW_TRACKING_URI"] = uri = store.resolve().as_uri()
        return f"local store {store} (view: mlflow ui --backend-store-uri {uri})"
    import mlflow

    try:  # an unreachable server or a bad token fails here, before the model loads
        mlflow.set_tracking_uri(uri)
        mlflow.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - MlflowException, connection errors, …
        raise TrackerError(f"mlflow cannot reach {uri}: {str(exc).splitlines()[0] if str(exc) else exc!r}.") from None
    return f"server {uri}, experiment {os.environ['MLFLOW_EXPERIMENT_NAME']!r}"


_PREPARE: dict[str, Callable[[Path], str]] = {
    "tensorboard": _tensorboard, "trackio": _trackio, "wandb": _wandb, "mlflow": _mlflow,
}


def tracker_problems(report_to: Any) -> list[str]:
    """What is wrong with a `logging.report_to` value (names only; installs are checked when the run starts)."""
    if not isinstance(report_to, (list, tuple)):
        return [f"must be a list of trackers (any of {', '.join(TRACKERS)}), got {report_to!r}"]
    problems = [f"unknown tracker {name!r}; choose from {', '.join(TRACKERS)}" for name in report_to
                if name not in TRACKERS]
    if len(set(report_to)) != len(report_to):
        problems.append("names a tracker twice")
    return problems


def start_trackers(report_to: list[str], run_dir: Path, optional: bool = False,
                   log: Callable[[str], None] = print) -> Trackers:
    """Prepare each tracker (environment, folders, a key or server check); raise TrackerError for the first that
    cannot start, or with `optional` skip it with a warning in the log."""
    out = Trackers()
    for name in report_to:
        try:
            out.where[name] = _PREPARE[name](run_dir)
        except TrackerError as exc:
            if not optional:
                raise
            out.skipped[name] = str(exc)
            log(f"Warning: tracker skipped (logging.report_to_optional): {exc}")
            continue
        out.report_to.append(name)
        log(f"Tracker {name}: {out.where[name]}")
    return out


def spec_callback(spec_dict: dict[str, Any]) -> Any:
    """A TrainerCallback that adds the RunSpec to each active tracker's run (after the integrations started)."""
    from transformers import TrainerCallback

    class RunSpecToTrackers(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            names = set(args.report_to or [])
            record = {"rft_workbench_spec": spec_dict}
            if "trackio" in names:
                import trackio

                trackio.config.update(record, allow_val_change=True)
            if "wandb" in names:
                import wandb

                if wandb.run is not None:
                    wandb.config.update(record, allow_val_change=True)
            if "mlflow" in names:
                import mlflow

                if mlflow.active_run() is not None:
                    mlflow.log_dict(spec_dict, "rft_workbench_spec.json")

    return RunSpecToTrackers()


__all__ = ["TRACKERS", "PROJECT", "TENSORBOARD_DIR", "Trackers", "TrackerError", "tracker_problems",
           "start_trackers", "spec_callback"]
