#!/usr/bin/env bash
# Smoke test of a packed GPU bundle on THIS machine with the CPU provider: unpack it in a temporary
# folder, start the bundled server with the bundled node (nothing from the repository or the host's
# Node), wait for /readyz 200, then run the bundled GPU bench small (in-process model calls and one
# session through a second server), which generates real frames. Proves the archive is complete;
# says nothing about GPU speed.
#
#   scripts/check-gpu-bundle.sh BUNDLE.tar.xz
set -euo pipefail
BUNDLE="$(realpath "${1:?usage: $0 BUNDLE.tar.xz}")"
DIR="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT

tar -xJf "$BUNDLE" -C "$DIR"
B="$DIR/rtd-gpu-bundle"
NODE="$B/node/bin/node"
# Keep the host's Node and modules out of the picture: no PATH node, no NODE_PATH.
export PATH="/usr/bin:/bin" NODE_PATH=""
echo "bundled node: $("$NODE" --version)"

LOG="$DIR/server.log"
"$NODE" "$B/dist/server/main.js" --device cpu --port 0 --threads 2 --model "$B/models/default" > "$LOG" 2>&1 &
SERVER_PID=$!
PORT=""
for _ in $(seq 1 120); do
  if grep -q '"model ready"' "$LOG"; then
    PORT="$(grep -o '"port":[0-9]*' "$LOG" | head -1 | cut -d: -f2)"
    break
  fi
  if grep -q 'model failed to load' "$LOG" || ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$LOG" >&2; exit 1; fi
  sleep 0.5
done
[ -n "$PORT" ] || { echo "server not ready in 60 s" >&2; cat "$LOG" >&2; exit 1; }
STATUS="$("$NODE" -e "fetch('http://127.0.0.1:$PORT/readyz').then(r => console.log(r.status))")"
echo "/readyz: $STATUS"
[ "$STATUS" = 200 ] || exit 1
kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

echo "bundled GPU bench, CPU provider, embedded model (small):"
"$NODE" "$B/dist/bench/gpu.js" --model "$B/models/default" --device cpu --threads 2 --batches 1,2 --iters 2 --warmup 1 \
  --sessions 1,2 --warm 1 --duration 3 --max-batch 2 --gpu-name "none (bundle check on CPU)" --out "$DIR/results"
grep -q '| 1 | ' "$DIR"/results/gpu-cpu-*.md
FRAMES="$(grep -o '"frames": [0-9]*' "$DIR"/results/gpu-cpu-*.json | head -1 | grep -o '[0-9]*$')"
[ "${FRAMES:-0}" -gt 0 ] || { echo "no frames through the bundled server" >&2; exit 1; }
echo "bundle check passed: /readyz 200, $FRAMES frames through the bundled server (1 session, 3 s)"
