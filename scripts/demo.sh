#!/usr/bin/env bash
# The demo: local control plane (scripts/up.sh), the operator's CRDs, webhook and controller as
# local processes, and the minimal postgresql manifest. Run via `make demo` (which first runs
# `make tools build`). Ports come from this checkout's slot (see lib.sh); down.sh stops it all.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/up.sh" >/dev/null
network_load || die "up.sh recorded no network settings in $NETWORK_ENV"
slot_network # the demo's own ports: from the environment, else from the slot
export KUBECONFIG=$KUBECONFIG_LOCAL
k() { "$KUBECTL" "$@"; }

for comp in webhook controller certs; do
  [ -x "$CARGO_TARGET_DIR/debug/$comp" ] || die "$CARGO_TARGET_DIR/debug/$comp is not built (run make build)"
done
[ -n "$(ls crds/*.yaml 2>/dev/null)" ] || die "crds/ has no YAML (run make crds)"

log "installing the CRDs"
k apply --server-side --force-conflicts -f crds/ >/dev/null
k wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
log "CRDs established"

# -------------------------------------------------------------------------------------------
# Operator processes, started and stopped like the control plane's (lib.sh start/running,
# down.sh): the webhook (registered by URL on loopback) and the controller, both configured by
# the ConfigMap postgres-operator/postgres-operator.
# -------------------------------------------------------------------------------------------
wait_http() { # wait_http NAME URL SECONDS: until the URL answers 200, failing early if NAME died
  local name=$1 url=$2
  wait_for "$url" "$3" "$name" curl -fsS -o /dev/null "$url"
}
OPERATOR_NS=postgres-operator
k create namespace "$OPERATOR_NS" --dry-run=client -o yaml | k apply -f - >/dev/null
# Like Zalando's shipped configuration: no public load balancers on a laptop.
k create configmap postgres-operator --namespace "$OPERATOR_NS" --dry-run=client -o yaml \
  --from-literal=enable_master_load_balancer=false \
  --from-literal=enable_teams_api=false \
  --from-literal=max_instances=5 \
  --from-literal=delete_annotation_date_key=delete-date \
  --from-literal=delete_annotation_name_key=delete-clustername |
  k apply -f - >/dev/null
certs_dir=$LOCAL_DIR/certs
ca_bundle=$("$CARGO_TARGET_DIR/debug/certs" --out-dir "$certs_dir" --namespace "$OPERATOR_NS" 2>/dev/null)
export CONFIG_MAP_NAME="$OPERATOR_NS/postgres-operator" OPERATOR_NAMESPACE="$OPERATOR_NS"
# A process of an older build (a second `make demo` after a change) is restarted.
WEBHOOK_ARGS=(--listen "127.0.0.1:$PGOP_WEBHOOK_PORT" --admin-listen "127.0.0.1:$WEBHOOK_ADMIN_PORT"
  --tls-cert "$certs_dir/tls.crt" --tls-key "$certs_dir/tls.key")
stop_if_stale pgop-webhook "$CARGO_TARGET_DIR/debug/webhook" "${WEBHOOK_ARGS[@]}"
start pgop-webhook "$CARGO_TARGET_DIR/debug/webhook" "${WEBHOOK_ARGS[@]}"
wait_http pgop-webhook "http://127.0.0.1:$WEBHOOK_ADMIN_PORT/readyz" 60

# The committed webhook configuration (one webhook per document), pointed at the local process
# instead of the Service, given the CA bundle and limited to namespaces labelled for the demo, so
# it never touches the end-to-end tests'. kubectl patches each document locally.
k label namespace default pgop.demo/webhook=enabled --overwrite >/dev/null
docs=$(mktemp -d)
trap 'rm -rf "$docs"' EXIT
csplit --quiet --elide-empty-files --prefix="$docs/doc" \
  manifests/webhook/webhook-configuration.yaml '/^---$/' '{*}'
for doc in "$docs"/doc*; do
  path=$(k patch --local -f "$doc" --type=json -p '[]' -o jsonpath='{.webhooks[0].clientConfig.service.path}')
  k patch --local -f "$doc" --type=json --patch-file=/dev/stdin -o yaml <<JSON | k apply -f - >/dev/null
[
  {"op": "remove", "path": "/webhooks/0/clientConfig/service"},
  {"op": "add", "path": "/webhooks/0/clientConfig/url", "value": "https://127.0.0.1:$PGOP_WEBHOOK_PORT$path"},
  {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "$ca_bundle"},
  {"op": "add", "path": "/webhooks/0/namespaceSelector/matchLabels", "value": {"pgop.demo/webhook": "enabled"}}
]
JSON
done
log "webhook registered at https://127.0.0.1:$PGOP_WEBHOOK_PORT"

# The demo cluster lives in default; the tests' namespaces stay with the tests' own controllers.
export WATCHED_NAMESPACE=default
stop_if_stale pgop-controller "$CARGO_TARGET_DIR/debug/controller" --admin-listen "127.0.0.1:$CONTROLLER_ADMIN_PORT"
start pgop-controller "$CARGO_TARGET_DIR/debug/controller" --admin-listen "127.0.0.1:$CONTROLLER_ADMIN_PORT"
wait_http pgop-controller "http://127.0.0.1:$CONTROLLER_ADMIN_PORT/readyz" 120

manifest=manifests/minimal-postgres-manifest.yaml
cluster=acid-minimal-cluster
log "applying $manifest"
k apply -f "$manifest"
# Running means Patroni elected a leader (the pod runner runs real Patroni + PostgreSQL).
log "waiting for the cluster to be Running"
k wait --for=jsonpath='{.status.PostgresClusterStatus}'=Running --timeout=300s -f "$manifest" >/dev/null \
  || die "the cluster is not Running after 300s; see $LOGS/pgop-controller.log and $LOGS/pod-runner.log"

# The master Service's ClusterIP is served by the pod runner (user-space kube-proxy), so this is
# the command a user runs; the password comes from the Secret the operator wrote.
major=$(k get postgresql "$cluster" -o jsonpath='{.spec.postgresql.version}')
psql_bin=$PGOP_CACHE/world/pg/$major/bin/psql
[ -x "$psql_bin" ] || die "no psql for PostgreSQL $major at $psql_bin (run make world)"
master_ip=$(k get service "$cluster" -o jsonpath='{.spec.clusterIP}')
secret=postgres.$cluster.credentials.postgresql.acid.zalan.do
password_cmd="$KUBECTL get secret $secret -o jsonpath='{.data.password}' | base64 -d"
password=$(k get secret "$secret" -o jsonpath='{.data.password}' | base64 -d)
psql_master() { PGPASSWORD=$password PGCONNECT_TIMEOUT=5 "$psql_bin" "host=$master_ip user=postgres dbname=postgres sslmode=prefer" -XtAc "$1"; }
log "waiting for the master Service to accept writes and the replica to stream"
streaming() { [ "$(psql_master "select count(*) from pg_stat_replication where state = 'streaming'" 2>/dev/null)" = 1 ]; }
wait_for "a streaming replica" 240 pod-runner streaming
psql_master "create table if not exists demo(at timestamptz default now()); insert into demo default values" >/dev/null
# The manifest's users and databases exist inside PostgreSQL once the operator synced them.
wait_for "user zalando to log in to its database foo" 120 pgop-controller bash -c \
  "PGPASSWORD=\$($KUBECTL get secret zalando.$cluster.credentials.postgresql.acid.zalan.do -o jsonpath='{.data.password}' | base64 -d) \
   PGCONNECT_TIMEOUT=5 $psql_bin -h $master_ip -U zalando -d foo -XtAc 'select 1'"

echo
k get pg,sts,svc,secret,pdb,pods -o wide 2>&1 || true
echo
echo "The control plane keeps running (slot $PGOP_SLOT, API https://127.0.0.1:$API_PORT). To use it, and to stop it:"
echo "export KUBECONFIG=$KUBECONFIG_LOCAL"
echo "make down"
echo
echo "The cluster $cluster runs real Patroni + PostgreSQL $major: a leader and a streaming replica."
echo "Connect to the master through its Service:"
echo "PGPASSWORD=\$($password_cmd) $psql_bin -h $master_ip -U postgres -c 'select * from demo'"
echo "Log in as the manifest's user zalando to the database foo it owns:"
echo "PGPASSWORD=\$($KUBECTL get secret zalando.$cluster.credentials.postgresql.acid.zalan.do -o jsonpath='{.data.password}' | base64 -d) $psql_bin -h $master_ip -U zalando -d foo"
