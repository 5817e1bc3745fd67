"""Runs on several processes (`distributed.processes` > 1): one RunSpec, one copy of the worker per device,
data-parallel through the Trainer's own distributed support (torch.distributed: DDP, or FSDP / DeepSpeed ZeRO
through TrainingArguments' `fsdp` and `deepspeed`, with the files in recipes/accelerate/). This module holds what
the worker, its callbacks and validation need of it; `launcher.py` starts and watches the ranks.

Rank 0 writes the run folder; ranks > 0 train on their share of each batch with `quiet_spec` (no evaluation) in a
scratch folder; at each step boundary all ranks agree on stopping (`any_rank`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from app.engine.core import REPOSITORY

SCRATCH_ENV = "RFT_WORKBENCH_RANK_DIR"  # a rank > 0's scratch folder (set by the launcher)
STRATEGY_FILES = {"fsdp": "fsdp.json", "deepspeed_zero2": "deepspeed_zero2.json",
                  "deepspeed_zero3": "deepspeed_zero3.json"}
RANK_EXIT = {"finished": 0, "failed": 1, "stopped": 3}


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside a multi-process run)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_rank_process() -> bool:
    return rank_and_world()[1] > 1


def strategy_file(spec: Any) -> Path | None:
    """The strategy's config file: the user's `config_file`, else the one shipped in recipes/accelerate/."""
    d = spec.distributed
    if d.config_file:
        return Path(d.config_file).expanduser()
    name = STRATEGY_FILES.get(d.strategy)
    return REPOSITORY / "recipes" / "accelerate" / name if name else None


def problems(spec: Any, check_machine: bool = True) -> list[tuple[str, str]]:
    """(field, problem) pairs for `distributed`; `check_machine` also asks this machine (devices, packages)."""
    from app.engine.core.fields import STRATEGIES

    d = spec.distributed
    out: list[tuple[str, str]] = []
    if isinstance(d.processes, bool) or not isinstance(d.processes, int) or d.processes < 1:
        return [("distributed.processes", f"must be a whole number ≥ 1, got {d.processes!r}")]
    if d.strategy not in STRATEGIES:
        return [("distributed.strategy", f"unknown strategy {d.strategy!r}; choose one of {', '.join(STRATEGIES)}")]
    if d.processes == 1:
        return []
    config = strategy_file(spec)
    if d.config_file and config is not None and not config.is_file():
        out.append(("distributed.config_file", f"{config} does not exist"))
    if d.config_file and d.strategy == "ddp":
        out.append(("distributed.config_file", "ddp reads no config file; set a strategy that does (fsdp, "
                                               "deepspeed_zero2, deepspeed_zero3) or leave it empty"))
    if spec.load_in_4bit or spec.fast_inference:
        out.append(("distributed.processes", "load_in_4bit and fast_inference (Unsloth) run in one process here; "
                                             "set distributed.processes: 1"))
    if out or not check_machine:
        return out
    import torch

    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        if d.processes > gpus:
            out.append(("distributed.processes", f"asks for {d.processes} processes, one per GPU, but this machine "
                                                 f"has {gpus} CUDA GPU{'s' if gpus != 1 else ''}"))
    else:
        cores = os.cpu_count() or 1
        if d.processes > cores:
            out.append(("distributed.processes", f"asks for {d.processes} CPU processes but this machine has "
                                                 f"{cores} CPU core{'s' if cores != 1 else ''}"))
        if d.strategy != "ddp":
            out.append(("distributed.strategy", f"{d.strategy} needs CUDA GPUs and this machine has none; use ddp "
                                                "on a CPU"))
    if d.strategy.startswith("deepspeed"):
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            out.append(("distributed.strategy", f"{d.strategy} needs DeepSpeed: pip install deepspeed"))
    return out


def trainer_args(spec: Any, cuda: bool) -> dict[str, Any]:
    """TrainingArguments of a multi-process run ({} in a one-process run)."""
    if not is_rank_process():
        return {}
    args: dict[str, Any] = {"ddp_backend": "nccl" if cuda else "gloo", "ddp_find_unused_parameters": False}
    strategy, config = spec.distributed.strategy, strategy_file(spec)
    if strategy == "fsdp":
        args.update(fsdp="full_shard auto_wrap", fsdp_config=str(config))
    elif strategy.startswith("deepspeed"):
        args.update(deepspeed=str(config))
    return args


def any_rank(*flags: bool) -> list[bool]:
    """Each flag, true when it is true on any rank (an all-reduce; every rank must call it at the same point)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return list(flags)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    values = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def quiet_spec(spec: Any) -> Any:
    """The spec a rank > 0 trains with: the same training, no evaluation, samples, trackers or best-keeping (rank 0
    does those for the run)."""
    data = spec.to_dict()
    data["logging"].update(eval_at_start=False, eval_at_end=False, eval_every=0, report_to=[], log_completions=False,
                           sample_every=10**9)
    data["training"]["keep_best"] = None
    return type(spec).from_dict(data)


__all__ = ["SCRATCH_ENV", "RANK_EXIT", "rank_and_world", "is_rank_process", "problems", "trainer_args", "any_rank",
           "quiet_spec", "strategy_file"]
