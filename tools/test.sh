#!/usr/bin/env bash
# The project's test command (called by `make test` and by .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PYTHONHASHSEED=0 MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
start=$(date +%s)

echo "== 1. notebooks and library in sync (nbdev-export and nbdev-clean change nothing)"
snap() { find pixelbert nbs -type f \( -name '*.py' -o -name '*.ipynb' -o -name '*.txt' \) -not -path '*/.ipynb_checkpoints/*' -not -path '*/__pycache__/*' | sort | xargs sha1sum; }
before=$(snap)
$BIN/nbdev-export
$BIN/nbdev-clean
after=$(snap)
if [ "$before" != "$after" ]; then
  echo "FAIL: nbdev-export/nbdev-clean changed these files; export and clean the notebooks, then commit:"
  diff <(echo "$before") <(echo "$after") || true
  exit 1
fi

echo "== 2. README.md is generated from nbs/index.ipynb and up to date"
$BIN/python tools/make_readme.py --check

echo "== 3. every notebook on the CPU (flags slow and cuda skipped; each must finish within ${NB_LIMIT_S:=180} s)"
nblog=$(mktemp)
trap 'rm -f "$nblog"' EXIT
# two notebooks run at once on 2 cores: one thread each, or OpenMP threads spin against each other
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $BIN/nbdev-test --n-workers 2 --timing --do-print 2>&1 | tee "$nblog"
# nbdev-test --timing prints "NAME.ipynb: N secs" per notebook once all pass; enforce the per-notebook limit
echo "-- time per notebook (2 at a time):"
grep -E '^[^ ]+\.ipynb: [0-9]+ secs$' "$nblog" | sort || true
n_timed=$(grep -cE '^[^ ]+\.ipynb: [0-9]+ secs$' "$nblog" || true)
if [ "$n_timed" -eq 0 ]; then echo "FAIL: nbdev-test printed no notebook timings"; exit 1; fi
slow=$(awk -v lim="$NB_LIMIT_S" '/^[^ ]+\.ipynb: [0-9]+ secs$/ { if ($2 + 0 > lim) print }' "$nblog")
if [ -n "$slow" ]; then
  echo "FAIL: these notebooks took longer than ${NB_LIMIT_S} s (mark long cells #| slow, or make them smaller):"
  echo "$slow"
  exit 1
fi

echo "== 4. Chromium for the documentation site's browser test"
bash tools/install_chromium.sh

echo "== 5. pytest tests/"
if ! ls tests/test_*.py >/dev/null 2>&1; then echo "FAIL: no tests/test_*.py"; exit 1; fi
$BIN/python -m pytest tests/ -q -p no:cacheprovider --durations=10

echo "test command finished in $(( $(date +%s) - start )) s"
