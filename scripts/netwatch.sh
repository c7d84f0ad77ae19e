#!/usr/bin/env bash
# Network-safety watcher, started by up.sh and stopped by down.sh: every 200 ms it lists all
# TCP and UDP sockets of this machine (ss) and appends each one whose peer lies outside
# 127.0.0.0/8 / ::1 to $LOCAL_DIR/logs/netwatch.log, once per distinct (process, peer).
# Each line ends with cwd=<the first process's working directory> (or cwd=?), so that with several
# checkouts' control planes side by side, each of whose watchers sees every socket of the machine,
# tests/tests/zz_network_safety.rs can tell another checkout's processes from this one's; it fails
# when a process of this checkout (or of unknown origin) shows up there.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
out=$LOCAL_DIR/logs/netwatch.log
interval=${NETWATCH_INTERVAL:-0.2}
touch "$out"
declare -A seen=()
while :; do
  while read -r line; do
    [ -n "$line" ] || continue
    cwd='?'
    if [[ $line =~ pid=([0-9]+) ]]; then
      cwd=$(readlink "/proc/${BASH_REMATCH[1]}/cwd" 2>/dev/null) || cwd='?'
    fi
    key="${line%% @*} $cwd"
    [ -n "${seen[$key]:-}" ] && continue
    seen[$key]=1
    printf '%s cwd=%s\n' "$line" "$cwd" >>"$out"
  done < <(ss -H -tunap 2>/dev/null | awk -v now="$(date -u +%FT%TZ)" '
    {
      proto = $1; state = $2; peer = $6; users = ""
      for (i = 7; i <= NF; i++) users = users $i
      if (peer == "*:*" || peer == "0.0.0.0:*" || peer == "[::]:*" || peer == "*") next
      host = peer; sub(/:[^:]*$/, "", host); gsub(/[\[\]]/, "", host); sub(/^::ffff:/, "", host)
      sub(/%.*/, "", host)
      if (host ~ /^127\./ || host == "::1" || host == "*" || host == "0.0.0.0" || host == "::") next
      # process name(s) from users:(("name",pid=1,fd=3),...)
      procs = users; gsub(/users:\(\(/, "", procs); gsub(/\)\)$/, "", procs)
      n = split(procs, parts, /\),\(/); names = ""
      for (j = 1; j <= n; j++) { split(parts[j], f, ","); nm = f[1]; gsub(/"/, "", nm); names = names (names == "" ? "" : ",") nm }
      if (names == "") names = "?"
      printf "%s %s %s %s @ %s %s\n", names, proto, peer, state, now, users
    }')
  sleep "$interval"
done
