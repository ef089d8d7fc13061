#!/bin/sh
# Debian's Chromium for the browser end-to-end tests (test/browser.e2e.test.ts, test/fal-browser.e2e.test.ts).
# playwright-core drives it at /usr/bin/chromium; `npx playwright install` cannot work here (no
# network besides the npm registry and Debian's apt), so the browser comes from apt (1-2 minutes).
exec sh "$(dirname "$0")/ensure-debian-package.sh" chromium "${CHROMIUM_PATH:-/usr/bin/chromium}" chromium "the browser tests" --env CHROMIUM_PATH
