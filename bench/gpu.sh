#!/usr/bin/env bash
# Everything a GPU machine should measure, in one run of under 10 minutes: the CUDA tests, the
# start-up costs, the step's variants (bench/gpu_variants.py), then the GPU training benchmark
# with whole training runs to the bundled model's quality. Each stage has a time limit;
# gpu_variants.py writes its results after every variant, so a stage cut short keeps what it
# measured. Logs and results go to $OUT; data: the MNIST IDX files in $LATENT_EXPLORER_DATA.
# bench/results/train_speed_cuda* and gpu_variants.* come from it (docs/benchmarks.md).
#
#   OUT=/tmp/out LATENT_EXPLORER_DATA=.mnist bash bench/gpu.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
OUT=${OUT:-/tmp/gpu-session}
DATA=${LATENT_EXPLORER_DATA:?set LATENT_EXPLORER_DATA to the MNIST folder}
mkdir -p "$OUT"
started=$SECONDS
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

echo "== CUDA tests ($((SECONDS - started)) s)"
timeout 120 python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda.py tests/test_graphed.py \
  tests/test_train.py -k "cuda or graphed or eval_every or non_finite" 2>&1 | tee "$OUT/pytest_cuda.log" | tail -25

echo "== start-up costs ($((SECONDS - started)) s)"
for code in "import torch" "import torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize()"; do
  TIMEFORMAT="%R s: $code"; time python3 -c "$code"
done 2>&1 | tee -a "$OUT/gpu.txt"

if [ "${VARIANTS:-1}" != 0 ]; then  # VARIANTS=0 skips them (measured on the H100: gpu_variants.md)
  echo "== step variants: layout, cudnn.benchmark, torch.compile ($((SECONDS - started)) s)"
  timeout 150 python3 bench/gpu_variants.py --device cuda --data-dir "$DATA" --out "$OUT" \
    2>&1 | tee "$OUT/variants.log" | tail -10
fi

echo "== benchmark ($((SECONDS - started)) s)"
# the 84-epoch recipe from PyTorch's start, then --recipe fast (60 epochs from a Kaiming start)
recipe="--epochs 84 --batch-size 256 --lr 3e-3 --weight-decay 0.1 --eval-every 10"
fast="--recipe fast"
timeout 300 python3 bench/train_speed.py --device cuda --data-dir "$DATA" --out "$OUT" \
  --quality "$recipe" --quality "$fast" --quality "$fast --seed 1" --quality "$fast --seed 2" \
  2>&1 | tee "$OUT/bench.log" | grep -v "^\s*$" | tail -30

echo "== done ($((SECONDS - started)) s)"
