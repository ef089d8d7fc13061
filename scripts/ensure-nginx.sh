#!/bin/sh
# Debian's nginx for the tests that run deploy/nginx/nginx.conf in front of server processes on
# loopback (test/nginx-deploy.e2e.test.ts, test/cluster.e2e.test.ts, test/queue-cluster.e2e.test.ts).
exec sh "$(dirname "$0")/ensure-debian-package.sh" nginx "${NGINX_PATH:-/usr/sbin/nginx}" nginx-light "the nginx tests" --no-recommends --env NGINX_PATH
