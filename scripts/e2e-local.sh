#!/usr/bin/env bash
# npm run e2e:local: tier 2 of docs/e2e.md. Pods produced by `hook-runner inject` run as real
# containers under podman + runc (`podman kube play`), from images built here with no network
# (scripts/build-local-images.sh), with the test in the kubelet's role: test/e2e/local/*.test.ts.
#
# Installs nothing. Where root, podman, runc or busybox-static is missing it prints
# `e2e:local: SKIPPED (...)` naming each and exits 0; E2E_LOCAL_REQUIRE=1 makes that a failure
# (exit 1), for CI that exists to run it. When it runs, it ends with `e2e:local: PASSED` or
# `e2e:local: FAILED` and node's test runner summary above it.
#
# Setup on Debian/Ubuntu (what .ci/run does):
#   apt-get install -y podman runc busybox-static
#   /etc/containers/containers.conf:  [engine] runtime = "runc"
#                                     [containers] default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || { echo "e2e:local: FAILED (cannot cd to the repository root)"; exit 1; }
say() { printf 'e2e:local: %s\n' "$*"; }

# ---- preflight ----
missing=()
[[ $(id -u) == 0 ]] || missing+=("root (podman kube play as root, and the test reads /proc of container processes)")
[[ $(uname -s) == Linux ]] || missing+=("Linux")
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 ($2)"); }
need podman "apt-get install podman"
need runc "apt-get install runc"
need busybox "apt-get install busybox-static: the app image"
need nsenter "util-linux: the sidecar image"
need setpriv "util-linux: the sidecar image"
need node "Node.js 20"
[[ -d node_modules ]] || missing+=("node_modules (run npm ci)")
if ((${#missing[@]})); then
  printf -v what '%s; ' "${missing[@]}"
  what=${what%; }
  if [[ ${E2E_LOCAL_REQUIRE:-} == 1 ]]; then
    say "FAILED (E2E_LOCAL_REQUIRE=1 and missing: $what)"
    exit 1
  fi
  say "SKIPPED (missing: $what)"
  exit 0
fi

start=$SECONDS
runtime=$(timeout 60 podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1) || { say "FAILED (podman info: $runtime)"; exit 1; }
if [[ $runtime != runc ]]; then
  # crun was seen failing on cgroup v1 hosts ("cgroups in hybrid mode not supported").
  say "note: podman's OCI runtime is $runtime, not runc; if containers fail to start, set [engine] runtime = \"runc\" in /etc/containers/containers.conf"
fi

# ---- images (builds the project too) ----
if ! scripts/build-local-images.sh; then
  say "FAILED (scripts/build-local-images.sh)"
  exit 1
fi
# A runtime that cannot start a container at all fails here, with podman's own message, instead of
# in every scenario.
if ! smoke=$(timeout 60 podman run --rm --network none "${E2E_LOCAL_APP_IMAGE:-localhost/hook-runner-app:e2e-local}" -c 'echo ok' 2>&1) || [[ $smoke != ok ]]; then
  say "FAILED (podman cannot run a container: $smoke)"
  say "hint: /etc/containers/containers.conf with [engine] runtime = \"runc\" and [containers] default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"] (docs/e2e.md)"
  exit 1
fi

# ---- scenarios ----
# E2E_LOCAL_NO_SKIP: the preflight passed and the images exist, so a scenario that would skip fails.
E2E_LOCAL_NO_SKIP=1 timeout "${E2E_LOCAL_TIMEOUT:-900}" \
  node --import tsx --test --test-concurrency=1 test/e2e/local/*.test.ts
rc=$?
if ((rc == 0)); then
  say "PASSED (podman $(podman version --format '{{.Client.Version}}' 2>/dev/null), runtime $runtime, $((SECONDS - start)) s)"
else
  ((rc == 124)) && say "the scenarios ran out of time (E2E_LOCAL_TIMEOUT=${E2E_LOCAL_TIMEOUT:-900} s)"
  say "FAILED (node --test exit $rc; $((SECONDS - start)) s)"
fi
exit "$rc"
