#!/usr/bin/env bash
# One lent-GPU session for issue 7, in one command (docs: nbs/16_gpu.ipynb, "What the GPU session has to do").
#   OUT=DIR BUDGET=400 bash scripts/gpu_session.sh
# (DEVICE=cpu BUDGET=0 runs every step but the benchmark's phases on the CPU: what tests/test_bench.py does)
# 1. the machine: nvidia-smi, versions;  2. scripts/bench_gpu.py (tables, JSON, loss curve);
# 3. `pixelbert-pretrain` under torchrun on the GPU (NCCL), tiny preset, with a checkpoint and a resume;
# 4. `pixelbert-demo --quick` on the GPU (its numbers mean nothing: it checks the GPU path end to end).
# A bare GPU machine has PyTorch, torchvision and transformers but not fastcore: carry
# .venv/lib/python3.*/site-packages/fastcore (pure Python); it is put on PYTHONPATH here.
set -u
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/gpu_session}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
SP=$(ls -d "$PWD"/.venv/lib/python3*/site-packages 2>/dev/null | head -1)
python3 -c 'import fastcore' 2>/dev/null || PYTHONPATH="$SP${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
{ nvidia-smi; python3 -c 'import sys, torch, torchvision, transformers, fastcore; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "torchvision", torchvision.__version__, "transformers", transformers.__version__, "fastcore", fastcore.__version__); print(torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0))'; nproc; free -g; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
el "benchmark"
timeout $(( ${BUDGET:-400} + 100 )) python3 scripts/bench_gpu.py --device $DEVICE --out "$OUT" --budget-s "${BUDGET:-400}" 2>&1 | tee "$OUT/bench_stdout.txt"
el "torchrun (NCCL), tiny preset, 20 steps, checkpoint every 10, then a resume to 30"
D=$(mktemp -d); printf 'from pixelbert.trainer import pretrain_cli\nraise SystemExit(pretrain_cli())\n' > "$D/pretrain.py"
COMMON="--preset tiny --batch-size 32 --n-images 200 --eval-batches 2 --log-every 5 --save-every 10 --no-progress --device $DEVICE --seed 0 --tag-steps 50"
{ timeout 150 python3 -m torch.distributed.run --nnodes 1 --nproc_per_node 1 --master_addr 127.0.0.1 --master_port 29511 \
    "$D/pretrain.py" $COMMON --steps 20 --out "$D/run"; echo "rc=$?"
  timeout 100 python3 -m torch.distributed.run --nnodes 1 --nproc_per_node 1 --master_addr 127.0.0.1 --master_port 29512 \
    "$D/pretrain.py" $COMMON --steps 30 --resume --out "$D/run"; echo "rc=$?"
  ls "$D/run"; tail -n 4 "$D/run/log.jsonl"; } > "$OUT/torchrun.txt" 2>&1
tail -n 25 "$OUT/torchrun.txt"
el "quick demo on the GPU"
{ timeout 180 python3 -c 'from pixelbert.cli import run_demo, DemoConfig; run_demo(DemoConfig.quick(seed=0), "'"$D"'/demo", "'"$DEVICE"'", "auto", progress=False)'; echo "rc=$?"; } > "$OUT/demo_quick.txt" 2>&1
tail -n 8 "$OUT/demo_quick.txt"; cp "$D/demo/metrics.json" "$OUT/demo_quick_metrics.json" 2>/dev/null
el "done"; ls -la "$OUT"
