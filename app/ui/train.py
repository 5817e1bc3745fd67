"""Step 3 · Train: the RunSpec as a form and as YAML, launch / stop / resume, and the live view of any run: charts
that update every two seconds, health alerts, sample completions by step, held-out evaluation, the worker's log.

Nothing here trains: Launch writes the run folder and starts `python -m app.train` in its own process, then
returns. The live view reads only the run folder, so a reloaded tab or a restarted app shows the same runs."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from app.engine import methods
from app.engine.advice import health, presets
from app.engine.core import folders, processes, run_reader, runs
from app.engine.core.spec import (
    BACKENDS,
    METHODS,
    RL_METHODS,
    RunSpec,
    SpecError,
    field_help,
)
from app.engine.data.splits import split_sentence
from app.engine.presentation import charts
from app.engine.training.trackers import TRACKERS
from app.ui.common import (
    UIContext,
    alerts_html,
    error,
    esc,
    frame,
    info,
    nonce,
    ok,
    pre,
    warn,
)

POLL_SECONDS = 2.0
STATE_BADGES = {"queued": "… queued", "running": "● running", "finished": "✓ finished", "failed": "✗ failed",
                "stopped": "■ stopped", "unknown": "? unknown"}

# (dotted spec field, component kind, label, section). Kinds: text, int, float, optint, choice:<list>, bool, model.
FIELDS: list[tuple[str, str, str, str]] = [
    ("name", "text", "Run name", "Basics"),
    ("method", "method", "Method", "Basics"),
    ("model", "model", "Model", "Basics"),
    ("data.source", "source", "Dataset", "Basics"),
    ("backend", "backend", "Backend", "Basics"),
    ("distributed.processes", "int", "Processes (one per GPU; CPU: they share the cores)", "Basics"),
    ("training.max_steps", "int", "Max steps", "Training"),
    ("training.learning_rate", "float", "Learning rate", "Training"),
    ("training.per_device_train_batch_size", "int", "Batch size", "Training"),
    ("training.gradient_accumulation_steps", "int", "Gradient accumulation", "Training"),
    ("generation.num_generations", "int", "Completions per prompt (GRPO group)", "Generation"),
    ("generation.max_completion_length", "int", "Max completion tokens", "Generation"),
    ("generation.temperature", "float", "Temperature", "Generation"),
    ("generation.max_length", "int", "Max sequence tokens (SFT/DFT)", "Generation"),
    ("data.eval_size", "int", "Held-out rows", "Data and evaluation"),
    ("data.train_size", "optint", "Max training rows (empty: all)", "Data and evaluation"),
    ("data.system_prompt", "opttext", "System prompt", "Data and evaluation"),
    ("logging.eval_every", "int", "Evaluate every N steps (0: start and end)", "Data and evaluation"),
    ("logging.eval_max_new_tokens", "optint", "Evaluation tokens (empty: completion length)", "Data and evaluation"),
    ("lora.enabled", "bool", "Train a LoRA adapter", "LoRA and logging"),
    ("lora.r", "int", "LoRA rank r", "LoRA and logging"),
    ("lora.alpha", "int", "LoRA alpha", "LoRA and logging"),
    ("logging.sample_every", "int", "Save samples every N steps", "LoRA and logging"),
    ("logging.save_steps", "int", "Checkpoint every N steps", "LoRA and logging"),
    ("logging.report_to", "trackers", "Experiment trackers (beside the run folder)", "LoRA and logging"),
    ("logging.report_to_optional", "bool", "Skip a tracker that cannot start", "LoRA and logging"),
    ("logging.log_completions", "bool", "TRL's completion logs (GRPO family)", "LoRA and logging"),
]
# Each method's own section (named by its label) holds the fields it declares (`TrainingMethod.form_fields`); it
# shows for that method and for methods built on it (Prefix-RFT shows GRPO's).
FIELDS += [(f.path, "choice" if f.choices else f.kind, f.label, m.label) for m in methods.all() for f in m.form_fields]
CHOICES: dict[str, tuple[str, ...]] = {f.path: f.choices for m in methods.all() for f in m.form_fields if f.choices}
METHOD_SECTIONS = {m.label: m for m in methods.all() if m.form_fields}
SECTIONS = ["Basics", "Training", "Generation", *METHOD_SECTIONS, "Data and evaluation", "LoRA and logging"]
FIELD_IDS = {path: "train-" + path.replace(".", "-").replace("_", "-") for path, *_ in FIELDS}


# -- spec <-> form ------------------------------------------------------------------------------------------------------
def get_path(data: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        data = (data or {}).get(part) if isinstance(data, dict) else None
    return data


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def _coerce(kind: str, value: Any) -> Any:
    if kind in ("int", "optint"):
        if value in (None, ""):
            return None if kind == "optint" else 0
        return int(value)
    if kind == "float":
        return float(value) if value not in (None, "") else 0.0
    if kind == "opttext":
        return value if value and str(value).strip() else None
    if kind == "bool":
        return bool(value)
    if kind == "trackers":
        return list(value or [])
    return value if value is not None else ""


def form_to_spec(spec: dict[str, Any] | None, values: list[Any]) -> RunSpec:
    """The working spec with the form's values applied; raises SpecError for a bad value."""
    data = json.loads(json.dumps(spec or RunSpec().to_dict()))
    for (path, kind, _label, _section), value in zip(FIELDS, values):
        try:
            set_path(data, path, _coerce(kind, value))
        except (TypeError, ValueError):
            raise SpecError(path, f"not a valid number: {value!r}") from None
    return RunSpec.from_dict(data)


def spec_to_form(spec: dict[str, Any]) -> list[Any]:
    return [get_path(spec, path) for path, *_ in FIELDS]


def section_visible(section: str, method: str | None) -> bool:
    if section not in METHOD_SECTIONS:
        return True
    current = methods.find(method or "")
    return current is not None and isinstance(current, type(METHOD_SECTIONS[section]))


def rewards_markdown(spec: dict[str, Any]) -> str:
    items = spec.get("rewards") or []
    rl = spec.get("method") in RL_METHODS
    if not items:
        return ("**Rewards:** none yet — pick them in *2 · Rewards* (RL methods need at least one)." if rl else
                "**Rewards:** none — optional for this method (they would score held-out replies).")
    parts = []
    for r in items:
        label = r.get("name") or (Path(r["file"]).stem + " (your code)" if r.get("file") else "inline code")
        params = f" {json.dumps(r['params'])}" if r.get("params") else ""
        parts.append(f"`{label}` × {r.get('weight', 1.0):g}{params}")
    role = "" if rl else " (score the held-out replies; not trained on)"
    return "**Rewards:** " + " + ".join(parts) + role + " — edit them in *2 · Rewards* or in the YAML."


def spec_problems_html(spec: RunSpec) -> str:
    problems = spec.problems(check_files=False)
    if not problems:
        return ok("The spec is valid. Launch when ready.")
    return warn("<br>".join(f"<b>{esc(p.field)}</b>: {esc(p.problem)}" for p in problems[:6]))


def dataset_choices(paths: folders.WorkbenchPaths) -> list[str]:
    out = ["builtin:arithmetic"]
    if paths.datasets_dir.exists():
        out += [str(p) for p in sorted(paths.datasets_dir.iterdir()) if p.suffix.lower() in (
            ".jsonl", ".json", ".csv", ".tsv", ".ndjson")]
    return out


# -- live view rendering ------------------------------------------------------------------------------------------
def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def status_html(snap: run_reader.RunSnapshot) -> str:
    """The run's headline: state, progress bar, backend/device, timing, latest numbers, and any error."""
    st = snap.status
    state = st.get("state", "unknown")
    step, max_steps = int(st.get("step") or 0), st.get("max_steps") or (snap.spec.training.max_steps if snap.spec else 0)
    share = min(1.0, step / max_steps) if max_steps else 0.0
    started, ended = st.get("started_at"), st.get("ended_at")
    now = time.time()
    elapsed = ((ended or now) - started) if started else None
    latest = charts.latest_values(snap.records, ["reward", "loss", "step_time"])
    eta = ""
    if state == "running" and latest["step_time"] and max_steps:
        eta = f" · about {_duration(latest['step_time'] * (max_steps - step))} left"
    numbers = []
    if latest["reward"] is not None:
        numbers.append(f"reward {latest['reward']:.3f}")
    if latest["loss"] is not None:
        numbers.append(f"loss {latest['loss']:.4g}")
    final = st.get("final_eval") or {}
    if final.get("eval/accuracy") is not None:
        numbers.append(f"held-out accuracy {final['eval/accuracy']:.0%}")
    backend = f"{st.get('backend')} on {st.get('device')} ({st.get('dtype')})" if st.get("backend") else "starting…"
    html_out = (
        f"<div class='wb-status'><div class='wb-status-line'><b>{esc(st.get('name') or snap.run_dir.name)}</b> "
        f"<span class='wb-badge wb-badge-{esc(state)}'>{STATE_BADGES.get(state, esc(state))}</span> "
        f"<span>{esc(snap.method.upper())} · step <b id='run-step'>{step}</b>/{max_steps or '?'}</span> "
        f"<span class='wb-muted'>· {esc(backend)} · {_duration(elapsed)} elapsed{eta}</span></div>"
        f"<div class='wb-progress'><div style='width:{share * 100:.1f}%'></div></div>"
        + (f"<div class='wb-muted'>{esc(' · '.join(numbers))}</div>" if numbers else "")
        + (f"<div class='wb-muted' id='run-split'>{esc(split_sentence(st.get('split')))}</div>"
           if st.get("split") else "")
        + "".join(f"<div class='wb-muted run-tracker'>{esc(name)} → {esc(where)}</div>"
                  for name, where in (st.get("trackers") or {}).items())
        + "</div>")
    for name, why in (st.get("trackers_skipped") or {}).items():
        html_out += warn(f"Tracker {esc(name)} skipped: {esc(why)}")
    if state == "failed":
        html_out += error(f"<b>The run failed:</b> {esc(st.get('error') or 'unknown error')}")
        if st.get("traceback"):
            html_out += f"<details><summary>Traceback</summary>{pre(st['traceback'][-6000:])}</details>"
    elif state == "stopped":
        ckpt = runs.latest_checkpoint(snap.run_dir)
        html_out += info(f"Stopped at step {step}" + (f"; <b>Resume</b> continues from {esc(ckpt.name)}." if ckpt
                                                       else "; no checkpoint was saved, Resume starts again."))
    elif state == "finished" and st.get("adapter"):
        html_out += ok(f"Finished. Adapter saved in <code>{esc(st['adapter'])}</code> — compare it in "
                       "<b>4 · Compare</b>.")
    return html_out


def samples_frame(samples: list[dict[str, Any]]) -> Any:
    names: list[str] = []
    for s in samples:
        names += [n for n in (s.get("rewards") or {}) if n not in names]
    judges: list[str] = []  # model-judge rewards: what the judge wrote about each completion
    for s in samples:
        judges += [n for n in (s.get("judge") or {}) if n not in judges]
    headers = ["#", "prompt", "completion"] + names + ["advantage"] + [f"{n} reply" for n in judges]
    rows = []
    for s in samples:
        scores = s.get("rewards") or {}
        adv = s.get("advantage")
        rows.append([int(s.get("index", 0)) + 1, s.get("prompt", ""), s.get("completion", "")]
                    + [_round(scores.get(n)) for n in names] + [_round(adv)]
                    + [(s.get("judge") or {}).get(n, "") for n in judges])
    return frame(headers, rows)


def _round(value: Any) -> Any:
    """Scores to 3 decimals for the tables (0.6666666865348816 → 0.667); None and text unchanged."""
    return round(value, 3) if isinstance(value, float) else value


def eval_samples_frame(samples: list[dict[str, Any]]) -> Any:
    names: list[str] = []
    for s in samples:
        names += [n for n in (s.get("scores") or {}) if n not in names]
    headers = ["step", "prompt", "completion"] + names + ["total"]
    rows = [[s.get("step"), s.get("prompt", ""), s.get("completion", "")]
            + [_round((s.get("scores") or {}).get(n)) for n in names] + [_round(s.get("total"))] for s in samples]
    return frame(headers, rows)


def _form_column(c: dict[str, Any], ctx: UIContext) -> None:
    """The form: the rewards line, then one accordion per section holding its FIELDS."""
    helps = field_help()
    with gr.Column(scale=6, min_width=420):
        c["rewards_md"] = gr.Markdown(rewards_markdown(ctx.spec.value), elem_id="train-rewards")
        method = ctx.spec.value.get("method")
        for section in SECTIONS:
            with gr.Accordion(section, open=section in ("Basics", "Training", "Generation"),
                              visible=section_visible(section, method)) as acc:
                c[f"section:{section}"] = acc
                with gr.Row():
                    for path, kind, label, sec in FIELDS:
                        if sec != section:
                            continue
                        comp = _field_component(path, kind, label, helps.get(path, ""), ctx)
                        c[path] = comp


def _yaml_column(c: dict[str, Any], ctx: UIContext) -> None:
    """The same spec as YAML, Apply YAML to the form, and how to run it from a terminal."""
    with gr.Column(scale=5, min_width=380):
        c["yaml"] = gr.Code(RunSpec.from_dict(ctx.spec.value).to_yaml(), language="yaml", lines=24,
                            max_lines=40, label="The same spec as YAML (edit, then Apply)", interactive=True,
                            elem_id="train-yaml")
        with gr.Row():
            c["apply_yaml"] = gr.Button("Apply YAML to the form", size="sm", elem_id="train-apply-yaml")
        c["cli_md"] = gr.Markdown(
            "Same run from a terminal or notebook: save the YAML as `spec.yaml`, then "
            "`python -m app.train spec.yaml` — or in Python: "
            "`train(RunSpec.load('spec.yaml'))` (`from app.engine.training.worker import train`).",
            elem_classes=["wb-small"])


def _setup_section(c: dict[str, Any], ctx: UIContext) -> gr.Accordion:
    """The Run setup accordion (form, YAML, validity note); returns it, as Launch closes it."""
    with gr.Accordion("Run setup", open=True, elem_id="train-setup") as setup:
        with gr.Row(equal_height=False):
            _form_column(c, ctx)
            _yaml_column(c, ctx)
        c["valid_html"] = gr.HTML("", elem_id="train-valid")
    return setup


def _actions_section(c: dict[str, Any]) -> None:
    """Launch, Stop and Resume, and the note they leave."""
    with gr.Row(elem_id="train-actions"):
        c["launch_btn"] = gr.Button("▶ Launch run", variant="primary", elem_id="train-launch", scale=2)
        c["stop_btn"] = gr.Button("■ Stop", variant="stop", interactive=False, elem_id="train-stop", scale=1)
        c["resume_btn"] = gr.Button("↻ Resume", interactive=False, elem_id="train-resume", scale=1)
    c["action_html"] = gr.HTML("", elem_id="train-action-status")


def _live_section(c: dict[str, Any]) -> None:
    """The live view's head: the run picked, its status, the charts and the health alerts."""
    gr.Markdown("### Live view", elem_classes=["wb-h"])
    with gr.Row(equal_height=True):
        c["run"] = gr.Dropdown(choices=[], value=None, label="Run", scale=6, elem_id="train-run",
                               info="Any past or current run; the view follows it live.")
        c["refresh_btn"] = gr.Button("↻ Refresh list", size="sm", scale=1, min_width=120)
    c["status_html"] = gr.HTML(info("No run selected yet: launch one above, or pick a past run."),
                               elem_id="train-status")
    with gr.Row(equal_height=False):
        with gr.Column(scale=7, min_width=520):
            c["reward_plot"] = gr.Plot(charts.empty_figure("Reward", "No run selected."), show_label=False,
                                       elem_id="train-reward-plot")
            c["dyn_plot"] = gr.Plot(charts.empty_figure("Training dynamics", "No run selected.",
                                                        charts.DYNAMICS_HEIGHT), show_label=False,
                                    elem_id="train-dyn-plot")
            c["method_plot"] = gr.Plot(None, show_label=False, visible=False, elem_id="train-method-plot")
        with gr.Column(scale=3, min_width=300):
            gr.Markdown("#### Health", elem_classes=["wb-h"])
            c["health_html"] = gr.HTML(alerts_html([], judged=False), elem_id="train-health")
            c["eval_plot"] = gr.Plot(charts.empty_figure("Held-out evaluation", "No run selected.",
                                                         charts.EVAL_HEIGHT), show_label=False,
                                     elem_id="train-eval-plot")


def _samples_section(c: dict[str, Any], ctx: UIContext) -> None:
    """Below the charts: sample completions by step, held-out samples, the worker log and the table of all runs."""
    gr.Markdown("#### Sample completions", elem_classes=["wb-h"])
    with gr.Row(equal_height=True):
        c["follow"] = gr.Checkbox(value=True, label="Follow the latest step", scale=1, elem_id="train-follow")
        c["step"] = gr.Slider(0, 1, value=0, step=1, label="Step", scale=5, elem_id="train-sample-step",
                              info="Scroll back through the steps' sampled completions.")
    c["samples"] = gr.Dataframe(value=samples_frame([]), interactive=False, wrap=True, max_height=420,
                                label="Completions sampled at this step, with each reward and the GRPO advantage",
                                elem_id="train-samples")
    with gr.Accordion("Held-out evaluation samples (greedy)", open=False):
        c["eval_samples"] = gr.Dataframe(value=eval_samples_frame([]), interactive=False, wrap=True, max_height=360)
    with gr.Accordion("Worker log (train.log)", open=False):
        c["log"] = gr.Textbox("", lines=12, max_lines=30, show_label=False, interactive=False, elem_id="train-log")
    with gr.Accordion("All runs", open=False):
        c["runs_table"] = gr.Dataframe(value=frame(*run_reader.runs_table(ctx.paths.runs_dir)), interactive=False,
                                       elem_id="train-runs-table", max_height=320,
                                       label="Click a row to open its charts")
        with gr.Row():
            c["load_spec_btn"] = gr.Button("Copy this run's spec into the form", size="sm")


def _wire_form(c: dict[str, Any], ctx: UIContext,
               fields: list[Any]) -> tuple[Callable[..., tuple[Any, ...]], list[Any]]:
    """Form and YAML: edits update the spec, a new method applies its defaults, Apply YAML, and filling the form
    from a pushed spec; returns the fill handler and its outputs."""
    def on_form(spec: dict[str, Any], *values: Any) -> tuple[Any, ...]:
        try:
            new = form_to_spec(spec, list(values))
        except SpecError as exc:
            return gr.skip(), gr.skip(), warn(f"<b>{esc(exc.field)}</b>: {esc(exc.problem)}")
        return new.to_dict(), new.to_yaml(), spec_problems_html(new)

    gr.on([f.input for f in fields], on_form, [ctx.spec] + fields, [ctx.spec, c["yaml"], c["valid_html"]],
          show_progress="hidden")

    def on_method(spec: dict[str, Any], method: str) -> tuple[Any, ...]:
        changes = presets.method_defaults(method, processes.gpu_available())
        try:
            new = presets.spec_with(spec, changes)
        except SpecError as exc:
            return gr.skip(), gr.skip(), warn(esc(exc))
        return new.to_dict(), nonce(), info(f"Defaults for {method.upper()} on this hardware applied.")

    c["method"].input(on_method, [ctx.spec, c["method"]], [ctx.spec, ctx.spec_push, c["valid_html"]])

    def apply_yaml(text: str) -> tuple[Any, ...]:
        try:
            new = RunSpec.from_yaml(text or "")
        except SpecError as exc:
            gr.Warning(f"YAML not applied: {exc}")
            return gr.skip(), gr.skip(), error(f"YAML not applied — <b>{esc(exc.field)}</b>: {esc(exc.problem)}")
        return new.to_dict(), nonce(), spec_problems_html(new)

    c["apply_yaml"].click(apply_yaml, c["yaml"], [ctx.spec, ctx.spec_push, c["valid_html"]])

    def fill(spec: dict[str, Any]) -> tuple[Any, ...]:
        spec = spec or RunSpec().to_dict()
        try:
            yaml_text = RunSpec.from_dict(spec).to_yaml()
            valid = spec_problems_html(RunSpec.from_dict(spec))
        except SpecError as exc:
            yaml_text, valid = gr.skip(), warn(esc(exc))
        source_choices = dataset_choices(ctx.paths)
        src = get_path(spec, "data.source")
        if src and src not in source_choices:
            source_choices.append(src)
        values = spec_to_form(spec)
        updates = []
        for (path, *_), value in zip(FIELDS, values):
            updates.append(gr.Dropdown(choices=source_choices, value=value) if path == "data.source" else value)
        sections = [gr.Accordion(visible=section_visible(sec, spec.get("method"))) for sec in SECTIONS]
        return (*updates, yaml_text, rewards_markdown(spec), valid, *sections)

    fill_outputs = fields + [c["yaml"], c["rewards_md"], c["valid_html"]] + [c[f"section:{sec}"] for sec in SECTIONS]
    ctx.spec_push.change(fill, ctx.spec, fill_outputs, show_progress="hidden")
    return fill, fill_outputs


def _wire_launch(c: dict[str, Any], ctx: UIContext, fields: list[Any], setup: gr.Accordion) -> None:
    """Launch (starts the worker, closes Run setup), Stop and Resume."""
    def launch(spec: dict[str, Any], *values: Any) -> tuple[Any, ...]:
        try:
            new = form_to_spec(spec, list(values))
            run_dir, warning = processes.start_run(new, ctx.paths.runs_dir, data_dir=ctx.paths.data_dir)
        except SpecError as exc:
            gr.Warning(f"Not launched: {exc}")
            return (gr.skip(), gr.skip(), error(f"Not launched — <b>{esc(exc.field)}</b>: {esc(exc.problem)}"),
                    gr.skip())
        except processes.LaunchRefused as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip(), error(f"Not launched: {esc(exc)}"), gr.skip()
        except Exception as exc:  # the worker could not even start (disk full, permissions...)
            gr.Warning(f"Not launched: {exc}")
            return gr.skip(), gr.skip(), error(f"Not launched: {esc(exc)}"), gr.skip()
        message = ok(f"Launched <b>{esc(run_dir.name)}</b>. The worker starts in a few seconds; the charts follow "
                     "below. You can close this tab: training goes on, and the run is here when you come back.")
        if warning:
            message += warn(esc(warning))
        gr.Info(f"Run {run_dir.name} launched")
        return (gr.Dropdown(choices=run_reader.run_choices(ctx.paths.runs_dir), value=run_dir.name), new.to_dict(),
                message, gr.Accordion(open=False))

    c["launch_btn"].click(launch, [ctx.spec] + fields, [c["run"], ctx.spec, c["action_html"], setup],
                          concurrency_limit=1, concurrency_id="launch")

    def stop(run: str | None) -> str:
        if not run:
            return warn("No run selected.")
        return info(esc(processes.stop_run(ctx.paths.runs_dir / run)))

    c["stop_btn"].click(stop, c["run"], c["action_html"])

    def resume(run: str | None) -> str:
        if not run:
            return warn("No run selected.")
        try:
            warning = processes.resume_run(ctx.paths.runs_dir / run, data_dir=ctx.paths.data_dir)
        except processes.LaunchRefused as exc:
            gr.Warning(str(exc))
            return error(esc(exc))
        return ok(f"Resuming {esc(run)} from its last checkpoint.") + (warn(esc(warning)) if warning else "")

    c["resume_btn"].click(resume, c["run"], c["action_html"], concurrency_limit=1, concurrency_id="launch")


def _live_renderer(ctx: UIContext, live_outputs: list[Any]) -> Callable[..., tuple[Any, ...]]:
    """The live view's render handler, for the outputs in `live_outputs` (see `_wire_live`)."""
    def render(run: str | None, state: dict[str, Any], follow: bool, force: bool = False) -> tuple[Any, ...]:
        """Everything the live view shows of `run`; skips every output when nothing changed since the last call.
        The sample step shown is the latest when following, else the one picked with the slider (kept in the
        session's view state, so the slider never feeds a stale value back to the server)."""
        state = state or {}
        if not run:
            return tuple(gr.skip() for _ in live_outputs)
        run_dir = ctx.paths.runs_dir / run
        if not (run_dir / "spec.yaml").exists():
            return (error(f"Run folder {esc(run)} is gone."), *[gr.skip()] * (len(live_outputs) - 3),
                    {"run": None, "version": None}, gr.skip())
        snap = run_reader.READER.snapshot(run_dir)
        key = [run, list(snap.version)]
        if not force and state.get("version") == key:
            return tuple(gr.skip() for _ in live_outputs)
        figs = charts.dashboard(snap.records, snap.method)
        alerts = health.health_alerts(snap.records, snap.spec, snap.samples)
        steps = run_reader.sample_steps(snap.samples)
        picked = None if (follow or force or state.get("run") != run) else state.get("step")
        samples = run_reader.samples_at(snap.samples, picked)
        shown = samples[0]["step"] if samples else 0
        slider = gr.Slider(minimum=0, maximum=max(steps[-1] if steps else 1, 1), value=shown, step=1,
                           interactive=len(steps) > 1)
        state_name = snap.status.get("state")
        active = state_name in runs.ACTIVE_STATES
        judged = len(charts.train_records(snap.records)) >= 3
        method_plot = gr.Plot(figs["method"], visible=figs["method"] is not None)  # e.g. Prefix-RFT's schedule
        return (status_html(snap), figs["reward"], figs["eval"], figs["dynamics"], method_plot,
                alerts_html(alerts, judged),
                samples_frame(samples), slider, eval_samples_frame(run_reader.eval_samples(snap.records)),
                run_reader.log_tail(run_dir), gr.Button(interactive=active),
                gr.Button(interactive=state_name in ("stopped", "failed")),
                {"run": run, "version": key, "step": None if picked is None else shown},
                True if force else gr.skip())

    return render


def _wire_live(c: dict[str, Any], ctx: UIContext, view: gr.State) -> None:
    """The live view: the timer and a newly picked run re-render it, the step slider and Follow the latest step."""
    live_outputs = [c["status_html"], c["reward_plot"], c["eval_plot"], c["dyn_plot"], c["method_plot"],
                    c["health_html"],
                    c["samples"], c["step"], c["eval_samples"], c["log"], c["stop_btn"], c["resume_btn"], view,
                    c["follow"]]
    render = _live_renderer(ctx, live_outputs)
    live_inputs = [c["run"], view, c["follow"]]
    c["timer"].tick(render, live_inputs, live_outputs, show_progress="hidden")
    c["run"].change(lambda r, s, f: render(r, s, True, force=True), live_inputs, live_outputs,
                    show_progress="hidden")

    def pick_step(run: str | None, state: dict[str, Any], step: float) -> tuple[Any, ...]:
        if not run:
            return gr.skip(), gr.skip(), gr.skip()
        snap = run_reader.READER.snapshot(ctx.paths.runs_dir / run)
        samples = run_reader.samples_at(snap.samples, int(step))
        shown = samples[0]["step"] if samples else int(step)
        return samples_frame(samples), False, {**(state or {}), "run": run, "step": shown}

    c["step"].release(pick_step, [c["run"], view, c["step"]], [c["samples"], c["follow"], view],
                      show_progress="hidden")

    def follow_latest(run: str | None, state: dict[str, Any], follow: bool) -> tuple[Any, ...]:
        if not follow or not run:
            return tuple(gr.skip() for _ in live_outputs)
        return render(run, {**(state or {}), "version": None}, True)

    c["follow"].input(follow_latest, live_inputs, live_outputs, show_progress="hidden")


def _wire_runs(c: dict[str, Any], ctx: UIContext) -> None:
    """Refresh list, a click in All runs, Copy this run's spec, and `c["_load"]` that the shell runs on page load."""
    def refresh(current: str | None) -> tuple[Any, ...]:
        choices = run_reader.run_choices(ctx.paths.runs_dir)
        names = [v for _, v in choices]
        return (gr.Dropdown(choices=choices, value=current if current in names else (names[0] if names else None)),
                frame(*run_reader.runs_table(ctx.paths.runs_dir)))

    c["refresh_btn"].click(refresh, c["run"], [c["run"], c["runs_table"]])

    def select_row(evt: gr.SelectData, table: Any) -> Any:
        try:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            return table.iloc[int(row)]["folder"]
        except Exception:
            return gr.skip()

    c["runs_table"].select(select_row, c["runs_table"], c["run"])

    def load_run_spec(run: str | None) -> tuple[Any, ...]:
        if not run:
            return gr.skip(), gr.skip(), warn("Pick a run first.")
        try:
            spec = RunSpec.load(ctx.paths.runs_dir / run / "spec.yaml")
        except SpecError as exc:
            return gr.skip(), gr.skip(), error(esc(exc))
        spec.name = None
        return spec.to_dict(), nonce(), info(f"Spec of {esc(run)} copied into the form: change it and launch.")

    c["load_spec_btn"].click(load_run_spec, c["run"], [ctx.spec, ctx.spec_push, c["action_html"]])

    def load() -> tuple[Any, ...]:
        """On page load (and reload): list runs and re-attach to the active (else newest) run."""
        choices = run_reader.run_choices(ctx.paths.runs_dir)
        picked = run_reader.pick_run(ctx.paths.runs_dir)
        return (gr.Dropdown(choices=choices, value=picked.name if picked else None),
                frame(*run_reader.runs_table(ctx.paths.runs_dir)))

    c["_load"] = (load, [c["run"], c["runs_table"]])


def build(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Train tab and wire its events."""
    c: dict[str, Any] = {}
    setup = _setup_section(c, ctx)
    fields = [c[path] for path, *_ in FIELDS]  # FIELDS order (the layout above goes section by section)
    _actions_section(c)
    _live_section(c)
    _samples_section(c, ctx)
    c["timer"] = gr.Timer(POLL_SECONDS)
    view = gr.State({"run": None, "version": None})
    # wired in the original order, so the events keep their numbers (fn_index)
    fill, fill_outputs = _wire_form(c, ctx, fields)
    _wire_launch(c, ctx, fields, setup)
    _wire_live(c, ctx, view)
    _wire_runs(c, ctx)
    c["_fill"] = (fill, fill_outputs)
    c["view"] = view
    return ctx.register("train", c)


def _field_component(path: str, kind: str, label: str, help_text: str, ctx: UIContext) -> Any:
    value = get_path(ctx.spec.value, path)
    elem_id = FIELD_IDS[path]
    common = dict(label=label, info=help_text, elem_id=elem_id, min_width=180)
    if kind == "method":
        return gr.Dropdown(list(METHODS), value=value, **common)
    if kind == "backend":
        return gr.Dropdown(list(BACKENDS), value=value, **common)
    if kind == "choice":
        return gr.Dropdown(list(CHOICES[path]), value=value, **common)
    if kind == "model":
        return gr.Dropdown(["default"], value=value, allow_custom_value=True, **common)
    if kind == "source":
        return gr.Dropdown(dataset_choices(ctx.paths), value=value, allow_custom_value=True, **common)
    if kind == "bool":
        return gr.Checkbox(value=bool(value), label=label, info=help_text, elem_id=elem_id, min_width=180)
    if kind == "trackers":
        return gr.CheckboxGroup(list(TRACKERS), value=list(value or []), **common)
    if kind in ("int", "optint"):
        return gr.Number(value=value, precision=0, **common)
    if kind == "float":
        return gr.Number(value=value, **common)
    return gr.Textbox(value=value or "", max_lines=2, **common)


__all__ = ["build", "form_to_spec", "spec_to_form", "status_html", "samples_frame", "FIELDS", "FIELD_IDS"]
