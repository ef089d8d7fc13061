#!/bin/sh
# Makes sure Debian's Chromium is installed for the browser end-to-end tests (test/browser.e2e.test.ts).
# playwright-core drives it at /usr/bin/chromium; `npx playwright install` cannot work here (no
# network besides the npm registry and Debian's apt), so the browser comes from apt.
# Never fails the calling script: the browser test itself decides whether a missing browser is an
# error (CI=true) or a loud skip.
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: $CHROMIUM not found; installing Debian's chromium with apt-get (about 1-2 minutes)..." >&2
  if DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
    echo "ensure-chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)" >&2
    exit 0
  fi
  echo "ensure-chromium: apt-get install chromium FAILED; the browser tests will fail in CI and be skipped elsewhere." >&2
  exit 0
fi

echo "ensure-chromium: $CHROMIUM not found and cannot be installed automatically (needs root and apt-get)." >&2
echo "ensure-chromium: install it with 'sudo apt-get install chromium' or set CHROMIUM_PATH; browser tests will be skipped (or fail when CI=true)." >&2
exit 0
