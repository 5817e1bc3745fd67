"""Clear the outputs of the notebooks before committing them.

    python notebooks/clean.py            # clean every notebooks/*.ipynb in place
    python notebooks/clean.py --check    # exit 1 (listing them) if any notebook still holds outputs

Outputs, execution counts and execution timings go; cell tags and the notebook metadata (Colab settings) stay. A code
cell tagged `keep_output` keeps its outputs (for a picture that helps a reader on GitHub).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
KEEP_TAG = "keep_output"


def clean(nb: nbformat.NotebookNode) -> bool:
    """Clear `nb` in place; returns whether anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.metadata.pop("execution", None) is not None:
            changed = True
        if KEEP_TAG in cell.metadata.get("tags", []):
            continue
        if cell.outputs or cell.execution_count is not None:
            cell.outputs, cell.execution_count = [], None
            changed = True
    for key in ("widgets", "papermill"):
        if nb.metadata.pop(key, None) is not None:
            changed = True
    return changed


def dirty(path: Path) -> bool:
    """Whether the notebook at `path` holds outputs that `clean` would remove."""
    return clean(nbformat.read(path, as_version=4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only report notebooks that hold outputs")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(HERE.glob("*.ipynb"))
    found = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if clean(nb):
            found.append(path)
            if not args.check:
                nbformat.write(nb, path)
    for path in found:
        print(f"{'has outputs' if args.check else 'cleaned'}: {path}")
    return 1 if args.check and found else 0


if __name__ == "__main__":
    sys.exit(main())
