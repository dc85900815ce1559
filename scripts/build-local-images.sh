#!/usr/bin/env bash
# Builds the two images of the local end-to-end tier (docs/e2e.md, tier 2) with `podman import`,
# from what this machine and this repository already have: no registry, no network.
#
#   localhost/hook-runner:e2e-local   this machine's `node` and the shared libraries it loads (ldd),
#                                     util-linux `nsenter` and `setpriv` (+ libs), `env`, the built
#                                     project (dist/, package.json, production node_modules) under
#                                     /app, and /usr/local/bin/hook-runner -> /app/dist/sidecar/hook-runner.cjs
#                                     (as in the Dockerfile). ENTRYPOINT ["hook-runner"].
#   localhost/hook-runner-app:e2e-local  busybox-static with every applet linked in /bin, /tmp, and
#                                     /etc/passwd naming uids 0, 1000 and 65532.
#
# Needs: podman, busybox (busybox-static: a static binary), node, nsenter, setpriv, ldd, and `npm ci`
# done in the repository (the production node_modules are a pruned copy of the existing ones).
# Runs `npm run build` first unless E2E_LOCAL_NO_BUILD=1 (then dist/ must exist).
# Images: E2E_LOCAL_IMAGE and E2E_LOCAL_APP_IMAGE override the names.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE=${E2E_LOCAL_IMAGE:-localhost/hook-runner:e2e-local}
APP_IMAGE=${E2E_LOCAL_APP_IMAGE:-localhost/hook-runner-app:e2e-local}
say() { printf 'build-local-images: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for t in podman node nsenter setpriv env ldd tar npm; do command -v "$t" >/dev/null 2>&1 || die "needs $t on PATH"; done
BUSYBOX=$(command -v busybox || true)
[[ -n $BUSYBOX ]] || die "needs busybox (apt-get install busybox-static)"
# A dynamically linked busybox would need its libraries in the app image too.
ldd "$BUSYBOX" >/dev/null 2>&1 && die "$BUSYBOX is dynamically linked: install busybox-static"
[[ -d node_modules ]] || die "node_modules is missing: run npm ci first"

if [[ ${E2E_LOCAL_NO_BUILD:-} != 1 ]]; then
  npm run build --silent
fi
[[ -f dist/cli/main.js ]] || die "dist/cli/main.js is missing: run npm run build"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hook-runner-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Copies a binary and every shared library it loads, at the same paths, into a root filesystem.
copy_with_libs() {
  local root=$1 bin=$2 dest=$3 lib
  install -D -m 0755 "$(readlink -f "$bin")" "$root$dest"
  # ldd lines: "libx.so => /path (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
  while read -r lib; do
    [[ -n $lib && -e $lib ]] || continue
    [[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done < <(ldd "$bin" | awk '/=> \// {print $3} /^\t\// {print $1}')
}

# ---- the hook-runner image ----
R=$WORK/hook-runner
mkdir -p "$R"/{bin,etc,tmp,proc,sys,dev,usr/local/bin,app}
chmod 1777 "$R/tmp"
copy_with_libs "$R" "$(command -v node)" /usr/local/bin/node
copy_with_libs "$R" "$(command -v nsenter)" /bin/nsenter
copy_with_libs "$R" "$(command -v setpriv)" /bin/setpriv
# dist/cli/main.js starts with `#!/usr/bin/env node`.
copy_with_libs "$R" "$(command -v env)" /usr/bin/env
printf 'root:x:0:0:root:/root:/nonexistent\nnonroot:x:65532:65532:nonroot:/nonexistent:/nonexistent\n' >"$R/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$R/etc/group"
cp package.json "$R/app/"
cp -a dist "$R/app/dist"
find "$R/app/dist" -name '*.map' -delete
# Production node_modules: a pruned copy of the installed ones (no network; the npm cache here is
# not complete enough for `npm ci --offline`), without maps and type declarations, as the Dockerfile.
mkdir -p "$WORK/prune"
cp package.json package-lock.json "$WORK/prune/"
cp -a node_modules "$WORK/prune/node_modules"
(cd "$WORK/prune" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
find "$WORK/prune/node_modules" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete
rm -rf "$WORK/prune/node_modules/.cache"
mv "$WORK/prune/node_modules" "$R/app/node_modules"
chmod 0755 "$R/app/dist/cli/main.js" "$R/app/dist/sidecar/hook-runner.cjs"
ln -s /app/dist/sidecar/hook-runner.cjs "$R/usr/local/bin/hook-runner"
# The image must at least start: run its entrypoint on the host through its own root.
chroot "$R" /usr/local/bin/hook-runner version >/dev/null 2>&1 || die "the hook-runner root filesystem does not run: chroot $R hook-runner version failed"

say "importing $IMAGE"
tar -C "$R" -cf "$WORK/hook-runner.tar" .
podman import --quiet \
  --change 'ENV PATH=/usr/local/bin:/bin:/usr/bin' \
  --change 'ENV NODE_ENV=production' \
  --change 'WORKDIR /app' \
  --change 'USER 65532:65532' \
  --change 'ENTRYPOINT ["hook-runner"]' \
  --change 'CMD ["--help"]' \
  "$WORK/hook-runner.tar" "$IMAGE" >/dev/null

# ---- the app image ----
A=$WORK/app
mkdir -p "$A"/{bin,etc,tmp,proc,sys,dev,data}
chmod 1777 "$A/tmp"
install -m 0755 "$BUSYBOX" "$A/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ $applet == busybox || -e $A/bin/$applet ]] || ln -s busybox "$A/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\nnonroot:x:65532:65532:nonroot:/nonexistent:/bin/false\n' >"$A/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nnonroot:x:65532:\n' >"$A/etc/group"
say "importing $APP_IMAGE"
tar -C "$A" -cf "$WORK/app.tar" .
podman import --quiet --change 'ENV PATH=/bin' --change 'ENTRYPOINT ["/bin/sh"]' "$WORK/app.tar" "$APP_IMAGE" >/dev/null

say "built $IMAGE and $APP_IMAGE"
