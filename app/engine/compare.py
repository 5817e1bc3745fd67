"""`python -m app.engine.compare export RUN_DIR OUT_DIR [--merged] [--checkpoint N] [--overwrite]`, the earlier
export command, forwarded to `python -m app.export RUN_DIR --out OUT_DIR …` so existing scripts keep working.
Importing this name gives app/engine/evaluation/compare.py itself (one compare module, not a copy)."""
import sys

from app.engine.evaluation import compare as _compare


def _forward(argv: list[str]) -> int:
    from app.engine.evaluation.export import main

    if argv[:1] == ["export"] and len(argv) >= 3 and not argv[2].startswith("-"):
        argv = [argv[1], "--out", argv[2], *argv[3:]]
    print("note: this command is now python -m app.export RUN_DIR --out OUT_DIR …", file=sys.stderr)
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(_forward(sys.argv[1:]))
sys.modules[__name__] = _compare
