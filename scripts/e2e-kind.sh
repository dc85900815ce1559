#!/usr/bin/env bash
# npm run e2e: hook-runner end to end on a real Kubernetes cluster (docs/e2e.md).
#
# Two ways to run it:
#   kind (default, no E2E_IMAGE): creates a kind cluster (or reuses one), builds the image with
#     docker, `kind load`s it and deploys manifests/overlays/kind. Needs docker (with a reachable
#     engine), kind and kubectl.
#   any cluster (E2E_IMAGE=registry/hook-runner:tag, pushed and pullable by the cluster): uses the
#     current kubeconfig context and deploys manifests/ (or E2E_OVERLAY=cert-manager) with that
#     image, unless E2E_SKIP_DEPLOY=1 (test what is installed already). Needs kubectl.
# Then runs the scenarios in test/e2e/kind/ with node's test runner.
#
# Where a needed tool is missing it prints `e2e: SKIPPED (...)` naming each one and exits 0;
# E2E_REQUIRE=1 makes that a failure (exit 1) for CI that must really run it.
#
# Other settings: E2E_KIND_CLUSTER (hook-runner-e2e), E2E_KIND_NODE_IMAGE (kind's default),
# E2E_KEEP_CLUSTER=1 (keep a cluster this run created), E2E_KEEP=1 (keep test namespaces),
# E2E_APP_IMAGE (busybox:1.36.1, the test apps' image), E2E_UNINSTALL=1 (any-cluster mode: remove
# hook-runner afterwards).
#
# Only shell builtins run before the preflight below, so that it reports missing tools correctly
# even on a PATH without coreutils.
set -uo pipefail

here=${BASH_SOURCE[0]%/*}
[[ $here == "${BASH_SOURCE[0]}" ]] && here=.
cd "$here/.." || { echo "e2e: FAILED (cannot cd to the repository root)"; exit 1; }
ROOT=$PWD

say() { printf 'e2e: %s\n' "$*"; }

# ---- preflight ----
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (not found on PATH)"); }
need node
if [[ -n ${E2E_IMAGE:-} ]]; then
  mode=cluster
  need kubectl
else
  mode=kind
  need docker
  need kind
  need kubectl
  # A daemon that hangs must not hang the suite: bound `docker info` where coreutils' timeout exists.
  command -v timeout >/dev/null 2>&1 && timeout_cmd='timeout 30'
  if command -v docker >/dev/null 2>&1 && ! ${timeout_cmd:-} docker info >/dev/null 2>&1; then
    missing+=("docker engine (the docker CLI is installed but 'docker info' cannot reach a daemon)")
  fi
fi
if ((${#missing[@]})); then
  printf -v what '%s; ' "${missing[@]}"
  what=${what%; }
  if [[ ${E2E_REQUIRE:-} == 1 ]]; then
    say "FAILED (E2E_REQUIRE=1 and missing: $what)"
    exit 1
  fi
  say "SKIPPED (missing: $what)"
  if [[ $mode == kind ]]; then
    say "the kind path needs docker with a running engine, kind and kubectl; or set E2E_IMAGE to run against the current kubeconfig context (docs/e2e.md)"
  fi
  exit 0
fi

APP_IMAGE=${E2E_APP_IMAGE:-busybox:1.36.1}
NS=hook-runner-system
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hook-runner-e2e.XXXXXX") || exit 1
created_cluster=0
CLUSTER=${E2E_KIND_CLUSTER:-hook-runner-e2e}

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [[ $mode == kind && $created_cluster == 1 && ${E2E_KEEP_CLUSTER:-} != 1 ]]; then
    say "deleting kind cluster $CLUSTER (E2E_KEEP_CLUSTER=1 keeps it)"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  if [[ $mode == cluster && ${E2E_UNINSTALL:-} == 1 && -f $WORK/overlay/kustomization.yaml ]]; then
    say "uninstalling hook-runner (E2E_UNINSTALL=1)"
    kubectl delete -k "$WORK/overlay" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  say "FAILED ($*)"
  exit 1
}

# ---- set up the cluster and the webhook ----
if [[ $mode == kind ]]; then
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "reusing kind cluster $CLUSTER"
  else
    say "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" ${E2E_KIND_NODE_IMAGE:+--image "$E2E_KIND_NODE_IMAGE"} --wait 180s || fail "kind create cluster"
    created_cluster=1
  fi
  # A kubeconfig of our own: the user's current context is left alone.
  kind get kubeconfig --name "$CLUSTER" >"$WORK/kubeconfig" || fail "kind get kubeconfig"
  export KUBECONFIG=$WORK/kubeconfig
  say "building hook-runner:e2e"
  docker build --build-arg HOOK_RUNNER_COMMIT="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" -t hook-runner:e2e "$ROOT" || fail "docker build"
  kind load docker-image hook-runner:e2e --name "$CLUSTER" || fail "kind load docker-image hook-runner:e2e"
  # The test apps' image too, so the suite does not depend on the node pulling it (best effort).
  if docker image inspect "$APP_IMAGE" >/dev/null 2>&1 || docker pull "$APP_IMAGE"; then
    kind load docker-image "$APP_IMAGE" --name "$CLUSTER" || say "warning: could not load $APP_IMAGE into kind; the node will pull it"
  fi
  kubectl apply -k "$ROOT/manifests/overlays/kind" || fail "kubectl apply -k manifests/overlays/kind"
  # Same tag, new image: make the pods pick it up on a reused cluster.
  ((created_cluster)) || kubectl -n "$NS" rollout restart deployment/hook-runner || fail "rollout restart"
else
  kubectl version --request-timeout=15s >/dev/null 2>&1 || fail "cannot reach the cluster of the current kubeconfig context: kubectl version failed"
  if [[ ${E2E_SKIP_DEPLOY:-} == 1 ]]; then
    say "E2E_SKIP_DEPLOY=1: testing the hook-runner already installed (E2E_IMAGE=$E2E_IMAGE is used only for information)"
  else
    overlay=${E2E_OVERLAY:-base}
    case $overlay in
      base) src=manifests/base ;;
      cert-manager) src=manifests/overlays/cert-manager ;;
      *) fail "E2E_OVERLAY must be base or cert-manager, not $overlay" ;;
    esac
    mkdir -p "$WORK/overlay"
    # kustomize refuses absolute paths to a base; give it one relative to the overlay.
    rel=$(node -e 'console.log(require("node:path").relative(process.argv[1], process.argv[2]))' "$WORK/overlay" "$ROOT/$src")
    sed "s#^\( *image:\) .*#\1 $E2E_IMAGE#" "$ROOT/manifests/base/config.yaml" >"$WORK/overlay/config.yaml"
    cat >"$WORK/overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel
configMapGenerator:
  - name: hook-runner-config
    behavior: replace
    files:
      - config.yaml
patches:
  - target:
      kind: Deployment
      name: hook-runner
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/image
        value: $E2E_IMAGE
EOF
    say "installing hook-runner ($src) with image $E2E_IMAGE into the current context: $(kubectl config current-context 2>/dev/null)"
    kubectl apply -k "$WORK/overlay" || fail "kubectl apply of $src with E2E_IMAGE"
  fi
fi

say "waiting for the webhook Deployment"
kubectl -n "$NS" rollout status deployment/hook-runner --timeout=300s || {
  kubectl -n "$NS" get pods -o wide || true
  kubectl -n "$NS" logs deployment/hook-runner --tail=50 || true
  fail "the webhook Deployment did not become ready"
}

# ---- the scenarios ----
export E2E_APP_IMAGE=$APP_IMAGE
shopt -s nullglob
suites=("$ROOT"/test/e2e/kind/*.test.ts)
((${#suites[@]})) || fail "no test files in test/e2e/kind/"
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${suites[@]}"
rc=$?
if ((rc == 0)); then
  say "PASSED (on $([[ $mode == kind ]] && echo "kind cluster $CLUSTER" || echo "context $(kubectl config current-context 2>/dev/null)"))"
else
  say "FAILED (test runner exit code $rc; see above)"
fi
exit "$rc"
