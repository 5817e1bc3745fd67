"""The notebooks in notebooks/: committed clean and Colab-ready, and each one executed top to bottom (nbclient) on the
CPU with small parameters; any cell error fails.

Every notebook reads its parameters from RFT_NB_* environment variables (its cell tagged "parameters"), so the
kernel, which inherits this process's environment, runs it small here: 2 training steps, 4 completions of 8 tokens,
8 held-out prompts answered in 16 tokens, the plain TRL backend (it starts faster than Unsloth's CPU backend), one
CPU thread per process. Runs, exports and saved rewards go to a temporary folder ($RFT_WORKBENCH_RUNS), and the
kernel works there too (notebook 1 runs from notebooks/, as a user opens it).
"""
from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = {
    "01_choose_method.ipynb": "Choose your method",
    "02_rewards_playground.ipynb": "Rewards playground",
    "03_grpo_end_to_end.ipynb": "GRPO end to end",
    "04_method_comparison.ipynb": "SFT vs DFT vs Prefix-RFT",
    "05_compare_export.ipynb": "Compare and export",
}
COLAB = "https://colab.research.google.com/github/rft-workbench/rft-workbench/blob/main/notebooks/"
CELL_TIMEOUT_S = 900  # one cell: the training cells of a loaded 2-core machine stay well below it

QUICK = {
    "RFT_NB_MODEL": "default",
    "RFT_NB_BACKEND": "trl",
    "RFT_NB_STEPS": "2",
    "RFT_NB_BATCH": "4",
    "RFT_NB_GENERATIONS": "4",
    "RFT_NB_COMPLETION_TOKENS": "8",
    "RFT_NB_EVAL_SIZE": "8",
    "RFT_NB_EVAL_TOKENS": "16",
    "RFT_NB_GGUF": "",
    "RFT_NB_EVAL_EVERY": "0",
    "RFT_NB_PROMPTS": "8",
    "RFT_NB_SAMPLES": "4",
    "RFT_NB_SAMPLE_TOKENS": "16",
    "RFT_NB_REFRESH": "1",
    "RFT_NB_OVERRIDES": "training.per_device_train_batch_size=4;generation.num_generations=4;"
                        "generation.max_completion_length=8;logging.eval_max_new_tokens=16",
    # One thread per process: the kernel and the training workers share 2 cores (often with other jobs), and
    # PyTorch's OpenMP threads then wait on each other; measured 37 s instead of 117 s for one small GRPO run.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
}


def _clean_module():
    spec = importlib.util.spec_from_file_location("notebook_clean", NOTEBOOK_DIR / "clean.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(name: str):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(nb) -> str:
    """Everything the executed notebook printed or displayed as text."""
    parts = []
    for cell in _code(nb):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(str(out["data"].get("text/plain", "")))
    return "\n".join(parts)


# -- committed form -------------------------------------------------------------------------------------------------
def test_the_notebook_folder_holds_exactly_the_five_notebooks():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_committed_clean_and_colab_ready(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert not _clean_module().clean(nb), f"{name} holds outputs: run `python notebooks/clean.py`"
    title = nb.cells[0]
    assert title.cell_type == "markdown" and NOTEBOOKS[name] in title.source
    assert f"]({COLAB}{name})" in title.source, "the Colab badge must open this notebook"
    setup, params = _code(nb)[:2]
    assert '"google.colab" in sys.modules' in setup.source and "pip" in setup.source and "unsloth" in setup.source
    assert "parameters" in params.metadata.get("tags", []), "the second code cell holds the parameters (papermill tag)"
    assert "os.environ.get(\"RFT_NB_" in params.source


def test_readme_links_every_notebook_to_colab():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in NOTEBOOKS:
        assert f"({COLAB}{name})" in readme, f"README: no Colab badge for {name}"
        assert f"(notebooks/{name})" in readme, f"README: no link to notebooks/{name}"


def test_clean_helper_clears_outputs_but_keeps_tagged_pictures():
    clean = _clean_module().clean
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("1", outputs=[nbformat.v4.new_output("stream", text="x")], execution_count=3),
        nbformat.v4.new_code_cell("2", outputs=[nbformat.v4.new_output("stream", text="y")], execution_count=4,
                                  metadata={"tags": ["keep_output"]}),
    ])
    assert clean(nb) and nb.cells[0].outputs == [] and nb.cells[0].execution_count is None
    assert nb.cells[1].outputs and not clean(nb)


# -- executed -------------------------------------------------------------------------------------------------------
def execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cwd: Path | None = None,
            on_path: bool = True, **params: str):
    """Run the notebook in a fresh kernel with the quick parameters; fail with the cell's error if one fails."""
    for key, value in {**QUICK, **params}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RFT_WORKBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("RFT_WORKBENCH_HOME", raising=False)
    if on_path:  # the kernel works in a folder outside the checkout: the project must be importable
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    else:
        monkeypatch.delenv("PYTHONPATH", raising=False)
    nb = _read(name)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd or tmp_path)}})
    start = time.time()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{name}: a cell failed:\n{exc}", pytrace=False)
    print(f"{name}: {time.time() - start:.0f} s")
    return nb


def test_01_choose_method_from_the_notebooks_folder(tmp_path, monkeypatch):
    # Runs where a user opens it (notebooks/), finding the checkout by itself; writes only to $RFT_WORKBENCH_RUNS.
    nb = execute("01_choose_method.ipynb", tmp_path, monkeypatch, cwd=NOTEBOOK_DIR, on_path=False)
    text = _text(nb)
    assert "Recommended: DFT" in text
    assert (tmp_path / "runs" / "recommended-dft.yaml").exists()


def test_02_rewards_playground(tmp_path, monkeypatch):
    text = _text(execute("02_rewards_playground.ipynb", tmp_path, monkeypatch))
    assert "RewardCodeError (line 1)" in text and "timed out after 1 s" in text and "Reward dry run failed" in text
    assert (tmp_path / "user_rewards" / "last_number_is_answer.py").exists()


@pytest.mark.e2e
def test_03_grpo_end_to_end(tmp_path, monkeypatch):
    text = _text(execute("03_grpo_end_to_end.ipynb", tmp_path, monkeypatch))
    assert re.search(r"Run finished: .*grpo-notebook-grpo-arithmetic", text)
    assert re.search(r"held-out accuracy: \d+% before → \d+% after 2 steps", text)
    (run_dir,) = (tmp_path / "runs").glob("*-grpo-notebook-grpo-arithmetic")
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.e2e
def test_04_method_comparison(tmp_path, monkeypatch):
    text = _text(execute("04_method_comparison.ipynb", tmp_path, monkeypatch))
    assert "Finished: 3 methods." in text
    (folder,) = (tmp_path / "comparisons").iterdir()
    assert (folder / "table.md").exists()


@pytest.mark.e2e
def test_05_compare_export(tmp_path, monkeypatch):
    text = _text(execute("05_compare_export.ipynb", tmp_path, monkeypatch))
    assert "merged export answers like the tuned model: True" in text
    assert "adapter export answers like the tuned model: True" in text
    (export,) = (tmp_path / "exports").iterdir()
    assert (export / "adapter" / "adapter_model.safetensors").exists()
    assert (export / "merged" / "model.safetensors").exists()
    assert not (export / "gguf-q8_0").exists()  # RFT_NB_GGUF="": GGUF export is tested in test_e2e_train
