#!/usr/bin/env bash
# The GPU check on a machine with torch, transformers, peft and accelerate but no package registry:
#   bash bench/gpu_wheels.sh      (once, where the registry is reachable: fills bench/gpu-wheels/, ≤ 64 MiB)
#   bash bench/gpu_check.sh       (on the GPU machine, the wheels carried with the tree)
# installs the carried wheels offline into a private folder (nothing of the machine's own Python changes), then
# runs bench/gpu_check.py with any arguments given (e.g. --rounds 2, --variants plain,engine).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=bench/gpu-wheels
SITE=${GPU_CHECK_SITE:-${TMPDIR:-/tmp}/gpu-check-site}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  python -m pip install --disable-pip-version-check -q --no-index --no-deps --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "wheels       $(ls "$WHEELS"/*.whl | wc -l) from $WHEELS installed in $SITE"
else
  echo "wheels       none in $WHEELS: using this Python's packages as they are"
fi
python bench/gpu_check.py "$@"
