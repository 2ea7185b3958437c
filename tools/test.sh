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

echo "== 3. every notebook on the CPU (flags slow and cuda skipped)"
$BIN/nbdev-test --n_workers 2 --timing --do_print

echo "== 4. pytest tests/"
$BIN/python -m pytest tests/ -q -p no:cacheprovider

echo "test command finished in $(( $(date +%s) - start )) s"
