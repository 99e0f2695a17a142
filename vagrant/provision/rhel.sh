#!/bin/sh
# Public RHEL-family box (almalinux/9, SELinux enforcing out of the box): Docker CE with
# container-selinux, auditd, python3. Not exercised by hardline's own tests (no box of this
# family can run on the test machines); see vagrant/README.md.
set -eu
dnf -y -q install dnf-plugins-core
dnf config-manager --add-repo https://download.docker.com/linux/centos/docker-ce.repo
dnf -y -q install docker-ce docker-ce-cli containerd.io container-selinux audit python3
systemctl enable --now docker auditd
