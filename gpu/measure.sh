#!/usr/bin/env bash
# The GPU measurement, run ON a GPU host from the unpacked bundle (scripts/pack-gpu-bundle.sh):
# no network and no Node needed there; the host brings the NVIDIA driver (with its Vulkan ICD) and
# python3 with torch + onnx. Steps, all logged to RESULTS_DIR/measure.log:
#   1. name the GPU (nvidia-smi);
#   2. make WebGPU reachable: the bundled Vulkan loader (libvulkan1 .deb) when the host has none,
#      the NVIDIA ICD file when the loader does not find it;
#   3. probe the provider on the small embedded model (fails fast, with the reason, if it cannot start);
#   4. generate the full-size SD-Turbo stand-in (random weights, fp16) with the host's python;
#   5. time the same UNet and decoders in PyTorch (the ceiling);
#   6. run bench/gpu.js: UNet step at batch 1/2/4/8, preview and VAE decode, then frames/s and time
#      to first image through the server with 1, 8 and 32 streaming sessions (running + pending
#      kept full) at 1 and 2 steps, once with the few-step fast path off (VAE final frame,
#      last-step preview, no stream batching) and once on (preview-decoder final frame, one
#      decode, stream batching).
#
#   tar -xJf realtime-diffusion-gpu-bundle.tar.xz && bash rtd-gpu-bundle/gpu/measure.sh [RESULTS_DIR]
# Environment: DEVICE (default webgpu; cuda/tensorrt need the CUDA provider, absent from the bundle),
# PYTHON (default python3), WORK (stand-in folder parent, default rtd-gpu-bundle/work: ~2 GB),
# STANDIN_ARGS (default --fp16), CEILING_ARGS (extra torch_ceiling.py flags), BENCH_ARGS (extra
# bench/gpu.js flags, e.g. "--duration 10" or "--fast-path off"; later flags win), TIME_BUDGET_S
# (default 480: the whole run's time; each step is also capped). A CPU smoke run, from the unpacked bundle:
#   DEVICE=cpu PYTHON=/usr/bin/python3 STANDIN_ARGS="--scale 16 --sample-size 16 --fp16" \
#   CEILING_ARGS="--scale 16 --size 128 --batches 1 --iters 2" BENCH_ARGS="--batches 1 --sessions 1 --duration 3 --size 128" \
#   bash rtd-gpu-bundle/gpu/measure.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/gpu-results}" && cd "${1:-$ROOT/gpu-results}" && pwd)"
DEVICE="${DEVICE:-webgpu}"
PY="${PYTHON:-python3}"
WORK="${WORK:-$ROOT/work}"
NODE="$ROOT/node/bin/node"
STANDIN="$WORK/sd-turbo-standin"
exec > >(tee -a "$OUT/measure.log") 2>&1
step() { echo; echo "== $(date -u +%H:%M:%S) (${SECONDS} s in) $*"; }
# Every step runs under a cap of its own and within what is left of the whole run's budget
# (TIME_BUDGET_S, default 480 s: a lent GPU machine gives one command 10 minutes at most, and its
# start-up comes out of the same time), so a slow or hung step cannot take the later ones with it.
BUDGET="${TIME_BUDGET_S:-480}"
capped() { # capped CAP_SECONDS command...
  local cap="$1" left=$((BUDGET - SECONDS))
  shift
  if [ "$left" -lt 15 ]; then echo "no time left of TIME_BUDGET_S=$BUDGET for: $1"; return 124; fi
  if [ "$cap" -gt "$left" ]; then cap="$left"; fi
  timeout --kill-after=10 "$cap" "$@"
}

step "1. machine"
nvidia-smi | tee "$OUT/nvidia-smi.txt" || echo "nvidia-smi failed: is this a GPU host?"
GPU_NAME="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)"
GPU_NAME="${GPU_NAME:-unknown GPU}"
echo "GPU: $GPU_NAME"; "$NODE" --version; "$PY" -c 'import torch, onnx; print("torch", torch.__version__, "cuda", torch.version.cuda, "onnx", onnx.__version__)'
nproc

if [ "$DEVICE" = webgpu ]; then
  step "2. Vulkan for the WebGPU provider (Dawn)"
  if ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    echo "host Vulkan loader: $(ldconfig -p | grep -m1 'libvulkan\.so\.1')"
  else
    DEB="$(ls "$ROOT"/debs/libvulkan1_*.deb | head -1)"
    mkdir -p "$ROOT/vulkan"
    if command -v dpkg >/dev/null; then dpkg -x "$DEB" "$ROOT/vulkan"; else (cd "$ROOT/vulkan" && ar x "$DEB" && tar -xf data.tar.*); fi
    export LD_LIBRARY_PATH="$ROOT/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "bundled Vulkan loader: $ROOT/vulkan/usr/lib/x86_64-linux-gnu"
  fi
  # Containers often mount the driver under /usr/local/nvidia; the ICD names libGLX_nvidia.so.0 there.
  if [ -d /usr/local/nvidia/lib64 ]; then export LD_LIBRARY_PATH="/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
  if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
    ICD=""
    for f in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json; do
      if [ -f "$f" ]; then ICD="$f"; break; fi
    done
    if [ -z "$ICD" ]; then ICD="$(find / -xdev -name 'nvidia_icd*.json' -path '*icd.d*' 2>/dev/null | head -1 || true)"; fi
    if [ -n "$ICD" ]; then export VK_DRIVER_FILES="$ICD" VK_ICD_FILENAMES="$ICD"; fi
  fi
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-(loader default)}"
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
fi

step "3. probe: the $DEVICE provider on the embedded model"
PROBE_OK=1
capped 150 "$NODE" "$ROOT/dist/bench/gpu.js" --model "$ROOT/models/default" --device "$DEVICE" --batches 1 --iters 3 --warmup 1 \
  --skip-server --gpu-name "$GPU_NAME" --out "$OUT/probe" || PROBE_OK=0
if [ "$PROBE_OK" = 0 ]; then
  echo "The $DEVICE provider did not start (reason above). Still timing PyTorch; see docs/gpu.md, 'When WebGPU does not start'."
  # shellcheck disable=SC2086
  capped 120 "$PY" "$ROOT/gpu/torch_ceiling.py" --out "$OUT/torch.json" --batches 1,4,8 --size 512 ${CEILING_ARGS:-} || true
  exit 1
fi

step "4. stand-in (full size, random weights)"
if [ -f "$STANDIN/standin.json" ] && grep -q '"scale": 1,' "$STANDIN/standin.json"; then
  echo "reusing $STANDIN"
else
  # shellcheck disable=SC2086
  if ! capped 300 "$PY" "$ROOT/gpu/standin/make_standin.py" --out "$STANDIN" ${STANDIN_ARGS:---fp16}; then
    echo "The stand-in was not written (failed or out of time): nothing to measure the server with."
    exit 1
  fi
fi
cp "$STANDIN/standin.json" "$OUT/"

step "5. PyTorch ceiling (same UNet and decoders, fp16, CUDA)"
# The comparison, not the measurement: a short cap, and the server's figures come without it if it fails.
# shellcheck disable=SC2086
capped 90 "$PY" "$ROOT/gpu/torch_ceiling.py" --out "$OUT/torch.json" --batches 1,4,8 --size 512 ${CEILING_ARGS:-} ||
  echo "The PyTorch ceiling did not finish (failed or out of time); going on without it."
TORCH_JSON=()
if [ -f "$OUT/torch.json" ]; then TORCH_JSON=(--torch-json "$OUT/torch.json"); fi

step "6. onnxruntime-node on $DEVICE: model calls, then the server with 1, 8 and 32 sessions, fast path off and on"
# Each arm's one server runs 1- and 2-step requests (stream batching pairs a session's frames only
# from 2 steps on), 2 s of warming and 6 s measured per session count and step count: twelve
# windows of 8 s in all.
# shellcheck disable=SC2086
capped 420 "$NODE" "$ROOT/dist/bench/gpu.js" --model "$STANDIN" --device "$DEVICE" --size 512 --batches 1,2,4,8 --sessions 1,8,32 --steps 1,2 \
  --max-batch 8 --fast-path both --window 2 --warm 2 --duration 6 ${TORCH_JSON[@]+"${TORCH_JSON[@]}"} --gpu-name "$GPU_NAME" --out "$OUT" ${BENCH_ARGS:-}

step "done in ${SECONDS} s: $OUT"
ls -la "$OUT"
echo "Paste $OUT/gpu-$DEVICE-*.md into docs/performance.md (GPU section) and replace the 'not yet measured' rows in docs/gpu.md."
