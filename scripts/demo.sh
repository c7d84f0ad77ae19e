#!/usr/bin/env bash
# The demo: local control plane (scripts/up.sh), the operator installed with its Helm chart
# exactly as a user installs it (the pod runner runs the chart's controller and webhook images as
# this checkout's binaries), and the minimal postgresql manifest. Run via `make demo` (which first
# runs `make tools build`). Ports come from this checkout's slot (see lib.sh); down.sh stops it all.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/up.sh" >/dev/null
network_load || die "up.sh recorded no network settings in $NETWORK_ENV"
slot_network # the demo's own ports: from the environment, else from the slot
export KUBECONFIG=$KUBECONFIG_LOCAL
k() { "$KUBECTL" "$@"; }

for comp in webhook controller; do
  [ -x "$CARGO_TARGET_DIR/debug/$comp" ] || die "$CARGO_TARGET_DIR/debug/$comp is not built (run make build)"
done
[ -n "$(ls crds/*.yaml 2>/dev/null)" ] || die "crds/ has no YAML (run make crds)"

# Helm installs crds/ on the first install only and never upgrades them; a demo after a change to
# the CRDs applies them first, as the operator's own registration would at its start.
log "installing the CRDs"
k apply --server-side --force-conflicts -f crds/ >/dev/null
k wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
log "CRDs established"

# The operator, installed by its chart. The demo's values keep it to the namespace default (and the
# webhook to namespaces labelled for the demo) so it never meets the end-to-end tests' operators.
# A build annotation restarts the operator's pods when a binary changed since the last demo.
OPERATOR_NS=postgres-operator
RELEASE=postgres-operator
# An older demo ran the operator as local processes behind a webhook registered by URL: retire both.
for old in pgop-webhook pgop-controller; do stop_if_stale "$old" /retired; done
k delete mutatingwebhookconfiguration,validatingwebhookconfiguration pg-operator-webhook \
  --ignore-not-found >/dev/null
k label namespace default pgop.demo/webhook=enabled --overwrite >/dev/null
# The end-to-end tests apply the same Patroni ClusterRole from manifests/ (same name, same rules);
# when they ran first, the release adopts it instead of refusing to install.
if k get clusterrole postgres-pod >/dev/null 2>&1; then
  k label clusterrole postgres-pod app.kubernetes.io/managed-by=Helm --overwrite >/dev/null
  k annotate clusterrole postgres-pod meta.helm.sh/release-name="$RELEASE" \
    meta.helm.sh/release-namespace="$OPERATOR_NS" --overwrite >/dev/null
fi
export HELM_CACHE_HOME=$LOCAL_DIR/helm/cache HELM_CONFIG_HOME=$LOCAL_DIR/helm/config HELM_DATA_HOME=$LOCAL_DIR/helm/data
build_id() { sha256sum "$CARGO_TARGET_DIR/debug/$1" | cut -c1-16; }
log "helm upgrade --install $RELEASE charts/postgres-operator -n $OPERATOR_NS -f scripts/demo-values.yaml"
"$HELM" upgrade --install "$RELEASE" charts/postgres-operator --namespace "$OPERATOR_NS" \
  --create-namespace -f scripts/demo-values.yaml \
  --set-string "podAnnotations.pgop\\.demo/build=$(build_id controller)" \
  --set-string "webhook.podAnnotations.pgop\\.demo/build=$(build_id webhook)" \
  --wait --timeout 300s >/dev/null ||
  die "helm could not install the chart; see kubectl -n $OPERATOR_NS get pods and $LOGS/pod-runner.log"
log "operator installed: $(k -n "$OPERATOR_NS" get deploy -o name | tr '\n' ' ')"

manifest=manifests/minimal-postgres-manifest.yaml
cluster=acid-minimal-cluster
log "applying $manifest"
k apply -f "$manifest"
# Running means Patroni elected a leader (the pod runner runs real Patroni + PostgreSQL).
log "waiting for the cluster to be Running"
k wait --for=jsonpath='{.status.PostgresClusterStatus}'=Running --timeout=300s -f "$manifest" >/dev/null \
  || die "the cluster is not Running after 300s; see kubectl -n $OPERATOR_NS logs deploy/$RELEASE and $LOGS/pod-runner.log"

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
wait_for "user zalando to log in to its database foo" 120 pod-runner bash -c \
  "PGPASSWORD=\$($KUBECTL get secret zalando.$cluster.credentials.postgresql.acid.zalan.do -o jsonpath='{.data.password}' | base64 -d) \
   PGCONNECT_TIMEOUT=5 $psql_bin -h $master_ip -U zalando -d foo -XtAc 'select 1'"

echo
k get pg,sts,svc,secret,pdb,pods -o wide 2>&1 || true
echo
echo "The control plane keeps running (slot $PGOP_SLOT, API https://127.0.0.1:$API_PORT). To use it, and to stop it:"
echo "export KUBECONFIG=$KUBECONFIG_LOCAL"
echo "make down"
echo
echo "The operator runs from its Helm chart (helm -n $OPERATOR_NS status $RELEASE; kubectl -n $OPERATOR_NS logs deploy/$RELEASE)."
echo "The cluster $cluster runs real Patroni + PostgreSQL $major: a leader and a streaming replica."
echo "Connect to the master through its Service:"
echo "PGPASSWORD=\$($password_cmd) $psql_bin -h $master_ip -U postgres -c 'select * from demo'"
echo "Log in as the manifest's user zalando to the database foo it owns:"
echo "PGPASSWORD=\$($KUBECTL get secret zalando.$cluster.credentials.postgresql.acid.zalan.do -o jsonpath='{.data.password}' | base64 -d) $psql_bin -h $master_ip -U zalando -d foo"
