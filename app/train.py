"""Command line: train one run in this process.

    python -m app.train SPEC.yaml [--run-dir DIR] [--runs-dir DIR] [--max-steps N] [--set field=value …]
    python -m app.train --resume RUN_DIR [--max-steps N]

Exit code 0 only when the run finished; 2 for a spec problem (nothing created); 1 when the run failed; 3 when it
was stopped (resume it with --resume).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.train", description="Train one RFT Workbench run.")
    p.add_argument("spec", nargs="?", help="RunSpec YAML file (see recipes/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or failed run from its last checkpoint")
    p.add_argument("--run-dir", help="write the run into this folder (default: a new folder in --runs-dir)")
    p.add_argument("--runs-dir", help="parent folder of run folders (default: $RFT_WORKBENCH_RUNS or ./runs)")
    p.add_argument("--max-steps", type=int, help="override training.max_steps")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a spec field, e.g. --set training.learning_rate=1e-4")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. when logging to a file)")
    p.add_argument("--validate-only", action="store_true", help="check the spec and the data, then exit")
    p.add_argument("--help-spec", action="store_true", help="list every spec field with its help text")
    args = p.parse_args(argv)
    if not (args.spec or args.resume or args.help_spec):
        p.error("give a SPEC.yaml or --resume RUN_DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from app.engine.spec import RunSpec, SpecError, field_help

    if args.help_spec:
        for name, text in field_help().items():
            print(f"{name:45s} {text}")
        return 0
    overrides = list(args.set)
    if args.max_steps is not None:
        overrides.append(f"training.max_steps={args.max_steps}")
    try:
        if args.resume:
            run_dir = Path(args.resume)
            spec = RunSpec.load(run_dir / "spec.yaml")
            if overrides:
                spec = spec.with_overrides(overrides)
                spec.validate(check_files=False)
                from app.engine.runs import write_atomic

                write_atomic(run_dir / "spec.yaml", spec.to_yaml())
        else:
            spec = RunSpec.load(args.spec).with_overrides(overrides)
            spec.validate()
            run_dir = Path(args.run_dir) if args.run_dir else None
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.validate_only:
        print("spec OK")
        return 0

    from app.engine.worker import train

    result = train(
        spec, run_dir=run_dir, runs_dir=Path(args.runs_dir) if args.runs_dir else None, resume=bool(args.resume),
        progress_bar=not args.no_progress,
    )
    print(f"run folder: {result.run_dir}")
    return {"finished": 0, "stopped": 3}.get(result.state, 1)


if __name__ == "__main__":
    sys.exit(main())
