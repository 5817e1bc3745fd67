"""`python -m app.export RUN_DIR [--checkpoint N] [--out DIR] [--merged] [--gguf q8_0|f16|bf16]`: export a run
(adapter, merged model or GGUF) and check it by loading it back. See app/engine/evaluation/export.py."""
from app.engine.evaluation.export import main

if __name__ == "__main__":
    raise SystemExit(main())
