#!/usr/bin/env bash
# Prepares bench/gpu-wheels/: the wheels bench/gpu_check.py needs on a GPU machine that has no package registry.
#
#   bash bench/gpu_wheels.sh              # on a machine whose pip reaches PyPI (any OS Python will do)
#   then the folder travels with the work tree (it is git-ignored, so carry it: at most 64 MiB), and on the GPU
#   machine `bash bench/gpu_check.sh` installs it offline (pip install --no-index --no-deps bench/gpu-wheels/*.whl,
#   or with --target DIR put in front of PYTHONPATH) and runs the check.
#
# Settings (environment):
#   PYTHON_VERSION=3.12   the GPU machine's Python (wheels are fetched for it, whatever Python runs this)
#   PLATFORMS="manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64"   (and `any`)
#   PYTHON=python3        the Python whose pip downloads and which repacks
#   first argument        the output folder (default bench/gpu-wheels; its old *.whl are replaced)
#
# The target is taken to have torch, transformers, peft, accelerate and tensorboard; bench/gpu_wheels.txt pins
# everything else (trl, unsloth, unsloth_zoo, datasets and what only they need), one wheel per line, each
# downloaded with --no-deps (unsloth also declares xformers, bitsandbytes, torchvision, torchao, cut_cross_entropy,
# diffusers and certifi>=2026.10.19: its GPU code imports the first five under try/except and falls back without
# them, diffusers is never imported on this path, and any certifi will do). Four wheels are repacked
# smaller, their RECORD rewritten to list only what is left, so pip installs them as usual:
#   unsloth   without studio/ (the Unsloth Studio web app: ~25 of its 28.6 MB; `import unsloth` does not use it)
#   pyarrow   without Arrow Flight and S3 (libarrow_flight, libarrow_s3, libarrow_python_flight and the
#             _flight/_s3fs modules: datasets never loads them, pyarrow.fs skips S3 when _s3fs is missing),
#             without the two extra copies of each libarrow_python*.so (a wheel has no symlinks: only the
#             .so.NNNN soname is loaded), headers, Cython sources and tests. libarrow_substrait stays: lib.so needs it.
#   pandas    without pandas/tests
#   plotly    without its JupyterLab extension and bundled plotly.js (~6 MB; building figures needs neither)
# A removed shared library that a kept one still names as a dependency stops the script, as does a strip pattern
# that matches nothing (a new version laid out differently) and a folder over 64 MiB.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/bench/gpu-wheels}")
LIST=$ROOT/bench/gpu_wheels.txt
PY=${PYTHON:-python3}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
PLATFORMS=${PLATFORMS:-manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64}
LIMIT=$((64 * 1024 * 1024))

# What each repacked wheel loses (fnmatch patterns on paths inside the wheel; `*` crosses `/`).
STRIP_unsloth=("studio/*")
STRIP_pyarrow=(
  "pyarrow/libarrow_flight.so*" "pyarrow/libarrow_python_flight.so*" "pyarrow/_flight.*.so"
  "pyarrow/libarrow_s3.so*" "pyarrow/_s3fs.*.so"
  "pyarrow/libarrow_python.so" "pyarrow/libarrow_python.so.*.*.*"
  "pyarrow/libarrow_python_parquet_encryption.so" "pyarrow/libarrow_python_parquet_encryption.so.*.*.*"
  "pyarrow/_pyarrow_cpp_tests.*.so" "pyarrow/tests/*" "pyarrow/include/*" "pyarrow/src/*" "pyarrow/*.pyx"
  "pyarrow/*.pxd" "pyarrow/*.pxi" "pyarrow/includes/*"
)
STRIP_pandas=("pandas/tests/*")
STRIP_plotly=("plotly/labextension/*" "plotly-*.data/*" "plotly/package_data/plotly.min.js"
  "plotly/package_data/widgetbundle.js")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-wheels.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/download" "$WORK/bundle"

platform_args=(--platform any)
for p in $PLATFORMS; do platform_args+=(--platform "$p"); done
echo "Downloading $(grep -cE '^[^#[:space:]]' "$LIST") wheels for CPython $PYTHON_VERSION ($PLATFORMS) …"
"$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
  --implementation cp --python-version "$PYTHON_VERSION" "${platform_args[@]}" \
  -d "$WORK/download" -r "$LIST"

# repack WHEEL OUT PATTERN...: copies WHEEL to OUT without the entries matching any PATTERN, RECORD rewritten.
repack() {
  "$PY" - "$@" <<'PYEOF'
import csv, fnmatch, io, os, sys, zipfile

src, dst, *patterns = sys.argv[1:]
drop = lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns)
used, removed, removed_bytes = set(), [], 0
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
    record = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
    kept_elf = []
    for info in zin.infolist():
        if info.filename == record:
            continue
        hits = [p for p in patterns if fnmatch.fnmatchcase(info.filename, p)]
        if hits:
            used.update(hits)
            removed.append(info.filename)
            removed_bytes += info.compress_size
            continue
        data = zin.read(info)
        if data[:4] == b"\x7fELF":
            kept_elf.append((info.filename, data))
        info.compress_type = zipfile.ZIP_DEFLATED
        zout.writestr(info, data, compresslevel=9)
    rows = [row for row in csv.reader(io.StringIO(zin.read(record).decode())) if row and not drop(row[0])]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    zout.writestr(zin.getinfo(record), text.getvalue(), compresslevel=9)
unused = [p for p in patterns if p not in used]
if unused:
    sys.exit(f"error: {os.path.basename(src)}: strip pattern(s) {unused} match nothing; review bench/gpu_wheels.sh")
# A removed shared library must not be a dependency (DT_NEEDED, a NUL-terminated name in .dynstr) of a kept one.
for name in (os.path.basename(r) for r in removed if ".so" in os.path.basename(r)):
    needed_by = [f for f, data in kept_elf if b"\0" + name.encode() + b"\0" in data]
    if needed_by:
        sys.exit(f"error: {os.path.basename(src)}: removed {name} is needed by {needed_by[0]}")
print(f"  repacked {os.path.basename(src)}: {len(removed)} files ({removed_bytes / 2**20:.1f} MiB compressed) left out")
PYEOF
}

for wheel in "$WORK"/download/*.whl; do
  name=$(basename "$wheel")
  dist=${name%%-*}
  strip_var="STRIP_${dist}[@]"
  if declare -p "STRIP_${dist}" >/dev/null 2>&1; then
    repack "$wheel" "$WORK/bundle/$name" "${!strip_var}"
  else
    cp "$wheel" "$WORK/bundle/$name"
  fi
done

total=0
echo
printf '%10s  %s\n' "MiB" "wheel"
for wheel in "$WORK"/bundle/*.whl; do
  size=$(stat -c %s "$wheel")
  total=$((total + size))
  awk -v s="$size" -v n="$(basename "$wheel")" 'BEGIN { printf "%10.2f  %s\n", s / 1048576, n }'
done
awk -v s="$total" -v l="$LIMIT" 'BEGIN { printf "%10.2f  total (%d bytes; limit %d, 64 MiB)\n", s / 1048576, s, l }'
if ((total > LIMIT)); then
  echo "error: the wheels come to $total bytes, over the 64 MiB ($LIMIT bytes) the tree may carry;" \
       "$OUT is left as it was" >&2
  exit 1
fi

mkdir -p "$OUT"
rm -f "$OUT"/*.whl
mv "$WORK"/bundle/*.whl "$OUT"/
echo "$(ls "$OUT"/*.whl | wc -l) wheels in $OUT for CPython $PYTHON_VERSION."
