#!/usr/bin/env bash
# `make gpu-check`: every GPU check in one run, sized for <= 8 minutes on one GPU.
#   1. the CUDA test cases (pytest -m cuda)
#   2. a short real training run on an embedded zoo with the GPU trainer config: checkpoint, then resume
#   3. the DDP code path with trainer.devices=1, and 2 where the machine has >= 2 GPUs; a bf16-mixed run
#   4. the pure-encoder classification task on mnist5k-inr (published INR encoder size, fixed budget)
#   5. the pure ScaleGMN autoencoder (published shape, probe off) on mnist5k-inr: test PSNR vs the constant image
#   6. the benchmarks (python -m benchmarks) on the device -> bench/results-gpu.json
# On a machine without a CUDA device it says so in one line and exits 0 (CI runs it that way).
# PYTHON: the interpreter to use (default .venv/bin/python, else python3). A GPU image without
# omegaconf/mlxtend: put their wheels in wheels/ (pip download -d wheels omegaconf antlr4-python3-runtime
# mlxtend) and they are installed from there, with no network.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu-check: no CUDA device on this machine ($PY): GPU checks skipped"
  exit 0
fi
if ! "$PY" -c "import omegaconf, mlxtend" 2>/dev/null; then
  [ -d wheels ] && "$PY" -m pip install --quiet --no-index --find-links wheels omegaconf mlxtend || true
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-gpu-check}
mkdir -p "$OUT" bench
ngpu=$("$PY" -c "import torch; print(torch.cuda.device_count())")
"$PY" -c "import torch; print('gpu-check:', torch.cuda.get_device_name(0), 'x', torch.cuda.device_count(), 'torch', torch.__version__)"
step() { echo "== $1 ($(date +%T))"; }

step "CUDA tests"
"$PY" -m pytest -q -m cuda -p no:cacheprovider tests/nn tests/training || rc_tests=$?

step "zoos (small, embedded)"
"$PY" -m gmnae zoo build digits-inr --size 400 --steps 150 --out "$OUT/zoo-digits-inr" --no-progress
"$PY" -m gmnae zoo build mnist5k-inr --out "$OUT/zoo-mnist5k-inr" --no-progress

step "GPU training, checkpoint, resume"
common=(dataset=digits-inr dataset.zoo="$PWD/$OUT/zoo-digits-inr" trainer=gpu runs_dir="$PWD/$OUT/runs"
        trainer.enable_progress_bar=false evaluation.every_n_val_epochs=0)
"$PY" -m gmnae train "${common[@]}" run_name=gpu trainer.max_epochs=2
"$PY" -m gmnae train --resume "$OUT/runs/gpu" trainer.max_epochs=3

step "DDP, 1 device"
"$PY" -m gmnae train "${common[@]}" trainer=ddp trainer.accelerator=gpu trainer.devices=1 run_name=ddp1 trainer.max_epochs=1
if [ "$ngpu" -ge 2 ]; then
  step "DDP, 2 devices"
  "$PY" -m gmnae train "${common[@]}" trainer=ddp trainer.accelerator=gpu trainer.devices=2 run_name=ddp2 trainer.max_epochs=1
fi

step "bf16-mixed training on the GPU"
"$PY" -m gmnae train "${common[@]}" run_name=bf16 trainer.max_epochs=1 trainer.precision=bf16-mixed

step "pure ScaleGMN classification on mnist5k-inr (d=128, 4 layers, 30 epochs)"
"$PY" -m gmnae train task=classify dataset=mnist5k-inr dataset.zoo="$PWD/$OUT/zoo-mnist5k-inr" model=scalegmn-inr \
  model.encoder.input_scale=layer-rms trainer=gpu trainer.max_epochs=30 runs_dir="$PWD/$OUT/runs" run_name=classify \
  trainer.enable_progress_bar=false

step "pure ScaleGMN autoencoder on mnist5k-inr (d=128, 4 layers, probe off, 40 epochs)"
"$PY" -m gmnae train dataset=mnist5k-inr dataset.zoo="$PWD/$OUT/zoo-mnist5k-inr" model=scalegmn-inr model.probe.points=0 \
  trainer=gpu trainer.max_epochs=40 data.batch_size=128 runs_dir="$PWD/$OUT/runs" run_name=autoencode-pure \
  evaluation.every_n_val_epochs=0 trainer.enable_progress_bar=false
"$PY" -m gmnae train --resume "$OUT/runs/autoencode-pure" mode=validate trainer.enable_progress_bar=false | tail -4

step "bench on the device"
"$PY" -m benchmarks --only encoder training merge datamodule --out bench/results-gpu.json
echo "gpu-check: done; figures in bench/results-gpu.json and $OUT/runs/classify/results.json"
exit ${rc_tests:-0}
