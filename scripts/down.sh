#!/usr/bin/env bash
# Stops exactly the processes that up.sh started (by the PIDs it recorded, in reverse start
# order) and removes their state: etcd data, PID files, certificates and the kubeconfig.
# Logs stay in .local/logs for inspection (set KEEP_LOGS=0 to remove them too).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PIDS=$LOCAL_DIR/pids
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
for name in pgop-controller pgop-webhook kwok kube-scheduler kube-controller-manager kube-apiserver etcd netwatch; do
  stop_one "$name"
done

rm -rf "$LOCAL_DIR/state" "$LOCAL_DIR/pki" "$LOCAL_DIR/pids" "$LOCAL_DIR/postgres" "$LOCAL_DIR/helm" "$KUBECONFIG_LOCAL"
if [ "${KEEP_LOGS:-1}" = 0 ]; then rm -rf "$LOCAL_DIR/logs"; fi
# hostPath volumes provisioned by kube-controller-manager (directories nothing ever mounted).
rm -rf /tmp/hostpath_pv
log "control plane stopped; state removed (logs kept in $LOCAL_DIR/logs)"
