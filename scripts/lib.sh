# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file
# Shared settings for the control-plane scripts. Source it; do not execute it.
# Every version is pinned here; the cache directory names include the version, so bumping
# a version makes build-tools.sh build the new one and leaves the old one alone.

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.14}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.21.4}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGOP_CACHE=${PGOP_CACHE:-$HOME/.cache/pgop}
LOCAL_DIR=${LOCAL_DIR:-$REPO_ROOT/.local}
KUBECONFIG_LOCAL=${KUBECONFIG_LOCAL:-$LOCAL_DIR/kubeconfig}

BIN_K8S=$PGOP_CACHE/bin/kubernetes-$K8S_VERSION
BIN_ETCD=$PGOP_CACHE/bin/etcd-$ETCD_VERSION
BIN_KWOK=$PGOP_CACHE/bin/kwok-$KWOK_VERSION
BIN_HELM=$PGOP_CACHE/bin/helm-$HELM_VERSION

KUBECTL=$BIN_K8S/kubectl
HELM=$BIN_HELM/helm

# Fixed loopback ports (override with the environment if they clash).
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-12379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-12380}
API_PORT=${API_PORT:-16443}

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

# Network layout (all inside 127.0.0.0/8; see README "Testing").
POD_CIDR=${POD_CIDR:-127.10.0.0/16}
NODE_IP=${NODE_IP:-127.0.0.10}
SERVICE_CIDR=${SERVICE_CIDR:-127.96.0.0/16}
NODE_COUNT=${NODE_COUNT:-3}
