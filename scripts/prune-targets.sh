#!/usr/bin/env bash
# Keeps the Rust build cache from filling the disk.
#
# Every checkout builds into its own $PGOP_CACHE/target/<checkout id> (see the Makefile), so clean
# clones that are gone (CI's, a reviewer's) leave theirs behind: a few GiB each. This records which
# checkout owns the current target dir and removes the others when their checkout no longer exists
# and they have not been used for PGOP_TARGET_KEEP_DAYS days, or at once when the disk holding the
# cache has less than PGOP_TARGET_MIN_FREE_GIB free (oldest first, until there is enough).
#
# Usage: prune-targets.sh CHECKOUT_DIR   (with CARGO_TARGET_DIR set, as the Makefile does)
set -euo pipefail

checkout=${1:?usage: $0 CHECKOUT_DIR}
here=${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set}
root=$(dirname "$here")
keep_days=${PGOP_TARGET_KEEP_DAYS:-3}
min_free_gib=${PGOP_TARGET_MIN_FREE_GIB:-20}

mkdir -p "$here"
# The owner file's mtime is the last use: every make target that builds passes through here.
printf '%s\n' "$checkout" >"$here/.checkout"

free_gib() { df -P -k "$root" | awk 'NR == 2 { print int($4 / 1048576) }'; }

last_use() { # seconds since the epoch of a target dir's last use
  if [ -f "$1/.checkout" ]; then stat -c %Y "$1/.checkout"; else stat -c %Y "$1"; fi
}

# Only the per-checkout dirs this scheme made (all-digit names from cksum) are candidates,
# least recently used first.
others=()
while IFS= read -r dir; do
  others+=("$dir")
done < <(for dir in "$root"/*/; do
  dir=${dir%/}
  case ${dir##*/} in *[!0-9]*) continue ;; esac
  [ "$dir" = "$here" ] || printf '%s %s\n' "$(last_use "$dir")" "$dir"
done | sort -n | cut -d' ' -f2-)

remove() {
  printf 'prune-targets: removing %s (%s)\n' "$1" "$2" >&2
  rm -rf -- "$1"
}

owner_gone() {
  local owner
  owner=$(head -n1 "$1/.checkout" 2>/dev/null) || return 0
  [ ! -f "$owner/Cargo.toml" ]
}

now=$(date +%s)
for dir in ${others[@]+"${others[@]}"}; do
  [ -d "$dir" ] || continue
  if owner_gone "$dir" && [ $(((now - $(last_use "$dir")) / 86400)) -ge "$keep_days" ]; then
    remove "$dir" "its checkout is gone and it was last used over $keep_days days ago"
  fi
done

# Low on space: the least recently used go first, whoever owns them.
for dir in ${others[@]+"${others[@]}"}; do
  [ -d "$dir" ] || continue
  [ "$(free_gib)" -lt "$min_free_gib" ] || break
  remove "$dir" "less than $min_free_gib GiB free on the disk"
done
