#!/usr/bin/env bash
# Install what hardline, its tests and its lab need on a Debian/Ubuntu machine (run as root).
#   bash scripts/setup.sh          # everything
#   bash scripts/setup.sh lab      # only what the lab VM needs
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# the QEMU lab VM, the Vagrant lab (vagrant-libvirt, libvirt in a network namespace) and its box
# builder (sfdisk, losetup/partx/unshare, debootstrap)
lab_pkgs=(qemu-system-x86 qemu-utils debootstrap e2fsprogs openssh-client vagrant vagrant-libvirt
          libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base fdisk iproute2
          util-linux)
test_pkgs=(docker.io openssh-server openssh-client auditd busybox-static openssl iproute2 util-linux passwd procps chromium)
pkgs=("${lab_pkgs[@]}")
[ "${1:-all}" = lab ] || pkgs+=("${test_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# libvirt runs QEMU as root for the lab: /dev/kvm is root-only, and as libvirt-qemu libvirt
# re-probes QEMU on every call (~70 s per `vagrant up`)
qemu_conf=/etc/libvirt/qemu.conf
if [ -f "$qemu_conf" ] && ! grep -q '^user = "root"' "$qemu_conf"; then
  echo "==> $qemu_conf: user = \"root\", group = \"root\" (hardline lab)"
  printf '\n# hardline lab: QEMU runs as root (scripts/setup.sh)\nuser = "root"\ngroup = "root"\n' >> "$qemu_conf"
fi
echo "==> pip install -e ."
python3 -m pip install -q -e . 2>&1 | grep -v -e "^WARNING: Location" -e "Running pip as the 'root'" || true
