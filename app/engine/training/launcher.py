"""The launcher of a multi-process run (`distributed.processes` > 1), and each rank's entry point.

`python -m app.train` becomes the launcher: it checks the spec, makes or prepares the run folder, then starts the
ranks itself with torch.distributed's environment (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK), as torchrun's
static rendezvous does. Starting them here rather than through `torchrun` or `accelerate launch` keeps two promises
those launchers do not make: a stop (SIGTERM, Ctrl-C, the app's Stop) ends every rank at the same step boundary
with one checkpoint (their shutdown sends SIGTERM, then SIGKILL after a fixed wait), and a rank that dies is named
in the run's status with its own error while the others are stopped.

Rank 0 is the run: it writes the run folder exactly as a one-process run does. The other ranks train the same
steps on their share of each batch, write only into a scratch folder of their own (removed afterwards) and do no
evaluation; at each step boundary all ranks agree on stopping (`distributed.any_rank`), so none waits forever.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from app.engine.core import REPOSITORY, runs
from app.engine.core.spec import RunSpec
from app.engine.training.distributed import RANK_EXIT, SCRATCH_ENV, quiet_spec, rank_and_world
from app.engine.training.worker import RunResult, pid_info, prepare_run_folder, train

FAILED_RANK_GRACE_S = 10.0  # after a rank fails, how long the others get to end on their own
TERMINATE_WAIT_S = 10.0  # after a rank failed, how long the others get after SIGTERM before SIGKILL


def train_distributed(spec: RunSpec, run_dir: Path | None = None, runs_dir: Path | None = None, resume: bool = False,
                      progress_bar: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """`worker.train` for a multi-process spec: the same checks before anything is written (SpecError,
    RunFolderError), then the ranks; returns how the run ended."""
    run_dir = prepare_run_folder(spec, run_dir, runs_dir, resume, log)
    state = launch(spec, run_dir, resume, progress_bar=progress_bar, log=log)
    status = runs.read_status(run_dir)
    return RunResult(run_dir, state, status.get("error"), status.get("final_eval"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_command(run_dir: Path, resume: bool, progress_bar: bool) -> list[str]:
    return [sys.executable, "-m", "app.train", "--rank-of", str(run_dir), *(["--rank-resume"] if resume else []),
            *([] if progress_bar else ["--no-progress"])]


def launch(spec: Any, run_dir: Path, resume: bool, progress_bar: bool = True, log: Any = print) -> str:
    """Train the (already checked and prepared) run folder on `spec.distributed.processes` ranks; returns the run's
    final state. SIGTERM/SIGINT here become a stop request every rank honours at the same step boundary."""
    n = spec.distributed.processes
    run_dir = Path(run_dir).resolve()
    scratch = Path(tempfile.mkdtemp(prefix="rft-ranks-"))
    stop_signals: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop_signals.append(signal.Signals(signum).name)
        runs.request_stop(run_dir, signal_worker=False)  # every rank reads the STOP file at its step boundary

    info = pid_info()
    # As a one-process worker does: a STOP file older than this launch is left from an earlier stop.
    launched = runs.read_json(run_dir / "status.json").get("pid") == info["pid"]
    runs.clear_stale_stop(run_dir, since=info["pid_started_at"] if launched else time.time())
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    runs.update_status(run_dir, launcher_pid=info["pid"], processes=n, strategy=spec.distributed.strategy,
                       failed_rank=None, **info)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(n),
               LOCAL_WORLD_SIZE=str(n))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    import torch

    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))  # the ranks share the cores
    log(f"Distributed: {n} processes ({spec.distributed.strategy}, "
        f"{'one per GPU' if torch.cuda.is_available() else 'sharing the CPU cores'}); rank 0 writes {run_dir}")
    procs: list[subprocess.Popen] = []
    try:
        for rank in range(n):
            rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
            if rank > 0:
                folder = scratch / f"rank-{rank}"
                folder.mkdir()
                rank_env[SCRATCH_ENV] = str(folder)
                out: Any = open(folder / "train.log", "wb")
            else:
                out = None  # rank 0 writes to this process's output (the run's train.log when the app started it)
            procs.append(subprocess.Popen(rank_command(run_dir, resume, progress_bar), env=rank_env,
                                          cwd=str(REPOSITORY), stdout=out, stderr=subprocess.STDOUT if out else None,
                                          stdin=subprocess.DEVNULL))
            if out is not None:
                out.close()
        codes, failed = _wait(procs)
    finally:
        for p in procs:  # none is left running, however the launcher ends
            if p.poll() is None:
                _terminate([p])
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    state = _record_outcome(run_dir, scratch, codes, failed, stop_signals, log)
    shutil.rmtree(scratch, ignore_errors=True)
    return state


def _wait(procs: list[subprocess.Popen]) -> tuple[list[int], list[int]]:
    """Wait for every rank; once one fails, the others get FAILED_RANK_GRACE_S to end, then are terminated.
    Returns the exit codes and the failed ranks in the order they were seen failing (the first is the cause; the
    others mostly lost their peer)."""
    failed: list[int] = []
    failed_at: float | None = None
    while True:
        codes = [p.poll() for p in procs]
        for rank, code in enumerate(codes):
            if code not in (None, 0, RANK_EXIT["stopped"]) and rank not in failed:
                failed.append(rank)
                failed_at = failed_at or time.time()
        if all(c is not None for c in codes):
            return [int(c) for c in codes], failed
        if failed_at is not None and time.time() - failed_at > FAILED_RANK_GRACE_S:
            _terminate([p for p in procs if p.poll() is None])
        time.sleep(0.2)


def _terminate(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        with contextlib.suppress(OSError):
            p.terminate()
    deadline = time.time() + TERMINATE_WAIT_S
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def _rank_error(scratch: Path, rank: int, code: int, run_dir: Path) -> str:
    """What rank `rank` died of: its recorded error, else the last line of its log, else its exit code."""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    folder = run_dir if rank == 0 else scratch / f"rank-{rank}"
    error = runs.read_json(folder / "status.json").get("error")
    if error:
        return str(error)
    log = folder / "train.log"
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1][:300] if lines else f"exit code {code}"


def _record_outcome(run_dir: Path, scratch: Path, codes: list[int], failed: list[int], stop_signals: list[str],
                    log: Any) -> str:
    """The run's final state from its ranks' exit codes; the first rank that failed is named in the status."""
    status = runs.read_json(run_dir / "status.json")
    if failed:
        rank = failed[0]
        error = f"rank {rank} of {len(codes)} failed: {_rank_error(scratch, rank, codes[rank], run_dir)}"
        tail = []
        rank_log = scratch / f"rank-{rank}" / "train.log"
        if rank > 0 and rank_log.exists():
            tail = rank_log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-40:]
        runs.update_status(run_dir, state="failed", error=error, failed_rank=rank, ended_at=time.time(),
                           **({"traceback": "\n".join(tail)} if tail else {}))
        log(f"Run failed: {error}")
        return "failed"
    state = status.get("state")
    if state not in ("finished", "stopped"):  # rank 0 ended without a final state (it was killed)
        state = "stopped" if stop_signals else "failed"
        runs.update_status(run_dir, state=state, ended_at=time.time(),
                           error=None if state == "stopped" else "rank 0 ended without a final status")
    return state


def _restore_cpu_index_locations() -> None:
    """On CPU ranks transformers loads a checkpoint's optimizer state with `map_location=args.device`, which is
    `cpu:<rank>` there, a location torch.load cannot restore ("don't know how to restore data location … cpu:0"):
    teach torch.load that `cpu:N` is the CPU."""
    import torch

    def restore(storage: Any, location: str) -> Any:
        return storage if location.startswith("cpu:") else None

    torch.serialization.register_package(97, lambda _obj: None, restore)  # a priority of its own: ties are compared


def run_rank(run_dir: Path, resume: bool, progress_bar: bool) -> int:
    """One rank's process (`python -m app.train --rank-of RUN_DIR`): rank 0 trains the run folder, the others a
    scratch folder, all from the run's spec.yaml. Returns the exit code of the state it ended in."""
    rank, world = rank_and_world()
    spec = RunSpec.load(run_dir / "spec.yaml")
    _restore_cpu_index_locations()
    if rank == 0:
        result = train(spec, run_dir=run_dir, resume=resume, progress_bar=progress_bar, attached=True)
    else:
        folder = Path(os.environ.get(SCRATCH_ENV) or tempfile.mkdtemp(prefix=f"rft-rank{rank}-"))
        result = train(quiet_spec(spec), run_dir=folder, resume=resume, progress_bar=False, attached=True,
                       stop_dir=run_dir, checkpoints_from=run_dir, log=lambda m: print(f"[rank {rank}] {m}", flush=True))
    return RANK_EXIT.get(result.state, 1)


__all__ = ["train_distributed", "launch", "run_rank", "rank_command"]
