#!/usr/bin/env bash
# Runs shellcheck on the project's shell scripts (settings: .shellcheckrc), installing it from
# Debian's packages when missing (CI runs on a fresh machine, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
source scripts/lib.sh

if ! command -v shellcheck >/dev/null; then
  [ "$(id -u)" = 0 ] || die "shellcheck is not installed and installing needs root: apt-get install shellcheck"
  log "installing shellcheck from Debian packages"
  # One installer at a time (pg-instance.sh takes the same lock for PostgreSQL).
  exec 8>/tmp/pgop-apt.lock
  flock 8
  if ! command -v shellcheck >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
  fi
  exec 8>&-
  command -v shellcheck >/dev/null || die "apt-get install shellcheck did not provide shellcheck"
fi
shellcheck scripts/*.sh .ci/run
echo "shellcheck: scripts/*.sh and .ci/run are clean"
