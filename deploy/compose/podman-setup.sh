#!/usr/bin/env bash
# Prepares Podman for the compose stack on a Debian/Ubuntu machine without a
# Docker daemon or an image registry: the packages, the engine settings
# (containers.conf beside this file, via CONTAINERS_CONF), and a Debian base
# image made with debootstrap (localhost/debian:bookworm) that the local images
# are built from. Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="$here/containers.conf"
base=${STACK_BASE_IMAGE:-localhost/debian:bookworm}
suite=${STACK_BASE_SUITE:-bookworm}

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
need=()
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v runc >/dev/null || need+=(runc)
command -v podman-compose >/dev/null || need+=(podman-compose)
if ((${#need[@]})); then
  echo "podman-setup: installing ${need[*]} with apt-get"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}"
fi

if ! $sudo podman image exists "$base"; then
  rootfs=$(mktemp -d /var/tmp/vitrine-rootfs.XXXXXX)
  trap '$sudo rm -rf "$rootfs"' EXIT
  echo "podman-setup: building $base with debootstrap ($suite, minbase)"
  t=$SECONDS
  $sudo debootstrap --variant=minbase "$suite" "$rootfs" >/dev/null
  # Slim as debian:bookworm-slim: no package lists or downloaded .debs (every
  # build runs apt-get update), and dpkg leaves out docs, man pages and locales.
  $sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/locale/*' \
    'path-exclude /usr/share/info/*' | $sudo tee "$rootfs"/etc/dpkg/dpkg.cfg.d/docker >/dev/null
  $sudo tar -C "$rootfs" -c . | $sudo podman import -q - "$base" >/dev/null
  echo "podman-setup: $base ready in $((SECONDS - t)) s"
fi
echo "podman-setup: $(podman --version), base image $base"
