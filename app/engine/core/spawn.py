"""The one way the engine starts a worker process: `python -m <module>` from the repository, in its own session
(a closed tab or a restarted app does not kill it), stdout and stderr appended to a log file in the folder it
writes, never through a shell. Every process started here is tracked until it has exited, so none is left a zombie.
Runs (`runs.launch_run`) and method comparisons (`method_compare.start_comparison_process`) both start here."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from app.engine.core import REPOSITORY

_CHILDREN: dict[str, subprocess.Popen] = {}  # folder → its worker process, while it may still run
_LOCK = threading.Lock()


def spawn(module: str, args: list[str], log_path: Path, key: str | os.PathLike[str] | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `python -m module *args` detached from this process; returns at once. `key` (the folder the worker
    writes) names it for `child()`; the log file is appended to, so a resumed worker keeps the earlier output.
    `env`: variables set for the worker on top of this process's environment."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # an argv list, never shell=True
            [sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(REPOSITORY), env=env, start_new_session=True,
        )
    with _LOCK:
        _CHILDREN[_key(key if key is not None else log_path)] = proc
    return proc


def _key(folder: str | os.PathLike[str]) -> str:
    return str(Path(folder).resolve())


def reap() -> None:
    """Collect exited worker processes started by this process (no zombies)."""
    with _LOCK:
        for key, proc in list(_CHILDREN.items()):
            if proc.poll() is not None:
                del _CHILDREN[key]


def child(key: str | os.PathLike[str]) -> subprocess.Popen | None:
    """The process started for `key` by this process, while it is tracked."""
    with _LOCK:
        return _CHILDREN.get(_key(key))
