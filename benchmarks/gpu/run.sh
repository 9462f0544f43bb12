#!/usr/bin/env bash
# The one-shot GPU check, run on the GPU machine from the repository root:
#
#   bash benchmarks/gpu/run.sh OUT_DIR [run.py options: --phases, --quick, --device cpu]
#
# Installs the carried wheels (benchmarks/gpu/wheels, from fetch_wheels.py) into a temporary
# site folder, puts it and src/ on PYTHONPATH, and runs benchmarks/gpu/run.py, which writes
# results.json, results.md and run.log into OUT_DIR. WHEELS=DIR and PYTHON=EXE override the
# wheel folder and the interpreter (the image's python3 by default).
set -uo pipefail
OUT=${1:?usage: run.sh OUT_DIR [run.py options]}
shift
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-$HERE/wheels}
SITE=$(mktemp -d "${TMPDIR:-/tmp}/genlab-site.XXXXXX")
mkdir -p "$OUT"
start=$(date +%s)
if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  echo "no wheels in $WHEELS: run benchmarks/gpu/fetch_wheels.py here first" | tee "$OUT/run.log"
  exit 3
fi
# --no-deps: the wheels are exactly what the image lacks (fetch_wheels.py resolved them)
if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --target "$SITE" "$WHEELS"/*.whl 2>&1 | tee -a "$OUT/run.log"; then
  echo "installing the wheels failed (see run.log)" | tee -a "$OUT/run.log"
  exit 3
fi
echo "installed $(ls "$WHEELS"/*.whl | wc -l) wheels into $SITE in $(( $(date +%s) - start )) s" \
  | tee -a "$OUT/run.log"
export PYTHONPATH="$SITE:$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
# bytecode is written (into the temporary site folder and src/), so the two Python
# processes of the check (tests, benchmarks) do not each compile the wheels' sources again.
# On an H100 machine `import genlab.train` still took 11.7-17.3 s, most of it torch,
# Lightning and torchmetrics (docs/gpu.md)
export PYTHONUNBUFFERED=1
export WANDB_MODE=offline WANDB_SILENT=true
# deterministic cuBLAS for the exact-resume test (read when CUDA starts)
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
cd "$ROOT" || exit 3
"$PY" "$HERE/run.py" --out "$OUT" --install-seconds "$(( $(date +%s) - start ))" "$@"
status=$?
rm -rf "$SITE"
exit $status
