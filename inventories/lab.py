"""The built-in lab: one Debian 12 VM booted by `python3 -m lab up` (QEMU), reached over SSH.

    python3 -m lab up --fresh
    hardline verify inventories/lab.py
    pyinfra -y inventories/lab.py deploys/harden.py
"""

from lab.qemu import inventory_data

docker_hosts = [("lab-vm", inventory_data())]
