"""`python -m app.serve RUN_DIR [--port P] [--checkpoint N] [--engine auto|transformers|vllm]`: serve a run's model
over the OpenAI chat-completions API on 127.0.0.1. See app/engine/evaluation/serve.py."""
from app.engine.evaluation.serve import main

if __name__ == "__main__":
    raise SystemExit(main())
