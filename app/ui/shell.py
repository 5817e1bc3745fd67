"""The workbench page: a header and four tabs (Decide → Rewards → Train → Compare) that share one working RunSpec.

    demo = build_demo(runs_dir)                 # importable without launching (tests, notebooks)
    demo.queue().launch(**launch_kwargs(paths))  # what `python -m app` does
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app.engine.core.folders import WorkbenchPaths, resolve_paths
from app.ui import compare, decide, methods, rewards_tab, train
from app.ui.common import UIContext, default_spec_dict

TITLE = "RFT Workbench"
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", neutral_hue="slate",
                       font=["Inter", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])
# Local font stacks only: the page requests no web fonts (it works offline and behind firewalls).
CSS = """
.gradio-container { max-width: 1500px !important; margin: 0 auto !important; }
#wb-header { padding: 6px 4px 0 4px; }
#wb-header h1 { margin: 0; font-size: 1.6rem; }
#wb-header p { margin: 2px 0 0 0; color: var(--body-text-color-subdued); }
.wb-intro p { margin-top: 0; }
.wb-h h4, .wb-h h3 { margin: 10px 0 2px 0; }
.wb-muted, .wb-muted p { color: var(--body-text-color-subdued); font-size: 0.92em; }
.wb-small { font-size: 0.9em; }
.wb-msg { border-radius: 8px; padding: 8px 12px; margin: 6px 0; line-height: 1.45; }
.wb-ok { background: #ecfdf3; border: 1px solid #abefc6; color: #05603a; }
.wb-info { background: #eff8ff; border: 1px solid #b2ddff; color: #175cd3; }
.wb-warn { background: #fffaeb; border: 1px solid #fedf89; color: #93370d; }
.wb-error { background: #fef3f2; border: 1px solid #fecdca; color: #b42318; }
.wb-pre, .wb-output { white-space: pre-wrap; word-break: break-word; font-size: 0.85em; background: #f8fafc;
  border: 1px solid #e4e7ec; border-radius: 6px; padding: 8px; margin: 4px 0; max-height: 320px; overflow: auto; }
.wb-alert { border-radius: 8px; padding: 10px 12px; margin-bottom: 8px; font-size: 0.92em; line-height: 1.45; }
.wb-alert-ok { background: #ecfdf3; border-left: 4px solid #12b76a; }
.wb-alert-info { background: #eff8ff; border-left: 4px solid #2e90fa; }
.wb-alert-warning { background: #fffaeb; border-left: 4px solid #f79009; }
.wb-alert-error { background: #fef3f2; border-left: 4px solid #f04438; }
.wb-step { float: right; color: #667085; font-size: 0.85em; }
.wb-status { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 14px; margin: 4px 0; }
.wb-status-line { display: flex; flex-wrap: wrap; gap: 10px; align-items: baseline; }
.wb-badge { border-radius: 999px; padding: 1px 10px; font-size: 0.85em; background: #f2f4f7; }
.wb-badge-running { background: #d1fadf; } .wb-badge-failed { background: #fee4e2; }
.wb-badge-finished { background: #d1e9ff; } .wb-badge-stopped { background: #fef0c7; }
.wb-progress { height: 8px; background: #eaecf0; border-radius: 4px; margin: 8px 0 4px 0; overflow: hidden; }
.wb-progress > div { height: 100%; background: linear-gradient(90deg, #6172f3, #444ce7); transition: width .5s; }
.wb-rec { border: 1px solid var(--border-color-primary); border-radius: 12px; padding: 14px 18px;
  background: var(--background-fill-secondary); }
.wb-rec-method { font-size: 1.9rem; font-weight: 700; color: #444ce7; line-height: 1.1; }
.wb-rec-title { font-size: 1.05rem; font-weight: 600; margin: 2px 0 8px 0; }
.wb-rec p, .wb-rec li { line-height: 1.5; }
.wb-cards { display: flex; gap: 12px; flex-wrap: wrap; }
.wb-card { flex: 1 1 260px; border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px; }
.wb-card-title { font-weight: 600; margin-bottom: 4px; }
.wb-sbs-prompt { margin: 6px 0 8px 0; }
.wb-code-err { font-family: var(--font-mono); white-space: pre-wrap; }
footer { display: none !important; }
"""
MAX_FILE_SIZE = "50mb"
# Keyboard shortcuts of the preference-collection loop (4 · Compare): a key clicks the matching button while it is
# shown and enabled, unless the user is typing in a field.
SHORTCUTS_JS = """
<script>
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  const t = e.target;
  if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
  const ids = {a: "compare-col-a", "1": "compare-col-a", b: "compare-col-b", "2": "compare-col-b",
               t: "compare-col-tie", s: "compare-col-skip"};
  const id = ids[e.key.toLowerCase()];
  const button = id && document.getElementById(id);
  if (button && !button.disabled && button.offsetParent !== null) { e.preventDefault(); button.click(); }
});
</script>
"""


def build_demo(runs_dir: str | Path | None = None, data_dir: str | Path | None = None,
               paths: WorkbenchPaths | None = None) -> gr.Blocks:
    """The whole app as a gr.Blocks (not launched). Folders as in `app.engine.workbench.resolve_paths`."""
    paths = (paths or resolve_paths(runs_dir, data_dir)).ensure()
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {TITLE}\nDecide how to fine-tune, test your rewards, train with live charts, compare the results. "
            f"Runs: `{paths.runs_dir}`", elem_id="wb-header")
        spec = gr.State(default_spec_dict())
        spec_push = gr.State(0.0)
        with gr.Tabs(elem_id="wb-tabs") as tabs:
            ctx = UIContext(paths=paths, spec=spec, spec_push=spec_push, tabs=tabs)
            with gr.Tab("1 · Decide", id="decide", elem_id="tab-decide"):
                d = decide.build(ctx)
            with gr.Tab("2 · Rewards", id="rewards", elem_id="tab-rewards"):
                r = rewards_tab.build(ctx)
            with gr.Tab("3 · Train", id="train", elem_id="tab-train"):
                t = train.build(ctx)
            with gr.Tab("4 · Compare", id="compare", elem_id="tab-compare") as compare_tab:
                cm = compare.build(ctx)
                with gr.Accordion("Compare training methods (SFT, DFT, GRPO, SFT→GRPO, Prefix-RFT)", open=False,
                                  elem_id="methods-section"):
                    mm = methods.build(ctx)
        compare_tab.select(cm["_load"][0], None, cm["_load"][1], show_progress="hidden")
        for part in (d, r, t, cm, mm):
            fn, outputs = part["_load"]
            demo.load(fn, None, outputs, show_progress="hidden")
    demo.wb_context = ctx  # type: ignore[attr-defined]  # for tests and notebooks
    return demo


def launch_kwargs(paths: WorkbenchPaths, max_file_size: str | int = MAX_FILE_SIZE) -> dict[str, Any]:
    """The security-relevant launch settings: served folders, upload cap, theme and CSS."""
    return dict(allowed_paths=paths.served(), max_file_size=max_file_size, theme=THEME, css=CSS, head=SHORTCUTS_JS,
                footer_links=[], show_error=True)


__all__ = ["build_demo", "launch_kwargs", "THEME", "CSS", "TITLE", "MAX_FILE_SIZE"]
