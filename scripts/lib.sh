# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file
# Shared settings for the control-plane scripts. Source it; do not execute it.
# Every version is pinned here; the cache directory names include the version, so bumping
# a version makes build-tools.sh build the new one and leaves the old one alone.

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.14}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.21.4}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PGOP_CACHE=${PGOP_CACHE:-$HOME/.cache/pgop}
LOCAL_DIR=${LOCAL_DIR:-$REPO_ROOT/.local}
KUBECONFIG_LOCAL=${KUBECONFIG_LOCAL:-$LOCAL_DIR/kubeconfig}
PKI=$LOCAL_DIR/pki
LOGS=$LOCAL_DIR/logs
PIDS=$LOCAL_DIR/pids
STATE=$LOCAL_DIR/state
# The pod runner's members' run dirs (unix sockets: a socket path must stay under 108 bytes).
RUNNER_RUN_DIR=/tmp/pgop-run-$(printf '%s' "$LOCAL_DIR" | cksum | cut -d' ' -f1)
# The Rust build outputs of this checkout (the Makefile sets the same; see there).
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PGOP_CACHE/target/$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1)}

BIN_K8S=$PGOP_CACHE/bin/kubernetes-$K8S_VERSION
BIN_ETCD=$PGOP_CACHE/bin/etcd-$ETCD_VERSION
BIN_KWOK=$PGOP_CACHE/bin/kwok-$KWOK_VERSION
BIN_HELM=$PGOP_CACHE/bin/helm-$HELM_VERSION

KUBECTL=$BIN_K8S/kubectl
HELM=$BIN_HELM/helm


# Go build environment: everything (module cache, build cache) lives under the cache dir.
go_env() {
  export GOPATH=$PGOP_CACHE/go
  export GOMODCACHE=$PGOP_CACHE/go/pkg/mod
  export GOCACHE=$PGOP_CACHE/go-build
  export GOTOOLCHAIN=local
  export CGO_ENABLED=0
  export GOFLAGS="-buildvcs=false -p=${GO_BUILD_JOBS:-2}"
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Process management (up.sh, demo.sh): one PID file per component; a component counts as running when its PID is
# alive and its /proc cmdline still starts with the binary we launched.
# ---------------------------------------------------------------------------------------------
running() { # running NAME -> 0 if the recorded process is alive
  local f=$PIDS/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(cat "$PIDS/$1.bin" 2>/dev/null || echo /nonexistent)"
}

start() { # start NAME BINARY ARGS...: starts in its own session, output to logs/NAME.log
  local name=$1 bin=$2; shift 2
  if running "$name"; then
    log "$name already running (pid $(cat "$PIDS/$name.pid"))"
    return 0
  fi
  log "starting $name"
  echo "$bin" >"$PIDS/$name.bin"
  printf '%s\n' "$bin $*" >"$STATE/$name.cmdline"
  setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 9>&- &
  local pid=$!
  echo "$pid" >"$PIDS/$name.pid"
  STARTED+=("$name")
  # Until the forked shell has exec'd the binary its cmdline is still the shell's, and `running`
  # would call it dead: on a busy machine a wait_for right after start failed that way, with an
  # empty log. Wait for the exec (or the exit) here.
  for _ in $(seq 1 200); do
    running "$name" && return 0
    [ -d "/proc/$pid" ] || return 0
    sleep 0.05
  done
}
STARTED=()

# stop_if_stale NAME BINARY ARGS...: stops NAME when it runs with another command line than
# `start NAME BINARY ARGS...` would use, or from a binary rebuilt since it started, so the next
# start runs the current one.
stop_if_stale() {
  local name=$1 want pid
  running "$name" || return 0
  want="$2 ${*:3}"
  if [ "$(cat "$STATE/$name.cmdline" 2>/dev/null)" = "$want" ] && [ ! "$2" -nt "$PIDS/$name.pid" ]; then
    return 0
  fi
  pid=$(cat "$PIDS/$name.pid")
  log "restarting $name (its command line or binary changed)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do running "$name" || break; sleep 0.2; done
  if running "$name"; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$PIDS/$name.pid"
}

wait_for() { # wait_for DESCRIPTION TIMEOUT_S NAME CMD...: polls CMD, fails early if NAME died
  local what=$1 timeout=$2 name=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name"; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name exited while waiting for $what (log: $LOGS/$name.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "timed out after ${timeout}s waiting for $what (log: $LOGS/$name.log)"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------
# Slots: control planes of several checkouts side by side. A checkout (its $LOCAL_DIR) claims a
# small number N in $PGOP_CACHE/slots/N, a file holding its LOCAL_DIR and checkout path. Every
# port and address range derives from N, all inside 127.0.0.0/8 and disjoint between slots:
#   etcd 12379+10N (client) and 12380+10N (peer), kube-apiserver 16443+10N,
#   demo webhook 18443+10N, its admin port 18080+10N, demo controller admin 18081+10N,
#   kwok's kubelet server 19250+10N (on the first node's address; the pod runner forwards the
#   other nodes' to it),
#   pods 127.(10+N).0.0/16, Services 127.(96+N).0.0/16, nodes 127.0.(1+N).10, .11, ...
# up.sh claims (the checkout's own slot again when it has one; else the lowest slot that no live
# claim holds and whose ports nobody listens on) and writes the values it runs with to
# $NETWORK_ENV, which every later reader uses (network_load); down.sh frees the slot. A claim
# whose LOCAL_DIR or checkout is gone is free. Each value can still be set in the environment
# (ETCD_CLIENT_PORT, ETCD_PEER_PORT, API_PORT, PGOP_WEBHOOK_PORT, KUBELET_PORT, POD_CIDR, NODE_IP, SERVICE_CIDR;
# PGOP_SLOT picks the slot itself).
# ---------------------------------------------------------------------------------------------
SLOTS_DIR=$PGOP_CACHE/slots
SLOT_COUNT=16
NETWORK_ENV=$STATE/network.env
NODE_COUNT=${NODE_COUNT:-3}

slot_claim_live() { # slot_claim_live FILE: the claim's LOCAL_DIR and checkout still exist
  local owner repo
  owner=$(sed -n 1p "$1" 2>/dev/null) && repo=$(sed -n 2p "$1" 2>/dev/null) || return 1
  [ -n "$owner" ] && [ -d "$owner" ] && [ -f "$repo/scripts/lib.sh" ]
}

slot_find() { # prints the slot this checkout holds, if any
  local f
  for f in "$SLOTS_DIR"/[0-9]*; do
    [ -f "$f" ] && [ "$(sed -n 1p "$f")" = "$LOCAL_DIR" ] && { echo "${f##*/}"; return 0; }
  done
  return 1
}

slot_ports() { # slot_ports N: every TCP port of slot N
  local o=$(($1 * 10))
  echo $((12379 + o)) $((12380 + o)) $((16443 + o)) $((18443 + o)) $((18080 + o)) $((18081 + o)) $((19250 + o))
}

slot_ports_busy() { # slot_ports_busy N: some process listens on one of slot N's ports
  local p
  for p in $(slot_ports "$1"); do
    ss -Hltn "sport = :$p" | grep -q . && return 0
  done
  return 1
}

# slot_claim: sets PGOP_SLOT to this checkout's slot, claiming one when it has none.
slot_claim() {
  local n f mine
  mkdir -p "$SLOTS_DIR"
  exec 8>>"$SLOTS_DIR/.lock"
  flock -w 60 8 || die "another checkout holds $SLOTS_DIR/.lock"
  mine=$(slot_find || true)
  if [ -n "${PGOP_SLOT:-}" ]; then
    case $PGOP_SLOT in *[!0-9]*|'') die "PGOP_SLOT must be a number from 0 to $((SLOT_COUNT - 1))" ;; esac
    [ "$PGOP_SLOT" -lt "$SLOT_COUNT" ] || die "PGOP_SLOT must be below $SLOT_COUNT"
    f=$SLOTS_DIR/$PGOP_SLOT
    if [ "$PGOP_SLOT" != "$mine" ] && slot_claim_live "$f"; then
      die "slot $PGOP_SLOT is held by $(sed -n 2p "$f") (see $f)"
    fi
  elif [ -n "$mine" ]; then
    PGOP_SLOT=$mine
  else
    for n in $(seq 0 $((SLOT_COUNT - 1))); do
      f=$SLOTS_DIR/$n
      if [ -f "$f" ] && ! slot_claim_live "$f"; then
        log "slot $n: dropping the claim of $(sed -n 2p "$f"), which is gone"
        rm -f "$f"
      fi
      if [ -f "$f" ] || slot_ports_busy "$n"; then continue; fi
      PGOP_SLOT=$n
      break
    done
    [ -n "${PGOP_SLOT:-}" ] || die "all $SLOT_COUNT slots in $SLOTS_DIR are held or their ports are in use"
  fi
  if [ -n "$mine" ] && [ "$mine" != "$PGOP_SLOT" ]; then rm -f "$SLOTS_DIR/$mine"; fi
  printf '%s\n%s\n' "$LOCAL_DIR" "$REPO_ROOT" >"$SLOTS_DIR/$PGOP_SLOT"
  exec 8>&-
}

slot_release() { # frees this checkout's slot (if it holds one)
  local n
  [ -d "$SLOTS_DIR" ] || return 0
  exec 8>>"$SLOTS_DIR/.lock"
  flock -w 60 8 || die "another checkout holds $SLOTS_DIR/.lock"
  if n=$(slot_find); then
    rm -f "$SLOTS_DIR/$n"
    log "freed slot $n"
  fi
  exec 8>&-
}

# slot_network: the values of slot $PGOP_SLOT, where the environment does not set them.
slot_network() {
  local s=$PGOP_SLOT o=$((PGOP_SLOT * 10))
  ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-$((12379 + o))}
  ETCD_PEER_PORT=${ETCD_PEER_PORT:-$((12380 + o))}
  API_PORT=${API_PORT:-$((16443 + o))}
  PGOP_WEBHOOK_PORT=${PGOP_WEBHOOK_PORT:-$((18443 + o))}
  WEBHOOK_ADMIN_PORT=${WEBHOOK_ADMIN_PORT:-$((18080 + o))}
  CONTROLLER_ADMIN_PORT=${CONTROLLER_ADMIN_PORT:-$((18081 + o))}
  KUBELET_PORT=${KUBELET_PORT:-$((19250 + o))}
  POD_CIDR=${POD_CIDR:-127.$((10 + s)).0.0/16}
  SERVICE_CIDR=${SERVICE_CIDR:-127.$((96 + s)).0.0/16}
  NODE_IP=${NODE_IP:-127.0.$((1 + s)).10}
}

network_vars() { # the names written to $NETWORK_ENV: the control plane's (the demo's ports are
  # taken from the environment or the slot whenever the demo starts)
  echo PGOP_SLOT ETCD_CLIENT_PORT ETCD_PEER_PORT API_PORT KUBELET_PORT POD_CIDR SERVICE_CIDR NODE_IP
}

# network_write: records the values the control plane runs with (up.sh, once they are set).
network_write() {
  local v tmp
  mkdir -p "${NETWORK_ENV%/*}"
  tmp=$(mktemp "$NETWORK_ENV.XXXXXX")
  for v in $(network_vars); do printf '%s=%s\n' "$v" "${!v}"; done >"$tmp"
  mv "$tmp" "$NETWORK_ENV"
}

# network_load: the values of this checkout's control plane for the scripts and tests that use it:
# those it recorded while it runs (they win over the environment: they are what it listens on),
# else those of the slot this checkout holds. Fails when there are neither.
network_load() {
  if [ -f "$NETWORK_ENV" ]; then
    # shellcheck source=/dev/null
    source "$NETWORK_ENV"
  else
    PGOP_SLOT=${PGOP_SLOT:-$(slot_find)} || return 1
    slot_network
  fi
}
