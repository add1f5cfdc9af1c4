#!/usr/bin/env bash
# Installs the system packages Vigil needs to build and test, if missing.
# Debian/Ubuntu: as root it runs apt-get; otherwise it prints the command.
set -euo pipefail

# libsystemd-dev, liburing-dev: headers and libraries the C shim links.
# pkg-config: locates them for other build systems.  strace: the ordering
# tests trace vigild's syscalls.  gcc: builds the C reference server for
# benchmarks.  e2fsprogs, mount: the power-loss tests make and mount an ext4
# image on a loop device.  util-linux: unshare, for the PID-1 test.
# podman, runc, busybox-static: `vigil run` as a real container's PID 1
# (../shared/tools/container.sh).
packages=(libsystemd-dev liburing-dev pkg-config strace gcc e2fsprogs mount util-linux podman runc busybox-static)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
else
  [ -f /usr/include/liburing.h ] || missing+=(liburing-dev)
  [ -f /usr/include/systemd/sd-daemon.h ] || missing+=(libsystemd-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "vigil: missing ${missing[*]} (headers not found); install them with your package manager" >&2
    exit 1
  fi
fi

[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "vigil: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "vigil: missing system packages: ${missing[*]}" >&2
  echo "vigil: run as root:  $cmd" >&2
  exit 1
fi
