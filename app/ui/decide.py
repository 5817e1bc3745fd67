"""Step 1 · Decide: the decision tree as a wizard. Answer the questions by hand, or profile a dataset (upload or
built-in task) to pre-answer them; the recommendation, its reasons and the tree drawing update as you go, and a
button carries a pre-filled RunSpec into the next steps."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gradio as gr

from app.engine import methods
from app.engine.advice import decision, presets
from app.engine.core import folders
from app.engine.core.spec import METHODS, RL_METHODS
from app.engine.presentation import decision_tree
from app.ui.common import UIContext, error, esc, frame, md_escape, nonce, ok, warn

# Built-in tasks offered in the wizard: label → (source, task_params, eval_size).
BUILTIN_CHOICES: dict[str, tuple[str, dict[str, Any], int]] = {
    # 96 generated additions, of which the first 32 are held out for evaluation: 64 left to train on.
    "Arithmetic: 64 examples (few labels)": ("builtin:arithmetic", {"n": 96}, 32),
    "Arithmetic: 2,436 examples": ("builtin:arithmetic", {}, 64),
}
YES, NO, UNSURE = "Yes", "No", "Not sure"
BOOL_QUESTIONS = ("has_preferences", "has_labels", "verifiable", "reasoning_helps", "has_demonstrations",
                  "model_can_judge")
SHORT_LABELS = {
    "has_preferences": "1 · Preference pairs (prompt, chosen, rejected)?",
    "has_labels": "2 · Labelled answers or target completions?",
    "verifiable": "3 · Can a program check a completion?",
    "n_examples": "4 · How many labelled examples?",
    "reasoning_helps": "5 · Does step-by-step reasoning help?",
    "has_demonstrations": "6 · Do labels include worked demonstrations?",
    "model_can_judge": "7 · Could a model grade a reply against a rubric?",
}
PREVIEW_ROWS = 5


def _to_radio(value: bool | None) -> str:
    return UNSURE if value is None else (YES if value else NO)


def _from_radio(value: str | None) -> bool | None:
    return {YES: True, NO: False}.get(value or "", None)


def parse_count(value: Any) -> int | None:
    """An example count typed as '64', '2,500' or '2 500'; None when empty or not a whole number ≥ 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if value >= 0 else None
    text = str(value or "").replace(",", "").replace("_", "").replace(" ", "").strip()
    return int(text) if text.isdigit() else None


def answers_from_inputs(values: list[Any], rewards: list[str] | None) -> decision.Answers:
    """Answers from the wizard's inputs (radios in BOOL_QUESTIONS order, then the example count)."""
    bools = dict(zip(BOOL_QUESTIONS, values[: len(BOOL_QUESTIONS)]))
    n_examples = parse_count(values[len(BOOL_QUESTIONS)])
    return decision.Answers(
        has_labels=_from_radio(bools["has_labels"]), verifiable=_from_radio(bools["verifiable"]),
        n_examples=n_examples, reasoning_helps=_from_radio(bools["reasoning_helps"]),
        has_demonstrations=_from_radio(bools["has_demonstrations"]),
        has_preferences=_from_radio(bools["has_preferences"]), rewards=rewards or None,
        model_can_judge=_from_radio(bools["model_can_judge"]),
    )


def recommendation_html(rec: decision.Recommendation) -> str:
    """The recommendation card: method, title, paragraph, alternatives."""
    name = decision.METHOD_NAMES.get(rec.method, rec.method)
    alts = "".join(f"<li><b>{esc(decision.METHOD_NAMES.get(m, m))}</b>: {esc(why)}</li>" for m, why in rec.alternatives)
    missing = ""
    if rec.missing:
        missing = ("<p class='wb-muted'>Unanswered questions that could change this: "
                   + esc(", ".join(SHORT_LABELS[m].split(" · ", 1)[1] for m in rec.missing)) + "</p>")
    note = ""
    if rec.method not in METHODS:
        note = warn(f"{esc(decision.METHOD_NAMES.get(rec.method, rec.method))} training is not available in this "
                    "version.")
    return (f"<div class='wb-rec'><div class='wb-rec-method'>{esc(name)}</div>"
            f"<div class='wb-rec-title'>{esc(rec.title)}</div><p>{esc(rec.paragraph)}</p>"
            + (f"<p><b>Alternatives</b></p><ul>{alts}</ul>" if alts else "") + missing + note + "</div>")


def profile_markdown(profile: Any, source_label: str) -> str:
    """A short summary of a dataset profile."""
    cols = ", ".join(f"`{c.name}` ({c.fill_rate:.0%})" for c in profile.columns[:12])
    kind = profile.answer_kind or "–"
    lines = [
        f"**{md_escape(source_label)}** · {profile.n_rows:,} rows · format *{profile.format}*",
        f"- **Columns** (filled): {cols}",
        f"- **Prompt column**: `{profile.prompt_column}` · **answer column**: `{profile.answer_column}` · "
        f"labelled: {profile.n_labelled:,} ({profile.labelled_share:.0%})",
        f"- **Answers look like**: {kind}"
        + (f" · checkable: {'yes' if profile.verifiable else 'no'} ({profile.verifiable_confidence:.0%} sure)"
           if profile.verifiable is not None else ""),
    ]
    if profile.reasons:
        lines.append(f"- **Why**: {md_escape(' '.join(profile.reasons))}")
    if profile.suggested_rewards:
        lines.append(f"- **Suggested rewards**: {', '.join(f'`{r}`' for r in profile.suggested_rewards)}")
    for w in profile.warnings[:5]:
        lines.append(f"- ⚠ {md_escape(w)}")
    return "\n".join(lines)


def _preview(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return frame(["(no rows)"], [])
    columns: list[str] = []
    for r in rows[:PREVIEW_ROWS]:
        columns += [k for k in r if k not in columns]
    data = [[_short(r.get(c)) for c in columns] for r in rows[:PREVIEW_ROWS]]
    return frame(columns, data)


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _collects_first(method: str, data: dict[str, Any]) -> str | None:
    """The marks a method needs collected before it can train ('pairs', 'thumbs'), when the data has none."""
    collects = methods.get(method).collects
    return collects if collects and data.get("format") != "preference" else None


def _dataset_section(c: dict[str, Any]) -> None:
    """The data box: upload or built-in task, Profile it, the profile summary and a preview of the rows."""
    with gr.Group():
        with gr.Row():
            c["upload"] = gr.File(label="Upload a dataset (JSONL, JSON or CSV)", file_types=[
                ".jsonl", ".json", ".csv", ".tsv", ".ndjson"], elem_id="decide-upload", height=150)
            with gr.Column():
                c["builtin"] = gr.Dropdown(
                    choices=list(BUILTIN_CHOICES), value=None, label="…or a built-in task",
                    info="Generated by the app, no download needed.", elem_id="decide-builtin")
                c["profile_btn"] = gr.Button("Profile it", size="sm", elem_id="decide-profile")
        c["profile_md"] = gr.Markdown("", elem_id="decide-profile-md")
        with gr.Accordion("Preview rows", open=False):
            c["preview"] = gr.Dataframe(value=_preview([]), interactive=False, wrap=True, max_height=260)


def _questions_section(c: dict[str, Any]) -> None:
    """The seven questions (radios, and the example count between them) and Clear answers."""
    gr.Markdown("#### Questions", elem_classes=["wb-h"])
    c["why_md"] = gr.Markdown("", elem_id="decide-why", elem_classes=["wb-muted"])
    for field in BOOL_QUESTIONS[:3]:
        c[field] = gr.Radio([YES, NO, UNSURE], value=UNSURE, label=SHORT_LABELS[field],
                            info=decision.QUESTIONS[field], elem_id=f"decide-{field}")
    c["n_examples"] = gr.Textbox("", label=SHORT_LABELS["n_examples"], max_lines=1,
                                 placeholder="e.g. 64 — leave empty if not sure",
                                 info=f"Under {decision.FEW_EXAMPLES}: RL from a reward beats imitation.",
                                 elem_id="decide-n_examples")
    for field in BOOL_QUESTIONS[3:]:
        c[field] = gr.Radio([YES, NO, UNSURE], value=UNSURE, label=SHORT_LABELS[field],
                            info=decision.QUESTIONS[field], elem_id=f"decide-{field}")
    c["reset_btn"] = gr.Button("Clear answers", size="sm", variant="secondary")


def _recommendation_section(c: dict[str, Any]) -> None:
    """The right column: the recommendation card, Use this recommendation, and the decision tree."""
    with gr.Column(scale=6, min_width=420):
        c["rec_html"] = gr.HTML("", elem_id="decide-recommendation")
        with gr.Row():
            c["use_btn"] = gr.Button("Use this recommendation →", variant="primary", elem_id="decide-use")
        c["use_status"] = gr.HTML("")
        c["tree"] = gr.Plot(label="Decision tree (your path highlighted)", elem_id="decide-tree")


def _wire_recommendation(c: dict[str, Any], dataset: gr.State, inputs: list[Any]) -> Callable[[], tuple[Any, ...]]:
    """Every answer updates the recommendation, the tree and the Use button; returns the page-load handler."""
    def update(*values: Any) -> tuple[Any, ...]:
        *answers_values, data = values
        rec = decision.recommend(answers_from_inputs(list(answers_values), (data or {}).get("rewards")))
        usable, target = rec.method in METHODS, rec.method
        collect = usable and _collects_first(target, data or {})
        step = "2 · Rewards" if target in RL_METHODS else f"4 · Compare (collect {collect})" if collect else "3 · Train"
        label = (f"Use {decision.METHOD_NAMES.get(target, target)}: continue to {step} →" if usable
                 else "Not trainable here yet")
        return recommendation_html(rec), decision_tree.tree_figure(rec.path), gr.Button(value=label, interactive=usable)

    for comp in inputs:
        comp.change(update, inputs + [dataset], [c["rec_html"], c["tree"], c["use_btn"]], show_progress="hidden")

    def initial() -> tuple[Any, ...]:
        return update(*([UNSURE] * len(BOOL_QUESTIONS)), "", {})

    return initial


def _wire_profile(c: dict[str, Any], ctx: UIContext, dataset: gr.State) -> None:
    """Upload, built-in task and Profile it: profile the rows, pre-answer the questions and say why."""
    def profile(source: str, label: str, task_params: dict[str, Any], eval_size: int,
                rows: list[dict[str, Any]]) -> tuple[Any, ...]:
        from app.engine.data.profile import profile_dataset

        prof = profile_dataset(rows)
        answers, reasons = decision.answers_from_profile(prof)
        data = {"source": source, "label": label, "task_params": task_params, "eval_size": eval_size,
                "rewards": list(prof.suggested_rewards), "columns": [col.name for col in prof.columns],
                "format": prof.format, "demonstration_column": prof.demonstration_column}
        why = "**Pre-answered from the data** (change any answer):\n" + "\n".join(
            f"- *{SHORT_LABELS[k].split(' · ', 1)[1]}* {md_escape(v)}" for k, v in reasons.items() if v)
        radio_values = [_to_radio(getattr(answers, f)) for f in BOOL_QUESTIONS]
        count = "" if answers.n_examples is None else str(answers.n_examples)
        return (profile_markdown(prof, label), _preview(rows), why, *radio_values, count, data)

    prof_outputs = [c["profile_md"], c["preview"], c["why_md"]] + [c[f] for f in BOOL_QUESTIONS] + [
        c["n_examples"], dataset]

    def from_upload(path: str | None) -> tuple[Any, ...]:
        if not path:
            return tuple(gr.skip() for _ in prof_outputs)
        from app.engine.data.profile import load_rows

        name = Path(path).name
        try:
            rows = load_rows(path)
        except (ValueError, OSError) as exc:
            gr.Warning(f"Could not read {name}: {exc}")
            return (error(f"Could not read <b>{esc(name)}</b>: {esc(str(exc).replace(str(path), name))}"),
                    _preview([]), "", *[gr.skip()] * len(BOOL_QUESTIONS), gr.skip(), {})
        try:
            stored = folders.store_upload(path, ctx.paths)
        except OSError as exc:
            gr.Warning(f"Could not store {name}: {exc}")
            return (error(esc(str(exc))), _preview([]), "", *[gr.skip()] * len(BOOL_QUESTIONS), gr.skip(), {})
        return profile(str(stored), name, {}, 64, rows)

    def from_builtin(label: str | None) -> tuple[Any, ...]:
        if not label or label not in BUILTIN_CHOICES:
            gr.Info("Pick a built-in task first.")
            return tuple(gr.skip() for _ in prof_outputs)
        from app.engine.data.sources import load_source_rows

        source, params, eval_size = BUILTIN_CHOICES[label]
        rows = load_source_rows(source, task_params=params)
        train_rows = rows[eval_size:]  # built-in tasks hold out their first rows
        return profile(source, label, params, eval_size, train_rows)

    c["upload"].upload(from_upload, c["upload"], prof_outputs)
    c["builtin"].input(from_builtin, c["builtin"], prof_outputs)
    c["profile_btn"].click(from_builtin, c["builtin"], prof_outputs)


def _wire_reset(c: dict[str, Any], dataset: gr.State) -> None:
    """Clear answers: every question back to Not sure, the profiled data and its summary forgotten."""
    def reset() -> tuple[Any, ...]:
        return (*[UNSURE] * len(BOOL_QUESTIONS), "", {}, "", "", _preview([]), None, None)

    c["reset_btn"].click(reset, None, [c[f] for f in BOOL_QUESTIONS] + [
        c["n_examples"], dataset, c["why_md"], c["profile_md"], c["preview"], c["builtin"], c["upload"]])


def _wire_use(c: dict[str, Any], ctx: UIContext, dataset: gr.State, inputs: list[Any]) -> None:
    """Use this recommendation: pre-fill the working spec and move to the tab that comes next."""
    def use(spec: dict[str, Any], data: dict[str, Any], *answer_values: Any) -> tuple[Any, ...]:
        rec = decision.recommend(answers_from_inputs(list(answer_values), (data or {}).get("rewards")))
        method, data = rec.method, data or {}
        if method not in METHODS:
            return gr.skip(), gr.skip(), gr.skip(), warn(f"{esc(method)} is not trainable in this version.")
        collect = _collects_first(method, data)  # no marks in the data yet: collect them first
        marks_file = ctx.paths.marks_file(collect) if collect else None
        try:
            new_spec = presets.recommended_spec(rec, spec, data, preferences_file=marks_file)
        except Exception as exc:  # a SpecError from the recommendation's overrides
            return gr.skip(), gr.skip(), gr.skip(), error(f"Could not pre-fill the run: {esc(exc)}")
        name = decision.METHOD_NAMES[method]
        target = "rewards" if method in RL_METHODS else "compare" if collect else "train"
        hint = {"rewards": "check the rewards, then train.", "train": "review it and launch.",
                "compare": f"first {methods.get(method).collect_hint}, then train."}[target]
        gr.Info(f"{name} run pre-filled: {hint}")
        text = ok(f"Pre-filled a {name} run" + (f" on {esc(data.get('label'))}" if data.get("label") else "")
                  + f": {esc(hint)}")
        if collect:
            text += warn(f"The run reads the {collect} you collect, saved in <code>{esc(marks_file)}"
                         "</code>; launch it in 3 · Train once there are a few dozen.")
        return new_spec.to_dict(), nonce(), gr.Tabs(selected=target), text

    c["use_btn"].click(use, [ctx.spec, dataset] + inputs, [ctx.spec, ctx.spec_push, ctx.tabs, c["use_status"]])


def build(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Decide tab and wire its events."""
    c: dict[str, Any] = {}
    dataset = gr.State({})  # {"source", "task_params", "eval_size", "label", "rewards"} of the profiled data
    gr.Markdown(
        "### Which fine-tuning method fits your task?\n"
        "Answer the six questions yourself, **or** upload a dataset / pick a built-in task: the app profiles it "
        "and pre-answers the questions, saying why. Change any answer; the recommendation follows.",
        elem_classes=["wb-intro"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=380):
            _dataset_section(c)
            _questions_section(c)
        _recommendation_section(c)
    inputs = [c[f] for f in BOOL_QUESTIONS] + [c["n_examples"]]
    # wired in the original order, so the events keep their numbers (fn_index)
    initial = _wire_recommendation(c, dataset, inputs)
    _wire_profile(c, ctx, dataset)
    _wire_reset(c, dataset)
    _wire_use(c, ctx, dataset, inputs)
    c["_load"] = (initial, [c["rec_html"], c["tree"], c["use_btn"]])
    c["dataset"] = dataset
    return ctx.register("decide", c)


__all__ = ["build", "answers_from_inputs", "parse_count", "recommendation_html", "profile_markdown", "BUILTIN_CHOICES"]
