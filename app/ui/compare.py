"""Step 4 · Compare: generate with two or more models (base, any run's final adapter or checkpoint) on the same
prompts, see the outputs side by side with each reward's score and a summary row, mark the better output (saved
as preference pairs for DPO), and export a run as its LoRA adapter or a merged Hugging Face model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app.engine.advice import presets
from app.engine.core import runs
from app.engine.evaluation import compare as cmp
from app.engine.evaluation import endpoint, serve
from app.engine.evaluation import export as exp
from app.engine.methods import kto
from app.ui.common import (
    UIContext,
    error,
    esc,
    frame,
    info,
    nonce,
    ok,
    progress_fn,
    warn,
)

HELD_OUT, TYPED = "Held-out rows of a run", "Prompts I type"
TRAIN_ROWS, FILE = "Training rows of a run (seen in training)", "Prompts from a file"
EXPORT_KINDS = [("LoRA adapter (small; load on top of the base model)", "adapter"),
                ("Merged model (standalone Hugging Face folder)", "merged"),
                ("GGUF file (llama.cpp, Ollama, LM Studio)", "gguf")]
HOW_TO_LOAD = {"adapter": "<code>PeftModel.from_pretrained(base_model, folder)</code>",
               "merged": "<code>AutoModelForCausalLM.from_pretrained(folder)</code>",
               "gguf": "<code>llama-cli -m FILE.gguf</code>, or <code>ollama create my-model -f Modelfile</code> "
                       "in the folder"}
MIN_DPO_PAIRS = 32  # below this, the pre-filled DPO run gets a warning
DEFAULT_PROMPTS = ("What is 17 + 25? Reply with only the number. => 42\n"
                   "What is 8 + 34? Reply with only the number. => 42\n"
                   "What is 23 + 19? Reply with only the number. => 42")


def model_choices(runs_dir: Path, endpoints_file: Path | None = None) -> list[tuple[str, str]]:
    refs = cmp.available_models(runs_dir)
    if endpoints_file is not None:
        refs += [cmp.endpoint_ref(url, model) for url, model in endpoint.saved_endpoints(endpoints_file)]
    return [(r.label, r.key) for r in refs]


def run_choices(runs_dir: Path, with_adapter: bool = False) -> list[tuple[str, str]]:
    out = []
    for r in runs.list_runs(runs_dir):
        if with_adapter and not ((r.path / "adapter").exists() or runs.latest_checkpoint(r.path)):
            continue
        out.append((f"{r.name} · {r.method} · {r.state} · {r.path.name}", r.path.name))
    return out


def side_by_side_html(result: cmp.CompareResult, index: int) -> str:
    """One prompt's outputs as cards in a row, each with its scores."""
    if not result.prompts:
        return ""
    index = max(0, min(index, len(result.prompts) - 1))
    ref = result.references[index]
    head = (f"<div class='wb-sbs-prompt'><b>Prompt {index + 1}.</b> {esc(result.prompts[index])}"
            + (f" <span class='wb-muted'>(reference: {esc(ref)})</span>" if ref else "") + "</div>")
    cards = []
    for label in result.models:
        out = result.outputs[label][index]
        scores = ", ".join(f"{esc(k)} <b>{'–' if v is None else f'{v:g}'}</b>" for k, v in out["scores"].items())
        total = out.get("total")
        cards.append(
            f"<div class='wb-card'><div class='wb-card-title'>{esc(label)}</div>"
            f"<pre class='wb-output'>{esc(out['completion']) or '<i>(empty)</i>'}</pre>"
            f"<div class='wb-muted'>{scores or 'no rewards'}"
            + (f" · total <b>{total:g}</b>" if total is not None and len(out['scores']) > 1 else "")
            + f" · {out.get('tokens', 0)} tokens</div></div>")
    return head + f"<div class='wb-cards'>{''.join(cards)}</div>"


def pair_html(state: dict[str, Any]) -> str:
    """The prompt being judged and its two replies, A and B."""
    sample = state["sample"]
    users = [m["content"] for m in sample["prompt"] if m.get("role") == "user"]
    head = (f"<div class='wb-sbs-prompt'><b>Prompt {state['index'] + 1} of {len(state['prompts'])}.</b> "
            f"{esc(users[-1] if users else '')}</div>")
    cards = "".join(f"<div class='wb-card'><div class='wb-card-title'>{name}</div>"
                    f"<pre class='wb-output'>{esc(text) or '<i>(empty)</i>'}</pre></div>"
                    for name, text in (("A", sample["a"]), ("B", sample["b"])))
    same = warn("The two samples are identical even after retries: Skip, or raise the temperature.") if sample.get(
        "identical") else ""
    return head + f"<div class='wb-cards'>{cards}</div>" + same


def _prompt_rows(ctx: UIContext, mode: str, run: str | None, n: int, prompts: str, file: str | None
                 ) -> tuple[list[dict[str, Any]], str | None]:
    """The prompt rows the Prompts setting names, and the run's system prompt where they come from a run."""
    if mode in (HELD_OUT, TRAIN_ROWS):
        if not run:
            raise cmp.CompareError("Pick the run whose rows to use (Prompts, above).")
        rows_of = cmp.held_out_rows if mode == HELD_OUT else cmp.training_rows
        return rows_of(ctx.paths.runs_dir / run, int(n))
    if mode == FILE:
        if not file:
            raise cmp.CompareError("Upload a file of prompts (Prompts, above).")
        return cmp.file_rows(file, int(n)), None
    return cmp.prompt_rows_from_text(prompts), None


def _prompts_for(ctx: UIContext, mode: str, run: str | None, n: int, prompts: str, file: str | None
                 ) -> tuple[list[Any], str | None]:
    """The same rows as chat messages, for sampling A and B; an error where there are none."""
    from app.engine.data.sources import prompt_messages

    rows, system = _prompt_rows(ctx, mode, run, n, prompts, file)
    if not rows:
        raise cmp.CompareError("Give at least one prompt (Prompts, above).")
    return [prompt_messages(r, system) for r in rows], system


def _pairs_count_html(ctx: UIContext) -> str:
    """How many preference pairs the pairs file holds, as a note."""
    from app.engine.data.preferences import count_pairs

    n = count_pairs(ctx.paths.preferences_file)
    return info(f"<b>{n}</b> preference pair(s) collected in <code>{esc(ctx.paths.preferences_file)}</code>.")


def _pick_section(c: dict[str, Any]) -> tuple[gr.Group, gr.Group, gr.Group]:
    """The left column (models, prompts, rewards, Generate); returns the prompt groups the Prompts radio toggles."""
    import rewards

    with gr.Column(scale=4, min_width=360):
        c["models"] = gr.CheckboxGroup(choices=[], value=[], label="Models (two or more)",
                                       info="The base model, each run's final adapter, and its checkpoints.",
                                       elem_id="compare-models")
        c["refresh_btn"] = gr.Button("↻ Refresh models and runs", size="sm")
        with gr.Accordion("Add a served model (OpenAI-compatible endpoint)", open=False, elem_id="compare-ep"):
            with gr.Row(equal_height=True):
                c["ep_url"] = gr.Textbox("", label="Base URL", placeholder="http://127.0.0.1:8000/v1", scale=3,
                                         max_lines=1, elem_id="compare-ep-url")
                c["ep_model"] = gr.Textbox("", label="Model name", scale=3, max_lines=1, elem_id="compare-ep-model",
                                           info="python -m app.serve prints both")
                c["ep_add"] = gr.Button("Add", size="sm", scale=1, min_width=60, elem_id="compare-ep-add")
            c["ep_status"] = gr.HTML("", elem_id="compare-ep-status")
        c["mode"] = gr.Radio([HELD_OUT, TYPED, FILE, TRAIN_ROWS], value=TYPED, label="Prompts",
                             elem_id="compare-mode")
        with gr.Group(visible=False) as held_group:
            c["run"] = gr.Dropdown([], value=None, label="Run whose rows to use (held-out: never trained on)",
                                   elem_id="compare-run")
            c["n"] = gr.Slider(1, 64, value=8, step=1, label="Rows")
        with gr.Group(visible=False) as file_group:
            c["file"] = gr.File(label="A .jsonl/.json/.csv file with a 'prompt' column ('answer' to score it)",
                                file_types=[".jsonl", ".json", ".csv"], type="filepath", elem_id="compare-file")
        with gr.Group(visible=True) as typed_group:
            c["prompts"] = gr.Textbox(DEFAULT_PROMPTS, lines=5, max_lines=20, elem_id="compare-prompts",
                                      label="Prompts, one per line; end a line with ' => answer' to score it")
        c["rewards"] = gr.Dropdown([r.name for r in rewards.available()], value=["numeric_answer"],
                                   multiselect=True, label="Score with", elem_id="compare-rewards",
                                   info="Picking a run copies its built-in rewards here.")
        c["tokens"] = gr.Slider(8, 256, value=32, step=8, label="Max new tokens")
        c["go_btn"] = gr.Button("Generate and compare", variant="primary", elem_id="compare-go")
        c["status"] = gr.HTML("", elem_id="compare-status")
    return held_group, file_group, typed_group


def _outputs_section(c: dict[str, Any]) -> None:
    """The right column: summary and side-by-side tables, then the controls that mark the better output."""
    with gr.Column(scale=8, min_width=520):
        c["summary"] = gr.Dataframe(value=frame(["model", "mean reward", "accuracy"], []), interactive=False,
                                    label="Summary per model", elem_id="compare-summary")
        c["table"] = gr.Dataframe(value=frame(["#", "prompt"], []), interactive=False, wrap=True, max_height=460,
                                  label="Outputs side by side (reward A, B… follow the models' order; last row: summary) — click a row "
                                        "to mark it",
                                  elem_id="compare-table")
        _pair_controls(c)
        _thumbs_controls(c)


def _pair_controls(c: dict[str, Any]) -> None:
    """Prompt #, better and worse model, the prompt's outputs as cards, and Save preference pair."""
    gr.Markdown("#### Which output is better?", elem_classes=["wb-h"])
    with gr.Row(equal_height=True):
        c["index"] = gr.Number(1, label="Prompt #", precision=0, minimum=1, scale=1, elem_id="compare-index")
        c["better"] = gr.Radio([], label="Better", scale=3, elem_id="compare-better")
        c["worse"] = gr.Radio([], label="Worse", scale=3, elem_id="compare-worse")
    c["sbs"] = gr.HTML("", elem_id="compare-sbs")
    with gr.Row():
        c["save_pair_btn"] = gr.Button("Save preference pair", variant="primary", interactive=False,
                                       elem_id="compare-save-pair")
        c["next_btn"] = gr.Button("Next prompt →", size="sm")
        c["download"] = gr.DownloadButton("Download pairs.jsonl", value=None, size="sm", visible=False,
                                          elem_id="compare-download")
    c["pair_status"] = gr.HTML("", elem_id="compare-pair-status")


def _thumbs_controls(c: dict[str, Any]) -> None:
    """👍 / 👎 on one model's output for the prompt shown: single marks for KTO (easier to give than pairs)."""
    with gr.Row(equal_height=True):
        c["thumb_model"] = gr.Radio([], label="Or mark one output (KTO)", scale=4, elem_id="compare-thumb-model")
        c["thumb_up"] = gr.Button("👍 good", size="sm", scale=1, elem_id="compare-thumb-up")
        c["thumb_down"] = gr.Button("👎 bad", size="sm", scale=1, elem_id="compare-thumb-down")
    c["thumb_status"] = gr.HTML("", elem_id="compare-thumb-status")


def _collect_section(c: dict[str, Any], ctx: UIContext) -> None:
    """The accordion that collects preference pairs: two sampled replies from one model, the user picks."""
    with gr.Accordion("Collect preference pairs: two sampled replies from one model, you pick the better",
                      open=False, elem_id="compare-collect"):
        gr.Markdown("For **DPO / RLHF** without labels: each prompt (from the *Prompts* setting above) gets two "
                    "sampled replies, A and B. Your choice is saved at once as a pair in "
                    f"`{ctx.paths.preferences_file}`; ties and skips are kept aside, never trained on.",
                    elem_classes=["wb-small"])
        with gr.Row(equal_height=True):
            c["col_model"] = gr.Dropdown([], value=None, label="Model that writes A and B", scale=3,
                                         elem_id="compare-col-model")
            c["col_temp"] = gr.Slider(0.3, 1.5, value=1.0, step=0.1, label="Temperature", scale=2)
            c["col_start"] = gr.Button("Sample A and B", variant="primary", scale=1, elem_id="compare-col-start")
        c["col_html"] = gr.HTML("", elem_id="compare-col-pair")
        with gr.Row():
            c["col_a"] = gr.Button("A is better [A]", interactive=False, elem_id="compare-col-a")
            c["col_b"] = gr.Button("B is better [B]", interactive=False, elem_id="compare-col-b")
            c["col_tie"] = gr.Button("Tie", interactive=False, size="sm", elem_id="compare-col-tie")
            c["col_skip"] = gr.Button("Skip", interactive=False, size="sm", elem_id="compare-col-skip")
        gr.Markdown("Keys: <kbd>A</kbd> or <kbd>1</kbd> · <kbd>B</kbd> or <kbd>2</kbd> · <kbd>T</kbd> tie · "
                    "<kbd>S</kbd> skip (while the focus is not in a text field).", elem_classes=["wb-muted"])
        c["col_status"] = gr.HTML("", elem_id="compare-col-status")
        with gr.Row(equal_height=True):
            c["col_count"] = gr.HTML("", elem_id="compare-col-count")
            c["col_train"] = gr.Button("Train DPO on these pairs →", size="sm", scale=0, min_width=220,
                                       elem_id="compare-col-train")


def _export_section(c: dict[str, Any]) -> None:
    """The accordion that exports a run as its LoRA adapter, a merged model or a GGUF file, and checks it."""
    with gr.Accordion("Export a run", open=False, elem_id="compare-export"):
        with gr.Row(equal_height=False):
            c["exp_run"] = gr.Dropdown([], value=None, label="Run", elem_id="compare-exp-run", scale=3)
            c["exp_kind"] = gr.Radio(EXPORT_KINDS, value="adapter", label="Export as", scale=3,
                                     elem_id="compare-exp-kind")
            c["exp_gguf"] = gr.Dropdown(list(exp.GGUF_TYPES), value="q8_0", label="GGUF type", scale=1,
                                        visible=False, elem_id="compare-exp-gguf",
                                        info="q8_0: about half the size of f16, replies nearly the same. "
                                             "K-quants (q4_k_m …) need llama.cpp's llama-quantize.")
        with gr.Row(equal_height=True):
            c["exp_out"] = gr.Textbox("", label="Output folder (inside the workbench's exports folder)", scale=4,
                                      max_lines=1, elem_id="compare-exp-out")
            c["exp_check"] = gr.Checkbox(True, label="Load it back and compare its replies", scale=1,
                                         elem_id="compare-exp-check")
        c["exp_cmd"] = gr.Code("", language="shell", label="Same export from a terminal", interactive=False,
                               lines=1, elem_id="compare-exp-cmd")
        with gr.Row(equal_height=True):
            c["exp_btn"] = gr.Button("Export", variant="primary", elem_id="compare-exp-btn")
            c["srv_port"] = gr.Number(8000, precision=0, label="Port", scale=0, min_width=100,
                                      elem_id="compare-srv-port")
            c["srv_btn"] = gr.Button("Serve over the OpenAI API (127.0.0.1)", elem_id="compare-srv-btn")
        c["exp_status"] = gr.HTML("", elem_id="compare-exp-status")


def _wire_generation(c: dict[str, Any], ctx: UIContext, result_state: gr.State,
                     groups: tuple[gr.Group, gr.Group, gr.Group]) -> None:
    """The Prompts radio, a picked run's rewards, and Generate and compare."""
    held_group, file_group, typed_group = groups
    c["mode"].change(lambda m: (gr.Group(visible=m in (HELD_OUT, TRAIN_ROWS)), gr.Group(visible=m == TYPED),
                                gr.Group(visible=m == FILE)), c["mode"],
                     [held_group, typed_group, file_group], show_progress="hidden")

    def on_run(run: str | None) -> Any:
        if not run:
            return gr.skip()
        from app.engine.core.spec import RunSpec, SpecError

        try:
            spec = RunSpec.load(ctx.paths.runs_dir / run / "spec.yaml")
        except SpecError:
            return gr.skip()
        names = [r.name for r in spec.rewards if r.name]
        return names or gr.skip()

    c["run"].input(on_run, c["run"], c["rewards"])

    def go(keys: list[str], mode: str, run: str | None, n: int, prompts: str, file: str | None,
           reward_names: list[str], tokens: int, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        blank = (gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
        try:
            if not keys:
                raise cmp.CompareError("Pick two or more models to compare.")
            refs = [cmp.parse_model_key(k) for k in keys]
            rows, system = _prompt_rows(ctx, mode, run, n, prompts, file)
            specs = [{"name": name} for name in reward_names or []]
            result = cmp.compare_models(refs, rows, specs, system_prompt=system, max_new_tokens=int(tokens),
                                        progress=progress_fn(progress))
        except cmp.CompareError as exc:
            gr.Warning(str(exc))
            return (error(esc(exc)), *blank)
        except Exception as exc:  # a model that fails to generate: the page keeps working
            gr.Warning(f"Comparison failed: {exc}")
            return (error(f"Comparison failed: {esc(exc)}"), *blank)
        headers, table = result.table()
        s_headers, s_rows = result.summary_table()
        note = "" if len(refs) > 1 else warn("Only one model picked: pick another to compare side by side.")
        if mode == TRAIN_ROWS:
            note += warn(f"These prompts are rows run {esc(run)} <b>trained on</b> (seen in training): its scores "
                         "here measure how well it fits them, not how it does on new questions.")
        labels = result.models
        return (ok(f"{len(result.prompts)} prompts × {len(labels)} models in "
                   f"{sum(s['seconds'] for s in result.summary):.0f} s.") + note,
                frame(s_headers, s_rows), gr.Dataframe(value=frame(headers, table),
                                                       column_widths=result.column_widths()), result.to_dict(),
                gr.Radio(choices=labels, value=labels[0] if labels else None),
                gr.Radio(choices=labels, value=labels[1] if len(labels) > 1 else None), 1)

    c["go_btn"].click(go, [c[k] for k in ("models", "mode", "run", "n", "prompts", "file", "rewards", "tokens")],
                      [c["status"], c["summary"], c["table"], result_state, c["better"], c["worse"], c["index"]],
                      concurrency_limit=1, concurrency_id="inference")


def _wire_pairs(c: dict[str, Any], ctx: UIContext, result_state: gr.State) -> None:
    """The prompt shown as cards, row clicks, Next prompt and Save preference pair."""
    def show(result: dict[str, Any] | None, index: float | None, better: str | None, worse: str | None) -> tuple:
        if not result:
            return "", gr.Button(interactive=False)
        res = cmp.CompareResult.from_dict(result)
        i = int(index or 1) - 1
        can = bool(better and worse and better != worse and 0 <= i < len(res.prompts))
        return side_by_side_html(res, i), gr.Button(interactive=can)

    for trigger in (result_state.change, c["index"].change, c["better"].change, c["worse"].change):
        trigger(show, [result_state, c["index"], c["better"], c["worse"]], [c["sbs"], c["save_pair_btn"]],
                show_progress="hidden")

    def pick_row(evt: gr.SelectData, result: dict[str, Any] | None) -> Any:
        if not result:
            return gr.skip()
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        n = len(result.get("prompts") or [])
        return int(row) + 1 if 0 <= int(row) < n else gr.skip()

    c["table"].select(pick_row, result_state, c["index"])

    def next_prompt(result: dict[str, Any] | None, index: float | None) -> Any:
        n = len((result or {}).get("prompts") or [])
        return (int(index or 1) % n) + 1 if n else gr.skip()

    c["next_btn"].click(next_prompt, [result_state, c["index"]], c["index"])

    def save_pair(result: dict[str, Any] | None, index: float | None, better: str | None,
                  worse: str | None) -> tuple[Any, ...]:
        if not result:
            return warn("Generate outputs first."), gr.skip(), gr.skip()
        res = cmp.CompareResult.from_dict(result)
        i = int(index or 1) - 1
        try:
            if not (0 <= i < len(res.prompts)):
                raise cmp.CompareError(f"Prompt # must be between 1 and {len(res.prompts)}.")
            if not better or not worse or better == worse:
                raise cmp.CompareError("Pick two different models: the better and the worse output.")
            count = cmp.save_preference(
                ctx.paths.preferences_file, res.messages[i], res.outputs[better][i]["completion"],
                res.outputs[worse][i]["completion"], meta={"chosen_model": better, "rejected_model": worse})
        except cmp.CompareError as exc:
            return warn(esc(exc)), gr.skip(), gr.skip()
        nxt = (i + 1) % len(res.prompts) + 1
        return (ok(f"Saved: prompt {i + 1}, <b>{esc(better)}</b> preferred over <b>{esc(worse)}</b>. "
                   f"{count} pair(s) in <code>{esc(ctx.paths.preferences_file)}</code> — usable as "
                   "<code>data.source</code> of a DPO run."),
                gr.DownloadButton(value=str(ctx.paths.preferences_file), visible=True), nxt)

    c["save_pair_btn"].click(save_pair, [result_state, c["index"], c["better"], c["worse"]],
                             [c["pair_status"], c["download"], c["index"]])


def _wire_thumbs(c: dict[str, Any], ctx: UIContext, result_state: gr.State) -> None:
    """The KTO marks: the radio follows the generated models, 👍 / 👎 append a mark to the thumbs file."""
    def choices(result: dict[str, Any] | None) -> Any:
        labels = (result or {}).get("models") or []
        return gr.Radio(choices=labels, value=labels[-1] if labels else None)

    result_state.change(choices, result_state, c["thumb_model"], show_progress="hidden")

    def mark(good: bool) -> Any:
        def handler(result: dict[str, Any] | None, index: float | None, model: str | None) -> str:
            if not result or not model:
                return warn("Generate outputs first, then pick the output to mark.")
            res = cmp.CompareResult.from_dict(result)
            i = int(index or 1) - 1
            if not (0 <= i < len(res.prompts)) or model not in res.outputs:
                return warn(f"Prompt # must be between 1 and {len(res.prompts)}, and the model one of the columns.")
            try:
                up, down = kto.append_thumb(ctx.paths.thumbs_file, res.messages[i], res.outputs[model][i]["completion"],
                                            good, meta={"model": model})
            except ValueError as exc:
                return warn(esc(exc))
            return ok(f"Marked prompt {i + 1} of <b>{esc(model)}</b> {'👍' if good else '👎'}. {up} 👍 and {down} 👎 in "
                      f"<code>{esc(ctx.paths.thumbs_file)}</code>: <code>data.source</code> of a KTO run.")
        return handler

    for button, good in ((c["thumb_up"], True), (c["thumb_down"], False)):
        button.click(mark(good), [result_state, c["index"], c["thumb_model"]], c["thumb_status"])


def _wire_collect(c: dict[str, Any], ctx: UIContext, collect_state: gr.State) -> None:
    """Sample A and B from one model, and the A / B / Tie / Skip buttons that record the choice and sample the next."""
    col_buttons = [c["col_a"], c["col_b"], c["col_tie"], c["col_skip"]]

    def sample_next(state: dict[str, Any], progress: gr.Progress | None = None) -> tuple[Any, ...]:
        from app.engine.data.preferences import next_unjudged
        from app.engine.evaluation.compare import sample_pair

        state["index"] = next_unjudged(state["prompts"], state["index"], ctx.paths.preferences_file)
        if state["index"] >= len(state["prompts"]):
            state["sample"] = None
            return (ok("Every prompt here has been judged. Add prompts above, or train: 3 · Train with method "
                       f"dpo and <code>data.source: {esc(ctx.paths.preferences_file)}</code>."), state,
                    *[gr.Button(interactive=False)] * 4)
        ref = cmp.parse_model_key(state["model"])
        model, tok = cmp.load_model(ref, progress=progress_fn(progress))
        sample = sample_pair(model, tok, state["prompts"][state["index"]], max_new_tokens=int(state["tokens"]),
                             temperature=float(state["temp"]))
        state["sample"] = {"prompt": sample.prompt, "a": sample.a, "b": sample.b, "sources": list(sample.sources),
                           "identical": sample.identical}
        return pair_html(state), state, *[gr.Button(interactive=True)] * 4

    def start_collect(key: str | None, mode: str, run: str | None, n: int, prompts: str, file: str | None,
                      temp: float, tokens: int, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        try:
            if not key:
                raise cmp.CompareError("Pick the model that writes A and B.")
            msgs, _ = _prompts_for(ctx, mode, run, n, prompts, file)
            state = {"prompts": msgs, "index": 0, "model": key, "temp": temp, "tokens": tokens, "sample": None}
            return (*sample_next(state, progress), "")
        except Exception as exc:  # noqa: BLE001 - bad input or a model that fails: a message, nothing breaks
            gr.Warning(str(exc))
            return (gr.skip(), gr.skip(), *[gr.skip()] * 4, error(esc(exc)))

    col_outputs = [c["col_html"], collect_state, *col_buttons, c["col_status"]]
    col_inputs = [c["col_model"], c["mode"], c["run"], c["n"], c["prompts"], c["file"], c["col_temp"], c["tokens"]]
    c["col_start"].click(start_collect, col_inputs, col_outputs, concurrency_limit=1, concurrency_id="inference")

    def judge(choice: str) -> Any:
        def handler(state: dict[str, Any] | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
            from app.engine.data.preferences import PairError, PairSample, record_choice

            if not state or not state.get("sample"):
                return (gr.skip(), gr.skip(), *[gr.skip()] * 4, warn("Sample A and B first."))
            sample = state["sample"]
            try:
                count = record_choice(ctx.paths.preferences_file, PairSample(
                    prompt=sample["prompt"], a=sample["a"], b=sample["b"], sources=tuple(sample["sources"])), choice,
                    meta={"model": state["model"]})
            except PairError as exc:
                return (gr.skip(), gr.skip(), *[gr.skip()] * 4, warn(esc(exc)))
            judged = state["index"] + 1  # before sample_next moves on (it also skips prompts judged earlier)
            state["index"] += 1
            said = {"a": "A preferred", "b": "B preferred", "tie": "tie (kept aside)", "skip": "skipped"}[choice]
            try:
                out = sample_next(state, progress)
            except Exception as exc:  # noqa: BLE001
                return (gr.skip(), state, *[gr.skip()] * 4, error(esc(exc)))
            return (*out, ok(f"Prompt {judged}: {said}. {count} pair(s) in the file."))
        return handler

    for button, choice in zip(col_buttons, ("a", "b", "tie", "skip")):
        button.click(judge(choice), collect_state, col_outputs, concurrency_limit=1, concurrency_id="inference")


def _wire_collect_train(c: dict[str, Any], ctx: UIContext) -> None:
    """The pairs count under the collector, and Train DPO on these pairs (pre-fills the run in 3 · Train)."""
    def pairs_count_html() -> str:
        return _pairs_count_html(ctx)

    c["col_status"].change(pairs_count_html, None, c["col_count"], show_progress="hidden")

    def train_on_pairs(spec: dict[str, Any]) -> tuple[Any, ...]:
        from app.engine.data.preferences import count_pairs

        n = count_pairs(ctx.paths.preferences_file)
        if n == 0:
            return gr.skip(), gr.skip(), gr.skip(), warn("No pairs yet: judge a few A/B samples first.")
        try:
            new_spec = presets.preference_spec(spec, ctx.paths.preferences_file)
        except Exception as exc:  # a SpecError from the working spec
            return gr.skip(), gr.skip(), gr.skip(), error(f"Could not pre-fill the DPO run: {esc(exc)}")
        gr.Info(f"DPO run pre-filled on {n} pair(s): check it and launch in 3 · Train.")
        note = ok(f"DPO run pre-filled on {n} pair(s); launch it in 3 · Train.")
        if n < MIN_DPO_PAIRS:
            note += warn(f"Only {n} pair(s): DPO learns little from fewer than about {MIN_DPO_PAIRS}; "
                         "the held-out preference accuracy needs some too.")
        return new_spec.to_dict(), nonce(), gr.Tabs(selected="train"), note

    c["col_train"].click(train_on_pairs, ctx.spec, [ctx.spec, ctx.spec_push, ctx.tabs, c["col_status"]])


def _export_report(result: exp.ExportResult) -> str:
    """What was written (files and sizes), whether it loads back and answers like the in-app model, how to use it."""
    files = "".join(f"<li><code>{esc(name)}</code> {esc(exp.format_size(size))}</li>"
                    for name, size in result.files.items())
    lines = [ok(f"Exported to <code>{esc(result.out_dir)}</code> "
                f"({esc(exp.format_size(sum(result.files.values())))}):<ul>{files}</ul>"
                f"Use it with {HOW_TO_LOAD[result.kind]}.")]
    if result.check is not None:
        check = result.check
        lines.append((ok if check.ok else warn)(esc(check.sentence()) + f" ({check.seconds:.0f} s)"))
    lines += [warn(esc(note)) for note in result.notes]
    return "".join(lines)


def _wire_export(c: dict[str, Any], ctx: UIContext) -> None:
    """The export form: a default output folder and the terminal command follow the run and kind; Export."""
    form = [c["exp_run"], c["exp_kind"], c["exp_gguf"]]

    def command(run: str | None, kind: str, gguf_type: str, out: str) -> str:
        return exp.export_command(ctx.paths.runs_dir / run, out, kind, gguf_type) if run and out else ""

    def default_out(run: str | None, kind: str, gguf_type: str) -> tuple[Any, ...]:
        out = str(exp.default_out(ctx.paths.exports_dir, run, kind, gguf_type)) if run else ""
        return out, command(run, kind, gguf_type, out), gr.Dropdown(visible=kind == "gguf")

    for event in (c["exp_run"].change, c["exp_kind"].change, c["exp_gguf"].change):
        event(default_out, form, [c["exp_out"], c["exp_cmd"], c["exp_gguf"]])
    c["exp_out"].input(command, [*form, c["exp_out"]], c["exp_cmd"])

    def export(run: str | None, kind: str, gguf_type: str, out: str, check: bool,
               progress: gr.Progress = gr.Progress()) -> str:
        if not run or not out:
            return warn("Pick a run and an output folder.")
        out_path = Path(out).expanduser()
        if not out_path.is_absolute():
            out_path = ctx.paths.exports_dir / out_path
        try:
            exp.check_inside(out_path, ctx.paths.exports_dir)  # the app writes only where it serves files
            result = exp.export_run(ctx.paths.runs_dir / run, out_path, kind, gguf_type, check=check,
                                    progress=progress_fn(progress))
        except cmp.CompareError as exc:
            return error(esc(exc))
        except OSError as exc:  # a full disk, no permission: the export wrote into a temporary folder only
            return error(f"Could not export to <code>{esc(out_path)}</code>: {esc(exc.strerror or exc)}; "
                         "nothing was changed.")
        except Exception as exc:
            return error(f"Export failed: {esc(exc)}")
        return _export_report(result)

    c["exp_btn"].click(export, [*form, c["exp_out"], c["exp_check"]], c["exp_status"],
                       concurrency_limit=1, concurrency_id="inference")

    def serve_run(run: str | None, port: Any, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        if not run:
            return warn("Pick a run to serve."), gr.skip()
        try:
            served = serve.serve_for_app(ctx.paths.runs_dir / run, ctx.paths.exports_dir, int(port or 8000),
                                         progress=progress_fn(progress))
        except cmp.CompareError as exc:
            return error(esc(exc)), gr.skip()
        except Exception as exc:
            return error(f"Could not serve {esc(run)}: {esc(exc)}"), gr.skip()
        endpoint.save_endpoint(ctx.paths.endpoints_file, served.base_url, served.model)
        choices = model_choices(ctx.paths.runs_dir, ctx.paths.endpoints_file)
        return (ok(f"Serving <b>{esc(run)}</b> with {esc(served.engine)} at <code>{esc(served.base_url)}</code>, "
                   f"model <code>{esc(served.model)}</code> (until the app stops; from a terminal: "
                   f"<code>python -m app.serve {esc(ctx.paths.runs_dir / run)} --port {int(port or 8000)}</code>). "
                   "It is also a model column above now."), gr.CheckboxGroup(choices=choices))

    c["srv_btn"].click(serve_run, [c["exp_run"], c["srv_port"]], [c["exp_status"], c["models"]],
                       concurrency_limit=1, concurrency_id="inference")


def _wire_refresh(c: dict[str, Any], ctx: UIContext) -> None:
    """Refresh models and runs: the button, and `c["_load"]` that the shell runs on page load and tab select."""
    def refresh() -> tuple[Any, ...]:
        choices = model_choices(ctx.paths.runs_dir, ctx.paths.endpoints_file)
        runs_all = run_choices(ctx.paths.runs_dir)
        runs_adapter = run_choices(ctx.paths.runs_dir, with_adapter=True)
        pairs = ctx.paths.preferences_file
        return (gr.CheckboxGroup(choices=choices), gr.Dropdown(choices=runs_all),
                gr.Dropdown(choices=runs_adapter),
                gr.DownloadButton(value=str(pairs) if pairs.exists() else None, visible=pairs.exists()),
                gr.Dropdown(choices=choices, value=choices[0][1] if choices else None), _pairs_count_html(ctx))

    refresh_outputs = [c["models"], c["run"], c["exp_run"], c["download"], c["col_model"], c["col_count"]]
    c["refresh_btn"].click(refresh, None, refresh_outputs)

    def add_endpoint(url: str, model: str, picked: list[str]) -> tuple[Any, ...]:
        try:
            ref = cmp.endpoint_ref(url, model)
        except cmp.CompareError as exc:
            return gr.skip(), warn(esc(exc))
        endpoint.save_endpoint(ctx.paths.endpoints_file, ref.endpoint or "", ref.base)
        choices = model_choices(ctx.paths.runs_dir, ctx.paths.endpoints_file)
        return (gr.CheckboxGroup(choices=choices, value=[*(picked or []), ref.key]),
                ok(f"Added <b>{esc(ref.label)}</b>: it generates over HTTP when you compare."))

    c["ep_add"].click(add_endpoint, [c["ep_url"], c["ep_model"], c["models"]], [c["models"], c["ep_status"]])
    c["_load"] = (refresh, refresh_outputs)


def build(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Compare tab and wire its events."""
    c: dict[str, Any] = {}
    result_state = gr.State(None)
    gr.Markdown("### Compare models side by side\nSame prompts, same rewards, greedy decoding (reproducible). "
                "Mark the better output to build a preference dataset.", elem_classes=["wb-intro"])
    with gr.Row(equal_height=False):
        groups = _pick_section(c)
        _outputs_section(c)
    _collect_section(c, ctx)
    collect_state = gr.State(None)
    _export_section(c)
    # wired in the original order, so the events keep their numbers (fn_index) and handlers of one event their order
    _wire_generation(c, ctx, result_state, groups)
    _wire_pairs(c, ctx, result_state)
    _wire_thumbs(c, ctx, result_state)
    _wire_collect(c, ctx, collect_state)
    _wire_collect_train(c, ctx)
    _wire_export(c, ctx)
    _wire_refresh(c, ctx)
    c["result"] = result_state
    return ctx.register("compare", c)


__all__ = ["build", "side_by_side_html", "pair_html", "model_choices"]
