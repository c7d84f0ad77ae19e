#!/usr/bin/env bash
# A throw-away PostgreSQL server on a loopback address: the stand-in for the database inside a
# Spilo pod in end-to-end tests.
#
#   pg-instance.sh start DIR IP PORT PASSWORD   initdb (if needed) + start; superuser "postgres"
#   pg-instance.sh stop DIR                     fast shutdown (no-op when not running)
#   pg-instance.sh install                      apt-get install PostgreSQL when missing
#
# Runs the server as the non-root user "postgres" when invoked as root (as the current user
# otherwise). DIR is created and owned by that user; the socket lives in DIR too.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

pg_bindir() {
  local d dirs
  mapfile -t dirs < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  for d in "${dirs[@]}"; do
    [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

install_pg() {
  if pg_bindir >/dev/null; then return 0; fi
  [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and installing needs root: apt-get install postgresql"
  log "installing PostgreSQL from Debian packages"
  # One installer at a time (parallel tests may all find it missing).
  exec 8>/tmp/pgop-apt.lock
  flock 8
  pg_bindir >/dev/null && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql postgresql-client >/dev/null
  pg_bindir >/dev/null || die "apt-get installed PostgreSQL but no server binaries were found under /usr/lib/postgresql"
}

as_pg() { # run a command as the postgres user when we are root
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "user postgres does not exist (install the postgresql package)"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd=${1:-}
case "$cmd" in
  install)
    install_pg
    pg_bindir
    ;;
  start)
    [ $# -eq 5 ] || die "usage: $0 start DIR IP PORT PASSWORD"
    dir=$2 ip=$3 port=$4 password=$5
    [[ $ip =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "IP must be inside 127.0.0.0/8, got '$ip'"
    if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1024 ] || [ "$port" -gt 65535 ]; then
      die "PORT must be 1024-65535, got '$port'"
    fi
    [ -n "$password" ] || die "PASSWORD must not be empty"
    install_pg
    bin=$(pg_bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      pwfile=$dir/.pw
      printf '%s\n' "$password" >"$pwfile"
      [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
      as_pg "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
      rm -f "$pwfile"
    fi
    if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      log "PostgreSQL in $dir already running"
      exit 0
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=$ip -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=50" \
      start >/dev/null || { tail -n 30 "$dir/server.log" >&2; die "PostgreSQL did not start"; }
    log "PostgreSQL $(basename "$(dirname "$bin")") listening on $ip:$port (data $dir/data)"
    ;;
  stop)
    [ $# -eq 2 ] || die "usage: $0 stop DIR"
    dir=$2
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    bin=$(pg_bindir) || exit 0
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
      || as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    ;;
  *)
    die "usage: $0 {install|start DIR IP PORT PASSWORD|stop DIR}"
    ;;
esac
