#!/bin/sh
# Makes sure Debian's nginx is installed for test/nginx-deploy.e2e.test.ts, which runs
# deploy/nginx/nginx.conf in front of two server processes on loopback (the compose file's front, without
# Docker). As scripts/ensure-chromium.sh: installs with apt-get when root, never fails the caller;
# the test itself fails without nginx when CI=true and skips loudly otherwise.
NGINX="${NGINX_PATH:-/usr/sbin/nginx}"

if [ -x "$NGINX" ]; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-nginx: $NGINX not found; installing Debian's nginx-light with apt-get..." >&2
  if DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null; then
    echo "ensure-nginx: installed $("$NGINX" -v 2>&1)" >&2
    exit 0
  fi
  echo "ensure-nginx: apt-get install nginx-light FAILED; the nginx test will fail in CI and be skipped elsewhere." >&2
  exit 0
fi

echo "ensure-nginx: $NGINX not found and cannot be installed automatically (needs root and apt-get)." >&2
echo "ensure-nginx: install it with 'sudo apt-get install nginx-light' or set NGINX_PATH; the nginx test will be skipped (or fail when CI=true)." >&2
exit 0
