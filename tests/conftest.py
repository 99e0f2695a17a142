"""Project tests. Real targets: dockerd instances, sshd and the QEMU lab VM (marker `lab`)."""

pytest_plugins = ["tests.support.fixtures"]
