#!/usr/bin/env bash
# The demo: local control plane, the operator's CRDs, (soon) webhook and controller, and the
# minimal postgresql manifest. Run via `make demo` (which first runs `make tools build`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/build-tools.sh"
"$REPO_ROOT/scripts/up.sh" >/dev/null
export KUBECONFIG=$KUBECONFIG_LOCAL
k() { "$KUBECTL" "$@"; }

shopt -s nullglob
crds=(crds/*.yaml)
if [ ${#crds[@]} -eq 0 ]; then
  log "note: crds/ has no YAML yet; skipping CRD installation"
else
  log "installing CRDs: ${crds[*]}"
  for f in "${crds[@]}"; do k apply --server-side --force-conflicts -f "$f" >/dev/null; done
  for f in "${crds[@]}"; do
    name=$(k get -f "$f" -o jsonpath='{.metadata.name}')
    k wait --for=condition=Established --timeout=60s "crd/$name" >/dev/null
  done
  log "CRDs established"
fi

# -------------------------------------------------------------------------------------------
# Operator processes. >>> START WEBHOOK AND CONTROLLER HERE <<<
# The binaries only print their version for now, so they are not started. When they do real
# work, start them in the background like up.sh does, recording PIDs so `make down` stops them:
#   start_bg pgop-webhook    "$CARGO_TARGET_DIR/debug/webhook"    --kubeconfig "$KUBECONFIG" ...
#   start_bg pgop-controller "$CARGO_TARGET_DIR/debug/controller" --kubeconfig "$KUBECONFIG" ...
# (down.sh already stops the names pgop-webhook and pgop-controller.)
# -------------------------------------------------------------------------------------------
start_bg() { # start_bg NAME BINARY ARGS...: background process, PID in .local/pids, log in .local/logs
  local name=$1 bin=$2; shift 2
  local pidf=$LOCAL_DIR/pids/$name.pid
  if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
    log "$name already running (pid $(cat "$pidf"))"; return 0
  fi
  echo "$bin" >"$LOCAL_DIR/pids/$name.bin"
  setsid "$bin" "$@" </dev/null >>"$LOCAL_DIR/logs/$name.log" 2>&1 9>&- &
  echo $! >"$pidf"
  log "started $name (pid $!, log $LOCAL_DIR/logs/$name.log)"
}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PGOP_CACHE/target}
for comp in webhook controller; do
  bin=$CARGO_TARGET_DIR/debug/$comp
  if [ -x "$bin" ]; then
    log "note: $bin exists but only prints its version yet; not starting it"
  else
    log "note: $bin not built (run make build); not starting it"
  fi
done
: "${PGOP_START_OPERATOR:=0}"
if [ "$PGOP_START_OPERATOR" = 1 ]; then
  start_bg pgop-webhook "$CARGO_TARGET_DIR/debug/webhook"
  start_bg pgop-controller "$CARGO_TARGET_DIR/debug/controller"
fi

manifest=manifests/minimal-postgres-manifest.yaml
if [ -f "$manifest" ] && [ ${#crds[@]} -gt 0 ]; then
  log "applying $manifest"
  k apply -f "$manifest"
else
  log "note: $manifest missing or no CRDs installed; skipping"
fi

echo
k get pg,sts,svc,secret,pdb,pods -o wide 2>&1 || true
echo
echo "The control plane keeps running. To use it, and to stop it:"
echo "export KUBECONFIG=$KUBECONFIG_LOCAL"
echo "make down"
