"""The RunSpec and its validation, the run store, worker processes and the GPU rule, the app's folders."""
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]  # the repository: recipes, shipped data, `python -m app.…` from here
