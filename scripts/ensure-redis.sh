#!/bin/sh
# Debian's redis-server for the tests of the shared queue (--queue redis://...), which start their
# own redis-server on a loopback port and stop it; the package's system service is stopped.
exec sh "$(dirname "$0")/ensure-debian-package.sh" redis "${REDIS_SERVER_PATH:-/usr/bin/redis-server}" redis-server "the Redis tests" --no-recommends --stop-service redis-server --env REDIS_SERVER_PATH
