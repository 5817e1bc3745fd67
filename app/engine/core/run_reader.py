"""Reading run folders incrementally for the live view (shared by every browser session), and the run pickers."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.core import runs
from app.engine.core.processes import reap
from app.engine.core.spec import RunSpec, SpecError

LOG_TAIL_CHARS = 20_000  # the end of train.log shown in the page


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


