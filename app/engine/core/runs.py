"""The run store: one folder per run, readable live by other processes.

    RUN/
      spec.yaml        the RunSpec (replaced atomically)
      status.json      state queued|running|finished|failed|stopped, pid, backend, device, times, error
      metrics.jsonl    one JSON object per logging step / evaluation, appended and flushed
      samples.jsonl    sample completions with per-reward scores and advantages
      train.log        the worker's stdout/stderr when started by `launch_run`
      checkpoints/checkpoint-N/   HF Trainer checkpoints; only those holding a COMPLETE marker count
      adapter/         the final LoRA adapter (or full model) and tokenizer
      STOP             a stop request (written by the UI; the worker stops at the next step boundary)

Readers tolerate a torn last JSONL line, and treat a run whose worker died without a final state (SIGKILL, OOM)
as failed.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engine.core.spawn import spawn

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("finished", "failed", "stopped")
COMPLETE_MARKER = "COMPLETE"
STOP_FILE = "STOP"
EVALS_FILE = "evals.jsonl"  # per held-out row outcomes of each evaluation (for intervals over seeds × rows)


def default_runs_dir() -> Path:
    """$RFT_WORKBENCH_RUNS, else ./runs in the current directory."""
    return Path(os.environ.get("RFT_WORKBENCH_RUNS") or "runs").expanduser().resolve()


# -- atomic files and JSONL ---------------------------------------------------------------------------------
def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see the old or the new file, never half of one. The file keeps
    its permissions (a new one gets the umask's, as `open` would give it)."""
    path = Path(path)
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    # Not mkstemp: its 0600 would replace the file's mode. O_EXCL with a random name is just as safe.
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(f"no free temporary name next to {path}")
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object as one line and flush it, so a reader in another process sees it at once."""
    line = json.dumps(record, ensure_ascii=False, default=_json_default, allow_nan=False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def clean_number(value: Any) -> Any:
    """JSON has no NaN/inf: map them to None; leave everything else."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def read_jsonl(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines from byte `offset`; returns them and the offset to continue from.

    A last line without its newline is being written: it is left for the next read. A corrupt complete line
    (e.g. from a crash mid-write followed by more writes) is skipped.
    """
    path = Path(path)
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    return parse_json_lines(data[: end + 1]), offset + end + 1


def parse_json_lines(data: bytes) -> list[dict[str, Any]]:
    """The JSON objects of `data`, one per line; blank, corrupt or non-object lines are skipped."""
    records = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict):
            records.append(obj)
    return records


# -- status -------------------------------------------------------------------------------------------------
def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def update_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into status.json (atomically) and return the new status."""
    path = Path(run_dir) / "status.json"
    status = read_json(path)
    status.update(fields)
    status["updated_at"] = time.time()
    write_atomic(path, json.dumps(status, indent=2, default=_json_default))
    return status


def pid_alive(pid: int | None, started_at: float | None = None) -> bool:
    """Whether process `pid` runs and (when `started_at` is known) is the same process, not a reused pid."""
    if not pid:
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if started_at is not None and proc.create_time() > started_at + 1.0:
            return False
        return True
    except Exception:
        return False


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json, with a dead worker of an active run reported as failed (its metrics stay readable)."""
    status = read_json(Path(run_dir) / "status.json")
    if not status:
        return {"state": "unknown", "error": "status.json is missing or unreadable"}
    if status.get("state") in ACTIVE_STATES and status.get("pid"):
        if not pid_alive(status.get("pid"), status.get("pid_started_at")):
            status = dict(status)
            status["state"] = "failed"
            status["error"] = status.get("error") or (
                f"The training process (pid {status.get('pid')}) ended without a final status: it was killed or ran "
                "out of memory, or crashed while starting. Metrics and checkpoints written so far are kept."
                + _log_tail(Path(run_dir))
            )
            status["detected_dead"] = True
    return status


def _log_tail(run_dir: Path, lines: int = 6) -> str:
    """The last lines of the worker's train.log, for the error of a worker that died (e.g. on an import error)."""
    try:
        with open(run_dir / "train.log", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", "replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (" Last lines of train.log:\n" + "\n".join(tail)) if tail else ""


# -- run folders --------------------------------------------------------------------------------------------
def slug(text: str, default: str = "run", max_length: int = 40) -> str:
    """`text` as a safe file-name part (run folders, uploads, exports)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:max_length] or default


class RunFolderError(ValueError):
    """A run folder this command must not create, overwrite or continue; the message is one sentence and nothing
    was written."""


# What a folder made by `create_run_dir` for a worker that has not started yet holds (launch_run adds the log).
PREPARED_FILES = frozenset({"spec.yaml", "status.json", "train.log", STOP_FILE})


def is_prepared_run_dir(run_dir: Path) -> bool:
    """Whether `run_dir` was made by `create_run_dir` for a worker that has not started (the app makes the folder,
    then launches `python -m app.train RUN/spec.yaml --run-dir RUN`): queued, never running, no other worker alive
    on it, and nothing in it but its spec, status and log. Only such a folder may be (re)filled by a new run."""
    run_dir = Path(run_dir)
    status = read_json(run_dir / "status.json")
    if status.get("state") != "queued" or status.get("started_at"):
        return False
    pid = status.get("pid")
    if pid and pid != os.getpid() and pid_alive(pid, status.get("pid_started_at")):
        return False  # another worker is starting on it
    try:
        names = {p.name for p in run_dir.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
    except OSError:
        return False
    return names <= PREPARED_FILES


def _occupied(run_dir: Path) -> str:
    status = read_json(run_dir / "status.json")
    if status.get("state"):
        return (f"{run_dir} already holds a run ({status['state']}); continue it with --resume {run_dir}, or name "
                "a new folder.")
    return f"{run_dir} already exists and is not empty; name a new or empty folder (--resume continues a run)."


def _refuse_unusable(run_dir: Path | None, runs_dir: Path | None) -> None:
    """The checks that need no writing: a file where a folder goes, a folder that holds something already."""
    if run_dir is not None:
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise RunFolderError(f"The run folder {run_dir} is a file; name a new folder.")
        if run_dir.is_dir() and any(run_dir.iterdir()) and not is_prepared_run_dir(run_dir):
            raise RunFolderError(_occupied(run_dir))
        target = run_dir
    else:
        target = Path(runs_dir) if runs_dir else default_runs_dir()
        if target.exists() and not target.is_dir():
            raise RunFolderError(f"The runs folder {target} is a file, not a folder; name a folder for the runs.")
    base = _nearest_existing(target)
    if not base.is_dir():
        raise RunFolderError(f"Cannot create {target}: {base} is a file, not a folder.")


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_run_target(run_dir: Path | None = None, runs_dir: Path | None = None) -> None:
    """Raise RunFolderError when a new run could not be written where asked, without creating anything: `run_dir`
    (or `runs_dir`) is a file, `run_dir` is a folder that already holds something (another run, the user's own
    files), or the place cannot be written (a read-only or virtual file system, no permission)."""
    _refuse_unusable(run_dir, runs_dir)
    target = Path(run_dir) if run_dir is not None else (Path(runs_dir) if runs_dir else default_runs_dir())
    base = _nearest_existing(target)
    # A real probe, removed at once: os.access says yes to root on /proc or /sys, where mkdir still fails.
    try:
        probe = tempfile.mkdtemp(dir=base, prefix=".rft-write-check-")
    except OSError as exc:
        raise RunFolderError(f"Cannot create {target}: {base} is not writable ({exc.strerror or exc}).") from None
    os.rmdir(probe)


def create_run_dir(spec: Any, runs_dir: Path | None = None, run_dir: Path | None = None) -> Path:
    """Make a new run folder with spec.yaml and a `queued` status; returns its path. `run_dir` must not exist, be
    empty, or be a prepared folder (`is_prepared_run_dir`); anything else raises RunFolderError, as does a folder
    that cannot be created, and then nothing is left behind."""
    _refuse_unusable(run_dir, runs_dir)
    created: list[Path] = []  # folders made here, removed again if the run folder cannot be completed
    try:
        if run_dir is None:
            runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
            _make_dirs(runs_dir, created)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            base = f"{stamp}-{spec.method}" + (f"-{slug(spec.name)}" if spec.name else "")
            run_dir, n = runs_dir / base, 1
            while True:
                try:
                    run_dir.mkdir()  # not exist_ok: a folder made meanwhile by another launch is never shared
                    created.append(run_dir)
                    break
                except FileExistsError:
                    n += 1
                    run_dir = runs_dir / f"{base}-{n}"
        else:
            run_dir = Path(run_dir)
            _make_dirs(run_dir, created)
        write_atomic(run_dir / "spec.yaml", spec.to_yaml())
        update_status(run_dir, state="queued", created_at=time.time(), name=spec.name or run_dir.name,
                      method=spec.method)
    except OSError as exc:
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        where = f" ({exc.filename})" if exc.filename else ""
        raise RunFolderError(f"Cannot create the run folder {run_dir or runs_dir}: {exc.strerror or exc}{where}; "
                             "name a folder on a writable disk.") from None
    return run_dir


def _make_dirs(path: Path, created: list[Path]) -> None:
    """mkdir -p that records each folder it made (so a failure can remove exactly those)."""
    missing = []
    current = Path(path)
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir()
        created.append(folder)


def check_resumable(run_dir: Path, max_steps: int) -> dict[str, Any]:
    """Raise RunFolderError when this process must not continue `run_dir`: it is not a run folder, its worker is
    still alive, or it finished and `max_steps` (the resumed spec's) does not go past where it ended. Returns its
    status. Reads only."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "does not exist" if not run_dir.exists() else "is a file"
        raise RunFolderError(f"Cannot resume {run_dir}: it {what}; name a run folder (one holding spec.yaml).")
    if not (run_dir / "spec.yaml").is_file():
        raise RunFolderError(f"Cannot resume {run_dir}: it holds no spec.yaml, so it is not a run folder.")
    status = read_status(run_dir)
    state, pid = status.get("state"), status.get("pid")
    if state == "unknown":
        raise RunFolderError(f"Cannot resume {run_dir}: its status.json is missing or unreadable.")
    if state in ACTIVE_STATES and pid and pid != os.getpid():  # read_status reports a dead worker as failed
        raise RunFolderError(f"Run {run_dir.name} is still {state} in worker pid {pid}; stop it first (the app's "
                             f"Stop, or kill -TERM {pid}), then resume it.")
    if state == "finished":
        step = int(status.get("step") or 0)
        total = status.get("max_steps") or step
        if max_steps <= step:
            raise RunFolderError(f"Run {run_dir.name} finished at step {step} of {total}; start a new run, or raise "
                                 "training.max_steps with --set to train it further.")
        if latest_checkpoint(run_dir) is None:
            raise RunFolderError(f"Run {run_dir.name} finished at step {step} but kept no complete checkpoint to "
                                 f"continue from; start a new run (init_adapter: {run_dir / 'adapter'} starts from "
                                 "its adapter).")
    return status


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (with the marker), oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.exists():
        return []
    found = [p for p in folder.glob("checkpoint-*") if (p / COMPLETE_MARKER).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def request_stop(run_dir: Path, signal_worker: bool = True) -> None:
    """Ask the worker to stop at the next step boundary (it saves a checkpoint and marks the run stopped)."""
    run_dir = Path(run_dir)
    (run_dir / STOP_FILE).write_text(str(time.time()))
    status = read_status(run_dir)
    # Only a running worker has its SIGTERM handler installed; a queued one (still importing) would die of the
    # signal, so it finds the STOP file when it starts instead.
    if signal_worker and status.get("state") == "running" and status.get("pid"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(status["pid"]), signal.SIGTERM)


def stop_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / STOP_FILE).exists()


def clear_stale_stop(run_dir: Path, since: float) -> None:
    """Remove a STOP file written before `since` (left by an earlier stop of this run); keep a newer one, which
    asks this worker to stop."""
    path = Path(run_dir) / STOP_FILE
    try:
        written = float(path.read_text().strip() or 0)
    except (OSError, ValueError):
        written = 0.0
    if path.exists() and written < since:
        path.unlink(missing_ok=True)


@dataclass
class RunInfo:
    """What a run list shows."""

    path: Path
    name: str
    method: str
    state: str
    created_at: float
    step: int | None
    max_steps: int | None
    error: str | None


def list_runs(runs_dir: Path | None = None) -> list[RunInfo]:
    """Runs in `runs_dir`, newest first."""
    runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
    if not runs_dir.exists():
        return []
    out = []
    for d in runs_dir.iterdir():
        if not (d / "spec.yaml").exists():
            continue
        st = read_status(d)
        out.append(
            RunInfo(
                path=d,
                name=st.get("name") or d.name,
                method=st.get("method", "?"),
                state=st.get("state", "unknown"),
                created_at=float(st.get("created_at") or d.stat().st_mtime),
                step=st.get("step"),
                max_steps=st.get("max_steps"),
                error=st.get("error"),
            )
        )
    return sorted(out, key=lambda r: r.created_at, reverse=True)


def delete_run(run_dir: Path) -> None:
    """Delete a run folder; refuses while its worker runs."""
    status = read_status(run_dir)
    if status.get("state") in ACTIVE_STATES:
        raise RuntimeError(f"Run {Path(run_dir).name} is still {status['state']}: stop it first.")
    shutil.rmtree(run_dir)


def launch_run(run_dir: Path, extra_args: list[str] | None = None, resume: bool = False,
               devices: list[int] | None = None) -> subprocess.Popen:
    """Start `python -m app.train` for an existing run folder in its own process (and session).

    The child writes everything to the run folder; its output goes to RUN/train.log. The caller returns at once
    (the UI never trains in its own process). `devices`: the GPUs it may use (CUDA_VISIBLE_DEVICES), recorded in
    its status so that later launches leave them to it.
    """
    run_dir = Path(run_dir).resolve()
    args = ["--resume", str(run_dir)] if resume else [str(run_dir / "spec.yaml"), "--run-dir", str(run_dir)]
    (run_dir / STOP_FILE).unlink(missing_ok=True)  # an earlier stop request must not stop this launch
    env = {"CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices)} if devices else None
    proc = spawn("app.train", [*args, *(extra_args or [])], run_dir / "train.log", key=run_dir, env=env)
    # Record the pid at once: while the worker imports (tens of seconds) readers can already tell it is alive, and a
    # worker that dies before it writes its own status (an import error, the OOM killer) reads back as failed.
    update_status(run_dir, pid=proc.pid, pid_started_at=process_start_time(proc.pid), devices=devices or None)
    return proc


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (psutil's create_time; stored beside a pid so readers can tell a reused pid),
    None when it is already gone."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # already gone: read_status reports it dead either way
        return None
