"""Compare methods (a section of step 4): train SFT, DFT, GRPO, SFT→GRPO and Prefix-RFT on the same task, model,
step budget and seed, and show the held-out results as a table and charts while they come in.

Only layout and wiring: the button starts `python -m app.compare_methods` in its own process
(`method_compare.start_comparison_process`), which runs one worker after another; the view re-reads the
comparison folder on a timer, so a reloaded page or a restarted app shows the same comparison."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app.engine.core import processes
from app.engine.core.spec import SpecError
from app.engine.evaluation import method_compare as mc
from app.engine.evaluation.stats import parse_seeds
from app.engine.presentation import charts
from app.ui.common import UIContext, error, esc, frame, info, ok, warn

POLL_SECONDS = 3.0
METHOD_CHOICES = [(mc.METHOD_LABELS[k], k) for k in mc.METHOD_KEYS]


def comparison_choices(data_dir: Path) -> list[tuple[str, str]]:
    out = []
    for folder in mc.list_comparisons(data_dir):
        state = mc.read_state(folder)
        methods = ", ".join(e.get("label", e.get("key", "?")) for e in state.get("methods", []))
        out.append((f"{folder.name} · {state.get('state', '?')} · {methods}", str(folder)))
    return out


def config_from_inputs(methods: list[str], task: str, model: str, steps: Any, eval_size: Any, eval_every: Any,
                       seed: Any, avg_k: Any) -> mc.CompareConfig:
    def whole(value: Any, name: str) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise mc.CompareConfigError(f"{name}: not a whole number ({value!r})") from None

    if isinstance(seed, str):  # "42" or "42,7,1234"
        try:
            seeds = parse_seeds(seed)
        except ValueError as exc:
            raise mc.CompareConfigError(str(exc).replace("--seeds", "Seeds")) from None
    else:
        seeds = [whole(seed, "seed")]
    return mc.CompareConfig(methods=list(methods or []), task=task, model=(model or "default").strip(),
                            steps=whole(steps, "steps"), eval_size=whole(eval_size, "held-out rows"),
                            eval_every=whole(eval_every, "evaluate every"), seed=seeds[0],
                            seeds=seeds if len(seeds) > 1 else [], avg_k=whole(avg_k, "avg@k"))


def _settings_section(c: dict[str, Any]) -> None:
    """The left column: methods, task, model, step budget, seeds, and Run comparison / Stop."""
    with gr.Column(scale=4, min_width=360):
        c["methods"] = gr.CheckboxGroup(METHOD_CHOICES, value=list(mc.METHOD_KEYS), label="Methods",
                                        elem_id="methods-methods")
        with gr.Row():
            c["task"] = gr.Dropdown(list(mc.TASKS), value="arithmetic", label="Task", min_width=120,
                                    info="arithmetic: built-in, CPU-sized; gsm8k: needs a GPU",
                                    elem_id="methods-task")
            c["model"] = gr.Dropdown(["default"], value="default", allow_custom_value=True, label="Model",
                                     min_width=120, elem_id="methods-model")
        with gr.Row():
            c["steps"] = gr.Number(30, precision=0, label="Steps per method", min_width=100,
                                   elem_id="methods-steps")
            c["eval_every"] = gr.Number(10, precision=0, label="Evaluate every", min_width=100)
            c["eval_size"] = gr.Number(128, precision=0, label="Held-out rows", min_width=100)
        with gr.Row():
            c["seed"] = gr.Textbox("42", label="Seeds", max_lines=1, min_width=100, elem_id="methods-seeds",
                                   info="one seed, or several: 42,7,1234")
            c["avg_k"] = gr.Number(0, precision=0, label="avg@k samples (0: off)", min_width=100,
                                   info="after training: k sampled replies per held-out prompt")
        with gr.Row():
            c["start_btn"] = gr.Button("Run comparison", variant="primary", elem_id="methods-start")
            c["stop_btn"] = gr.Button("Stop", variant="stop", elem_id="methods-stop")
        c["action_html"] = gr.HTML("", elem_id="methods-action")


def _results_section(c: dict[str, Any]) -> None:
    """The right column: the comparison picked, its status, results table, charts and command line."""
    with gr.Column(scale=8, min_width=520):
        with gr.Row(equal_height=True):
            c["folder"] = gr.Dropdown([], value=None, label="Comparison", scale=5, elem_id="methods-folder")
            c["refresh_btn"] = gr.Button("↻", size="sm", scale=0, min_width=40)
        c["status_html"] = gr.HTML(info("No comparison yet: choose the methods and run one."),
                                   elem_id="methods-status")
        c["table"] = gr.Dataframe(value=frame(["method"], []), interactive=False, wrap=True,
                                  label="Results (final held-out scores after the same step budget)",
                                  elem_id="methods-table")
        c["curves"] = gr.Plot(charts.empty_figure("Held-out score over steps", "No comparison selected.", 520),
                              show_label=False, elem_id="methods-curves")
        c["summary"] = gr.Plot(charts.empty_figure("Final held-out accuracy", "No comparison selected.", 340),
                               show_label=False, elem_id="methods-summary")
        c["command"] = gr.Code("", language="shell", label="The same comparison from the command line",
                               interactive=False, elem_id="methods-command")


def _wire_view(c: dict[str, Any], view: gr.State) -> None:
    """Re-render the picked comparison on the timer (only when its files changed) and when another is picked."""
    outputs = [c["status_html"], c["table"], c["curves"], c["summary"], c["command"], view]

    def render(folder: str | None, state: dict[str, Any], force: bool = False) -> tuple[Any, ...]:
        if not folder:
            return tuple(gr.skip() for _ in outputs)
        if not Path(folder, mc.COMPARISON_FILE).exists():
            return (error(f"Comparison folder {esc(folder)} is gone."), *[gr.skip()] * (len(outputs) - 1))
        version = [folder, list(mc.comparison_version(folder))]
        if not force and (state or {}).get("version") == version:
            return tuple(gr.skip() for _ in outputs)
        result = mc.read_comparison(folder)
        line = esc(mc.status_line(result))
        status = (info(line) if result.state in mc.ACTIVE else ok(line) if result.state == "finished" and
                  all(m.state == "finished" for m in result.methods) else warn(line))
        headers, rows = mc.results_table(result, drop_empty_note=True)
        return (status, frame(headers, rows), mc.curves_figure(result), mc.summary_figure(result),
                mc.cli_command(result.config, folder), {"folder": folder, "version": version})

    c["timer"].tick(render, [c["folder"], view], outputs, show_progress="hidden")
    c["folder"].change(lambda f, s: render(f, s, force=True), [c["folder"], view], outputs, show_progress="hidden")


def _wire_start_stop(c: dict[str, Any], ctx: UIContext) -> None:
    """Run comparison (checks every method's spec first, one comparison at a time) and Stop."""
    inputs = [c["methods"], c["task"], c["model"], c["steps"], c["eval_size"], c["eval_every"], c["seed"], c["avg_k"]]

    def start(*values: Any) -> tuple[Any, ...]:
        try:
            config = config_from_inputs(*values)
            mc.build_plan(config)  # every method's spec checked before anything starts
            warning = processes.launch_check(ctx.paths.runs_dir)
        except (mc.CompareConfigError, SpecError, processes.LaunchRefused) as exc:
            gr.Warning(f"Not started: {exc}")
            return gr.skip(), error(f"Not started: {esc(exc)}")
        running = [f for f in mc.list_comparisons(ctx.paths.data_dir) if mc.read_state(f).get("state") in mc.ACTIVE]
        if running:
            message = f"Comparison {running[0].name} is still running: stop it first (one at a time)."
            gr.Warning(message)
            return gr.skip(), error(esc(message))
        folder = mc.default_folder(config, ctx.paths.data_dir)
        mc.start_comparison_process(config, folder, ctx.paths.runs_dir)
        message = ok(f"Started <b>{esc(folder.name)}</b>: the methods train one after another; the table and the "
                     "charts fill in below. Each method's run also appears in 3 · Train.")
        if warning:
            message += warn(esc(warning))
        return gr.Dropdown(choices=comparison_choices(ctx.paths.data_dir), value=str(folder)), message

    c["start_btn"].click(start, inputs, [c["folder"], c["action_html"]], concurrency_limit=1,
                         concurrency_id="launch")

    def stop(folder: str | None) -> str:
        if not folder:
            return warn("No comparison selected.")
        if mc.read_state(folder).get("state") not in mc.ACTIVE:
            return info("This comparison is not running.")
        mc.request_cancel(folder)
        return info("Stop requested: the current method stops after its current step; the others are skipped.")

    c["stop_btn"].click(stop, c["folder"], c["action_html"])


def _wire_refresh(c: dict[str, Any], ctx: UIContext) -> None:
    """The ↻ button, and `c["_load"]` that the shell runs on page load (picks the newest comparison)."""
    def refresh(current: str | None) -> Any:
        choices = comparison_choices(ctx.paths.data_dir)
        values = [v for _, v in choices]
        return gr.Dropdown(choices=choices, value=current if current in values else (values[0] if values else None))

    c["refresh_btn"].click(refresh, c["folder"], c["folder"])

    def load() -> Any:
        return refresh(None)

    c["_load"] = (load, [c["folder"]])


def build(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Compare-methods section and wire its events."""
    c: dict[str, Any] = {}
    gr.Markdown(
        "### Compare training methods\nSFT, DFT, GRPO, SFT→GRPO (a short format-priming SFT whose adapter starts "
        "GRPO) and Prefix-RFT on the **same task, model, step budget and seeds**, each evaluated greedily on the "
        "**same held-out rows** every few steps. Give several seeds (`42,7,1234`): each method runs once per seed and "
        "the table shows the mean with a 95 % interval; one seed is labelled *single seed*. The runs train one after "
        "another in the background; on a 2-core CPU one seed of all five methods at 20 steps took about 36 minutes. "
        "Measured results: `docs/method-comparison.md`.",
        elem_classes=["wb-intro"])
    with gr.Row(equal_height=False):
        _settings_section(c)
        _results_section(c)
    c["timer"] = gr.Timer(POLL_SECONDS)
    view = gr.State({"folder": None, "version": None})
    # wired in the original order, so the events keep their numbers (fn_index)
    _wire_view(c, view)
    _wire_start_stop(c, ctx)
    _wire_refresh(c, ctx)
    c["view"] = view
    return ctx.register("methods", c)


__all__ = ["build", "comparison_choices", "config_from_inputs"]
