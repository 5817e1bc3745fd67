"""`python -m app.engine.compare export …`, kept at this path so the documented command works. The module is
app/engine/evaluation/compare.py; importing this name gives that module itself (one compare module, not a copy)."""
import sys

from app.engine.evaluation import compare as _compare

if __name__ == "__main__":
    raise SystemExit(_compare.main())
sys.modules[__name__] = _compare
