"""Method comparison: SFT, DFT, GRPO, SFT→GRPO and Prefix-RFT on the same task, model, step budget and seed, each
evaluated on the same held-out rows, collected into one table and one chart.

    config = CompareConfig(steps=40, eval_every=10, methods=["sft", "grpo", "prefix_rft"])
    folder = run_comparison(config)                  # trains the methods one after another (worker subprocesses)
    result = read_comparison(folder)                 # live or finished: rows, curves, figures
    print(markdown_table(result))

Every method is one run folder made by the ordinary worker (`python -m app.train`, one subprocess per run: memory
is returned between methods, a crash stays in its run, a stop request reaches it). SFT→GRPO is two runs: a short
format-priming SFT whose adapter initialises the GRPO run (`RunSpec.init_adapter`); its curve joins the two, the
GRPO steps shifted by the SFT steps. The specs come from the recipes (recipes/<task>-<method>.yaml) with the shared
settings (model, seed, steps, held-out size, evaluation cadence) written over them, so only the method differs.

The comparison folder (default DATA_DIR/comparisons/<stamp>-<task>) holds:

    comparison.json   config, state, pid, one entry per method with its run folders, state, error, avg@k
    table.md          the results table (rewritten as methods finish)
    STOP              a cancel request (the current run stops at its next step; the rest are skipped)

`read_comparison` needs only that folder and the run folders it names, so the app (or a later session) can reopen
a comparison while it runs or after it ended. Command line: `python -m app.compare_methods --help`.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from app.engine.core import runs, spawn
from app.engine.core.folders import PROJECT_ROOT
from app.engine.core.spec import RunSpec, SpecError
from app.engine.evaluation.stats import (
    ArmSummary,
    bootstrap_difference,
    intervals_overlap,
    kept_step_seconds,
    parse_seeds,
    resolvable_difference,
    summarize_arm,
)
from app.engine.presentation.formats import percent

METHOD_KEYS = ("sft", "dft", "grpo", "sft_grpo", "prefix_rft")
METHOD_LABELS = {"sft": "SFT", "dft": "DFT", "grpo": "GRPO", "sft_grpo": "SFT→GRPO", "prefix_rft": "Prefix-RFT"}
METHOD_COLORS = {"sft": "#2e86ab", "dft": "#3bb273", "grpo": "#e4572e", "sft_grpo": "#f18f01",
                 "prefix_rft": "#8e44ad"}
# Recipe (RunSpec method) of each training stage of a compared method.
STAGES = {"sft": ("sft",), "dft": ("dft",), "grpo": ("grpo",), "sft_grpo": ("sft", "grpo"),
          "prefix_rft": ("prefix_rft",)}
RECIPE_FILES = {"sft": "sft", "dft": "dft", "grpo": "grpo", "prefix_rft": "prefix-rft"}
TASKS = ("arithmetic", "gsm8k")
GSM8K_INSTRUCTION = "Solve the problem step by step, then give the final answer on its own line as '#### <number>'."
COMPARISON_FILE = "comparison.json"
TABLE_FILE = "table.md"
STOP_FILE = "STOP"
ACTIVE = ("queued", "running")
POLL_SECONDS = 2.0
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

ProgressFn = Callable[[str], None]


class CompareConfigError(ValueError):
    """A comparison setting that cannot work, in one sentence."""


@dataclass
class CompareConfig:
    """What to compare: the methods, and the settings every method shares (only the method differs)."""

    methods: list[str] = field(default_factory=lambda: list(METHOD_KEYS))
    task: str = "arithmetic"  # 'arithmetic' (built-in, CPU) or 'gsm8k' (a GPU-sized task)
    model: str = "default"
    steps: int = 40  # optimizer steps per method (SFT→GRPO: SFT steps + GRPO steps)
    seed: int = 42  # the seed of a single-seed comparison (when `seeds` is empty)
    seeds: list[int] = field(default_factory=list)  # every method runs once per seed; the held-out rows stay the same
    eval_size: int = 128  # held-out rows, the same for every method and seed
    eval_every: int = 10  # held-out greedy evaluation every N steps (plus step 0 and the end)
    sft_steps: int | None = None  # SFT→GRPO: steps of the priming SFT (None: a quarter of the budget)
    avg_k: int = 0  # >0: after training, sample k replies per held-out prompt (avg@k and pass@k)
    avg_temperature: float = 1.0
    backend: str = "auto"
    threads: int | None = None  # CPU threads per worker (OMP_NUM_THREADS); 1 is fastest on a crowded machine
    recipes_dir: str = str(PROJECT_ROOT / "recipes")
    data_source: str | None = None  # gsm8k: the GSM8K train.jsonl (question / answer with '#### n')
    overrides: list[str] = field(default_factory=list)  # `field=value` applied to every spec (as --set)

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHOD_KEYS]
        if unknown:
            raise CompareConfigError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHOD_KEYS)}")
        if not self.methods:
            raise CompareConfigError("choose at least one method")
        if len(set(self.methods)) != len(self.methods):
            raise CompareConfigError("a method is listed twice")
        if self.task not in TASKS:
            raise CompareConfigError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if self.steps < 1:
            raise CompareConfigError(f"steps must be positive, got {self.steps}")
        if "sft_grpo" in self.methods and not 1 <= self.priming_steps < self.steps:
            raise CompareConfigError(
                f"SFT→GRPO needs 1 ≤ sft_steps < steps (got sft_steps {self.priming_steps}, steps {self.steps})")
        if self.eval_size < 1:
            raise CompareConfigError("eval_size must be at least 1 (the comparison is on held-out rows)")
        if self.eval_every < 0 or self.avg_k < 0:
            raise CompareConfigError("eval_every and avg_k must be ≥ 0")
        if self.threads is not None and self.threads < 1:
            raise CompareConfigError(f"threads must be at least 1, got {self.threads}")
        try:
            parse_seeds(list(self.seeds) or [self.seed])
        except ValueError as exc:
            raise CompareConfigError(str(exc)) from None

    @property
    def run_seeds(self) -> list[int]:
        """The seeds every method runs with (training, sampling and data order; the held-out rows do not move)."""
        return list(self.seeds) if self.seeds else [self.seed]

    @property
    def multi_seed(self) -> bool:
        return len(self.run_seeds) > 1

    @property
    def priming_steps(self) -> int:
        """SFT steps of SFT→GRPO: `sft_steps`, else a quarter of the budget rounded to the evaluation cadence (so
        the joined curve has a point where GRPO takes over)."""
        if self.sft_steps is not None:
            return self.sft_steps
        quarter = max(1, self.steps // 4)
        if self.eval_every and 2 * self.eval_every <= self.steps:
            quarter = max(self.eval_every, round(quarter / self.eval_every) * self.eval_every)
        return min(quarter, max(self.steps - 1, 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompareConfig":
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


# -- specs ----------------------------------------------------------------------------------------------------------
@dataclass
class Stage:
    """One training run of a compared method."""

    spec: RunSpec
    step_offset: int = 0  # where its steps start on the method's curve
    init_from_previous: bool = False  # its init_adapter is the previous stage's adapter (set when that one ends)


def gsm8k_rows(source: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """GSM8K lines (question, answer = worked solution ending in '#### n') as workbench rows: the prompt asks for
    the '####' format; completion and solution are the worked answer (SFT target, Prefix-RFT demonstration)."""
    rows = []
    with open(source, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            answer = str(item["answer"])
            rows.append({"prompt": f"{item['question']}\n{GSM8K_INSTRUCTION}", "answer": answer,
                         "completion": answer, "solution": answer})
    return rows


def prepare_task_data(config: CompareConfig, folder: Path) -> list[str]:
    """Task-specific overrides (and data files written into the comparison folder) shared by every method."""
    if config.task == "arithmetic":
        return []
    if not config.data_source:
        raise CompareConfigError("task gsm8k needs the GSM8K train.jsonl (question / answer lines): give --data PATH")
    source = Path(config.data_source).expanduser()
    if not source.exists():
        raise CompareConfigError(f"GSM8K file {source} does not exist (give --data)")
    target = Path(folder) / "data" / "gsm8k.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        with open(target, "w", encoding="utf-8") as f:
            for row in gsm8k_rows(source):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    # Worked solutions are ~100-200 tokens: room for them in training, sampling and evaluation.
    return [f"data.source={target}", "rewards=[{name: gsm8k_answer}]", "generation.max_completion_length=256",
            "generation.max_length=512", "logging.eval_max_new_tokens=256"]


def _recipe(config: CompareConfig, method: str) -> RunSpec:
    path = Path(config.recipes_dir) / f"arithmetic-{RECIPE_FILES[method]}.yaml"
    return RunSpec.load(path)


def _shared(config: CompareConfig, steps: int, task_overrides: Sequence[str], seed: int) -> list[str]:
    return [
        f"model={json.dumps(config.model)}", f"seed={seed}", f"backend={config.backend}",
        f"training.max_steps={steps}", f"data.eval_size={config.eval_size}",
        f"logging.eval_every={config.eval_every}", "logging.eval_at_start=true", "logging.eval_at_end=true",
        # Every method is compared by its last step: a recipe's keep_best would hand one method its best instead.
        "training.keep_best=null",
        *task_overrides, *config.overrides,
    ]


def build_stages(config: CompareConfig, method: str, task_overrides: Sequence[str] = (),
                 label: str | None = None, seed: int | None = None) -> list[Stage]:
    """The runs of one compared method with one seed (default: the first), from the recipes with the shared
    settings written over them."""
    tag = label or "cmp"
    seed = config.run_seeds[0] if seed is None else seed
    suffix = f"-s{seed}" if config.multi_seed else ""
    if method != "sft_grpo":
        spec = _recipe(config, method).with_overrides(_shared(config, config.steps, task_overrides, seed))
        spec.name = f"{tag}-{method}{suffix}"
        return [Stage(spec)]
    k = config.priming_steps
    sft = _recipe(config, "sft").with_overrides(_shared(config, k, task_overrides, seed))
    sft.name = f"{tag}-sft_grpo-1sft{suffix}"
    grpo = _recipe(config, "grpo").with_overrides(_shared(config, config.steps - k, task_overrides, seed))
    grpo.name = f"{tag}-sft_grpo-2grpo{suffix}"
    # The GRPO stage starts where the SFT stage ended: its step 0 is the SFT run's last evaluation, so skip it.
    grpo.logging.eval_at_start = False
    return [Stage(sft), Stage(grpo, step_offset=k, init_from_previous=True)]


def build_plan(config: CompareConfig, task_overrides: Sequence[str] = (), label: str | None = None,
               seed: int | None = None) -> dict[str, list[Stage]]:
    """Every method's stages for one seed (default: the first), validated without loading models (the SFT→GRPO
    adapter does not exist yet)."""
    config.validate()
    plan = {m: build_stages(config, m, task_overrides, label, seed) for m in config.methods}
    for method, stages in plan.items():
        for stage in stages:
            probe = stage.spec
            if stage.init_from_previous:  # what the worker will check once the previous adapter exists
                probe = stage.spec.replace(init_adapter="(previous stage)")
            problems = probe.problems(check_files=False)
            if problems:
                raise CompareConfigError(f"{METHOD_LABELS[method]}: {problems[0]}")
    return plan


# -- the comparison folder ----------------------------------------------------------------------------------------
def default_folder(config: CompareConfig, data_dir: Path | None = None) -> Path:
    from app.engine.core.folders import resolve_paths

    base = Path(data_dir) if data_dir else resolve_paths().data_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = base / "comparisons" / f"{stamp}-{config.task}"
    n = 1
    while folder.exists():
        n += 1
        folder = base / "comparisons" / f"{stamp}-{config.task}-{n}"
    return folder


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    state["updated_at"] = time.time()
    runs.write_atomic(Path(folder) / COMPARISON_FILE, json.dumps(state, indent=2, default=str))


def read_state(folder: Path | str) -> dict[str, Any]:
    """comparison.json, with a dead orchestrator of an active comparison reported as failed."""
    spawn.reap()
    state = runs.read_json(Path(folder) / COMPARISON_FILE)
    if state.get("state") in ACTIVE and state.get("pid") and not runs.pid_alive(state["pid"],
                                                                                 state.get("pid_started_at")):
        state = dict(state, state="failed", detected_dead=True,
                     error=state.get("error") or "the comparison process ended without a final state (killed?)")
    return state


def mark_failed(folder: Path | str, error: str) -> None:
    """Record that a comparison could not start (a bad setting found by the process the app started)."""
    state = runs.read_json(Path(folder) / COMPARISON_FILE)
    state.update(state="failed", error=error, ended_at=time.time())
    _write_state(Path(folder), state)


def request_cancel(folder: Path | str) -> None:
    """Ask a running comparison to stop: the current run stops at its next step, the remaining methods are skipped."""
    Path(folder, STOP_FILE).write_text(str(time.time()))


def cancel_requested(folder: Path | str) -> bool:
    return Path(folder, STOP_FILE).exists()


def start_comparison_process(config: CompareConfig, folder: Path, runs_dir: Path) -> subprocess.Popen:
    """Start `python -m app.compare_methods` for `config` in its own process (the app's button); returns at once.
    Its output goes to FOLDER/compare.log; the folder fills as it goes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_atomic(folder / "config.json", json.dumps(config.to_dict(), indent=2))
    args = ["--config", str(folder / "config.json"), "--out", str(folder), "--runs-dir", str(runs_dir)]
    proc = spawn.spawn("app.compare_methods", args, folder / "compare.log", key=folder)
    if not (folder / COMPARISON_FILE).exists():  # listed and readable at once, before the child has imported torch
        _write_state(folder, {"config": config.to_dict(), "state": "queued", "pid": proc.pid,
                              "pid_started_at": runs.process_start_time(proc.pid), "current": None, "runs_dir": str(runs_dir),
                              "methods": initial_entries(config)})
    return proc




def initial_entries(config: CompareConfig) -> list[dict[str, Any]]:
    """One entry per (seed, method), seed by seed: after the first seed every method has a result, and machine
    load drifting over the hours spreads over all methods alike."""
    return [{"key": m, "label": METHOD_LABELS[m], "seed": seed, "state": "queued", "runs": [], "error": None}
            for seed in config.run_seeds for m in config.methods]


# -- running ------------------------------------------------------------------------------------------------------
Launcher = Callable[[Path], Any]  # starts the worker for a prepared run folder; returns an object with .wait()


def _subprocess_launcher(run_dir: Path) -> subprocess.Popen:
    return runs.launch_run(run_dir, extra_args=["--no-progress"])


def run_comparison(
    config: CompareConfig,
    folder: Path | str | None = None,
    runs_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
    launcher: Launcher | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> Path:
    """Train every method of `config` one after another and write the comparison folder; returns it.

    A method that fails is recorded (state, error) and the next one starts. A cancel request (`request_cancel`,
    or SIGTERM/SIGINT to this process) stops the current run at its next step and skips the rest. `launcher`
    (tests) replaces the worker subprocess; it must leave a finished run folder behind.
    """
    config.validate()
    folder = Path(folder) if folder else default_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STOP_FILE).unlink(missing_ok=True)
    runs_dir = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    runs_dir.mkdir(parents=True, exist_ok=True)
    launcher = launcher or _subprocess_launcher
    say = progress or (lambda message: None)
    state: dict[str, Any] = {
        "config": config.to_dict(), "state": "running", "started_at": time.time(), "pid": os.getpid(),
        "pid_started_at": runs.process_start_time(os.getpid()), "runs_dir": str(runs_dir), "current": None,
        "methods": initial_entries(config),
    }
    _write_state(folder, state)
    signalled: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        signalled.append(signal.Signals(signum).name)
        request_cancel(folder)

    saved_env = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    if config.threads:
        # With more busy threads than cores, PyTorch's OpenMP workers wait on each other: on a shared 2-core
        # machine one thread per worker ran generation 5x faster than two. The workers inherit the setting.
        os.environ.update({k: str(config.threads) for k in THREAD_VARIABLES})
    previous = {}
    try:  # signal handlers only in the main thread (a thread caller cancels through the STOP file)
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:
        pass
    try:
        try:
            task_overrides = prepare_task_data(config, folder)
            plans = {seed: build_plan(config, task_overrides, seed=seed) for seed in config.run_seeds}
        except (CompareConfigError, SpecError) as exc:
            state.update(state="failed", error=str(exc), ended_at=time.time())
            _write_state(folder, state)
            raise
        for i, entry in enumerate(state["methods"]):
            if cancel_requested(folder):
                entry["state"] = "cancelled"
                continue
            state["current"] = entry["key"]
            state["current_index"] = i
            entry.update(state="running", started_at=time.time())
            _write_state(folder, state)
            seed = entry.get("seed", config.run_seeds[0])
            say(f"[{i + 1}/{len(state['methods'])}] {entry['label']}"
                f"{f' (seed {seed})' if config.multi_seed else ''}: starting")
            _run_method(entry, plans[seed][entry["key"]], folder, runs_dir, state, launcher, say, poll_seconds)
            entry["ended_at"] = time.time()
            if entry["state"] == "finished" and config.avg_k > 0:
                _sampled_eval(entry, config, say)
            _write_state(folder, state)
            write_table(folder)
        stopped = cancel_requested(folder)
        state.update(state="stopped" if stopped else "finished", ended_at=time.time(), current=None)
        _write_state(folder, state)
        write_table(folder)
        say(f"Comparison {'stopped' if stopped else 'finished'}: {folder}")
        return folder
    except BaseException as exc:
        if state.get("state") == "running":
            state.update(state="failed", error=f"{type(exc).__name__}: {exc}", ended_at=time.time())
            _write_state(folder, state)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_method(entry: dict[str, Any], stages: list[Stage], folder: Path, runs_dir: Path, state: dict[str, Any],
                launcher: Launcher, say: ProgressFn, poll_seconds: float) -> None:
    previous_adapter: Path | None = None
    for n, stage in enumerate(stages):
        spec = stage.spec
        if stage.init_from_previous:
            spec = spec.replace(init_adapter=str(previous_adapter))
        try:
            spec.validate()
            run_dir = runs.create_run_dir(spec, runs_dir)
        except Exception as exc:  # a spec problem of this method only: record it, go on with the others
            entry.update(state="failed", error=f"{type(exc).__name__}: {exc}")
            return
        entry["runs"].append({"run_dir": str(run_dir), "method": spec.method, "step_offset": stage.step_offset,
                              "max_steps": spec.training.max_steps})
        _write_state(folder, state)
        try:
            proc = launcher(run_dir)
        except Exception as exc:
            runs.update_status(run_dir, state="failed", error=f"could not start the worker: {exc}")
            entry.update(state="failed", error=f"could not start the worker: {exc}")
            return
        _wait_for_run(run_dir, proc, folder, entry, say, poll_seconds)
        status = runs.read_status(run_dir)
        run_state = status.get("state", "unknown")
        if run_state != "finished":
            entry["state"] = "stopped" if run_state == "stopped" or cancel_requested(folder) else "failed"
            entry["error"] = status.get("error") or f"run {run_dir.name} ended {run_state}"
            if n + 1 < len(stages):
                entry["error"] += f" (stage {n + 1} of {len(stages)}; the next stage did not run)"
            return
        previous_adapter = run_dir / "adapter"
    entry["state"] = "finished"


def _wait_for_run(run_dir: Path, proc: Any, folder: Path, entry: dict[str, Any], say: ProgressFn,
                  poll_seconds: float) -> None:
    """Poll the run until its worker exits; pass a cancel request on once; report progress when it changes."""
    stop_sent = False
    last = None
    while True:
        done = proc.poll() is not None if hasattr(proc, "poll") else True
        if cancel_requested(folder) and not stop_sent:
            runs.request_stop(run_dir)
            stop_sent = True
        status = runs.read_status(run_dir)
        line = _progress_line(entry, run_dir, status)
        if line != last:
            say(line)
            last = line
        if done:
            if hasattr(proc, "wait"):
                proc.wait()
            return
        time.sleep(poll_seconds)


def _progress_line(entry: dict[str, Any], run_dir: Path, status: dict[str, Any]) -> str:
    records, _ = runs.read_jsonl(run_dir / "metrics.jsonl")
    evals = [r for r in records if r.get("eval/accuracy") is not None]
    acc = f", held-out {evals[-1]['eval/accuracy']:.0%} at step {evals[-1]['step']}" if evals else ""
    offset = entry["runs"][-1]["step_offset"] if entry["runs"] else 0
    return (f"  {entry['label']} ({status.get('method', '?')}): {status.get('state')} step "
            f"{offset + int(status.get('step') or 0)}{acc}")


def _sampled_eval(entry: dict[str, Any], config: CompareConfig, say: ProgressFn) -> None:
    """avg@k and pass@k of the method's final adapter on the held-out rows (sampling at `avg_temperature`)."""
    last = Path(entry["runs"][-1]["run_dir"])
    say(f"  {entry['label']}: sampling {config.avg_k} replies per held-out prompt (avg@{config.avg_k})")
    try:
        entry["sampled"] = sampled_eval(last, config.avg_k, config.avg_temperature,
                                        seed=entry.get("seed", config.run_seeds[0]))
    except Exception as exc:  # the trained run stands; only this extra score is missing
        entry["sampled"] = {"error": f"{type(exc).__name__}: {exc}"}


def sampled_eval(run_dir: Path | str, k: int, temperature: float = 1.0, seed: int = 42) -> dict[str, Any]:
    """Sample `k` replies per held-out prompt from a finished run's adapter and score them with its rewards:
    avg@k (mean share of correct replies per prompt), pass@k (share of prompts with at least one), mean reward."""
    import torch

    from app.engine.data.sources import load_data
    from app.engine.evaluation import compare
    from app.engine.evaluation.evaluate import (
        correctness_reward,
        generate_and_score,
        table_accuracy,
    )

    run_dir = Path(run_dir)
    spec = RunSpec.load(run_dir / "spec.yaml")
    rows = load_data(spec.data).eval
    funcs, weights, registry = compare.build_reward_funcs(spec.rewards)
    accuracy_reward = correctness_reward([f.__name__ for f in funcs], registry)
    model, tokenizer = compare.load_model(compare.ModelRef(run_dir.name, spec.model, str(run_dir / "adapter")))
    if torch.cuda.is_available():
        model.to("cuda")
    torch.manual_seed(seed)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # torch may have been imported before it was set
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    tokens = spec.logging.eval_max_new_tokens or spec.generation.max_completion_length
    gen = generate_and_score(model, tokenizer, rows, funcs, weights, system_prompt=spec.data.system_prompt,
                             max_new_tokens=tokens, do_sample=True, temperature=temperature, num_return_sequences=k,
                             batch_size=max(1, 64 // k))
    compare.clear_cache()
    # avg@k is the one accuracy over all k·n sampled replies; pass@k counts prompts the reward applies to.
    per_prompt = [table_accuracy(gen.per_prompt(i), accuracy_reward) for i in range(len(rows))]
    scored = [p for p in per_prompt if p.n_scored]
    totals = [r.get("total") for r in gen.rows if r.get("total") is not None]
    return {
        "k": k, "temperature": temperature, "n": len(rows),
        "avg_at_k": table_accuracy(gen.rows, accuracy_reward).value,
        "pass_at_k": sum(1.0 for p in scored if p.n_correct) / len(scored) if scored else None,
        "mean_reward": sum(totals) / len(totals) if totals else None,
        "seconds": round(gen.seconds, 1),
    }


# -- reading results ----------------------------------------------------------------------------------------------
@dataclass
class MethodResult:
    """One compared method, read from its run folders."""

    key: str
    label: str
    state: str
    run_dirs: list[str]
    steps: int  # optimizer steps done (all stages)
    max_steps: int
    wall_seconds: float | None  # from the first stage's start to the last one's end (model loads and evals included)
    train_seconds: float | None  # optimizer-step time of the steps kept (evaluations, loads and saves excluded)
    curve: list[tuple[int, float | None, float | None]]  # (step, held-out accuracy, held-out mean reward)
    base_accuracy: float | None
    final_accuracy: float | None
    final_reward: float | None
    best_accuracy: float | None
    sampled: dict[str, Any] | None
    error: str | None
    seed: int | None = None
    outcomes: dict[int, list[float | None]] = field(default_factory=dict)  # step → per held-out row outcome

    @property
    def final_outcomes(self) -> list[float | None] | None:
        """Per-row outcomes of the final evaluation (what intervals resample), when the run recorded them."""
        if self.final_accuracy is None or not self.curve:
            return None
        return self.outcomes.get(self.curve[-1][0])


@dataclass
class ArmResult:
    """One method over all its seeds."""

    key: str
    label: str
    runs: list[MethodResult]  # one per seed, in seed order
    final: ArmSummary  # final greedy held-out accuracy over the seeds that finished
    best: ArmSummary  # best periodic evaluation per seed
    base_accuracy: float | None
    train_seconds: float | None  # mean over seeds
    wall_seconds: float | None  # mean over seeds
    curve: list[tuple[int, float | None, float | None, float | None, int]]  # (step, mean, ci low, ci high, seeds)
    sampled: ArmSummary | None  # avg@k over seeds

    @property
    def seeds(self) -> list[int | None]:
        return [m.seed for m in self.runs]

    @property
    def state(self) -> str:
        states = [m.state for m in self.runs]
        if len(set(states)) == 1:
            return states[0]
        done = sum(s == "finished" for s in states)
        return f"{done}/{len(states)} finished"


@dataclass
class ComparisonResult:
    """A comparison folder, read back (live or finished)."""

    folder: Path
    state: str
    config: CompareConfig
    methods: list[MethodResult]
    current: str | None
    error: str | None = None
    current_index: int | None = None  # the entry (method, seed) running now
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def arms(self) -> list[ArmResult]:
        """The methods aggregated over seeds (one arm per method, in the config's order)."""
        return aggregate_arms(self.methods)


def read_method(entry: dict[str, Any]) -> MethodResult:
    """A method's result from its run folders (the stages' curves joined, GRPO steps after the SFT ones)."""
    curve: dict[int, tuple[float | None, float | None]] = {}
    steps = max_steps = 0
    train_seconds = 0.0
    starts, ends = [], []
    error = entry.get("error")
    state = entry.get("state", "queued")
    outcomes: dict[int, list[float | None]] = {}
    for run in entry.get("runs", []):
        run_dir = Path(run["run_dir"])
        offset = int(run.get("step_offset") or 0)
        status = runs.read_status(run_dir)
        records, _ = runs.read_jsonl(run_dir / "metrics.jsonl")
        for line in runs.read_jsonl(run_dir / runs.EVALS_FILE)[0]:
            if isinstance(line.get("correct"), list) and line["correct"]:
                outcomes[offset + int(line.get("step") or 0)] = line["correct"]
        for r in records:
            if "eval/accuracy" in r or "eval/reward" in r:
                curve[offset + int(r.get("step") or 0)] = (_num(r.get("eval/accuracy")), _num(r.get("eval/reward")))
        train_seconds += kept_step_seconds(records)
        steps = offset + int(status.get("step") or 0) if status.get("step") is not None else max(steps, offset)
        max_steps = offset + int(run.get("max_steps") or 0)
        if status.get("started_at") is not None:
            starts.append(float(status["started_at"]))
        if status.get("ended_at") is not None:
            ends.append(float(status["ended_at"]))
        if state == "running" and status.get("state") == "failed" and status.get("detected_dead"):
            error = status.get("error")
    if state == "running" and entry.get("runs"):
        now = time.time()
        ends = ends + [now]
    points = sorted((s, a, w) for s, (a, w) in curve.items())
    accs = [a for _, a, _ in points if a is not None]
    final = points[-1] if points and state == "finished" else None
    return MethodResult(
        key=entry["key"], label=entry.get("label") or METHOD_LABELS.get(entry["key"], entry["key"]), state=state,
        run_dirs=[r["run_dir"] for r in entry.get("runs", [])], steps=steps,
        max_steps=max_steps or int(entry.get("max_steps") or 0),
        wall_seconds=(max(ends) - min(starts)) if starts and ends else None,
        train_seconds=round(train_seconds, 1) if train_seconds else None, curve=points,
        base_accuracy=points[0][1] if points and points[0][0] == 0 else None,
        final_accuracy=final[1] if final else None, final_reward=final[2] if final else None,
        best_accuracy=max(accs) if accs else None, sampled=entry.get("sampled"), error=error,
        seed=entry.get("seed"), outcomes=outcomes,
    )


def aggregate_arms(methods: Sequence[MethodResult]) -> list[ArmResult]:
    """Group per-seed results by method and summarise each over its seeds: mean, sd, min/max and a 95 % interval
    (bootstrap over seeds × held-out rows where the runs recorded per-row outcomes)."""
    by_key: dict[str, list[MethodResult]] = {}
    for m in methods:
        by_key.setdefault(m.key, []).append(m)
    arms = []
    for key, group in by_key.items():
        finished = [m for m in group if m.final_accuracy is not None]
        final = summarize_arm({_seed_key(m): m.final_accuracy for m in finished},
                              {_seed_key(m): m.final_outcomes for m in finished if m.final_outcomes})
        best = summarize_arm({_seed_key(m): m.best_accuracy for m in finished if m.best_accuracy is not None})
        sampled_values = {_seed_key(m): (m.sampled or {}).get("avg_at_k") for m in finished
                          if (m.sampled or {}).get("avg_at_k") is not None}
        steps = sorted({s for m in group for s, _a, _r in m.curve})
        curve = []
        for step in steps:
            at = {_seed_key(m): a for m in group for s, a, _r in m.curve if s == step and a is not None}
            if not at:
                continue
            summary = summarize_arm(at, {_seed_key(m): m.outcomes[step] for m in group if step in m.outcomes
                                         and _seed_key(m) in at}, samples=500)
            curve.append((step, summary.mean, summary.ci_low, summary.ci_high, summary.n_seeds))
        bases = [m.base_accuracy for m in group if m.base_accuracy is not None]
        trains = [m.train_seconds for m in group if m.train_seconds is not None]
        walls = [m.wall_seconds for m in finished if m.wall_seconds is not None]
        arms.append(ArmResult(
            key=key, label=group[0].label, runs=group, final=final, best=best,
            base_accuracy=sum(bases) / len(bases) if bases else None,
            train_seconds=sum(trains) / len(trains) if trains else None,
            wall_seconds=sum(walls) / len(walls) if walls else None, curve=curve,
            sampled=summarize_arm(sampled_values) if sampled_values else None,
        ))
    return arms


def _seed_key(m: MethodResult) -> str:
    return str(m.seed) if m.seed is not None else m.run_dirs[-1] if m.run_dirs else m.key


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def read_comparison(folder: Path | str) -> ComparisonResult:
    """Everything the table and the charts need, from the comparison folder and the run folders it names."""
    folder = Path(folder)
    state = read_state(folder)
    if not state:
        raise FileNotFoundError(f"{folder} holds no {COMPARISON_FILE}")
    config = CompareConfig.from_dict(state.get("config") or {})
    return ComparisonResult(
        folder=folder, state=state.get("state", "unknown"), config=config,
        methods=[read_method(e) for e in state.get("methods", [])], current=state.get("current"),
        current_index=state.get("current_index"),
        error=state.get("error"), started_at=state.get("started_at"), ended_at=state.get("ended_at"),
    )


MERGE_KEYS = ("task", "model", "steps", "eval_size", "eval_every", "sft_steps", "avg_k", "avg_temperature", "backend",
              "data_source", "overrides")


def merge_comparisons(folders: Sequence[Path | str], out: Path | str) -> Path:
    """One comparison folder from several finished ones that ran different methods (or seeds) with the same
    settings — e.g. two processes side by side on a multi-core machine, one thread each. The merged folder names
    the same run folders; nothing is copied or retrained. Raises CompareConfigError when the settings differ."""
    states = [read_state(f) for f in folders]
    if len(states) < 2 or not all(states):
        raise CompareConfigError("give at least two comparison folders that hold a comparison.json")
    configs = [CompareConfig.from_dict(st.get("config") or {}) for st in states]
    for key in MERGE_KEYS:
        values = {json.dumps(getattr(c, key), sort_keys=True, default=str) for c in configs}
        if len(values) > 1:
            raise CompareConfigError(f"the comparisons differ in {key} ({', '.join(sorted(values))}): not comparable")
    active = [str(f) for f, st in zip(folders, states) if st.get("state") in ACTIVE]
    if active:
        raise CompareConfigError(f"comparison {active[0]} is still running: merge it when it has ended")
    entries = [e for st in states for e in st.get("methods", [])]
    seen = set()
    for e in entries:
        tag = (e["key"], e.get("seed"))
        if tag in seen:
            raise CompareConfigError(f"{METHOD_LABELS.get(e['key'], e['key'])} with seed {e.get('seed')} is in two "
                                     "of the comparisons")
        seen.add(tag)
    seeds = sorted({s for c in configs for s in c.run_seeds}, key=[s for c in configs for s in c.run_seeds].index)
    methods = [m for m in METHOD_KEYS if any(e["key"] == m for e in entries)]
    order = {(m, s): i for i, (s, m) in enumerate((s, m) for s in seeds for m in methods)}
    entries.sort(key=lambda e: order.get((e["key"], e.get("seed", seeds[0])), len(order)))
    config = configs[0]
    config.methods, config.seeds = methods, seeds if len(seeds) > 1 else []
    config.seed = seeds[0]
    merged_state = "finished" if all(st.get("state") == "finished" for st in states) else "stopped"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_state(out, {"config": config.to_dict(), "state": merged_state, "methods": entries, "current": None,
                       "merged_from": [str(f) for f in folders],
                       "started_at": min(st.get("started_at") or time.time() for st in states),
                       "ended_at": max(st.get("ended_at") or 0 for st in states) or None})
    write_table(out)
    return out


def list_comparisons(data_dir: Path | str) -> list[Path]:
    """Comparison folders under DATA_DIR/comparisons, newest first."""
    base = Path(data_dir) / "comparisons"
    if not base.exists():
        return []
    found = [p for p in base.iterdir() if (p / COMPARISON_FILE).exists()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def comparison_version(folder: Path | str) -> tuple[Any, ...]:
    """Changes whenever the comparison or one of its runs wrote something (the app re-renders only then)."""
    folder = Path(folder)
    state = runs.read_json(folder / COMPARISON_FILE)
    stamps: list[Any] = [state.get("updated_at"), state.get("state")]
    for entry in state.get("methods", []):
        for run in entry.get("runs", []):
            for name in ("status.json", "metrics.jsonl"):
                path = Path(run["run_dir"]) / name
                stamps.append(path.stat().st_mtime_ns if path.exists() else None)
    return tuple(stamps)


def cli_command(config: CompareConfig, folder: Path | str | None = None) -> str:
    """The `python -m app.compare_methods` command that runs `config` (shown by the app, written into docs)."""
    import shlex

    default = CompareConfig()
    parts = ["python -m app.compare_methods"]
    if config.methods != default.methods:
        parts.append(f"--methods {','.join(config.methods)}")
    if config.seeds:
        parts.append(f"--seeds {','.join(map(str, config.seeds))}")
    for flag, name in (("--task", "task"), ("--model", "model"), ("--steps", "steps"), ("--sft-steps", "sft_steps"),
                       ("--seed", "seed"), ("--eval-size", "eval_size"), ("--eval-every", "eval_every"),
                       ("--avg-k", "avg_k"), ("--temperature", "avg_temperature"), ("--backend", "backend"),
                       ("--threads", "threads"),
                       ("--data", "data_source")):
        value = getattr(config, name)
        if value is not None and value != getattr(default, name):
            parts.append(f"{flag} {shlex.quote(str(value))}")
    parts += [f"--set {shlex.quote(item)}" for item in config.overrides]
    if folder:
        parts.append(f"--out {shlex.quote(str(folder))}")
    return " ".join(parts)


def status_line(result: ComparisonResult) -> str:
    """One sentence: where the comparison stands."""
    done = sum(m.state in ("finished", "failed", "stopped", "cancelled") for m in result.methods)
    n = len(result.methods)
    seeds = result.config.run_seeds
    noun = f"runs ({len(seeds)} seeds × {len(result.config.methods)} methods)" if len(seeds) > 1 else "methods"
    if result.state == "queued":
        return "Starting: the comparison process is loading."
    if result.state == "running":
        current = None
        if result.current_index is not None and result.current_index < n:
            current = result.methods[result.current_index]
        if current is None:
            current = next((m for m in result.methods if m.key == result.current), None)
        seed = f" (seed {current.seed})" if current and len(seeds) > 1 else ""
        where = (f"{current.label}{seed} at step {current.steps}/{current.max_steps or result.config.steps}"
                 if current else "")
        return f"Running: {done} of {n} {noun} done; {where}."
    failed = sorted({m.label for m in result.methods if m.state == "failed"}, key=[m.label for m in result.methods].index)
    text = {"finished": f"Finished: {n} {noun}", "stopped": f"Stopped after {done} of {n} {noun}",
            "failed": "The comparison process failed"}.get(result.state, result.state)
    if result.error:
        text += f" ({result.error})"
    if failed:
        text += f"; failed: {', '.join(failed)} (see the note column)"
    return text + "."


# -- table and figures --------------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return percent(value, 1)


def _secs(value: float | None) -> str:
    if value is None:
        return "–"
    value = int(round(value))
    return f"{value // 60}:{value % 60:02d}"


def results_table(result: ComparisonResult, drop_empty_note: bool = False) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows): one row per method with its final held-out scores after the same step budget — over the
    seeds (mean, 95 % interval, sd, min–max) when the comparison ran several, else the single run, labelled as
    such (the note column holds errors; `drop_empty_note` leaves it out when no method has one)."""
    if result.config.multi_seed:
        return arms_table(result, drop_empty_note)
    return runs_table(result, drop_empty_note)


def runs_table(result: ComparisonResult, drop_empty_note: bool = False) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows): one row per run (method × seed), final held-out scores of that run alone."""
    k = result.config.avg_k
    multi = result.config.multi_seed
    accuracy = "held-out accuracy (greedy)" if multi else "held-out accuracy (greedy, single seed)"
    headers = ["method"] + (["seed"] if multi else []) + [
        "state", "steps", "wall time", "train time", accuracy, "held-out mean reward", "best accuracy (step)",
        "base accuracy", "95 % interval (held-out rows)"]
    if k:
        headers += [f"avg@{k}", f"pass@{k}"]
    headers += ["run folder(s)", "note"]
    rows = []
    for m in result.methods:
        best = None
        if m.best_accuracy is not None:
            best_step = next(s for s, a, _ in m.curve if a == m.best_accuracy)
            best = f"{m.best_accuracy:.1%} ({best_step})"
        interval = "–"
        if m.final_outcomes:
            one = summarize_arm({"run": m.final_accuracy}, {"run": m.final_outcomes})
            if one.ci_low is not None:
                interval = f"[{one.ci_low:.1%}, {one.ci_high:.1%}]"
        row: list[Any] = [m.label] + ([m.seed] if multi else []) + [
            m.state, f"{m.steps}/{m.max_steps}" if m.max_steps else str(m.steps), _secs(m.wall_seconds),
            _secs(m.train_seconds), _pct(m.final_accuracy), "–" if m.final_reward is None else f"{m.final_reward:.3f}",
            best or "–", _pct(m.base_accuracy), interval]
        if k:
            sampled = m.sampled or {}
            row += [_pct(sampled.get("avg_at_k")), _pct(sampled.get("pass_at_k"))]
        note = m.error or (m.sampled or {}).get("error") or ""
        row += [", ".join(Path(d).name for d in m.run_dirs), note]
        rows.append(row)
    return _drop_note(headers, rows, drop_empty_note)


def arms_table(result: ComparisonResult, drop_empty_note: bool = False) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows): one row per method over its seeds."""
    k = result.config.avg_k
    headers = ["method", "state", "seeds", "held-out accuracy (greedy): mean [95 % CI]", "sd", "min–max",
               "best accuracy (mean)", "base accuracy", "train time (mean)", "wall time (mean)"]
    if k:
        headers += [f"avg@{k} (mean)"]
    headers += ["note"]
    rows = []
    for arm in result.arms:
        f = arm.final
        interval = "–" if f.mean is None else f"{f.mean:.1%}" + (
            f" [{f.ci_low:.1%}, {f.ci_high:.1%}]" if f.ci_low is not None else "")
        if f.single_seed:
            interval += " (single seed)"
        row: list[Any] = [arm.label, arm.state, f"{f.n_seeds}/{len(arm.runs)}", interval,
                          "–" if f.std is None else f"{100 * f.std:.1f} pts",
                          "–" if f.min is None else f"{f.min:.1%}–{f.max:.1%}", _pct(arm.best.mean),
                          _pct(arm.base_accuracy), _secs(arm.train_seconds), _secs(arm.wall_seconds)]
        if k:
            row += [_pct(arm.sampled.mean if arm.sampled else None)]
        notes = sorted({m.error for m in arm.runs if m.error})
        row += ["; ".join(f"seed {m.seed}: {m.error}" for m in arm.runs if m.error) if notes else ""]
        rows.append(row)
    return _drop_note(headers, rows, drop_empty_note)


def _drop_note(headers: list[str], rows: list[list[Any]], drop_empty_note: bool) -> tuple[list[str], list[list[Any]]]:
    if drop_empty_note and not any(r[-1] for r in rows):
        return headers[:-1], [r[:-1] for r in rows]
    return headers, rows


def differences_table(result: ComparisonResult) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows): each pair of methods, the difference of their mean final accuracy with a paired 95 %
    bootstrap interval (seeds resampled per method, held-out rows jointly), and whether the data order them."""
    arms = [a for a in result.arms if a.final.mean is not None]
    headers = ["A", "B", "A − B (points)", "95 % interval", "intervals of A and B", "verdict"]
    rows = []
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            diff = bootstrap_difference([m.final_outcomes for m in a.runs if m.final_outcomes],
                                        [m.final_outcomes for m in b.runs if m.final_outcomes])
            overlap = "overlap" if intervals_overlap(a.final, b.final) else "apart"
            if diff is None:
                point = 100 * (a.final.mean - b.final.mean)  # type: ignore[operator]
                rows.append([a.label, b.label, f"{point:+.1f}", "–", overlap, "no per-row outcomes to test"])
                continue
            point, lo, hi = diff
            verdict = (f"{a.label} better" if lo > 0 else f"{b.label} better" if hi < 0 else
                       "not resolved (the interval includes 0)")
            rows.append([a.label, b.label, f"{100 * point:+.1f}", f"[{100 * lo:+.1f}, {100 * hi:+.1f}]", overlap,
                         verdict])
    return headers, rows


def resolution_sentence(result: ComparisonResult) -> str:
    """The smallest difference in accuracy the setup resolves, in one sentence."""
    c = result.config
    sds = sorted(a.final.std for a in result.arms if a.final.std is not None)
    seed_sd = sds[len(sds) // 2] if sds else 0.0
    n = len(c.run_seeds)
    mde = resolvable_difference(c.eval_size, n, seed_sd=seed_sd)
    spread = f" and a between-seed sd of {100 * seed_sd:.1f} points (median over methods)" if sds else ""
    return (f"With {c.eval_size} held-out rows, {n} seed{'s' if n > 1 else ''}{spread}, two methods whose accuracies "
            f"differ by less than about {100 * mde:.0f} points cannot be told apart (95 %, unpaired, conservative); "
            "the paired intervals above are the direct test.")


def _markdown(headers: list[str], rows: list[list[Any]]) -> str:
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_table(result: ComparisonResult) -> str:
    """The results table as Markdown (what the CLI prints and table.md holds)."""
    return _markdown(*results_table(result, drop_empty_note=True))


def curves_markdown(result: ComparisonResult) -> str:
    """The held-out curves as a Markdown table: accuracy (mean reward) at each evaluated step, per method; over
    several seeds the mean accuracy and its 95 % interval."""
    if result.config.multi_seed:
        arms = result.arms
        steps = sorted({p[0] for a in arms for p in a.curve})
        if not steps:
            return ""
        lines = ["| step | " + " | ".join(a.label for a in arms) + " |", "|" + "---|" * (len(arms) + 1)]
        for step in steps:
            cells = []
            for a in arms:
                point = next((p for p in a.curve if p[0] == step), None)
                if point is None or point[1] is None:
                    cells.append("")
                else:
                    band = f" [{point[2]:.0%}, {point[3]:.0%}]" if point[2] is not None else ""
                    cells.append(f"{point[1]:.1%}{band}")
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    steps = sorted({s for m in result.methods for s, _a, _r in m.curve})
    if not steps:
        return ""
    lines = ["| step | " + " | ".join(m.label for m in result.methods) + " |", "|" + "---|" * (len(result.methods) + 1)]
    for step in steps:
        cells = []
        for m in result.methods:
            point = next(((a, r) for s, a, r in m.curve if s == step), None)
            cells.append("" if point is None else f"{_pct(point[0])} ({'–' if point[1] is None else f'{point[1]:.2f}'})")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(folder: Path | str) -> str:
    """Rewrite FOLDER/table.md from the folder's current state; returns the Markdown."""
    result = read_comparison(folder)
    c = result.config
    seeds = c.run_seeds
    seed_text = f"seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]} (single seed)"
    header = (f"Method comparison on `{c.task}`, model `{c.model}`, {c.steps} optimizer steps per method, "
              f"{seed_text}, {c.eval_size} held-out rows (greedy, evaluated every {c.eval_every or 'end'} steps); "
              f"state: {result.state}.\n\n")
    text = header + markdown_table(result) + "\n"
    if c.multi_seed:
        d_headers, d_rows = differences_table(result)
        if d_rows:
            text += "\nPairwise differences of the final accuracy (paired bootstrap over seeds × held-out rows):\n\n"
            text += _markdown(d_headers, d_rows) + "\n"
        text += "\n" + resolution_sentence(result) + "\n"
        text += "\nEach run:\n\n" + _markdown(*runs_table(result, drop_empty_note=True)) + "\n"
    else:
        text += "\n" + resolution_sentence(result) + " A single seed: rerun with `--seeds` before relying on a gap.\n"
    curves = curves_markdown(result)
    if curves:
        label = "mean over seeds [95 % interval]" if c.multi_seed else "mean reward"
        text += f"\nHeld-out accuracy ({label}) by step:\n\n" + curves + "\n"
    runs.write_atomic(Path(folder) / TABLE_FILE, text)
    return text


def curves_figure(result: ComparisonResult, title: str = "Held-out score over steps (greedy)") -> Any:
    """Held-out accuracy (top) and mean reward (bottom) against the optimizer step, one line per method; SFT→GRPO
    marks where GRPO takes over."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from app.engine.presentation import charts

    if not any(m.curve for m in result.methods):
        return charts.empty_figure(title, "No held-out evaluation yet: each method is evaluated at step 0, every "
                                          f"{result.config.eval_every} steps and at its end.", 520)
    if result.config.multi_seed:
        return _band_curves(result, title)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("Held-out accuracy", "Held-out mean reward"))
    steps: list[int] = []
    for m in result.methods:
        color = METHOD_COLORS.get(m.key, charts.PALETTE[0])
        for row, idx, fmt in ((1, 1, ".1%"), (2, 2, ".3f")):
            pts = [(p[0], p[idx]) for p in m.curve if p[idx] is not None]
            if not pts:
                continue
            fig.add_trace(go.Scatter(
                x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=m.label,
                legendgroup=m.key, showlegend=row == 1, line=_line(m, color),
                marker=dict(size=8), hovertemplate=f"{m.label} step %{{x}}: %{{y:{fmt}}}<extra></extra>",
            ), row=row, col=1)
            steps += [p[0] for p in pts]
    if "sft_grpo" in [m.key for m in result.methods] and result.config.priming_steps:
        fig.add_vline(x=result.config.priming_steps, line=dict(color=METHOD_COLORS["sft_grpo"], dash="dash", width=1),
                      annotation_text="SFT→GRPO: GRPO starts", annotation_position="top left")
    charts._layout(fig, title, 560)
    fig.update_yaxes(tickformat=".0%", row=1, col=1)
    fig.update_xaxes(**charts._step_axis(steps), row=2, col=1)
    fig.update_layout(hovermode="closest")
    return fig


def _band_curves(result: ComparisonResult, title: str) -> Any:
    """Several seeds: each method's mean held-out accuracy over its seeds, with its 95 % interval as a band."""
    import plotly.graph_objects as go

    from app.engine.presentation import charts

    fig = go.Figure()
    steps: list[int] = []
    for arm in result.arms:
        pts = [p for p in arm.curve if p[1] is not None]
        if not pts:
            continue
        color = METHOD_COLORS.get(arm.key, charts.PALETTE[0])
        band = [p for p in pts if p[2] is not None and p[3] is not None]
        if band:
            fig.add_trace(go.Scatter(
                x=[p[0] for p in band] + [p[0] for p in reversed(band)],
                y=[p[3] for p in band] + [p[2] for p in reversed(band)], fill="toself", fillcolor=color,
                opacity=0.18, line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=arm.key,
                name=f"{arm.label} 95 % interval"))
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=arm.label,
            legendgroup=arm.key, line=dict(color=color, width=2), marker=dict(size=8),
            customdata=[[p[2] if p[2] is not None else p[1], p[3] if p[3] is not None else p[1], p[4]] for p in pts],
            hovertemplate=(f"{arm.label} step %{{x}}: %{{y:.1%}} [%{{customdata[0]:.1%}}, %{{customdata[1]:.1%}}] "
                           "over %{customdata[2]} seeds<extra></extra>")))
        steps += [p[0] for p in pts]
    n = len(result.config.run_seeds)
    charts._layout(fig, f"{title}: mean of {n} seeds, band = 95 % interval (seeds × held-out rows)", 520)
    fig.update_yaxes(tickformat=".0%", title="held-out accuracy")
    fig.update_xaxes(**charts._step_axis(steps))
    fig.update_layout(hovermode="closest")
    return fig


def _line(m: MethodResult, color: str) -> dict[str, Any]:
    line: dict[str, Any] = dict(color=color, width=3 if m.key == "prefix_rft" else 2)
    if m.state not in ("finished", "running"):  # failed / stopped: dotted, so an unfinished curve is not misread
        line["dash"] = "dot"
    return line


def summary_figure(result: ComparisonResult, title: str = "Final held-out accuracy and wall time") -> Any:
    """Bars of the final greedy accuracy (and avg@k when sampled) per method, wall time in the hover text."""
    import plotly.graph_objects as go

    from app.engine.presentation import charts

    done = [m for m in result.methods if m.final_accuracy is not None]
    if not done:
        return charts.empty_figure(title, "No method has finished yet.", 340)
    if result.config.multi_seed:
        arms = [a for a in result.arms if a.final.mean is not None]
        fig = go.Figure(go.Bar(
            x=[a.label for a in arms], y=[a.final.mean for a in arms], name="greedy accuracy (mean over seeds)",
            marker_color=[METHOD_COLORS.get(a.key, charts.PALETTE[0]) for a in arms],
            error_y=dict(type="data", symmetric=False,
                         array=[(a.final.ci_high - a.final.mean) if a.final.ci_high is not None else 0 for a in arms],
                         arrayminus=[(a.final.mean - a.final.ci_low) if a.final.ci_low is not None else 0
                                     for a in arms]),
            text=[a.final.text() for a in arms], textposition="outside",
            hovertemplate="%{x}: %{text}<extra></extra>"))
        base = next((a.base_accuracy for a in result.arms if a.base_accuracy is not None), None)
        if base is not None:
            fig.add_hline(y=base, line=dict(color="#666666", dash="dot"), annotation_text=f"base model {base:.0%}")
        charts._layout(fig, f"{title} (mean, 95 % interval)", 340)
        fig.update_yaxes(tickformat=".0%", range=[0, 1.15])
        return fig
    fig = go.Figure(go.Bar(
        x=[m.label for m in done], y=[m.final_accuracy for m in done], name="greedy accuracy",
        marker_color=[METHOD_COLORS.get(m.key, charts.PALETTE[0]) for m in done],
        text=[f"{m.final_accuracy:.0%}" for m in done], textposition="outside",
        customdata=[_secs(m.wall_seconds) for m in done], hovertemplate="%{x}: %{y:.1%} (wall %{customdata})<extra></extra>",
    ))
    k = result.config.avg_k
    if k and any((m.sampled or {}).get("avg_at_k") is not None for m in done):
        fig.add_trace(go.Bar(x=[m.label for m in done], y=[(m.sampled or {}).get("avg_at_k") for m in done],
                             name=f"avg@{k} (T={result.config.avg_temperature:g})", marker_color="#b8b8b8",
                             text=[_pct((m.sampled or {}).get("avg_at_k")) for m in done], textposition="outside"))
    base = next((m.base_accuracy for m in result.methods if m.base_accuracy is not None), None)
    if base is not None:
        fig.add_hline(y=base, line=dict(color="#666666", dash="dot"), annotation_text=f"base model {base:.0%}")
    charts._layout(fig, title, 340)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.1])
    fig.update_layout(barmode="group", hovermode="closest")
    return fig


__all__ = [
    "METHOD_KEYS", "METHOD_LABELS", "CompareConfig", "CompareConfigError", "Stage", "build_stages", "build_plan",
    "ArmResult", "aggregate_arms", "runs_table", "arms_table", "differences_table", "resolution_sentence",
    "initial_entries", "merge_comparisons",
    "run_comparison", "start_comparison_process", "request_cancel", "read_comparison", "read_state", "read_method",
    "list_comparisons", "results_table", "markdown_table", "curves_markdown", "write_table", "curves_figure", "summary_figure",
    "sampled_eval", "gsm8k_rows", "default_folder", "comparison_version", "cli_command", "status_line",
]
