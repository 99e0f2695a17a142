"""The Vagrant lab's running machines (vagrant/Vagrantfile), in the groups vagrant/machines.yml
gives them (docker_hosts, later the Kubernetes roles), with the same group_data as every other
inventory here and the machines' own data from machines.yml.

    cd vagrant && vagrant up && cd ..
    pyinfra inventories/vagrant.py deploys/harden.py
    hardline verify inventories/vagrant.py

SSH settings come from `vagrant ssh-config` (user vagrant, sudo for everything). Like Vagrant's
own ssh-config, host keys are not pinned: a machine destroyed and created again gets the same
address with a new key. With HARDLINE_VAGRANT_BOXES=local (the lab's boxes) run it through
`python3 -m lab vagrant run -- ...` so that it talks to the guests inside the lab's namespace.
"""

import os
import subprocess
from pathlib import Path

import yaml

VAGRANT_DIR = Path(__file__).resolve().parent.parent / "vagrant"
SSH_KEYS = {"HostName": ("ssh_hostname", str), "Port": ("ssh_port", int), "User": ("ssh_user", str),
            "IdentityFile": ("ssh_key", str)}


def _vagrant(*args):
    proc = subprocess.run(["vagrant", *args], cwd=VAGRANT_DIR, capture_output=True, text=True,
                          env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"}, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"vagrant {' '.join(args)} failed in {VAGRANT_DIR}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def running_machines():
    """Names of the machines `vagrant status` reports as running."""
    names = []
    for line in _vagrant("status", "--machine-readable").splitlines():
        fields = line.split(",", 3)
        if len(fields) == 4 and fields[2] == "state" and fields[3] == "running":
            names.append(fields[1])
    return names


def ssh_data(ssh_config):
    """pyinfra SSH data per host from `vagrant ssh-config` output (Host blocks)."""
    hosts, current = {}, None
    for line in ssh_config.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "Host":
            current = hosts.setdefault(value, {})
        elif current is not None and key in SSH_KEYS and SSH_KEYS[key][0] not in current:
            data_key, cast = SSH_KEYS[key]
            current[data_key] = cast(value.strip('"'))
    return hosts


def machine_hosts(machines, ssh):
    """pyinfra groups {group: [(name, data), ...]} for the running machines."""
    groups = {}
    for name, machine in machines.items():
        if name not in ssh:
            continue
        data = {**ssh[name], "_sudo": True, "ssh_strict_host_key_checking": "no", "ssh_known_hosts_file": "/dev/null",
                **(machine.get("data") or {})}
        for group in machine.get("groups") or []:
            groups.setdefault(group, []).append((name, data))
    return groups


MACHINES = yaml.safe_load((VAGRANT_DIR / "machines.yml").read_text())["machines"]
_running = running_machines()
docker_hosts = []
globals().update(machine_hosts(MACHINES, ssh_data(_vagrant("ssh-config", *_running)) if _running else {}))
