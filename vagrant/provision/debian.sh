#!/bin/sh
# Public Debian 12 box (debian/bookworm64): what the local box has baked in.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends docker.io auditd python3 apparmor apparmor-utils >/dev/null
systemctl enable --now docker auditd
