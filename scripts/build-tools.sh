#!/usr/bin/env bash
# Builds the Go binaries of the local control plane from the Go module proxy, once.
# Output: $PGOP_CACHE/bin/<component>-<version>/. A component whose binaries all exist is skipped.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v go >/dev/null || die "go is not installed (need Go >= 1.26)"
go_ver=$(go env GOVERSION)
case "$go_ver" in
  go1.2[6-9]*|go1.[3-9][0-9]*) ;;
  *) die "need Go >= 1.26 (Kubernetes ${K8S_VERSION%.*} and kwok $KWOK_VERSION require it), found $go_ver" ;;
esac
go_env
mkdir -p "$PGOP_CACHE/bin" "$PGOP_CACHE/build"

# One build at a time (make tools from two shells must not race).
exec 9>"$PGOP_CACHE/build/.lock"
flock 9

total_start=$SECONDS
BUILD_LOG_DIR=$PGOP_CACHE/build/logs
mkdir -p "$BUILD_LOG_DIR"
step() { # step NAME CMD...: runs CMD with its output in a log file, prints progress and timing
  local name=$1; shift
  local t=$SECONDS slog
  slog=$BUILD_LOG_DIR/${name// /-}.log
  log "start: $name (output: $slog)"
  : >"$slog"
  # Heartbeat while the step runs: the compile of kube-apiserver takes minutes.
  # (sleep gets no stdout/stderr so a killed heartbeat leaves nothing holding a pipe open)
  (
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    while :; do
      sleep 60 >/dev/null 2>&1 & s=$!
      wait "$s"
      log "  ... $name still building ($((SECONDS - t))s)"
    done
  ) 9>&- &
  local hb=$!
  local rc=0
  # A background subshell keeps `set -e` in force inside the step (it is off under `||`).
  ( set -e; "$@" ) >>"$slog" 2>&1 &
  wait $! || rc=$?
  kill "$hb" 2>/dev/null; wait "$hb" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$slog" >&2
    die "$name failed after $((SECONDS - t))s (full output: $slog)"
  fi
  log "done:  $name ($((SECONDS - t))s)"
}
# substep MESSAGE: a progress line on the terminal (the step's own output goes to its log)
substep() { log "  $*" 2>&3; }
exec 3>&2

have_all() { local d=$1; shift; for b in "$@"; do [ -x "$d/$b" ] || return 1; done; }

build_kubernetes() {
  local out=$BIN_K8S stg=v0.${K8S_VERSION#v1.}
  local minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local w=$PGOP_CACHE/build/kubernetes-$K8S_VERSION
  mkdir -p "$w" && cd "$w"
  if [ ! -f go.mod ]; then
    go mod init local.pgop/k8sbins >/dev/null 2>&1
  fi
  go mod edit -go=1.26.0
  substep "resolving k8s.io/kubernetes@$K8S_VERSION staging modules"
  local kmod
  kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  local n=0 m mods
  mapfile -t mods < <(sed -n 's|^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*|\1|p' "$kmod")
  for m in "${mods[@]}"; do
    go mod edit "-replace=$m=$m@$stg"; n=$((n + 1))
  done
  [ "$n" -gt 0 ] || die "found no staging replaces in $kmod"
  substep "$n staging modules pinned to $stg; downloading modules"
  local pkgs="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"
  local p getargs=()
  for p in $pkgs; do getargs+=("$p@$K8S_VERSION"); done
  go get -tool "${getargs[@]}"
  local V=k8s.io/component-base/version C=k8s.io/client-go/pkg/version
  local ldf="-s -w -buildid="
  for pkg in $V $C; do
    ldf+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  substep "compiling kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (slow on a cold cache)"
  mkdir -p "$w/bin"
  # shellcheck disable=SC2086
  go build -trimpath -tags=selinux,notest -ldflags "$ldf" -o "$w/bin/" $pkgs
  "$w/bin/kube-apiserver" --version | grep -q "$K8S_VERSION" || die "kube-apiserver is not version-stamped"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp" && cp "$w"/bin/* "$out.tmp/" && rm -rf "$out" && mv "$out.tmp" "$out"
}

build_etcd() {
  local w=$PGOP_CACHE/build/etcd-$ETCD_VERSION out=$BIN_ETCD
  mkdir -p "$w" && cd "$w"
  [ -f go.mod ] || go mod init local.pgop/etcdbin >/dev/null 2>&1
  go mod edit -go=1.25.0
  substep "downloading modules"
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  substep "compiling etcd"
  mkdir -p "$w/bin"
  go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" -o "$w/bin/etcd" go.etcd.io/etcd/server/v3
  "$w/bin/etcd" --version
  rm -rf "$out.tmp" && mkdir -p "$out.tmp" && cp "$w/bin/etcd" "$out.tmp/" && rm -rf "$out" && mv "$out.tmp" "$out"
}

build_kwok() {
  local out=$BIN_KWOK
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  substep "downloading and compiling kwok"
  GOBIN=$out.tmp go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # The standalone kwok binary has no built-in stages: keep the upstream "fast" stage files beside it.
  local src=$GOMODCACHE/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
  mkdir -p "$out.tmp/stages"
  cp "$src/node/fast/node-initialize.yaml" \
     "$src/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
     "$src/pod/fast/pod-ready.yaml" "$src/pod/fast/pod-complete.yaml" "$src/pod/fast/pod-delete.yaml" \
     "$out.tmp/stages/"
  chmod u+w "$out.tmp/stages/"*
  kwok_crds "$out.tmp"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# kwok_crds DIR: kwok's Logs and Exec CRDs (up.sh installs them; kwok serves `kubectl logs` and
# `kubectl exec` from those objects) into DIR/crds, from the module cache.
kwok_crds() {
  local src=$GOMODCACHE/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/crd/bases
  [ -d "$src" ] || go mod download "sigs.k8s.io/kwok@$KWOK_VERSION"
  mkdir -p "$1/crds"
  cp "$src/kwok.x-k8s.io_logs.yaml" "$src/kwok.x-k8s.io_execs.yaml" "$1/crds/"
  chmod u+w "$1/crds/"*
}

build_helm() {
  local out=$BIN_HELM ver=$HELM_VERSION
  local minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  substep "downloading and compiling helm"
  GOBIN=$out.tmp go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$ver -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$ver"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

only=${1:-all}
case "$only" in all|kubernetes|etcd|kwok|helm) ;; *) die "usage: $0 [all|kubernetes|etcd|kwok|helm]" ;; esac

built=0
want() { [ "$only" = all ] || [ "$only" = "$1" ]; }
if want kubernetes; then
  if have_all "$BIN_K8S" kube-apiserver kube-controller-manager kube-scheduler kubectl; then
    log "cached: kubernetes $K8S_VERSION ($BIN_K8S)"
  else step "kubernetes $K8S_VERSION" build_kubernetes; built=1; fi
fi
if want etcd; then
  if have_all "$BIN_ETCD" etcd; then log "cached: etcd $ETCD_VERSION ($BIN_ETCD)"
  else step "etcd $ETCD_VERSION" build_etcd; built=1; fi
fi
if want kwok; then
  if have_all "$BIN_KWOK" kwok && [ -f "$BIN_KWOK/stages/pod-ready.yaml" ]; then
    log "cached: kwok $KWOK_VERSION ($BIN_KWOK)"
    # A kwok built before the CRDs were kept beside it only needs them.
    [ -f "$BIN_KWOK/crds/kwok.x-k8s.io_execs.yaml" ] || step "kwok $KWOK_VERSION CRDs" kwok_crds "$BIN_KWOK"
  else step "kwok $KWOK_VERSION" build_kwok; built=1; fi
fi
if want helm; then
  if have_all "$BIN_HELM" helm; then log "cached: helm $HELM_VERSION ($BIN_HELM)"
  else step "helm $HELM_VERSION" build_helm; built=1; fi
fi
if [ "$built" = 1 ]; then
  log "tools built in $((SECONDS - total_start))s"
  # Go's build cache (GiBs) only speeds up a rebuild of the same versions, which never comes:
  # the binaries above are the cache. The module cache stays for a version bump.
  go clean -cache
  rm -rf "$PGOP_CACHE"/build/*/bin
else log "all tools cached"; fi
