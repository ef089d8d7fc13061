#!/bin/sh
# Makes sure Debian's redis-server is installed for the tests of the shared queue (--queue redis://),
# which start their own redis-server on a loopback port and stop it. As scripts/ensure-nginx.sh:
# installs with apt-get when root, never fails the caller; the tests themselves fail without
# redis-server when CI=true and skip loudly otherwise. The package's own service is not used.
REDIS="${REDIS_SERVER_PATH:-/usr/bin/redis-server}"

if [ -x "$REDIS" ]; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-redis: $REDIS not found; installing Debian's redis-server with apt-get..." >&2
  if DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; then
    # The package starts a system service on 6379; the tests start their own on other ports.
    (command -v service >/dev/null 2>&1 && service redis-server stop >/dev/null 2>&1) || true
    echo "ensure-redis: installed $("$REDIS" --version)" >&2
    exit 0
  fi
  echo "ensure-redis: apt-get install redis-server FAILED; the Redis tests will fail in CI and be skipped elsewhere." >&2
  exit 0
fi

echo "ensure-redis: $REDIS not found and cannot be installed automatically (needs root and apt-get)." >&2
echo "ensure-redis: install it with 'sudo apt-get install redis-server' or set REDIS_SERVER_PATH; the Redis tests will be skipped (or fail when CI=true)." >&2
exit 0
