# syntax=docker/dockerfile:1
# One image for both halves of hook-runner: `hook-runner webhook` (the Deployment in manifests/) and
# `hook-runner sidecar` (injected into hooked pods). Build: docker build -t hook-runner:dev .
#
# Base images are pinned by full version: Node.js 24 LTS (.ci/run tests this exact version too). For
# reproducible production builds, also pin by digest
# (docker build --build-arg NODE_IMAGE=node:24.22.3-bookworm-slim@sha256:...).
# `hook-runner version -o json` reports the commit: --build-arg HOOK_RUNNER_COMMIT=$(git rev-parse HEAD)
# (.git is not in the build context).
ARG NODE_IMAGE=node:24.22.3-bookworm-slim

# ---- build: compile TypeScript, then keep production dependencies only ----
# (source maps and type declarations are dropped: about half of the production node_modules, of no
# use at run time)
FROM ${NODE_IMAGE} AS build
WORKDIR /src
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
# gcc + the static C library for the exec helper (sidecar/native/hook-exec.c, linked statically so no
# dynamic loader runs in it: docs/security.md). Build stage only; the runtime image gets the binary.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# Dependencies first: this layer is reused until the lockfile changes.
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY common ./common
COPY webhook ./webhook
COPY sidecar ./sidecar
COPY cli ./cli
COPY scripts/bundle-sidecar.mjs scripts/build-native.mjs scripts/build-info.mjs ./scripts/
ARG HOOK_RUNNER_COMMIT=unknown
# `! ldd`: the helper must be static (ldd refuses a static binary).
RUN npm run build \
 && ! ldd dist/sidecar/hook-exec \
 && npm prune --omit=dev \
 && find dist -name '*.map' -delete \
 && find node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete \
 && rm -rf node_modules/.cache

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
# exec handlers (DESIGN §6) need only dist/sidecar/hook-exec, checked below; no util-linux tool.
# npm, npx, yarn and corepack are not needed at run time: removing them leaves less to run and to
# patch (it does not shrink the image: their bytes stay in the base layer).
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
           /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# `hook-runner` on PATH: the entrypoint, and the container-mode sidecar's PostStart
# `exec: [hook-runner, wait-ready]` (DESIGN §4). It is the CommonJS launcher (sidecar/launcher.ts):
# `sidecar` starts without node's ES module loader, every other command goes on to dist/cli/main.js
# (docs/benchmarks.md). Checked at build time, as is the exec helper (it runs here and exits 125
# with its usage when given no arguments).
RUN ln -s /app/dist/sidecar/hook-runner.cjs /usr/local/bin/hook-runner && hook-runner version && hook-runner sidecar --help >/dev/null \
 && { /app/dist/sidecar/hook-exec; test $? -eq 125; }
# Numeric, non-root by default, so the kubelet can verify runAsNonRoot. The webhook's injected
# sidecar overrides the user only for exec/signal handlers (DESIGN §5).
USER 65532:65532
ENTRYPOINT ["hook-runner"]
CMD ["--help"]
