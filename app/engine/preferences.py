"""`python -m app.engine.preferences arithmetic|check …`, kept so the documented command works: the pair files live
in app/engine/data/preferences.py."""
from app.engine.data.preferences import main

if __name__ == "__main__":
    raise SystemExit(main())
