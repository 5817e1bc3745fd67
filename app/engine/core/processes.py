"""Starting, tracking and stopping worker processes (runs and method comparisons), with the GPU rule: a run gets
the GPUs it asks for (`distributed.processes`, one per process) among those no active run holds, or is refused.
No Gradio, so the CLI and the app obey the same rule."""
from __future__ import annotations

from pathlib import Path

from app.engine.core import runs, spawn
from app.engine.core.spec import RunSpec


class LaunchRefused(RuntimeError):
    """A run cannot start now (another run holds the GPU, the spec is invalid...); the message says why."""



# -- defaults --------------------------------------------------------------------------------------------------------
def gpu_available() -> bool:
    """Whether a CUDA GPU is visible to this process (imports torch lazily)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


# -- starting and stopping runs --------------------------------------------------------------------------------------
def reap() -> None:
    """Collect exited worker processes started by this app (no zombies)."""
    spawn.reap()


def active_runs(runs_dir: Path) -> list[runs.RunInfo]:
    """Runs whose worker is queued or running (dead workers read as failed)."""
    reap()
    return [r for r in runs.list_runs(runs_dir) if r.state in runs.ACTIVE_STATES]


def gpu_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:
        return 0


def held_devices(busy: list[runs.RunInfo]) -> list[int]:
    """The GPU indices active runs hold: those their status records (`devices`, set when the app started them),
    else, for a run started by hand, as many as it has processes, counted from GPU 0."""
    held: set[int] = set()
    unrecorded = 0
    for run in busy:
        status = runs.read_json(Path(run.path) / "status.json")
        if status.get("devices"):
            held.update(int(d) for d in status["devices"])
        else:
            unrecorded += int(status.get("processes") or 1)
    free = (i for i in range(10**6) if i not in held)
    held.update(next(free) for _ in range(unrecorded))
    return sorted(held)


def allot_devices(runs_dir: Path, wanted: int = 1, total: int | None = None,
                  exclude: Path | None = None) -> list[int]:
    """`wanted` GPU indices no active run holds; LaunchRefused, naming the runs that hold them, when there are
    not that many. `total`: the machine's GPUs (default: those torch sees)."""
    total = gpu_count() if total is None else total
    busy = [r for r in active_runs(runs_dir) if exclude is None or Path(r.path).resolve() != Path(exclude).resolve()]
    held = held_devices(busy)
    free = [i for i in range(total) if i not in held]
    if len(free) >= wanted:
        return free[:wanted]
    plural = "s" if total != 1 else ""
    if not busy:
        raise LaunchRefused(f"This run asks for {wanted} GPUs and this machine has {total}.")
    names = ", ".join(r.name for r in busy)
    if total == 1:
        raise LaunchRefused(
            f"Run '{names}' is still {busy[0].state} on the GPU; one run at a time holds it. Stop it (or wait for it "
            "to finish), then launch again.")
    raise LaunchRefused(
        f"Run{'s' if len(busy) > 1 else ''} '{names}' hold{'' if len(busy) > 1 else 's'} {len(held)} of this "
        f"machine's {total} GPU{plural}; this run asks for {wanted} and {len(free)} {'is' if len(free) == 1 else 'are'} "
        "free. Stop one (or wait), or ask for fewer processes.")


def launch_check(runs_dir: Path, gpu: bool | None = None, data_dir: Path | None = None,
                 exclude: Path | None = None, wanted: int = 1, total: int | None = None) -> str | None:
    """None when a run may start now; raises LaunchRefused when a method comparison under `data_dir` (it starts
    its runs one after another) holds the GPU, or when the GPUs the run asks for (`wanted`) are not free
    (`allot_devices`). On a CPU a second run may start but shares the cores: the returned text warns about that.
    `exclude`: the run asking (a worker checking at its own start, after the app marked its folder queued)."""
    return _check_launch(runs_dir, gpu, data_dir, exclude, wanted, total)[0]


def _check_launch(runs_dir: Path, gpu: bool | None, data_dir: Path | None, exclude: Path | None, wanted: int,
                  total: int | None = None) -> tuple[str | None, list[int] | None]:
    """`launch_check`'s answer and, on a GPU machine, the GPUs allotted to the run."""
    gpu = gpu_available() if gpu is None else gpu
    if gpu and data_dir is not None:
        from app.engine.evaluation import method_compare as mc

        comparing = [f for f in mc.list_comparisons(data_dir) if mc.read_state(f).get("state") in mc.ACTIVE]
        if comparing:
            raise LaunchRefused(
                f"The method comparison {comparing[0].name} is running on the GPU (its methods train one after "
                "another); one run at a time holds it. Stop the comparison (4 · Compare) or wait for it to finish.")
    if gpu:
        return None, allot_devices(runs_dir, wanted, total if total is not None else max(1, gpu_count()), exclude)
    busy = [r for r in active_runs(runs_dir)
            if exclude is None or Path(r.path).resolve() != Path(exclude).resolve()]
    if not busy:
        return None, None
    names = ", ".join(r.name for r in busy)
    return (f"Run '{names}' is also training: both share this machine's CPU cores, so each runs slower. "
            "Stop one if you need the other's results sooner."), None


def start_run(spec: RunSpec, runs_dir: Path, gpu: bool | None = None,
              extra_args: list[str] | None = None, data_dir: Path | None = None) -> tuple[Path, str | None]:
    """Validate `spec`, create its run folder and start the worker process; returns (run folder, warning or None)
    at once (training happens in the worker). Raises SpecError for an invalid spec, LaunchRefused when the GPU is
    taken (by a run, or by a comparison under `data_dir`)."""
    spec.validate()
    warning, devices = _check_launch(Path(runs_dir), gpu, data_dir, None, spec.distributed.processes)
    run_dir = runs.create_run_dir(spec, Path(runs_dir))
    runs.launch_run(run_dir, extra_args=["--no-progress", *(extra_args or [])], devices=devices)
    return run_dir, warning


def resume_run(run_dir: Path, gpu: bool | None = None, data_dir: Path | None = None) -> str | None:
    """Continue a stopped or failed run from its last complete checkpoint (same folder, same charts)."""
    status = runs.read_status(run_dir)
    if status.get("state") in runs.ACTIVE_STATES:
        raise LaunchRefused(f"Run {Path(run_dir).name} is already {status['state']}.")
    if status.get("state") == "finished":
        raise LaunchRefused(f"Run {Path(run_dir).name} has finished; launch a new run to train further.")
    warning, devices = _check_launch(Path(run_dir).parent, gpu, data_dir, run_dir, _spec_processes(run_dir))
    runs.update_status(run_dir, state="queued", error=None, traceback=None, pid=None)  # launch_run records the new one
    runs.launch_run(run_dir, extra_args=["--no-progress"], resume=True, devices=devices)
    return warning


def _spec_processes(run_dir: Path) -> int:
    try:
        return RunSpec.load(Path(run_dir) / "spec.yaml").distributed.processes
    except Exception:  # the resumed worker reports an unreadable spec in its own words
        return 1


def stop_run(run_dir: Path) -> str:
    """Ask a run to stop at its next step boundary (it saves a checkpoint first). Returns what happened."""
    status = runs.read_status(run_dir)
    if status.get("state") not in runs.ACTIVE_STATES:
        return f"Run {Path(run_dir).name} is not running ({status.get('state')})."
    runs.request_stop(run_dir)
    return f"Stop requested: {Path(run_dir).name} stops after the current step and saves a checkpoint."


