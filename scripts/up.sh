#!/usr/bin/env bash
# Starts the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok with fake nodes) bound to loopback, writes $KUBECONFIG_LOCAL and waits until it is usable.
# Idempotent: components already running (by PID file) are left alone, existing certificates,
# kubeconfig and cluster objects are kept, so a second run changes nothing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

mkdir -p "$PKI" "$LOGS" "$PIDS" "$STATE"

# Binaries: build what is missing (make up already depends on make tools; this covers direct use).
for b in "$BIN_K8S/kube-apiserver" "$BIN_K8S/kube-controller-manager" "$BIN_K8S/kube-scheduler" \
         "$KUBECTL" "$BIN_ETCD/etcd" "$BIN_KWOK/kwok" "$HELM" "$BIN_KWOK/crds/kwok.x-k8s.io_execs.yaml"; do
  if [ ! -e "$b" ]; then
    log "missing $b; running build-tools.sh"
    "$REPO_ROOT/scripts/build-tools.sh"
    break
  fi
done
command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"
# The test world (Patroni, PostgreSQL majors) the pod runner runs Spilo pods with (cached).
"$REPO_ROOT/scripts/world-install.sh"
# The pod runner (cargo builds it only when a source changed).
export CARGO_TARGET_DIR PGOP_CACHE
(cd "$REPO_ROOT" && cargo build -q -p world --bin pod-runner) || die "building the pod runner failed"
RUNNER_BIN=$CARGO_TARGET_DIR/debug/pod-runner
command -v curl >/dev/null || die "curl is required (apt-get install curl)"

# Only one up.sh/down.sh at a time per checkout.
exec 9>>"$LOCAL_DIR/.lock"
flock -w 300 9 || die "another up.sh/down.sh holds $LOCAL_DIR/.lock for over 5 minutes"

# This checkout's slot: its ports and address ranges (see lib.sh). While a component still runs,
# the values recorded when it started stay (a control plane of an earlier version, which recorded
# none, ran on slot 0's); otherwise they come from the environment and the slot.
for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
  if running "$name"; then
    network_load || PGOP_SLOT=0
    break
  fi
done
slot_claim
slot_network
network_write
log "slot $PGOP_SLOT: API 127.0.0.1:$API_PORT, etcd :$ETCD_CLIENT_PORT/:$ETCD_PEER_PORT, pods $POD_CIDR, services $SERVICE_CIDR, nodes from $NODE_IP, kubelets :$KUBELET_PORT"

# ---------------------------------------------------------------------------------------------
# Certificates and keys (created once; kept across restarts so the kubeconfig stays valid).
# ---------------------------------------------------------------------------------------------
gen_pki() {
  [ -f "$PKI/done" ] && return 0
  log "generating certificates in $PKI"
  local t; t=$(mktemp -d)
  (
    cd "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pgop-local-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' >srv.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile srv.ext -out apiserver.crt 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' >cli.ext
    for who in "admin:system:masters" "kube-controller-manager:" "kube-scheduler:" "kwok:system:masters"; do
      local cn=${who%%:*} org=${who#*:} subj
      case $cn in
        kube-controller-manager) subj="/CN=system:kube-controller-manager" ;;
        kube-scheduler) subj="/CN=system:kube-scheduler" ;;
        *) subj="/O=$org/CN=$cn" ;;
      esac
      openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$cn.key" -out "$cn.csr" 2>/dev/null
      openssl x509 -req -in "$cn.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile cli.ext -out "$cn.crt" 2>/dev/null
    done
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
  )
  chmod 600 "$t"/*.key
  mv "$t"/* "$PKI"/ && rmdir "$t"
  touch "$PKI/done"
}

# kubeconfig USER FILE: writes a kubeconfig with embedded certs (only if content changes).
write_kubeconfig() {
  local user=$1 file=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: pgop-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$user.crt")
    client-key-data: $(base64 -w0 <"$PKI/$user.key")
contexts:
- name: pgop-local
  context:
    cluster: pgop-local
    user: $user
current-context: pgop-local
KCFG
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; else mv "$tmp" "$file"; chmod 600 "$file"; fi
}

port_free_or_ours() { # refuse to start when someone else listens on our port
  local port=$1 name=$2
  if ! running "$name" && ss -Hltn "sport = :$port" | grep -q .; then
    die "port 127.0.0.1:$port is in use by another process; set ${3:-a different port} or stop it"
  fi
}

gen_pki
write_kubeconfig admin "$KUBECONFIG_LOCAL"
write_kubeconfig admin "$PKI/admin.kubeconfig"
write_kubeconfig kube-controller-manager "$PKI/kube-controller-manager.kubeconfig"
write_kubeconfig kube-scheduler "$PKI/kube-scheduler.kubeconfig"
write_kubeconfig kwok "$PKI/kwok.kubeconfig"
K=("$KUBECTL" --kubeconfig="$PKI/admin.kubeconfig")

# --- network-safety watcher (records any socket with a peer outside 127.0.0.0/8) ------------
if ! running netwatch; then : >"$LOGS/netwatch.log"; fi
start netwatch "$REPO_ROOT/scripts/netwatch.sh"

# --- etcd ------------------------------------------------------------------------------------
port_free_or_ours "$ETCD_CLIENT_PORT" etcd ETCD_CLIENT_PORT
port_free_or_ours "$ETCD_PEER_PORT" etcd ETCD_PEER_PORT
mkdir -p "$STATE/etcd"
start etcd "$BIN_ETCD/etcd" \
  --name=pgop-local --data-dir="$STATE/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="pgop-local=http://127.0.0.1:$ETCD_PEER_PORT" \
  --listen-metrics-urls="" \
  --unsafe-no-fsync=true --quota-backend-bytes=4294967296 --log-level=warn
wait_for "etcd /health" 30 etcd curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

# --- kube-apiserver --------------------------------------------------------------------------
port_free_or_ours "$API_PORT" kube-apiserver API_PORT
mkdir -p "$STATE/apiserver"
# The audit log records what the service accounts do (scripts/kube/audit-policy.yaml): the
# proof that the pods' ClusterRole is what Patroni needs.
# Kubelets (kwok's server: kubectl logs, exec) are dialled at the node's InternalIP, never at its
# Hostname (which the machine's resolver would be asked for); kwok's certificate is its own
# self-signed one, which the API server accepts without --kubelet-certificate-authority.
APISERVER_ARGS=(
  --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT"
  --bind-address=127.0.0.1 --secure-port="$API_PORT"
  --advertise-address=127.0.0.1 --endpoint-reconciler-type=none
  --cert-dir="$STATE/apiserver"
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key"
  --client-ca-file="$PKI/ca.crt"
  "--authorization-mode=Node,RBAC"
  --service-account-issuer="https://127.0.0.1:$API_PORT"
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key"
  --service-cluster-ip-range="$SERVICE_CIDR"
  --allow-privileged=true
  --kubelet-preferred-address-types=InternalIP
  --profiling=false
  --audit-policy-file="$REPO_ROOT/scripts/kube/audit-policy.yaml"
  --audit-log-path="$LOGS/audit.log" --audit-log-format=json
  --audit-log-maxsize=200 --audit-log-maxbackup=1
)
stop_if_stale kube-apiserver "$BIN_K8S/kube-apiserver" "${APISERVER_ARGS[@]}"
start kube-apiserver "$BIN_K8S/kube-apiserver" "${APISERVER_ARGS[@]}"
readyz() {
  curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" | grep -qx ok
}
wait_for "kube-apiserver /readyz" 120 kube-apiserver readyz
wait_for "namespace default" 60 kube-apiserver "${K[@]}" get namespace default

# --- kube-controller-manager and kube-scheduler -----------------------------------------------
CONTROLLERS=serviceaccount-token-controller,serviceaccount-controller,namespace-controller,garbage-collector-controller
CONTROLLERS+=,deployment-controller,replicaset-controller,statefulset-controller,job-controller,cronjob-controller
CONTROLLERS+=,disruption-controller,endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller
CONTROLLERS+=,pod-garbage-collector-controller,persistentvolume-binder-controller,persistentvolume-expander-controller
CONTROLLERS+=,persistentvolumeclaim-protection-controller,persistentvolume-protection-controller
CONTROLLERS+=,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller,node-lifecycle-controller
CONTROLLERS+=,taint-eviction-controller,ttl-after-finished-controller,resourcequota-controller,horizontal-pod-autoscaler-controller
start kube-controller-manager "$BIN_K8S/kube-controller-manager" \
  --kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
  --service-account-private-key-file="$PKI/sa.key" \
  --root-ca-file="$PKI/ca.crt" \
  --use-service-account-credentials=true \
  --controllers="$CONTROLLERS" \
  --enable-hostpath-provisioner=true \
  --leader-elect=false --secure-port=0 \
  --concurrent-gc-syncs=5
start kube-scheduler "$BIN_K8S/kube-scheduler" \
  --kubeconfig="$PKI/kube-scheduler.kubeconfig" \
  --leader-elect=false --secure-port=0

# --- kwok: fake kubelets. Pods with a Spilo container get only their IP from kwok
# (scripts/kwok/pod-runner-ip.yaml); the pod runner started below runs them and owns their status. Pod IPs from $POD_CIDR, node IPs from $NODE_IP (inside 127.0.0.0/8) ----
# kwok's kubelet server answers the API server's `kubectl logs` and `kubectl exec` requests from
# the Logs and Exec objects the pod runner writes per pod (world/src/runner/kubelet_io.rs). It
# listens on the first node's address only; the runner forwards the other nodes' to it.
port_free_or_ours "$KUBELET_PORT" kwok KUBELET_PORT
"${K[@]}" apply --server-side -f "$BIN_KWOK/crds/" >/dev/null
wait_for "kwok's Logs and Exec CRDs" 30 kube-apiserver \
  "${K[@]}" wait --for condition=established --timeout=5s crd/logs.kwok.x-k8s.io crd/execs.kwok.x-k8s.io
EXEC_PATH_DIR=$STATE/world/exec-path
mkdir -p "$EXEC_PATH_DIR"
KWOK_ARGS=(
  --kubeconfig="$PKI/kwok.kubeconfig"
  --config="$BIN_KWOK/stages/node-initialize.yaml"
  --config="$BIN_KWOK/stages/node-heartbeat-with-lease.yaml"
  --config="$REPO_ROOT/scripts/kwok/pod-ready.yaml"
  --config="$REPO_ROOT/scripts/kwok/pod-runner-ip.yaml"
  --config="$BIN_KWOK/stages/pod-complete.yaml"
  --config="$REPO_ROOT/scripts/kwok/pod-delete.yaml"
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake
  --cidr="$POD_CIDR" --node-ip="$NODE_IP" --node-lease-duration-seconds=40
  "--enable-crds=Logs,Exec" --server-address="$NODE_IP:$KUBELET_PORT" --node-port="$KUBELET_PORT"
)
# kwok hands its own environment, under the Exec object's variables, to every `kubectl exec`
# command, and looks the command up in its own PATH: it runs with a clean environment whose PATH
# starts with the pod runner's exec shims, which run the command from the pod's PATH.
start_kwok() {
  local v
  for v in $(compgen -e); do export -n "${v?}" 2>/dev/null || true; done
  export PATH="$EXEC_PATH_DIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME
  start kwok "$BIN_KWOK/kwok" "${KWOK_ARGS[@]}"
}
# A kwok started with other stages or flags is restarted with these. It reads the stage files
# once: one changed since it started (a newer image list) restarts it too, by asking
# stop_if_stale for a command line it does not run with.
kwok_want=("${KWOK_ARGS[@]}")
if running kwok && [ -n "$(find "$REPO_ROOT/scripts/kwok" -name '*.yaml' -newer "$PIDS/kwok.pid")" ]; then
  log "kwok's stages in scripts/kwok changed since it started"
  kwok_want+=(--stages-changed)
fi
stop_if_stale kwok "$BIN_KWOK/kwok" "${kwok_want[@]}"
if ! running kwok; then
  (start_kwok)
  STARTED+=(kwok)
fi

# --- cluster objects (created once, only when missing) -----------------------------------------
ensure() { # ensure KIND/NAME < manifest: creates the object only if it does not exist
  local ref=$1 manifest
  manifest=$(cat)
  if ! "${K[@]}" get "$ref" >/dev/null 2>&1; then
    printf '%s\n' "$manifest" | "${K[@]}" create -f - >/dev/null
    log "created $ref"
  fi
}
zones=(zone-a zone-b zone-c)
for i in $(seq 0 $((NODE_COUNT - 1))); do
  zone=${zones[$((i % 3))]}
  ensure "node/kwok-node-$i" <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-$i
    topology.kubernetes.io/zone: $zone
    topology.kubernetes.io/region: local
spec: {}
status:
  addresses:
  - {type: InternalIP, address: ${NODE_IP%.*}.$((${NODE_IP##*.} + i))}
  - {type: Hostname, address: kwok-node-$i}
  allocatable: {cpu: "32", memory: 128Gi, pods: "1000"}
  capacity: {cpu: "32", memory: 128Gi, pods: "1000"}
NODE
done
# kwok writes the kubelet port into a node's status when it initialises the node and on its
# heartbeats (10 to 20 minutes apart): a node initialised by a kwok without a server gets it now.
for i in $(seq 0 $((NODE_COUNT - 1))); do
  "${K[@]}" patch node "kwok-node-$i" --subresource=status --type=merge \
    -p "{\"status\":{\"daemonEndpoints\":{\"kubeletEndpoint\":{\"Port\":$KUBELET_PORT}}}}" >/dev/null
done
# Default StorageClass served by kube-controller-manager's built-in hostPath provisioner: every
# PVC gets a PV at once (a directory under /tmp/hostpath_pv that nothing ever mounts; the path is
# fixed in Kubernetes and shared by every checkout, so down.sh removes only this one's PVs' folders).
ensure storageclass/standard <<'SC'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
SC

# What Patroni in the Spilo pods the pod runner runs may do (the operator binds it per namespace);
# the same ClusterRole as in manifests/controller/rbac.yaml.
ensure clusterrole/postgres-pod < <(awk 'BEGIN{RS="\n---\n"} /name: postgres-pod\n/' "$REPO_ROOT/manifests/controller/rbac.yaml")

node_ready() {
  local n
  n=$("${K[@]}" get nodes -l type=kwok \
      -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -cx True)
  [ "$n" -ge "$NODE_COUNT" ]
}
wait_for "$NODE_COUNT Ready kwok nodes" 60 kwok node_ready
# --- the pod runner: the kubelet of the kwok nodes for Spilo containers (real Patroni + PostgreSQL)
RUNNER_ARGS=(--kubeconfig "$PKI/admin.kubeconfig" --state-dir "$STATE/world" --run-dir "$RUNNER_RUN_DIR"
  --kubelet-server "$NODE_IP:$KUBELET_PORT" --exec-path "$EXEC_PATH_DIR" --operator-bin "$CARGO_TARGET_DIR/debug")
# A runner whose binary was rebuilt restarts (its members die with it and start again).
stop_if_stale pod-runner "$RUNNER_BIN" "${RUNNER_ARGS[@]}"
start pod-runner "$RUNNER_BIN" "${RUNNER_ARGS[@]}"
sa_ready() { "${K[@]}" -n default get serviceaccount default; }
wait_for "default service account" 60 kube-controller-manager sa_ready
running kube-scheduler || die "kube-scheduler is not running (log: $LOGS/kube-scheduler.log)"

if [ ${#STARTED[@]} -eq 0 ]; then
  log "control plane already up; nothing changed"
else
  log "started: ${STARTED[*]}"
fi
echo "export KUBECONFIG=$KUBECONFIG_LOCAL"
