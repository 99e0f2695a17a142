"""Lab fixtures: the QEMU lab VM booted once per test session and put back into a known state
for each test module by a savevm snapshot, and the Vagrant lab (one machine at a time).

* ``qemu_lab`` (session): :class:`QemuLab`, stopped at the end of the session.
* ``lab_vm`` (module): the QEMU VM restored to its freshly booted state (snapshot "booted").
* ``lab_hardened`` (session): the hardening scenario on the QEMU VM (baseline verify, dry run,
  deploy, re-deploy, verify), run once; it leaves the snapshot "hardened" that the modules
  which start from a hardened host restore.
* ``vagrant_lab`` (session): :class:`VagrantLab`; the namespace, libvirtd and every machine are
  gone at the end of the session.

Every boot, restore and build is timed into :data:`TIMES` (printed at the end of the session by
tests/conftest.py), which is where the lab's fresh-machine figures come from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import netns, qemu
from lab.common import ROOT
from lab.deploy import run_pyinfra
from lab.image import base_is_current

from .fixtures import _unavailable

__all__ = ["lab_hardened", "lab_vm", "qemu_lab", "vagrant_lab"]

TIMES: dict[str, list[float]] = {}
QEMU_TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "ssh")
VAGRANT_TOOLS = ("vagrant", "libvirtd", "virtlogd", "virsh", "ip", "debootstrap", "sfdisk", "losetup", "partx",
                 "unshare", "qemu-img", "qemu-system-x86_64", "ssh")
INVENTORY = ROOT / "inventories" / "lab.py"


def timed(what: str, seconds: float) -> None:
    TIMES.setdefault(what, []).append(round(seconds, 1))


class QemuLab:
    """The session's QEMU VM: booted (and its image built) once, snapshot "booted" saved."""

    def ensure(self) -> None:
        if qemu.is_running() and "booted" in qemu.snapshots():
            return
        started = time.monotonic()
        built = not base_is_current()
        info = qemu.up(fresh=True)
        for step, seconds in info["timings"].items():
            timed(f"qemu: {step}", seconds)
        timed("qemu: up (image build if needed + boot)" if built else "qemu: up (boot)", time.monotonic() - started)
        timed("qemu: savevm booted", qemu.snapshot_save("booted"))

    def restore(self, name: str = "booted") -> dict[str, Any]:
        self.ensure()
        timed(f"qemu: loadvm {name}", qemu.snapshot_load(name))
        return qemu.inventory_data()

    def save(self, name: str) -> None:
        timed(f"qemu: savevm {name}", qemu.snapshot_save(name))

    def has(self, name: str) -> bool:
        return qemu.is_running() and name in qemu.snapshots()

    def stop(self) -> None:
        qemu.down(graceful=False)  # the overlays are recreated by the next session's boot


@pytest.fixture(scope="session")
def qemu_lab() -> Iterator[QemuLab]:
    if os.geteuid() != 0:
        _unavailable("the lab needs root")
    missing = [t for t in QEMU_TOOLS if not shutil.which(t)]
    if missing:
        _unavailable(f"missing tools: {', '.join(missing)}")
    lab = QemuLab()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def lab_vm(qemu_lab: QemuLab) -> dict[str, Any]:
    """The QEMU VM as freshly booted: lab modules harden it, tamper with it or stop services, so
    none may inherit another's state."""
    return qemu_lab.restore("booted")


def verify_results(inventory: Path = INVENTORY) -> list:
    from hardline.benchmarks.engine import verify_hosts
    from hardline.inventory import load_hosts

    return verify_hosts(load_hosts(str(inventory)))


def verdicts(results: list) -> dict[str, str]:
    return {r.control_id: r.status for r in results}


def dummy_deb(tmp: Path, package: str) -> Path:
    """A real (empty) Debian package named like an unneeded one, so that apt has something to remove."""
    root = tmp / package
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / package).mkdir(parents=True)
    (root / "usr/share/doc" / package / "README").write_text("hardline lab: stands for an unneeded package\n")
    (root / "DEBIAN/control").write_text(f"Package: {package}\nVersion: 0.17+hardline1\nArchitecture: all\n"
                                         "Maintainer: hardline <lab@localhost>\nDescription: hardline lab dummy\n")
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(tmp / f"{package}.deb")],
                   check=True, capture_output=True)
    return tmp / f"{package}.deb"


def plant_unneeded(tmp: Path) -> None:
    """What the platform controls must catch on the lab VM: an unneeded package (a real, empty
    package named telnet), an unneeded service running (cups) and a blacklisted module loaded (hfs)."""
    with dummy_deb(tmp, "telnet").open("rb") as fh:
        pushed = subprocess.run(qemu.ssh_command("cat > /tmp/telnet.deb"), stdin=fh, capture_output=True, timeout=300)
    assert pushed.returncode == 0, pushed.stderr
    done = qemu.run_ssh("dpkg -i /tmp/telnet.deb && printf '[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\n"
                        "WantedBy=multi-user.target\\n' > /lib/systemd/system/cups.service && systemctl daemon-reload && "
                        "systemctl enable --now cups.service && modprobe hfs", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="session")
def lab_hardened(qemu_lab: QemuLab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The hardening scenario, once per session, on the booted VM with unneeded things planted
    (:func:`plant_unneeded`): baseline verify, --dry (must change nothing), deploy, re-deploy,
    verify; then snapshot "hardened". test_lab_harden, test_lab_platform and test_lab_drift
    assert on it and restore the snapshot instead of deploying again."""
    qemu_lab.restore("booted")
    plant_unneeded(tmp_path_factory.mktemp("plant"))
    steps: dict[str, float] = {}

    def step(name: str, func, *args, **kw):
        started = time.monotonic()
        out = func(*args, **kw)
        steps[name] = round(time.monotonic() - started, 1)
        timed(f"qemu scenario: {name}", steps[name])
        return out

    before = step("verify (baseline)", verify_results)
    dry = step("pyinfra --dry", run_pyinfra, INVENTORY, "--dry", timeout=900)
    after_dry = step("verify (after --dry)", verify_results)
    deploy = step("deploy", run_pyinfra, INVENTORY, timeout=1800)
    assert deploy.returncode == 0, deploy.stdout[-6000:]
    redeploy = step("re-deploy", run_pyinfra, INVENTORY, timeout=1800)
    after = step("verify (after)", verify_results)
    qemu_lab.save("hardened")
    return {"before": verdicts(before), "dry": dry, "after_dry": verdicts(after_dry), "deploy": deploy,
            "redeploy": redeploy, "after": verdicts(after), "before_results": before, "after_results": after,
            "times": steps}


# the machines the Vagrant test modules boot (their boxes are built ahead, in the background)
VAGRANT_TEST_MACHINES = ("docker-apparmor", "docker-selinux")
_box_build: dict[str, Any] = {}


def start_box_build() -> None:
    """Build the test machines' boxes in the background (niced) while the QEMU tests run: on a
    fresh machine the box builds then overlap the QEMU image build and VM tests instead of
    adding to them. Called at collection when Vagrant tests are selected; a build failure is
    reported by the ``vagrant_lab`` fixture."""
    if _box_build or os.geteuid() != 0 or any(shutil.which(t) is None for t in VAGRANT_TOOLS):
        return  # the fixture reports missing prerequisites
    from lab import boxes, vagrant
    from lab.common import recipe_key

    variants = sorted({vagrant.variant_of(m) for m in VAGRANT_TEST_MACHINES})
    if all(boxes._current(v, recipe_key(boxes.recipe(v)), "box.tar") for v in variants):
        return
    log_path = boxes.boxes_dir() / "background-build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    with log_path.open("w") as log_file:
        _box_build.update(proc=subprocess.Popen([sys.executable, "-m", "lab", "box", "build", *variants], cwd=ROOT,
                                                env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL),
                          log=log_path, started=time.monotonic())


def wait_box_build() -> None:
    if "proc" not in _box_build or "done" in _box_build:
        return
    waited = time.monotonic()
    rc = _box_build["proc"].wait()
    _box_build["done"] = True
    timed("vagrant: boxes built in the background (build wall time)", time.monotonic() - _box_build["started"])
    timed("vagrant: waited for the background box build", time.monotonic() - waited)
    if rc != 0:
        pytest.fail(f"building the Vagrant boxes failed (exit {rc}):\n{_box_build['log'].read_text()[-4000:]}")


class VagrantLab:
    """The session's Vagrant lab: one machine up at a time (the QEMU VM is stopped first)."""

    def __init__(self) -> None:
        self.current: str | None = None

    def machine(self, name: str):
        from lab import vagrant

        if self.current != name:
            if self.current is not None:
                self.release(self.current)
            if qemu.is_running():
                qemu.down(graceful=False)  # one VM at a time on this machine
            started = time.monotonic()
            vagrant.destroy(name)  # a machine left running by hand is not fresh from its box
            for step, seconds in vagrant.up(name).items():
                timed(f"vagrant {name}: {step}", seconds)
            timed(f"vagrant {name}: up total", time.monotonic() - started)
            self.current = name
        machine = vagrant.Machine.get(name)
        machine.wait_ssh()
        return machine

    def release(self, name: str) -> None:
        from lab import vagrant

        started = time.monotonic()
        vagrant.destroy(name)
        timed(f"vagrant {name}: destroy", time.monotonic() - started)
        if self.current == name:
            self.current = None

    def down(self) -> None:
        from lab import vagrant

        started = time.monotonic()
        vagrant.down()
        self.current = None
        timed("vagrant: down (destroy all, libvirtd stopped, namespace deleted)", time.monotonic() - started)


@pytest.fixture(scope="session")
def vagrant_lab() -> Iterator[VagrantLab]:
    if os.geteuid() != 0:
        _unavailable("the Vagrant lab needs root")
    missing = [t for t in VAGRANT_TOOLS if not shutil.which(t)]
    if missing:
        _unavailable(f"missing tools: {', '.join(missing)} (bash scripts/setup.sh lab)")
    if not Path(netns.QEMU_CONF).is_file() or 'user = "root"' not in Path(netns.QEMU_CONF).read_text():
        _unavailable(f'{netns.QEMU_CONF} lacks user = "root" (bash scripts/setup.sh lab)')
    wait_box_build()
    lab = VagrantLab()
    try:
        yield lab
    finally:
        lab.down()


# ---- helpers for the Vagrant lab's test modules ----------------------------------------------

VAGRANT_INVENTORY = ROOT / "inventories" / "vagrant.py"


def vagrant_verify(out: Path, machine: str, inventory: Path = VAGRANT_INVENTORY, step: str = "") -> dict[str, list]:
    """`hardline verify INVENTORY --limit MACHINE --json` inside the lab's namespace (the real
    CLI, as a user runs it); results by control id."""
    from hardline.results import load_json
    from lab import vagrant

    started = time.monotonic()
    path = out / f"verify-{time.monotonic_ns()}.json"
    proc = vagrant.in_lab([sys.executable, "-m", "hardline.cli", "verify", str(inventory), "--limit", machine,
                           "--json", str(path), "-q"], timeout=1800)
    assert path.is_file(), f"hardline verify wrote no results (exit {proc.returncode}):\n{proc.stdout[-3000:]}" \
                           f"{proc.stderr[-3000:]}"
    if step:
        timed(f"vagrant {machine}: {step}", time.monotonic() - started)
    by_id: dict[str, list] = {}
    for r in load_json(path).results:
        by_id.setdefault(r.control_id, []).append(r)
    return by_id


def worst(results: dict[str, list]) -> dict[str, str]:
    order = ("ERROR", "FAIL", "PASS", "SKIP", "MANUAL", "WAIVED")
    return {cid: min((r.status for r in rs), key=order.index) for cid, rs in results.items()}


def vagrant_deploy(machine: str, *args: str, inventory: Path = VAGRANT_INVENTORY, deploy: str = "deploys/harden.py",
                   step: str = ""):
    """pyinfra inventories/vagrant.py DEPLOY --limit MACHINE, inside the namespace."""
    from lab import netns, vagrant

    started = time.monotonic()
    run = run_pyinfra(inventory, "--limit", machine, *args, deploy=deploy, prefix=netns.prefix(), env=vagrant.env(),
                      timeout=2400)
    if step:
        timed(f"vagrant {machine}: {step}", time.monotonic() - started)
    return run


def vagrant_variant(tmp: Path, name: str, **data: Any) -> Path:
    """inventories/vagrant.py with some host data changed (same group_data)."""
    folder = tmp / name
    folder.mkdir()
    (folder / "group_data").symlink_to(ROOT / "inventories" / "group_data")
    inv = folder / "vagrant.py"
    inv.write_text(f"import runpy\n_base = runpy.run_path({str(VAGRANT_INVENTORY)!r})\n"
                   f"docker_hosts = [(name, {{**data, **{data!r}}}) for name, data in _base['docker_hosts']]\n")
    return inv
