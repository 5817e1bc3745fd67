"""Command line: train one run in this process.

    python -m app.train SPEC.yaml [--run-dir DIR] [--runs-dir DIR] [--max-steps N] [--set field=value …]
    python -m app.train --resume RUN_DIR [--max-steps N] [--set field=value …]
    python -m app.train SPEC.yaml --validate-only      # every check the run makes before loading the model
    python -m app.train --status RUN_DIR               # state, step, last metrics and health alerts of a run

Exit code 0 only when the run finished; 2 for any problem found before training (one sentence on stderr; no folder
is created and an existing one is left unchanged); 1 when the run failed (its error on stderr and in status.json);
3 when it was stopped (resume it with --resume).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.train", description="Train one RFT Workbench run.")
    p.add_argument("spec", nargs="?", help="RunSpec YAML file (see recipes/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or failed run from its last checkpoint")
    p.add_argument("--status", metavar="RUN_DIR", help="print a run's state, step, last metrics and health alerts")
    p.add_argument("--run-dir", help="write the run into this new folder (default: a new folder in --runs-dir)")
    p.add_argument("--runs-dir", help="parent folder of run folders (default: $RFT_WORKBENCH_RUNS or ./runs)")
    p.add_argument("--max-steps", type=int, help="override training.max_steps")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a spec field, e.g. --set training.learning_rate=1e-4")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. when logging to a file)")
    p.add_argument("--validate-only", action="store_true", help="run every check a run makes before it loads the model, then exit")
    p.add_argument("--help-spec", action="store_true", help="list every spec field with its help text")
    # One rank of a multi-process run, started by its launcher (app/engine/training/launcher.py).
    p.add_argument("--rank-of", metavar="RUN_DIR", help=argparse.SUPPRESS)
    p.add_argument("--rank-resume", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rank_of:
        return args
    if not (args.spec or args.resume or args.help_spec or args.status):
        p.error("give a SPEC.yaml, --resume RUN_DIR or --status RUN_DIR")
    if args.resume and args.spec:
        p.error(f"give a SPEC.yaml or --resume {args.resume}, not both: a resumed run keeps its own spec.yaml "
                "(change fields with --set)")
    if args.resume and (args.run_dir or args.runs_dir):
        p.error("--resume continues the run in its own folder: leave out --run-dir and --runs-dir")
    if args.status and (args.spec or args.resume):
        p.error("--status only reads a run: give it alone")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from app.engine.core.processes import LaunchRefused
    from app.engine.core.runs import RunFolderError, check_resumable, check_run_target
    from app.engine.core.spec import RunSpec, SpecError, field_help

    if args.help_spec:
        for name, text in field_help().items():
            print(f"{name:45s} {text}")
        return 0
    if args.status:
        return print_status(Path(args.status))
    if args.rank_of:
        from app.engine.training.launcher import run_rank

        return run_rank(Path(args.rank_of), resume=args.rank_resume, progress_bar=not args.no_progress)
    overrides = list(args.set)
    if args.max_steps is not None:
        overrides.append(f"training.max_steps={args.max_steps}")
    run_dir = Path(args.resume or args.run_dir) if (args.resume or args.run_dir) else None
    runs_dir = Path(args.runs_dir) if args.runs_dir else None
    try:
        if args.resume:
            # Nothing is written here: the resumed worker saves the overrides once every check has passed.
            spec = RunSpec.load(run_dir / "spec.yaml") if (run_dir / "spec.yaml").is_file() else None
            if spec is None:
                check_resumable(run_dir, 0)  # raises: not a run folder
            spec = spec.with_overrides(overrides)
        else:
            spec = RunSpec.load(args.spec).with_overrides(overrides)
        if args.validate_only:
            from app.engine.core.validation import check_run

            if args.resume:
                from app.engine.training.worker import check_resume

                check_resume(run_dir, spec)
            else:
                check_run_target(run_dir, runs_dir)
            check_run(spec)  # the same function every run calls before it creates its folder
            print("spec OK")
            return 0
        warning = device_check(run_dir, runs_dir, spec.distributed.processes)
        if warning:
            print(f"note: {warning}", file=sys.stderr)
        if spec.distributed.processes > 1:  # this process launches the run's ranks and watches them
            from app.engine.training.launcher import train_distributed as train
        else:
            from app.engine.training.worker import train

        result = train(spec, run_dir=run_dir, runs_dir=runs_dir, resume=bool(args.resume),
                       progress_bar=not args.no_progress)
    except (SpecError, RunFolderError, LaunchRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted before the run started; nothing was written", file=sys.stderr)
        return 130
    print(f"run folder: {result.run_dir}")
    return {"finished": 0, "stopped": 3}.get(result.state, 1)


def device_check(run_dir: Path | None, runs_dir: Path | None, processes: int = 1) -> str | None:
    """The app's GPU rule for a run started from the shell: LaunchRefused while other runs of the same runs folder
    hold the GPUs this one asks for; on a CPU, a warning that the cores are shared (None when nothing else runs).
    A run given its GPUs (CUDA_VISIBLE_DEVICES, as the app does when it starts one) uses those."""
    from app.engine.core import runs
    from app.engine.core.processes import gpu_available, launch_check

    if os.environ.get("CUDA_VISIBLE_DEVICES") and gpu_available():
        return None
    folder = run_dir.parent if run_dir is not None else (runs_dir or runs.default_runs_dir())
    return launch_check(Path(folder), exclude=run_dir, wanted=processes) if Path(folder).is_dir() else None


# Metrics `--status` shows from the last training line, when logged.
STATUS_METRICS = ("loss", "reward", "reward_std", "kl", "entropy", "completions/mean_length", "learning_rate",
                  "step_time")


def print_status(run_dir: Path) -> int:
    """`--status RUN`: state, step, the last training metrics and evaluation, and the run's health alerts."""
    from app.engine.advice.health import alert_line, health_alerts
    from app.engine.core import runs
    from app.engine.presentation.charts import eval_records, train_records

    if not (run_dir / "status.json").is_file():
        print(f"error: {run_dir} is not a run folder (it holds no status.json)", file=sys.stderr)
        return 2
    status = runs.read_status(run_dir)
    spec: Any = None
    try:
        from app.engine.core.spec import RunSpec

        spec = RunSpec.load(run_dir / "spec.yaml")
    except Exception:  # a broken spec.yaml must not hide the status
        spec = None
    records = runs.read_jsonl(run_dir / "metrics.jsonl")[0]
    samples = runs.read_jsonl(run_dir / "samples.jsonl")[0]
    state = status.get("state", "unknown")
    step, total = status.get("step"), status.get("max_steps")
    line = f"run      {run_dir.name}: {state}"
    if step is not None:
        line += f" at step {step}" + (f" of {total}" if total else "")
    if state in runs.ACTIVE_STATES and status.get("pid"):
        line += f" (worker pid {status['pid']})"
    print(line)
    if status.get("backend"):
        print(f"backend  {status.get('backend')} on {status.get('device')} ({status.get('dtype')})")
    if status.get("error"):
        print(f"error    {status['error']}")
    train = train_records(records)
    if train:
        last = train[-1]
        shown = [f"{k} {_fmt(last[k])}" for k in STATUS_METRICS if last.get(k) is not None]
        print(f"last     step {last.get('step')}: " + (", ".join(shown) or "no metrics"))
    evals = [r for r in eval_records(records) if "eval/accuracy" in r or "eval/reward" in r]
    if evals:
        e = evals[-1]
        print(f"eval     step {e.get('step')}: accuracy {_fmt(e.get('eval/accuracy'))}, "
              f"reward {_fmt(e.get('eval/reward'))}" + (" (final)" if e.get("final") else ""))
    alerts = health_alerts(records, spec, samples=samples)
    if not alerts:
        print("health   no alerts" if train else "health   nothing logged yet")
    for alert in alerts:
        print(alert_line(alert))
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
