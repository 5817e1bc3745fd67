"""Where the app keeps its files (no Gradio):

    runs dir   --runs-dir, else $RFT_WORKBENCH_RUNS, else ./runs             one folder per run
    data dir   --data-dir, else $RFT_WORKBENCH_HOME, else the runs dir's parent
      user_rewards/         rewards written in the playground (.py), reusable in runs and notebooks
      preferences/pairs.jsonl  preference pairs marked in the Compare tab (TRL's format, for DPO)
      preferences/thumbs.jsonl 👍/👎 marks on single outputs in the Compare tab (TRL's unpaired form, for KTO)
      datasets/             uploaded datasets, copied here so runs can read them after the upload is gone
      exports/              exported adapters and merged models

Only these folders (and the runs dir) are served to the browser (Gradio `allowed_paths`).
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from app.engine.core import REPOSITORY, runs

PROJECT_ROOT = REPOSITORY  # relative data paths, recipes and shipped files are found from here
RECIPES_DIR = PROJECT_ROOT / "recipes"
USER_REWARDS = "user_rewards"
PREFERENCES = "preferences"
DATASETS = "datasets"
EXPORTS = "exports"


@dataclass(frozen=True)
class WorkbenchPaths:
    """The folders the app reads and writes."""

    runs_dir: Path
    data_dir: Path

    @property
    def user_rewards_dir(self) -> Path:
        return self.data_dir / USER_REWARDS

    @property
    def preferences_file(self) -> Path:
        return self.data_dir / PREFERENCES / "pairs.jsonl"

    @property
    def thumbs_file(self) -> Path:
        return self.data_dir / PREFERENCES / "thumbs.jsonl"

    def marks_file(self, kind: str) -> Path:
        """Where the Compare tab collects a method's marks (`TrainingMethod.collects`: 'pairs' or 'thumbs')."""
        return {"pairs": self.preferences_file, "thumbs": self.thumbs_file}[kind]

    @property
    def endpoints_file(self) -> Path:
        """OpenAI-compatible endpoints added to 4 · Compare as model columns."""
        return self.data_dir / "endpoints.json"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / DATASETS

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / EXPORTS

    def served(self) -> list[str]:
        """Folders the browser may download from (Gradio `allowed_paths`): never the whole data dir's parent."""
        return [str(p) for p in (self.runs_dir, self.user_rewards_dir, self.preferences_file.parent, self.datasets_dir,
                                 self.exports_dir)]

    def ensure(self) -> "WorkbenchPaths":
        for folder in (self.runs_dir, self.user_rewards_dir, self.preferences_file.parent, self.datasets_dir,
                       self.exports_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def resolve_paths(runs_dir: str | os.PathLike[str] | None = None,
                  data_dir: str | os.PathLike[str] | None = None) -> WorkbenchPaths:
    """Folders from arguments, then $RFT_WORKBENCH_RUNS / $RFT_WORKBENCH_HOME, then defaults (see module doc)."""
    runs_path = Path(runs_dir).expanduser().resolve() if runs_dir else runs.default_runs_dir()
    if data_dir:
        data_path = Path(data_dir).expanduser().resolve()
    elif os.environ.get("RFT_WORKBENCH_HOME"):
        data_path = Path(os.environ["RFT_WORKBENCH_HOME"]).expanduser().resolve()
    else:
        data_path = runs_path.parent
    return WorkbenchPaths(runs_path, data_path)


# -- datasets ------------------------------------------------------------------------------------------------------
def store_upload(upload: str | os.PathLike[str], paths: WorkbenchPaths) -> Path:
    """Copy an uploaded dataset (a temporary file) into the datasets folder and return its lasting path. The same
    content uploaded twice maps to the same file."""
    src = Path(upload)
    if not src.exists():
        raise FileNotFoundError(f"The upload {src.name} is gone; upload it again.")
    paths.datasets_dir.mkdir(parents=True, exist_ok=True)
    name = slug(src.name, "dataset")
    target = paths.datasets_dir / name
    if target.exists() and target.read_bytes() != src.read_bytes():
        stem, suffix = os.path.splitext(name)
        target = paths.datasets_dir / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"
    if not target.exists():
        shutil.copyfile(src, target)
    return target


def slug(text: str, default: str = "file") -> str:
    """`text` as a safe file-name part."""
    return runs.slug(text, default, max_length=60)
