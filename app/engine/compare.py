"""`python -m app.engine.compare export …`, kept so the documented command works: the export CLI itself lives in
app/engine/evaluation/compare.py."""
from app.engine.evaluation.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
