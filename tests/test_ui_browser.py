"""Browser tests: the real app (`python -m app`) in a subprocess, driven by headless Chromium through Playwright.

They walk the four steps as a user would: the Decide wizard on a built-in task, scoring typed completions and a
broken reward in the playground, a 2-step GRPO run on the default model with live charts and samples, and a
side-by-side comparison of the base model with that run's adapter (saving a preference pair). Each step leaves a
screenshot in test-output/screenshots/ ($TEST_OUTPUT_DIR/screenshots overrides).

Needs Debian's chromium (/usr/bin/chromium) and the `playwright` package; skips with the reason otherwise.
The tests share one app and run in file order (the compare test uses the run the train test made).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
APP_START_TIMEOUT = 180  # s: importing gradio + torch on a 2-core machine
RUN_TIMEOUT = 300  # s: a 2-step GRPO run on the default model takes ~40-90 s here

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    pytest.skip("the playwright package is missing (pip install playwright)", allow_module_level=True)


def screenshot_dir() -> Path:
    base = Path(os.environ["TEST_OUTPUT_DIR"]) if os.environ.get("TEST_OUTPUT_DIR") else ROOT / "test-output"
    folder = base / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory):
    """The workbench on 127.0.0.1:<free port> with its own runs and data folders."""
    home = tmp_path_factory.mktemp("workbench")
    runs_dir = home / "runs"
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), RFT_WORKBENCH_RUNS=str(runs_dir), RFT_WORKBENCH_HOME=str(home),
               GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    log = open(home / "app.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--runs-dir", str(runs_dir)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + APP_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the app exited with {proc.returncode}:\n{(home / 'app.log').read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"the app did not answer within {APP_START_TIMEOUT} s:\n"
                        f"{(home / 'app.log').read_text()[-4000:]}")
        time.sleep(1)
    info = {"url": url, "home": home, "runs_dir": runs_dir, "proc": proc}
    yield info
    from app.engine.core import runs

    for r in runs.list_runs(runs_dir):  # never leave a worker behind
        if r.state in runs.ACTIVE_STATES:
            runs.request_stop(r.path)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    shutil.copy(home / "app.log", screenshot_dir() / "app.log")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(app_server["url"])
    expect(pg.get_by_role("tab", name="1 · Decide")).to_be_visible(timeout=30_000)
    pg.wait_for_timeout(1500)  # demo.load events
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors[:3]}"


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(700)


def shot(page, name: str) -> Path:
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def choose(page, elem_id: str, option: str) -> None:
    """Pick `option` in the gr.Dropdown with that elem_id."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option).first.click()


def set_code(page, elem_id: str, text: str) -> None:
    """Replace the text of a gr.Code editor (CodeMirror) as a paste would (no auto-indent)."""
    editor = page.locator(f"#{elem_id} .cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def fill_number(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(value)
    box.press("Tab")


def plot_points(page, elem_id: str) -> dict[str, int]:
    """Trace name → number of points of the plotly figure inside a gr.Plot."""
    return page.evaluate(
        """(id) => { const el = document.querySelector('#' + id + ' .js-plotly-plot');
                     if (!el || !el.data) return {};
                     const out = {}; for (const t of el.data) { if (t.name && t.x) out[t.name] = t.x.length; }
                     return out; }""", elem_id)


# -- 1 · Decide ------------------------------------------------------------------------------------------------------
def test_decide_wizard_recommends_grpo_for_few_labels(page):
    rec = page.locator("#decide-recommendation")
    expect(rec).to_contain_text("SFT", timeout=20_000)  # unanswered: the tree's defaults
    choose(page, "decide-builtin", "Arithmetic: 64 examples (few labels)")
    expect(page.locator("#decide-profile-md")).to_contain_text("rows", timeout=30_000)
    expect(page.locator("#decide-n_examples input, #decide-n_examples textarea").first).to_have_value("64")
    expect(rec).to_contain_text("GRPO", timeout=20_000)
    expect(rec).to_contain_text("fewer than 100")
    expect(page.locator("#decide-why")).to_contain_text("numeric_answer")
    page.wait_for_timeout(800)
    shot(page, "1-decide")
    # Change an answer by hand: "no program can check" leads elsewhere.
    page.locator("#decide-verifiable").get_by_label("No", exact=True).check()
    expect(rec).not_to_contain_text("GRPO (reinforcement", timeout=20_000)
    page.locator("#decide-verifiable").get_by_label("Yes", exact=True).check()
    expect(rec).to_contain_text("GRPO", timeout=20_000)
    # Carry the recommendation into the next step.
    page.locator("#decide-use").click()
    expect(page.get_by_role("tab", name="2 · Rewards")).to_have_attribute("aria-selected", "true", timeout=20_000)
    open_tab(page, "3 · Train")  # the pre-filled spec: the few-label task, GRPO, the suggested reward
    yaml_box = page.locator("#train-yaml")
    expect(yaml_box).to_contain_text("n: 96", timeout=10_000)
    expect(yaml_box).to_contain_text("method: grpo")
    expect(yaml_box).to_contain_text("numeric_answer")


# -- 2 · Rewards -----------------------------------------------------------------------------------------------------
def test_rewards_scores_typed_completions_and_reports_a_broken_reward(page):
    open_tab(page, "2 · Rewards")
    page.locator("#rewards-score").click()
    result = page.locator("#rewards-result")
    expect(result).to_contain_text("4 completions scored", timeout=60_000)
    table = page.locator("#rewards-table")
    expect(table).to_contain_text("numeric_answer")
    expect(table).to_contain_text("advantage")
    expect(result).to_contain_text("Group 1")
    shot(page, "2-rewards")

    # A user reward that fails at run time: the error names its line, nothing else breaks.
    page.locator("#rewards-use-mine input[type=checkbox]").check()
    set_code(page, "rewards-code",
             "def broken(completions, **kwargs):\n    print('scoring', len(completions))\n"
             "    return [1 / 0 for c in completions]\n")
    page.locator("#rewards-score").click()
    errors = page.locator("#rewards-errors")
    expect(errors).to_contain_text("line 3", timeout=60_000)
    expect(errors).to_contain_text("ZeroDivisionError")
    expect(page.locator("#rewards-prints textarea")).to_have_value("[broken]\nscoring 4", timeout=10_000)

    # A reward that does not even parse: the editor's status names the line.
    set_code(page, "rewards-code", "def broken(completions, **kwargs)\n    return [1.0]\n")
    page.locator("#rewards-check").click()
    status = page.locator("#rewards-code-status")
    expect(status).to_contain_text("Line 1", timeout=30_000)
    expect(status).to_contain_text("expected ':'")
    page.wait_for_timeout(500)
    shot(page, "2-rewards-error")


# -- 3 · Train -------------------------------------------------------------------------------------------------------
# A spec pasted into the YAML editor: numeric correctness plus a small length-shaping reward (it varies between
# completions even when all are wrong, so the 2 steps do update the adapter) and a high learning rate, so the
# compare test sees outputs that differ from the base model's.
TEST_SPEC_YAML = """\
method: grpo
model: default
name: ui-test
data:
  source: builtin:arithmetic
  eval_size: 16
rewards:
  - name: numeric_answer
    weight: 1.0
  - name: length
    weight: 0.5
    params: {mode: target, target: 12, unit: chars}
training:
  learning_rate: 0.005
  max_steps: 3
  per_device_train_batch_size: 8
generation:
  num_generations: 4
  max_completion_length: 8
logging:
  save_steps: 1
"""


def test_train_launches_a_grpo_run_with_live_charts(page, app_server):
    open_tab(page, "3 · Train")
    set_code(page, "train-yaml", TEST_SPEC_YAML)
    page.locator("#train-apply-yaml").click()
    expect(page.locator("#train-rewards")).to_contain_text("length", timeout=20_000)
    expect(page.locator("#train-name input, #train-name textarea").first).to_have_value("ui-test")
    # ... and the form: the smallest run that still shows everything.
    fill_number(page, "train-training-max-steps", "2")
    fill_number(page, "train-training-per-device-train-batch-size", "8")
    fill_number(page, "train-generation-num-generations", "4")
    fill_number(page, "train-generation-max-completion-length", "8")
    page.get_by_text("Data and evaluation", exact=True).click()
    fill_number(page, "train-data-eval-size", "8")
    fill_number(page, "train-logging-eval-max-new-tokens", "8")
    expect(page.locator("#train-yaml")).to_contain_text("max_steps: 2", timeout=10_000)
    page.locator("#train-launch").click()
    expect(page.locator("#train-action-status")).to_contain_text("Launched", timeout=60_000)

    status = page.locator("#train-status")
    expect(status).to_contain_text("running", timeout=120_000)
    # The reward chart gains points while the run goes on (updated by the timer, no reload).
    deadline = time.time() + RUN_TIMEOUT
    points: dict[str, int] = {}
    while time.time() < deadline:
        points = plot_points(page, "train-reward-plot")
        if points.get("numeric_answer", 0) >= 2:
            break
        page.wait_for_timeout(2000)
    assert points.get("numeric_answer", 0) >= 2 and points.get("total (weighted)", 0) >= 2, points
    expect(page.locator("#train-samples")).to_contain_text("What is", timeout=30_000)
    expect(status).to_contain_text("finished", timeout=RUN_TIMEOUT * 1000)
    dyn = plot_points(page, "train-dyn-plot")
    assert dyn.get("loss", 0) >= 2 and dyn.get("learning_rate", 0) >= 2, dyn
    assert plot_points(page, "train-eval-plot").get("accuracy", 0) == 2  # base model, then the trained one
    page.wait_for_timeout(1000)
    shot(page, "3-train")

    run_dirs = [d for d in app_server["runs_dir"].iterdir() if (d / "spec.yaml").exists()]
    assert len(run_dirs) == 1 and (run_dirs[0] / "adapter" / "adapter_config.json").exists()

    # A reloaded tab re-attaches to the same run from its folder.
    page.reload()
    open_tab(page, "3 · Train")
    expect(page.locator("#train-status")).to_contain_text("finished", timeout=30_000)
    expect(page.locator("#train-samples")).to_contain_text("What is", timeout=30_000)


# -- 4 · Compare -----------------------------------------------------------------------------------------------------
def test_compare_base_and_adapter_side_by_side(page, app_server):
    open_tab(page, "4 · Compare")
    models = page.locator("#compare-models")
    expect(models).to_contain_text("· final", timeout=30_000)
    models.get_by_label("base · SmolLM2-135M-Instruct").check()
    models.locator("label", has_text="· final").first.click()
    page.locator("#compare-go").click()
    expect(page.locator("#compare-status")).to_contain_text("3 prompts × 2 models", timeout=240_000)
    summary = page.locator("#compare-summary")
    expect(summary).to_contain_text("base · SmolLM2-135M-Instruct")
    expect(summary).to_contain_text("· final")
    table = page.locator("#compare-table")
    expect(table).to_contain_text("What is 17 + 25")
    expect(table).to_contain_text("summary")
    cards = page.locator("#compare-sbs .wb-card")
    expect(cards).to_have_count(2)
    # Mark the first prompt whose two outputs differ (identical outputs are no preference).
    for index in range(1, 4):
        fill_number(page, "compare-index", str(index))
        page.wait_for_timeout(800)
        outputs = cards.locator(".wb-output").all_inner_texts()
        if len(set(outputs)) == 2:
            break
    else:
        pytest.fail(f"the trained adapter answers exactly like the base model: {outputs}")
    page.locator("#compare-save-pair").click()
    expect(page.locator("#compare-pair-status")).to_contain_text("Saved", timeout=20_000)
    page.wait_for_timeout(500)
    shot(page, "4-compare")
    pairs = app_server["home"] / "preferences" / "pairs.jsonl"
    lines = pairs.read_text().splitlines()
    assert len(lines) == 1
    pair = json.loads(lines[0])
    assert pair["prompt"][-1]["role"] == "user" and "Reply with only the number" in pair["prompt"][-1]["content"]
    assert pair["chosen"][0]["role"] == "assistant" and pair["rejected"][0]["role"] == "assistant"


def test_export_the_run_as_gguf_checked_and_refuse_a_folder_outside(page, app_server):
    open_tab(page, "4 · Compare")
    page.locator("#compare-export").get_by_text("Export a run").click()
    run_name = next(d.name for d in app_server["runs_dir"].iterdir() if (d / "spec.yaml").exists())
    choose(page, "compare-exp-run", run_name)
    page.locator("#compare-exp-kind").get_by_text("GGUF file").click()
    expect(page.locator("#compare-exp-gguf")).to_be_visible()
    out_box = page.locator("#compare-exp-out input, #compare-exp-out textarea").first
    expect(out_box).to_have_value(re.compile(r"exports/.*-gguf-q8_0$"), timeout=10_000)
    expect(page.locator("#compare-exp-cmd")).to_contain_text("python -m app.export")
    expect(page.locator("#compare-exp-cmd")).to_contain_text("--gguf q8_0")
    outside = app_server["home"].parent / "elsewhere"
    out_box.fill(str(outside))
    page.locator("#compare-exp-btn").click()
    expect(page.locator("#compare-exp-status")).to_contain_text("outside the workbench's exports folder",
                                                                timeout=20_000)
    assert not outside.exists()
    out_box.fill(f"{run_name}-gguf-q8_0")  # relative: inside the exports folder
    page.locator("#compare-exp-btn").click()
    status = page.locator("#compare-exp-status")
    expect(status).to_contain_text("matches the in-app model", timeout=RUN_TIMEOUT * 1000)
    expect(status).to_contain_text(".gguf")
    expect(status).to_contain_text("Modelfile")
    shot(page, "4-compare-export")
    assert (app_server["home"] / "exports" / f"{run_name}-gguf-q8_0" / f"{run_name}-q8_0.gguf").stat().st_size > 1e8


def test_collect_pairs_with_keyboard_shortcuts(page, app_server):
    """The DPO collection loop: two sampled replies, the user presses a key, the pair is appended at once."""
    open_tab(page, "4 · Compare")
    pairs = app_server["home"] / "preferences" / "pairs.jsonl"
    before = len(pairs.read_text().splitlines()) if pairs.exists() else 0
    page.locator("#compare-collect").get_by_text("Collect preference pairs").click()
    choose(page, "compare-col-model", "base · SmolLM2-135M-Instruct")
    page.locator("#compare-col-start").click()
    expect(page.locator("#compare-col-a")).to_be_enabled(timeout=240_000)
    expect(page.locator("#compare-col-pair")).to_contain_text("What is")
    page.locator("#compare-col-status").click()  # focus away from any text field
    page.keyboard.press("a")
    expect(page.locator("#compare-col-status")).to_contain_text(re.compile(r"Prompt \d+: A preferred"), timeout=240_000)
    page.wait_for_timeout(500)
    shot(page, "4-compare-collect")
    lines = pairs.read_text().splitlines()
    assert len(lines) == before + 1, lines
    pair = json.loads(lines[-1])
    assert pair["chosen"][0]["role"] == "assistant" and pair["chosen"] != pair["rejected"]
    expect(page.locator("#compare-col-count")).to_contain_text(f"{len(lines)} preference pair(s)")
    page.locator("#compare-col-train").click()  # launch DPO from the pairs: a pre-filled run in 3 · Train
    expect(page.locator("#train-yaml")).to_contain_text("method: dpo", timeout=20_000)
    expect(page.locator("#train-yaml")).to_contain_text("pairs.jsonl")


def test_method_comparison_section_reopens_a_comparison_folder(page, app_server):
    """A comparison folder as `python -m app.compare_methods` leaves it (here written by hand: no training) shows as
    a table, held-out curves per method and the command; a bad setting is refused before anything starts."""
    from app.engine.core import runs
    from app.engine.evaluation import method_compare as mc

    home = app_server["home"]
    entries = []
    for key, evals in (("sft", [(0, 0.2), (10, 0.3)]), ("grpo", [(0, 0.2), (10, 0.6)])):
        run_dir = home / "fake-runs" / key
        run_dir.mkdir(parents=True)
        runs.update_status(run_dir, state="finished", step=10, started_at=0.0, ended_at=90.0)
        for step, acc in evals:
            runs.append_jsonl(run_dir / "metrics.jsonl", {"step": step, "eval/accuracy": acc, "eval/reward": acc})
        entries.append({"key": key, "label": mc.METHOD_LABELS[key], "state": "finished",
                        "runs": [{"run_dir": str(run_dir), "step_offset": 0, "max_steps": 10}]})
    folder = home / "comparisons" / "20261122-000000-arithmetic"
    folder.mkdir(parents=True)
    config = mc.CompareConfig(methods=["sft", "grpo"], steps=10).to_dict()
    (folder / mc.COMPARISON_FILE).write_text(json.dumps({"config": config, "state": "finished", "methods": entries}))

    open_tab(page, "4 · Compare")
    page.locator("#methods-section").get_by_text("Compare training methods").first.click()
    page.locator("#methods-section").get_by_role("button", name="↻").click()
    expect(page.locator("#methods-status")).to_contain_text("Finished: 2 methods", timeout=30_000)
    expect(page.locator("#methods-table")).to_contain_text("60.0%")
    page.wait_for_timeout(1000)
    assert plot_points(page, "methods-curves") == {"SFT": 2, "GRPO": 2}
    expect(page.locator("#methods-command")).to_contain_text("python -m app.compare_methods")
    fill_number(page, "methods-steps", "0")
    page.locator("#methods-start").click()
    expect(page.locator("#methods-action")).to_contain_text("Not started", timeout=20_000)
    shot(page, "4-compare-methods")
