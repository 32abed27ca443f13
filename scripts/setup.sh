#!/usr/bin/env bash
# Installs what apt-ostree needs on a Debian 12 machine, as root: Debian's ostree, mmdebstrap,
# qemu-user-static (arm64 composes), qemu-system-x86/-arm and qemu-img (power-cut overlays) with GRUB, UEFI firmware, gdisk and mtools (disk images and VM boots), chromium (the dashboard's browser tests), postgresql (the fleet store's second backend), redis-server (joins several instances' brokers), nginx (the repo on a static host), prometheus (its promtool checks /metrics) and the npm
# packages. Node.js 20.19 or newer must be there first: it stops at once, saying so, otherwise.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (mmdebstrap, chroot and mounts need it)" >&2
  exit 1
fi

# First, before anything is installed: the server's and the tests' npm packages need Node.js
# 20.19 or newer (better-sqlite3 ships no build for Node 18 and would need a compiler; vite needs
# 20.19). Debian 12's own nodejs is 18.x. (The device agent runs on Debian's Node 18 in the images.)
node_version=$(node -p 'process.versions.node' 2>/dev/null || echo none)
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20 || (a===20 && b>=19) ? 0 : 1)' 2>/dev/null; then
  echo "error: Node.js 20.19 or newer is needed here, found: ${node_version}." >&2
  echo "  Debian 12's nodejs package is 18.x, which the server's npm packages do not support (better-sqlite3" >&2
  echo "  has no build for it and would need make and a C++ compiler; vite needs 20.19)." >&2
  echo "  Install Node.js 20 or 22 (NodeSource's Debian packages, deb.nodesource.com, or the nodejs.org" >&2
  echo "  tarball), put it first on PATH, and run this again." >&2
  exit 1
fi

packages=(ostree mmdebstrap qemu-user-static binfmt-support arch-test zstd e2fsprogs util-linux
  debian-archive-keyring ca-certificates file mosquitto grub-common chromium postgresql redis-server nginx prometheus
  qemu-system-x86 qemu-utils grub-pc-bin grub2-common gdisk qemu-system-arm qemu-efi-aarch64 dosfstools mtools
  dpkg-dev fuse3 apt-utils gnupg)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# mosquitto is here for the external-broker tests, which start their own; Debian's service would
# take port 1883 from the embedded broker.
if [ -d /run/systemd/system ] && systemctl is-enabled mosquitto >/dev/null 2>&1; then
  systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
# Likewise PostgreSQL (the tests start private servers, test/helpers/postgres.ts) and Prometheus
# (only its promtool is used): Debian's own services are not.
for service in postgresql redis-server nginx prometheus prometheus-node-exporter; do
  if [ -d /run/systemd/system ] && systemctl is-enabled "$service" >/dev/null 2>&1; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done


# arm64 composes run arm64 binaries through qemu-user-static's binfmt handlers.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || echo "warning: cannot mount binfmt_misc; arm64 composes will fail" >&2
fi
if [ -e /proc/sys/fs/binfmt_misc/status ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 || echo "warning: cannot enable qemu-aarch64 binfmt; arm64 composes will fail" >&2
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
