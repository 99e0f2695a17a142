"""deploys/kernel.py by a real pyinfra run into a Debian userland container of a userns-remapped
daemon whose /proc/sys is writable: the sysctls really change (in the container's own network
namespace; its root is an unprivileged uid of this machine, so the kernel refuses it every
global setting and this machine's own kernel settings cannot change), the profile is persisted,
the module blacklist written; the verifier passes HL-1.1 and HL-1.2 and a second deploy changes
nothing with one command."""

from __future__ import annotations

import pytest

from tests.support.deploy_targets import NET_SYSCTLS
from tests.support.hostimage import HostContainer
from tests.support.pyinfra_run import deploy
from tests.support.verify import statuses, verify

DEPLOY = """from hardline.deploys.kernel import boot_params, kernel_modules, sysctls
sysctls()
kernel_modules()
boot_params()
"""
LOOSE = {"net.ipv4.conf.all.log_martians": "0", "net.ipv4.conf.all.accept_redirects": "1", "net.ipv4.tcp_syncookies": "0"}


@pytest.fixture(scope="module")
def userns_daemon(session_daemon_factory):
    return session_daemon_factory({"userns-remap": "default"})


@pytest.fixture
def target(userns_daemon, monkeypatch):
    for name, value in userns_daemon.env().items():
        monkeypatch.setenv(name, value)
    with HostContainer(userns_daemon, sysctls=True, preset=LOOSE) as container:
        uid_map = container.read("/proc/self/uid_map").split()
        assert uid_map[:2] == ["0", "100000"] or (uid_map[0] == "0" and uid_map[1] != "0"), uid_map  # not this machine's root
        yield container


def test_sysctls_modules_and_boot_parameters(target, tmp_path):
    data = {"sysctl_settings": NET_SYSCTLS}
    ids = ["HL-1.1", "HL-1.2", "HL-1.3"]
    before = verify(data, ids, name=target.host)
    assert before["HL-1.1"].status == "FAIL" and "net.ipv4.conf.all.log_martians" in before["HL-1.1"].found

    env = target.daemon.env()
    first = deploy(tmp_path / "first", [(target.host, data)], DEPLOY, env=env)
    assert first.returncode == 0, first.tail()
    changed = first.changed[target.host]
    assert {f"Kernel parameters | [hardline-platform:1:HL-1.1] sysctl {k}={NET_SYSCTLS[k]}" for k in LOOSE} <= set(changed), changed
    assert "Kernel parameters | [hardline-platform:1:HL-1.1] Persist sysctl profile in /etc/sysctl.d/99-zz-hardline.conf" in changed
    assert "Kernel modules | [hardline-platform:1:HL-1.2] Module blacklist in /etc/modprobe.d/hardline-blacklist.conf" in changed
    assert target.sh("sysctl -n net.ipv4.conf.all.log_martians net.ipv4.tcp_syncookies").stdout == "1\n1\n"
    assert "install usb-storage /bin/false" in target.read("/etc/modprobe.d/hardline-blacklist.conf")

    after = verify(data, ids, name=target.host)
    assert statuses(after) == {"HL-1.1": "PASS", "HL-1.2": "PASS", "HL-1.3": "SKIP"}, {c: r.found for c, r in after.items()}

    second = deploy(tmp_path / "second", [(target.host, data)], DEPLOY, env=env)
    assert second.returncode == 0 and second.changed[target.host] == [], second.changed
    assert second.commands[target.host] == 1, second.command_list

    # changed at runtime behind the deploy's back: set again, and only that
    target.sh("sysctl -qw net.ipv4.conf.all.log_martians=0")
    repair = deploy(tmp_path / "repair", [(target.host, data)], DEPLOY, env=env)
    assert repair.changed[target.host] == ["Kernel parameters | [hardline-platform:1:HL-1.1] sysctl net.ipv4.conf.all.log_martians=1"]


def test_a_sysctl_the_kernel_does_not_have_stops_the_deploy(target, tmp_path):
    data = {"sysctl_settings": {**NET_SYSCTLS, "net.ipv4.hld_no_such_setting": 1}}
    run = deploy(tmp_path / "run", [(target.host, data)], DEPLOY, env=target.daemon.env(), expect_state=False)
    assert run.returncode != 0 and "Traceback" not in run.output
    assert "sysctl_settings: net.ipv4.hld_no_such_setting not known to this host's kernel" in run.output, run.tail()
