#!/bin/sh
# Makes sure a program the tests drive is installed from Debian's packages: installs it with apt-get
# when missing and running as root, and never fails the caller. The tests themselves decide whether
# a missing program is an error (CI=true) or a loud skip. Used by ensure-chromium.sh,
# ensure-nginx.sh and ensure-redis.sh.
#
#   sh scripts/ensure-debian-package.sh NAME BINARY PACKAGE TESTS [--no-recommends] [--stop-service S] [--env VAR]
NAME="$1" BINARY="$2" PACKAGE="$3" TESTS="$4"
shift 4
RECOMMENDS="" SERVICE="" ENVVAR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-recommends) RECOMMENDS="--no-install-recommends" ;;
    --stop-service) SERVICE="$2"; shift ;;
    --env) ENVVAR="$2"; shift ;;
  esac
  shift
done
say() { echo "ensure-$NAME: $*" >&2; }

if [ -x "$BINARY" ]; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  say "$BINARY not found; installing Debian's $PACKAGE with apt-get..."
  # shellcheck disable=SC2086 # RECOMMENDS is one flag or nothing
  if DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $RECOMMENDS "$PACKAGE" >/dev/null; then
    # A package that starts a system service: the tests start their own on other ports.
    if [ -n "$SERVICE" ]; then (command -v service >/dev/null 2>&1 && service "$SERVICE" stop >/dev/null 2>&1) || true; fi
    say "installed $PACKAGE"
    exit 0
  fi
  say "apt-get install $PACKAGE FAILED; $TESTS will fail in CI and be skipped elsewhere."
  exit 0
fi

say "$BINARY not found and cannot be installed automatically (needs root and apt-get)."
say "install it with 'sudo apt-get install $PACKAGE'${ENVVAR:+ or set $ENVVAR}; $TESTS will be skipped (or fail when CI=true)."
exit 0
