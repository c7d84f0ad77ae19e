#!/usr/bin/env bash
# Builds the controller and webhook images (controller/Dockerfile, webhook/Dockerfile) with the
# first container engine that answers: docker (with a running daemon), then podman.
#   IMAGE_REGISTRY  registry/org of the images (default ghcr.io/pg-operator)
#   IMAGE_TAG       tag (default: the workspace version, which is the chart's appVersion)
#   --print         print the build commands instead of running them
set -euo pipefail
cd "$(dirname "$0")/.."
registry=${IMAGE_REGISTRY:-ghcr.io/pg-operator}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
tag=${IMAGE_TAG:-$version}
rust=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

commands=()
for bin in controller webhook; do
  commands+=("build -f $bin/Dockerfile --build-arg RUST_VERSION=$rust -t $registry/pg-operator-$bin:$tag .")
done

if [ "${1:-}" = "--print" ]; then
  printf '%s\n' "${commands[@]}"
  exit 0
fi

engine=""
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine=docker
elif command -v podman >/dev/null && podman info >/dev/null 2>&1; then
  engine=podman
fi
if [ -z "$engine" ]; then
  echo "make images: no container engine answers here (docker has no running daemon, no podman);" >&2
  echo "run it where one does. The build commands would be:" >&2
  printf '  docker %s\n' "${commands[@]}" >&2
  exit 2
fi
for c in "${commands[@]}"; do
  echo "+ $engine $c"
  # shellcheck disable=SC2086 # the command is a list of words
  DOCKER_BUILDKIT=1 $engine $c
done
