"""Project tests. Real targets: dockerd instances, sshd, Kubernetes nodes (marker `k8s`), the QEMU
lab VM (marker `lab`) and the Vagrant lab (markers `lab` and `vagrant`)."""

pytest_plugins = ["tests.support.fixtures", "tests.support.labs", "tests.support.k8s.fixtures"]


def _lab_rank(item) -> int:
    """0 no VM, 1 the QEMU VM, 2 a Vagrant machine: all QEMU tests run while its VM is up, and it
    is stopped before the first Vagrant machine boots (one VM at a time on 2 cores)."""
    if item.get_closest_marker("vagrant"):
        return 2
    return 1 if item.get_closest_marker("lab") else 0


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_lab_rank)  # stable: the order within each rank (module by module) is kept
    if not config.option.collectonly and any(_lab_rank(item) == 2 for item in items):
        from tests.support.labs import start_box_build

        start_box_build()  # in the background, while the tests without a VM and the QEMU ones run


def pytest_terminal_summary(terminalreporter):
    from tests.support.labs import TIMES

    if TIMES:
        terminalreporter.section("lab times (s)")
        for what, seconds in TIMES.items():
            total = sum(seconds)
            each = "" if len(seconds) == 1 else f" ({len(seconds)}x: {', '.join(f'{s:.1f}' for s in seconds)})"
            terminalreporter.write_line(f"{total:8.1f}  {what}{each}")


def pytest_unconfigure(config):
    from tests.support.labs import _box_build

    if "proc" in _box_build:  # never leave a box build (mounts, loop device) running behind the session
        _box_build["proc"].wait()
