#!/usr/bin/env bash
# The crate `common` is pure: CRD types, configuration and rules, shared by the webhook, the
# controller and their tests, with no async runtime, HTTP or Kubernetes client, allocator or other
# I/O stack among its normal dependencies (those live in `runtime` and the binaries). Fails, naming
# each such crate and the path that pulls it in, when one shows up in `cargo tree -p common`.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

# Crate names (prefixes: tokio-util, hyper-util, libmimalloc-sys, ... count too).
forbidden='tokio|hyper|mimalloc|libmimalloc|kube-client|kube-runtime'

tree=$("$CARGO" tree -p common -e normal --prefix none --format '{p}')
found=$(printf '%s\n' "$tree" | awk '{ print $1 }' | grep -E "^($forbidden)(-[a-z0-9_-]+)?$" | sort -u || true)
if [ -n "$found" ]; then
  {
    echo "check-pure: the crate common must not depend on an async runtime or I/O stack, but"
    echo "\`cargo tree -p common -e normal\` contains:"
    for crate in $found; do
      echo
      echo "  $crate, pulled in by:"
      "$CARGO" tree -p common -e normal -i "$crate" --depth 20 2>/dev/null | sed 's/^/    /' | head -n 20 || true
    done
    echo
    echo "Move the code that needs it to runtime/, a binary crate or tests/, or disable the"
    echo "dependency's default features (see common/Cargo.toml)."
  } >&2
  exit 1
fi
echo "check-pure: common has no async runtime or I/O stack ($(printf '%s\n' "$tree" | sort -u | wc -l) crates checked)"
