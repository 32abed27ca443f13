#!/usr/bin/env bash
# Installs what apt-ostree needs on a Debian 12 machine, as root: Debian's ostree, mmdebstrap,
# qemu-user-static (arm64 composes), qemu-system-x86/-arm and qemu-img (power-cut overlays) with GRUB, UEFI firmware, gdisk and mtools (disk images and VM boots), Node.js, chromium (the dashboard's browser tests), postgresql (the fleet store's second backend), prometheus (its promtool checks /metrics) and the npm
# packages. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (mmdebstrap, chroot and mounts need it)" >&2
  exit 1
fi

packages=(ostree mmdebstrap qemu-user-static binfmt-support arch-test zstd e2fsprogs util-linux
  debian-archive-keyring ca-certificates file mosquitto grub-common chromium postgresql prometheus
  qemu-system-x86 qemu-utils grub-pc-bin grub2-common gdisk qemu-system-arm qemu-efi-aarch64 dosfstools mtools)
command -v node >/dev/null || packages+=(nodejs npm)
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
for service in postgresql prometheus prometheus-node-exporter; do
  if [ -d /run/systemd/system ] && systemctl is-enabled "$service" >/dev/null 2>&1; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done

node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<18 || (a===18 && b<19)) { console.error("error: Node.js >= 18.19 is needed, found " + process.version); process.exit(1) }'

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
