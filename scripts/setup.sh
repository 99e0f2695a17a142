#!/usr/bin/env bash
# Install what hardline, its tests and its lab need on a Debian/Ubuntu machine (run as root).
#   bash scripts/setup.sh          # everything
#   bash scripts/setup.sh lab      # only what the lab VM needs
# "all" also builds the Kubernetes binaries once (scripts/build-kubernetes.sh, ~10 min on 2 cores,
# cached under ~/.cache/hardline/kubernetes/ and reused by later runs).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# the QEMU lab VM, the Vagrant lab (vagrant-libvirt, libvirt in a network namespace) and its box
# builder (sfdisk, losetup/partx/unshare, debootstrap)
lab_pkgs=(qemu-system-x86 qemu-utils debootstrap e2fsprogs openssh-client vagrant vagrant-libvirt
          libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base fdisk iproute2
          util-linux)
test_pkgs=(docker.io openssh-server openssh-client auditd busybox-static openssl iproute2 util-linux passwd procps chromium sudo strace)
# Kubernetes test nodes (tests/support/k8s): Debian's etcd and containerd/runc run as they do on a node
k8s_pkgs=(etcd-server etcd-client containerd runc curl)
pkgs=("${lab_pkgs[@]}")
[ "${1:-all}" = lab ] || pkgs+=("${test_pkgs[@]}" "${k8s_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  # Packages such as etcd-server start their service on install; the tests start their own
  # copies in namespaces, so no service may start here (policy-rc.d 101 = "not now").
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
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
# the lint step of scripts/test.sh: ruff, mypy and the stubs mypy checks against (pinned: findings
# and unused ignores depend on their versions)
lint_pkgs=(ruff==0.17.6 mypy==2.4.1 types-PyYAML==6.0.12.20261113 types-paramiko==4.0.0.20260518)
read -ra missing_lint <<< "$(python3 - "${lint_pkgs[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
def have(req):
    name, _, pinned = req.partition("==")
    try:
        return version(name) == pinned
    except PackageNotFoundError:
        return False
print(" ".join(r for r in sys.argv[1:] if not have(r)))
EOF
)"
if [ ${#missing_lint[@]} -gt 0 ]; then
  echo "==> pip install ${missing_lint[*]}"
  python3 -m pip install -q "${missing_lint[@]}" 2>&1 | grep -v -e "^WARNING: Location" -e "Running pip as the 'root'" || true
fi
[ "${1:-all}" = lab ] || bash scripts/build-kubernetes.sh
