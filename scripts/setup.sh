#!/usr/bin/env bash
# Install what hardline, its tests and its lab need on a Debian/Ubuntu machine (run as root).
#   bash scripts/setup.sh          # everything
#   bash scripts/setup.sh lab      # only what the lab VM needs
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
lab_pkgs=(qemu-system-x86 qemu-utils debootstrap e2fsprogs openssh-client)
test_pkgs=(docker.io openssh-server openssh-client auditd busybox-static openssl iproute2 util-linux passwd procps chromium sudo strace)
pkgs=("${lab_pkgs[@]}")
[ "${1:-all}" = lab ] || pkgs+=("${test_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "==> pip install -e ."
python3 -m pip install -q -e . 2>&1 | grep -v -e "^WARNING: Location" -e "Running pip as the 'root'" || true
