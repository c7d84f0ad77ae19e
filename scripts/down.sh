#!/usr/bin/env bash
# Stops exactly the processes that up.sh started (by the PIDs it recorded, in reverse start
# order) and removes their state: etcd data, PID files, certificates, the kubeconfig, the folders
# of this control plane's hostPath volumes, and its slot claim (see lib.sh).
# Logs stay in .local/logs for inspection (set KEEP_LOGS=0 to remove them too).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

[ -d "$LOCAL_DIR" ] || { log "nothing to stop ($LOCAL_DIR does not exist)"; exit 0; }
exec 9>>"$LOCAL_DIR/.lock"
flock -w 300 9 || die "another up.sh/down.sh holds $LOCAL_DIR/.lock for over 5 minutes"

ours() { # ours PID BIN: the PID is alive and still runs the binary we started
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}

stop_one() {
  local name=$1 pid bin
  [ -f "$PIDS/$name.pid" ] || return 0
  pid=$(cat "$PIDS/$name.pid"); bin=$(cat "$PIDS/$name.bin" 2>/dev/null || echo "")
  if [ -n "$pid" ] && [ -n "$bin" ] && ours "$pid" "$bin"; then
    log "stopping $name (pid $pid)"
    # up.sh started each component with setsid, so its PID is also its process group:
    # signal the group to take any helper children (netwatch's ss/sleep) along.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do ours "$pid" "$bin" || break; sleep 0.2; done
    if ours "$pid" "$bin"; then
      log "$name did not exit after 20s; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 25); do ours "$pid" "$bin" || break; sleep 0.2; done
    fi
    ours "$pid" "$bin" && die "could not stop $name (pid $pid)"
  else
    log "$name was not running"
  fi
  rm -f "$PIDS/$name.pid" "$PIDS/$name.bin"
}

# Stop PostgreSQL instances that the test helper left behind (their pid files live under
# .local/postgres/<name>/data/postmaster.pid, started by scripts/pg-instance.sh).
if [ -d "$LOCAL_DIR/postgres" ]; then
  for d in "$LOCAL_DIR"/postgres/*/; do
    [ -d "$d" ] || continue
    "$REPO_ROOT/scripts/pg-instance.sh" stop "$d" || true
  done
fi
for name in pgop-controller pgop-webhook pod-runner kwok kube-scheduler kube-controller-manager; do
  stop_one "$name"
done

# The folders of this control plane's PersistentVolumes. kube-controller-manager's hostPath
# provisioner creates them as /tmp/hostpath_pv/<uuid>, a path fixed in Kubernetes that every
# checkout's control plane shares, so only the paths that this one's PVs name are removed:
# listed through the API now that the provisioner has stopped, or, when the API does not answer,
# read from this control plane's etcd data (which stores each PV with its path).
pv_pattern='/tmp/hostpath_pv/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
pvs_from_api() {
  local list
  [ -f "$PKI/admin.kubeconfig" ] && running kube-apiserver || return 1
  list=$("$KUBECTL" --kubeconfig="$PKI/admin.kubeconfig" --request-timeout=10s get pv -o \
    jsonpath='{range .items[?(@.spec.hostPath)]}{.metadata.annotations.pv\.kubernetes\.io/provisioned-by}{" "}{.spec.hostPath.path}{"\n"}{end}') || return 1
  printf '%s\n' "$list" | sed -n 's|^kubernetes.io/host-path ||p'
}
pv_dirs=()
if pv_list=$(pvs_from_api); then
  pv_source=API
else
  pv_list=
  pv_source=etcd
fi

for name in kube-apiserver etcd netwatch; do
  stop_one "$name"
done

if [ "$pv_source" = etcd ] && [ -d "$STATE/etcd" ]; then
  log "kube-apiserver did not answer; reading this control plane's PV paths from its etcd data"
  pv_list=$(grep -rahoE "$pv_pattern" "$STATE/etcd" || true)
fi
while IFS= read -r dir; do
  if [[ $dir =~ ^${pv_pattern}$ ]] && [ -d "$dir" ]; then pv_dirs+=("$dir"); fi
done < <(printf '%s\n' "$pv_list" | sort -u)

rm -rf "$LOCAL_DIR/state" "$RUNNER_RUN_DIR" "$LOCAL_DIR/pki" "$LOCAL_DIR/pids" "$LOCAL_DIR/postgres" "$LOCAL_DIR/helm" "$KUBECONFIG_LOCAL"
if [ "${KEEP_LOGS:-1}" = 0 ]; then rm -rf "$LOCAL_DIR/logs"; fi
if [ ${#pv_dirs[@]} -gt 0 ]; then
  log "removing this control plane's ${#pv_dirs[@]} PV folder(s) under /tmp/hostpath_pv"
  rm -rf -- "${pv_dirs[@]}"
fi
slot_release
log "control plane stopped; state removed (logs kept in $LOCAL_DIR/logs)"
