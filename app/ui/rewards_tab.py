"""Step 2 · Rewards: the playground. Pick built-in rewards with weights or write your own in the editor, try them on
typed completions, dataset rows, or a group sampled live from a model, and see per-reward scores, weighted totals,
GRPO advantages, errors with line numbers, captured prints and timings. Save your reward and use it in training."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app.engine.evaluation import playground as pg
from app.ui.common import (
    UIContext,
    error,
    esc,
    frame,
    nonce,
    ok,
    pre,
    progress_fn,
    warn,
)

TYPED, DATASET, SAMPLED = "Completions I type", "Rows of the dataset", "Sampled from a model"
WEIGHT_HEADERS = ["reward", "weight", "params (JSON)"]
EXAMPLE_PREFIX = "example: "
SAVED_PREFIX = "saved: "
DEFAULT_PROMPT = "What is 17 + 25? Reply with only the number."


def _rewards_docs() -> str:
    import rewards

    lines = ["| reward | what it does | parameters (defaults) |", "|---|---|---|"]
    for r in rewards.available():
        params = ", ".join(f"`{k}={v!r}`" for k, v in r.params.items())
        lines.append(f"| `{r.name}` | {r.description.replace('|', '/')} | {params} |")
    return "\n".join(lines)


def weight_rows(names: list[str], current: Any, spec_rewards: list[dict[str, Any]] | None = None) -> Any:
    """The weights table for the picked built-ins, keeping weights/params already entered (or from the spec)."""
    import json

    known: dict[str, list[Any]] = {}
    for r in spec_rewards or []:
        if r.get("name"):
            known[r["name"]] = [r["name"], r.get("weight", 1.0), json.dumps(r.get("params") or {})]
    for row in _table_rows(current):
        if row and row[0]:
            known[str(row[0])] = list(row[:3])
    rows = [known.get(n, [n, 1.0, "{}"]) for n in names]
    return frame(WEIGHT_HEADERS, rows)


def _table_rows(value: Any) -> list[list[Any]]:
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):
        return value.values.tolist()
    if isinstance(value, dict):
        return list(value.get("data") or [])
    return [list(r) for r in value]


def _choices_for_examples(folder: Path) -> list[str]:
    import rewards

    saved = [SAVED_PREFIX + p.name for p in pg.list_user_rewards(folder)]
    return saved + [EXAMPLE_PREFIX + k for k in rewards.EXAMPLES]


def _builtins_section(c: dict[str, Any], names: list[str]) -> None:
    """The built-in rewards picked, their weights and parameters, and what each one does."""
    gr.Markdown("#### Built-in rewards", elem_classes=["wb-h"])
    c["builtins"] = gr.Dropdown(names, value=["numeric_answer"], multiselect=True, label="Built-in rewards",
                                info="Each gets a weight; the total is the weighted sum (None scores skipped).",
                                elem_id="rewards-builtins")
    c["weights"] = gr.Dataframe(value=weight_rows(["numeric_answer"], None), headers=WEIGHT_HEADERS,
                                interactive=True, label="Weights and parameters",
                                datatype=["str", "number", "str"], elem_id="rewards-weights")
    with gr.Accordion("What each built-in does", open=False):
        gr.Markdown(_rewards_docs(), elem_classes=["wb-small"])


def _user_code_section(c: dict[str, Any], ctx: UIContext) -> None:
    """The user's own reward: include it, name and weight, open a saved one or an example, the editor, Check, Save."""
    import rewards

    gr.Markdown("#### Your reward (Python)", elem_classes=["wb-h"])
    with gr.Row():
        c["use_mine"] = gr.Checkbox(value=False, label="Include my reward", elem_id="rewards-use-mine",
                                    info="Runs in a sandboxed process (time and memory limits).")
        c["user_name"] = gr.Textbox(value="", label="Name (its chart label)", max_lines=1,
                                    placeholder="the function's name", elem_id="rewards-user-name")
        c["user_weight"] = gr.Number(value=1.0, label="Weight", elem_id="rewards-user-weight", min_width=90)
    c["open"] = gr.Dropdown(_choices_for_examples(ctx.paths.user_rewards_dir), value=None,
                            label="Open a saved reward or an example", elem_id="rewards-open")
    c["code"] = gr.Code(value=rewards.USER_REWARD_TEMPLATE, language="python", lines=18, max_lines=40, wrap_lines=True,
                        label="Reward code", interactive=True, elem_id="rewards-code")
    with gr.Row():
        c["check_btn"] = gr.Button("Check code", size="sm", elem_id="rewards-check")
        c["save_btn"] = gr.Button("Save to my rewards", size="sm", elem_id="rewards-save")
    c["code_status"] = gr.HTML("", elem_id="rewards-code-status")


def _completions_section(c: dict[str, Any]) -> tuple[gr.Group, gr.Group, gr.Group]:
    """What to score: the mode radio and its three groups (typed, dataset rows, sampled); returns the groups."""
    gr.Markdown("#### Try them on", elem_classes=["wb-h"])
    c["mode"] = gr.Radio([TYPED, DATASET, SAMPLED], value=TYPED, label="Completions to score",
                         elem_id="rewards-mode")
    with gr.Group(visible=True) as typed_group:
        c["prompt"] = gr.Textbox(DEFAULT_PROMPT, label="Prompt", max_lines=3, elem_id="rewards-prompt")
        c["answer"] = gr.Textbox("42", label="Reference answer (the 'answer' column)", max_lines=1,
                                 elem_id="rewards-answer")
        c["completions"] = gr.Textbox(
            "42\n17 + 25 = 42\n43\nThe answer is forty-two.", lines=5, max_lines=20,
            label="Completions (one per line, or blocks separated by a line with ---)",
            elem_id="rewards-completions")
        c["columns"] = gr.Textbox("", label="Extra columns (JSON object, optional)", max_lines=4,
                                  placeholder='{"tests": ["assert add(1, 2) == 3"]}')
    with gr.Group(visible=False) as dataset_group:
        c["ds_source"] = gr.Textbox("builtin:arithmetic", label="Dataset (from the run spec)", max_lines=1,
                                    elem_id="rewards-ds-source",
                                    info="Scores each row's own reference reply: good rewards give them "
                                         "full marks.")
        with gr.Row():
            c["ds_n"] = gr.Slider(1, 32, value=8, step=1, label="Rows")
            c["ds_start"] = gr.Number(0, label="First row", precision=0, minimum=0)
    with gr.Group(visible=False) as sample_group:
        c["model"] = gr.Dropdown([], value=None, label="Model", elem_id="rewards-model",
                                 info="The base model or any run's adapter.")
        c["s_prompt"] = gr.Textbox(DEFAULT_PROMPT, label="Prompt", max_lines=3, elem_id="rewards-s-prompt")
        c["s_answer"] = gr.Textbox("42", label="Reference answer", max_lines=1)
        with gr.Row():
            c["s_n"] = gr.Slider(2, pg.MAX_SAMPLES, value=8, step=1, label="Group size")
            c["s_temp"] = gr.Slider(0.1, 2.0, value=1.0, step=0.1, label="Temperature")
            c["s_tokens"] = gr.Slider(4, 256, value=32, step=4, label="Max new tokens")
    return typed_group, dataset_group, sample_group


def _results_section(c: dict[str, Any]) -> None:
    """Score, then the results: summary, scores per completion, per reward, errors, prints, and Use these rewards."""
    c["score_btn"] = gr.Button("Score", variant="primary", elem_id="rewards-score")
    c["result_html"] = gr.HTML("", elem_id="rewards-result")
    c["table"] = gr.Dataframe(value=frame(["#", "completion", "total"], []), interactive=False, wrap=True,
                              label="Scores per completion", max_height=420, elem_id="rewards-table")
    c["per_reward"] = gr.Dataframe(value=frame(["reward", "weight", "mean"], []), interactive=False,
                                   label="Per reward (mean, spread, failures, time)",
                                   elem_id="rewards-per-reward")
    c["judges"] = gr.Dataframe(value=frame(pg.JUDGE_HEADERS, []), interactive=False, wrap=True, visible=False,
                               label="What each model judge wrote (score read from its reply, seconds per call)",
                               max_height=360, elem_id="rewards-judges")
    c["errors_html"] = gr.HTML("", elem_id="rewards-errors")
    c["prints"] = gr.Textbox("", label="Captured print() output", lines=3, max_lines=12, interactive=False,
                             elem_id="rewards-prints")
    with gr.Row():
        c["use_btn"] = gr.Button("Use these rewards for training →", variant="primary",
                                 elem_id="rewards-use")
    c["use_status"] = gr.HTML("")


def _wire_pickers(c: dict[str, Any], groups: tuple[gr.Group, gr.Group, gr.Group]) -> None:
    """The mode radio shows its group; picking built-ins updates the weights table."""
    typed_group, dataset_group, sample_group = groups
    c["mode"].change(lambda m: (gr.Group(visible=m == TYPED), gr.Group(visible=m == DATASET),
                                gr.Group(visible=m == SAMPLED)), c["mode"], [typed_group, dataset_group, sample_group],
                     show_progress="hidden")
    c["builtins"].change(lambda picked, cur: weight_rows(list(picked or []), cur), [c["builtins"], c["weights"]],
                         c["weights"], show_progress="hidden")


def _wire_code(c: dict[str, Any], ctx: UIContext) -> None:
    """The editor's controls: open a saved reward or an example, Check code, Save to my rewards."""
    import rewards

    def open_source(choice: str | None) -> Any:
        if not choice:
            return gr.skip(), gr.skip(), gr.skip()
        if choice.startswith(EXAMPLE_PREFIX):
            source = rewards.EXAMPLES.get(choice[len(EXAMPLE_PREFIX):], "")
            return source, gr.skip(), True
        path = ctx.paths.user_rewards_dir / choice[len(SAVED_PREFIX):]
        try:
            return path.read_text(encoding="utf-8"), path.stem, True
        except OSError as exc:
            gr.Warning(f"Could not open {path.name}: {exc}")
            return gr.skip(), gr.skip(), gr.skip()

    c["open"].input(open_source, c["open"], [c["code"], c["user_name"], c["use_mine"]])

    def check(code: str) -> str:
        try:
            fn, line = pg.check_user_reward(code)
        except rewards.RewardCodeError as exc:
            return code_error_html(exc)
        try:  # run the module's top level too (imports), in the sandbox
            with rewards.load_user_reward(code, timeout_s=10):
                pass
        except rewards.RewardCodeError as exc:
            return code_error_html(exc)
        return ok(f"<code>{esc(fn)}()</code> (line {line}) loads and takes TRL's call. Score it on the right.")

    c["check_btn"].click(check, c["code"], c["code_status"])

    def save(code: str, name: str) -> tuple[Any, ...]:
        try:
            path = pg.save_user_reward(code, _reward_name(code, name), ctx.paths.user_rewards_dir)
        except rewards.RewardCodeError as exc:
            return code_error_html(exc, "Not saved: "), gr.skip()
        except (pg.PlaygroundError, OSError) as exc:
            return error(f"Not saved: {esc(exc)}"), gr.skip()
        gr.Info(f"Saved {path.name}")
        return (ok(f"Saved to <code>{esc(path)}</code>. Use it in a run (button below) or in YAML as "
                   f"<code>rewards: [{{file: {esc(path)}}}]</code>."),
                gr.Dropdown(choices=_choices_for_examples(ctx.paths.user_rewards_dir), value=SAVED_PREFIX + path.name))

    c["save_btn"].click(save, [c["code"], c["user_name"]], [c["code_status"], c["open"]])


def _wire_score(c: dict[str, Any], ctx: UIContext) -> None:
    """Score: build the rewards, get the completions the mode names, and show every result."""
    import rewards

    score_inputs = [c[k] for k in ("weights", "use_mine", "code", "user_name", "user_weight", "mode", "prompt",
                                   "answer", "completions", "columns", "ds_source", "ds_n", "ds_start", "model",
                                   "s_prompt", "s_answer", "s_n", "s_temp", "s_tokens")] + [ctx.spec]
    score_outputs = [c["result_html"], c["table"], c["per_reward"], c["errors_html"], c["prints"], c["code_status"],
                     c["judges"]]

    def score(weights: Any, use_mine: bool, code: str, user_name: str, user_weight: float, mode: str, prompt: str,
              answer: str, completions: str, columns: str, ds_source: str, ds_n: int, ds_start: int,
              model: str | None, s_prompt: str, s_answer: str, s_n: int, s_temp: float, s_tokens: int,
              spec: dict[str, Any], progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        empty = (frame(["#", "completion", "total"], []), frame(["reward", "weight", "mean"], []), "", "")
        user, funcs = None, []
        no_judges = gr.Dataframe(value=frame(pg.JUDGE_HEADERS, []), visible=False)
        try:
            builtins = pg.parse_reward_rows(_table_rows(weights))
            funcs, user = pg.build_rewards(builtins, code if use_mine else None, float(user_weight or 1.0),
                                           (user_name or "").strip() or None)
            if mode == TYPED:
                rows = pg.typed_rows(prompt, completions, answer, pg.parse_columns(columns))
                group = len(rows)
            elif mode == DATASET:
                params = (spec or {}).get("data", {}).get("task_params") if ds_source == (spec or {}).get(
                    "data", {}).get("source") else None
                rows = pg.dataset_rows(ds_source, int(ds_n), params, start=int(ds_start or 0))
                group = None
            else:
                row = pg.prompt_row(None, prompt=s_prompt, answer=s_answer)
                system = (spec or {}).get("data", {}).get("system_prompt")
                rows = pg.sample_rows(row, model or "base::default", int(s_n), float(s_temp), int(s_tokens), system,
                                      progress=progress_fn(progress))
                group = len(rows)
            result = pg.run_playground(rows, funcs, group_size=group, spec=spec)
        except rewards.RewardCodeError as exc:
            gr.Warning(f"Your reward does not load: {exc}")
            return (error("Your reward does not load (see under the editor)."), *empty, code_error_html(exc),
                    no_judges)
        except Exception as exc:  # bad input, a model that does not load: a message, nothing else breaks
            gr.Warning(str(exc))
            return (error(esc(exc)), *empty, gr.skip(), no_judges)
        finally:
            if user is not None:
                user.close()
            pg.close_rewards(funcs)  # local judges' processes
        return (result_html(result), frame(result.headers, result.rows),
                frame(result.summary_headers, result.summary_rows), errors_html(result),
                prints_text(result), gr.skip(),
                gr.Dataframe(value=frame(result.judge_headers, result.judge_rows), visible=bool(result.judge_rows)))

    c["score_btn"].click(score, score_inputs, score_outputs, concurrency_limit=1, concurrency_id="inference")


def _wire_use(c: dict[str, Any], ctx: UIContext) -> None:
    """Use these rewards for training: put them into the working spec and move to 3 · Train."""
    import rewards

    def use(spec: dict[str, Any], weights: Any, use_mine: bool, code: str, user_name: str,
            user_weight: float) -> tuple[Any, ...]:
        from app.engine.advice import presets

        try:
            builtins = pg.parse_reward_rows(_table_rows(weights))
            user_file = None
            if use_mine:
                user_file = pg.save_user_reward(code, _reward_name(code, user_name), ctx.paths.user_rewards_dir)
            specs = pg.reward_specs(builtins, user_file, float(user_weight or 1.0))
            if not specs:
                raise pg.PlaygroundError("Pick at least one reward.")
            data = dict(spec or {})
            data["rewards"] = specs
            new_spec = presets.spec_with(data, {})
        except rewards.RewardCodeError as exc:
            return gr.skip(), gr.skip(), gr.skip(), code_error_html(exc, "Not used: ")
        except Exception as exc:
            return gr.skip(), gr.skip(), gr.skip(), error(esc(exc))
        listed = ", ".join(r.get("name") or Path(r["file"]).stem for r in specs)
        gr.Info(f"Rewards set for training: {listed}")
        return new_spec.to_dict(), nonce(), gr.Tabs(selected="train"), ok(f"Training will use: {esc(listed)}.")

    c["use_btn"].click(use, [ctx.spec, c["weights"], c["use_mine"], c["code"], c["user_name"], c["user_weight"]],
                       [ctx.spec, ctx.spec_push, ctx.tabs, c["use_status"]])


def _wire_spec(c: dict[str, Any], ctx: UIContext) -> None:
    """Follow the working spec: show its rewards and dataset when it is pushed (after Decide / Apply YAML)."""
    def from_spec(spec: dict[str, Any]) -> tuple[Any, ...]:
        """Show the working spec's rewards and dataset (after Decide / Apply YAML)."""
        spec = spec or {}
        picked = [r["name"] for r in spec.get("rewards", []) if r.get("name")]
        files = [r for r in spec.get("rewards", []) if r.get("file")]
        code, name, use_mine = gr.skip(), gr.skip(), gr.skip()
        if files:
            try:
                code = Path(files[0]["file"]).read_text(encoding="utf-8")
                name, use_mine = Path(files[0]["file"]).stem, True
            except OSError:
                pass
        return (picked, weight_rows(picked, None, spec.get("rewards")), spec.get("data", {}).get("source", ""),
                code, name, use_mine)

    ctx.spec_push.change(from_spec, ctx.spec, [c["builtins"], c["weights"], c["ds_source"], c["code"],
                                               c["user_name"], c["use_mine"]], show_progress="hidden")


def _wire_load(c: dict[str, Any], ctx: UIContext) -> None:
    """`c["_load"]`, which the shell runs on page load: the models to sample from and the saved rewards."""
    def load() -> tuple[Any, ...]:
        from app.engine.evaluation.compare import available_models

        refs = available_models(ctx.paths.runs_dir, checkpoints=False)
        choices = [(r.label, r.key) for r in refs]
        return (gr.Dropdown(choices=choices, value=choices[0][1] if choices else None),
                gr.Dropdown(choices=_choices_for_examples(ctx.paths.user_rewards_dir)))

    c["_load"] = (load, [c["model"], c["open"]])


def build(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Rewards tab and wire its events."""
    import rewards

    c: dict[str, Any] = {}
    names = [r.name for r in rewards.available()]
    gr.Markdown(
        "### Rewards playground\nA reward scores each completion; GRPO learns from how scores differ **within** a "
        "group of completions for the same prompt. Try your rewards here before training.",
        elem_classes=["wb-intro"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=400):
            _builtins_section(c, names)
            _user_code_section(c, ctx)
        with gr.Column(scale=6, min_width=420):
            groups = _completions_section(c)
            _results_section(c)
    # wired in the original order, so the events keep their numbers (fn_index)
    _wire_pickers(c, groups)
    _wire_code(c, ctx)
    _wire_score(c, ctx)
    _wire_use(c, ctx)
    _wire_spec(c, ctx)
    _wire_load(c, ctx)
    return ctx.register("rewards", c)


def _reward_name(code: str, name: str | None) -> str:
    """The name typed by the user, else the reward function's own name (raises RewardCodeError for bad code)."""
    return (name or "").strip() or pg.check_user_reward(code)[0]


# -- rendering --------------------------------------------------------------------------------------------------------
def code_error_html(exc: Any, prefix: str = "") -> str:
    """A reward code error with its line number, and the traceback of the user's code when there is one."""
    line = getattr(exc, "line", None)
    where = f"<b>Line {line}</b> · " if line else ""
    message = str(exc)
    if line and message.startswith(f"line {line}: "):
        message = message[len(f"line {line}: "):]
    detail = getattr(exc, "detail", "") or ""
    return error(f"{esc(prefix)}{where}<span class='wb-code-err'>{esc(message)}</span>") + (pre(detail) if detail else "")


def result_html(result: pg.PlaygroundResult) -> str:
    """Summary above the table: totals, groups and their advantages, the zero-variance warning."""
    totals = [r[-2] if result.headers[-1] == "advantage" else r[-1] for r in result.rows]
    scored = [t for t in totals if isinstance(t, (int, float))]
    mean = sum(scored) / len(scored) if scored else None
    parts = [f"<b>{len(result.rows)}</b> completions scored in {result.seconds * 1000:.0f} ms · mean weighted total "
             f"<b>{'–' if mean is None else f'{mean:.3f}'}</b>"]
    out = ok(" ".join(parts))
    for g in result.groups:
        value = "–" if g["mean"] is None else format(g["mean"], ".3g")
        if g["zero_variance"]:
            out += warn(f"Group {g['group']}: every completion got the same total "
                        f"({value}) — zero variance, so all GRPO advantages are "
                        "0 and this prompt gives <b>no learning signal</b>. Use a graded reward, more completions, "
                        "or a higher temperature.")
        else:
            out += ok(f"Group {g['group']}: {g['size']} completions, total mean {value} ± {g['std'] or 0:.3g}: "
                      "GRPO pushes up the completions with a positive advantage.")
    if result.advantage_note:
        out += ok(esc(result.advantage_note))
    if result.errors:
        out += warn(f"{len(result.errors)} kind(s) of reward errors — see below.")
    return out


def errors_html(result: pg.PlaygroundResult) -> str:
    if not result.errors and not result.tracebacks:
        return ""
    items = "".join(f"<li><code>{esc(e)}</code></li>" for e in result.errors)
    tbs = "".join(f"<p><b>{esc(name)}</b> traceback:</p>{pre(tb)}" for name, tb in result.tracebacks.items())
    return error(f"Errors (those samples get no score; TRL leaves them out):<ul>{items}</ul>") + tbs


def prints_text(result: pg.PlaygroundResult) -> str:
    if not result.prints:
        return ""
    return "\n".join(f"[{name}]\n{text.rstrip()}" for name, text in result.prints.items())


__all__ = ["build", "weight_rows", "code_error_html", "result_html", "errors_html"]
