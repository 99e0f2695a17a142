"""The built-in lab: one Debian 12 VM booted by `hardline lab up` (QEMU), reached over SSH.

    hardline lab up --fresh
    hardline verify inventories/lab.py
    pyinfra -y inventories/lab.py deploys/harden.py
"""

from hardline.lab import inventory_data

docker_hosts = [("lab-vm", inventory_data())]
