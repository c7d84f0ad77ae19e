#!/usr/bin/env bash
# The demo: local control plane, the operator's CRDs, webhook and controller, and the
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
# Operator processes: the webhook (registered by URL on loopback) and the controller, both
# configured by the ConfigMap postgres-operator/postgres-operator. down.sh stops them by PID.
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
wait_http() { # wait_http URL SECONDS: until the URL answers 200
  local url=$1 deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "$url did not become ready (see $LOCAL_DIR/logs)"
    sleep 0.5
  done
}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PGOP_CACHE/target}
for comp in webhook controller certs; do
  [ -x "$CARGO_TARGET_DIR/debug/$comp" ] || die "$CARGO_TARGET_DIR/debug/$comp is not built (run make build)"
done
OPERATOR_NS=postgres-operator
WEBHOOK_PORT=${PGOP_WEBHOOK_PORT:-18443}
k create namespace "$OPERATOR_NS" --dry-run=client -o yaml | k apply -f - >/dev/null
# Like Zalando's shipped configuration: no public load balancers on a laptop.
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: postgres-operator
  namespace: $OPERATOR_NS
data:
  enable_master_load_balancer: "false"
  enable_teams_api: "false"
  max_instances: "5"
  delete_annotation_date_key: delete-date
  delete_annotation_name_key: delete-clustername
YAML
certs_dir=$LOCAL_DIR/certs
ca_bundle=$("$CARGO_TARGET_DIR/debug/certs" --out-dir "$certs_dir" --namespace "$OPERATOR_NS" 2>/dev/null)
export CONFIG_MAP_NAME="$OPERATOR_NS/postgres-operator" OPERATOR_NAMESPACE="$OPERATOR_NS"
start_bg pgop-webhook "$CARGO_TARGET_DIR/debug/webhook" \
  --listen "127.0.0.1:$WEBHOOK_PORT" --admin-listen 127.0.0.1:18080 \
  --tls-cert "$certs_dir/tls.crt" --tls-key "$certs_dir/tls.key"
wait_http http://127.0.0.1:18080/readyz 60
# The committed webhook configuration, pointed at the local process instead of a Service and
# limited to namespaces labelled for the demo, so it never touches the end-to-end tests'.
k label namespace default pgop.demo/webhook=enabled --overwrite >/dev/null
awk -v base="https://127.0.0.1:$WEBHOOK_PORT" -v ca="$ca_bundle" '
  /^  namespaceSelector:$/ { print; print "    matchLabels:"; print "      pgop.demo/webhook: enabled"; next }
  /^ +service:$/ { skip = 3; next }
  skip > 0 && /^ +path: / { sub(/path: /, "url: " base); sub(/^  /, ""); print; skip = 0; next }
  skip > 0 { skip--; next }
  { gsub(/\$\{CA_BUNDLE\}/, ca); print }
' manifests/webhook/webhook-configuration.yaml | k apply -f - >/dev/null
log "webhook registered at https://127.0.0.1:$WEBHOOK_PORT"
# The demo cluster lives in default; the tests' namespaces stay with the tests' own controllers.
export WATCHED_NAMESPACE=default
start_bg pgop-controller "$CARGO_TARGET_DIR/debug/controller" \
  --admin-listen 127.0.0.1:18081
wait_http http://127.0.0.1:18081/readyz 120

manifest=manifests/minimal-postgres-manifest.yaml
if [ -f "$manifest" ] && [ ${#crds[@]} -gt 0 ]; then
  log "applying $manifest"
  k apply -f "$manifest"
  log "waiting for the cluster to be Running"
  k wait --for=jsonpath='{.status.PostgresClusterStatus}'=Running --timeout=180s -f "$manifest" >/dev/null \
    || log "note: not Running yet; see $LOCAL_DIR/logs/pgop-controller.log"
else
  log "note: $manifest missing or no CRDs installed; skipping"
fi

echo
k get pg,sts,svc,secret,pdb,pods -o wide 2>&1 || true
echo
echo "The control plane keeps running. To use it, and to stop it:"
echo "export KUBECONFIG=$KUBECONFIG_LOCAL"
echo "make down"
