"""Project tests. Real targets: dockerd instances, sshd, Kubernetes nodes (marker `k8s`) and the
QEMU lab VM (marker `lab`)."""

pytest_plugins = ["tests.support.fixtures", "tests.support.k8s.fixtures"]
