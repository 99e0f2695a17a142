"""Spec tests of every fact class the deploys read (hardline/deploys/facts.py, platform_facts.py,
gather.py), pyinfra's style: arguments -> command, output -> value. Where the command can run on
this machine it is also run for real (in sh, against files made here) and its parsed value
compared with what Python sees, so a command and its parser cannot drift apart."""

from __future__ import annotations

import grp
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import FactBase
from pyinfra.api.command import StringCommand
from pyinfra.facts.files import File, FileContents, Sha1File
from pyinfra.facts.server import Sysctl, Which

from hardline.deploys.facts import (
    DaemonJson,
    DockerRootDir,
    ExecStart,
    GlobStats,
    GroupMembers,
    LoadedAuditRules,
    PasswdEntry,
    PathStat,
    UnitFile,
)
from hardline.deploys.gather import FAILED, MARK, MISSING_COMMAND, Batch, FactGatheringError, HostFacts, need
from hardline.deploys.platform_facts import (
    AppArmorProfiles,
    AuditEnabled,
    BootLoader,
    ExistingPaths,
    HostLsm,
    InstalledPackages,
    LoadedModules,
    SelinuxBooleans,
    UnitStates,
)
from tests.support.spec import spec_host


def command(fact: type[FactBase], **kwargs: Any) -> str:
    text = fact().command(**kwargs) if callable(fact().command) else fact().command
    return text.get_raw_value() if isinstance(text, StringCommand) else str(text)


def run(fact: type[FactBase], **kwargs: Any) -> Any:
    """The fact's command run here in sh, its output parsed like pyinfra does."""
    instance = fact()
    proc = subprocess.run(["sh", "-c", command(fact, **kwargs)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    return instance.process(lines) if lines else instance.default()


# ---- facts.py -------------------------------------------------------------------------------------

def test_path_stat(tmp_path):
    assert command(PathStat, path="/etc/x y") == "stat -L -c '%U %G %a %F' '/etc/x y' 2>/dev/null || true"
    assert PathStat().process(["root docker 660 socket"]) == {"owner": "root", "group": "docker", "mode": 0o660, "type": "socket"}
    assert PathStat().process([""]) is None
    target = tmp_path / "daemon.json"
    target.write_text("{}")
    target.chmod(0o640)
    assert run(PathStat, path=str(target)) == {"owner": "root", "group": "root", "mode": 0o640, "type": "regular file"}
    assert run(PathStat, path=str(tmp_path / "absent")) is None


def test_unit_file():
    assert command(UnitFile, unit="docker.service").endswith("' _ docker.service")
    assert UnitFile().process(["/lib/systemd/system/docker.service", "root root 644 regular file"]) == {
        "path": "/lib/systemd/system/docker.service", "owner": "root", "group": "root", "mode": 0o644, "type": "regular file"}
    assert UnitFile().process([""]) is None
    # this machine has no running systemd: the packaged location is found (or nothing)
    packaged = next((Path(d) / "docker.service" for d in ("/etc/systemd/system", "/lib/systemd/system",
                                                          "/usr/lib/systemd/system") if (Path(d) / "docker.service").exists()), None)
    found = run(UnitFile, unit="docker.service")
    assert (found and found["path"]) == (str(packaged) if packaged else None)
    assert run(UnitFile, unit="hld-no-such.service") is None


def test_glob_stats(tmp_path):
    certs = tmp_path / "certs.d"
    (certs / "registry:5000").mkdir(parents=True)
    (certs / "registry:5000" / "ca.crt").write_text("x")
    (certs / "registry:5000" / "ca.crt").chmod(0o444)
    (certs / "lonely").write_text("not two levels down")
    assert run(GlobStats, directory=str(certs), pattern="*/*") == [
        {"path": f"{certs}/registry:5000/ca.crt", "owner": "root", "group": "root", "mode": 0o444, "type": "regular file"}]
    assert run(GlobStats, directory=str(tmp_path / "absent"), pattern="*/*") == []
    with pytest.raises(ValueError, match="glob pattern"):
        command(GlobStats, directory="/etc/docker/certs.d", pattern="*; touch /tmp/x")


def test_group_members():
    assert command(GroupMembers, group="docker") == "getent group docker || true"
    assert GroupMembers().process(["docker:x:999:alice,bob"]) == ["alice", "bob"]
    assert GroupMembers().process(["docker:x:999:"]) == []
    assert GroupMembers().process([""]) is None
    assert run(GroupMembers, group="root") == grp.getgrnam("root").gr_mem
    assert run(GroupMembers, group="hld-no-such-group") is None


def test_passwd_entry():
    assert command(PasswdEntry, user="dockremap") == "getent passwd dockremap || true"
    assert PasswdEntry().process(["dockremap:x:107:112::/nonexistent:/usr/sbin/nologin"]) == {
        "uid": 107, "gid": 112, "home": "/nonexistent", "shell": "/usr/sbin/nologin"}
    assert PasswdEntry().process([""]) is None
    assert run(PasswdEntry, user="root")["uid"] == 0
    assert run(PasswdEntry, user="hld-no-such-user") is None


def test_daemon_json(tmp_path):
    assert command(DaemonJson, path="/etc/docker/daemon.json") == "cat /etc/docker/daemon.json 2>/dev/null || true"
    assert DaemonJson().process(['{"icc": false,', '"live-restore": true}']) == {"icc": False, "live-restore": True}
    assert DaemonJson().process(["{not json"]) == {"__invalid__": "{not json"}
    assert DaemonJson().process(["[1]"]) == {"__invalid__": "[1]"}
    path = tmp_path / "daemon.json"
    path.write_text('{\n  "icc": false\n}\n')
    assert run(DaemonJson, path=str(path)) == {"icc": False}
    assert run(DaemonJson, path=str(tmp_path / "absent")) == {}


def test_docker_root_dir():
    assert command(DockerRootDir, socket="/run/docker.sock").startswith("docker -H unix:///run/docker.sock info --format")
    assert DockerRootDir().process(['/var/lib/docker ["name=seccomp,profile=builtin"]']) == "/var/lib/docker"
    assert DockerRootDir().process(['/var/lib/docker/165536.165536 ["name=userns"]']) == "/var/lib/docker"
    assert DockerRootDir().process(["Cannot connect"]) is None
    assert run(DockerRootDir, socket="/nonexistent/docker.sock") is None


def test_exec_start():
    assert command(ExecStart, unit="docker.service").endswith("' _ docker.service")
    argv = "/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"
    assert ExecStart().process([f"{{ path=/usr/sbin/dockerd ; argv[]={argv} ; ignore_errors=no }}"]) == argv.split()
    assert ExecStart().process([""]) is None


def test_loaded_audit_rules():
    assert LoadedAuditRules().process(["-w /etc/docker -p rwxa -k docker"]) == ["-w /etc/docker -p rwxa -k docker"]
    assert LoadedAuditRules().process(["No rules"]) == []
    assert LoadedAuditRules().process(["@@FAILED"]) is None
    # this machine's kernel audit subsystem (read only)
    assert isinstance(run(LoadedAuditRules), list)


# ---- platform_facts.py ----------------------------------------------------------------------------

def test_host_lsm():
    assert HostLsm().process(["lsm=lockdown,capability,apparmor", "apparmor=Y", "selinux=", "config="]) == {
        "apparmor": True, "selinux": False, "selinux_config": False, "enforce": "", "lsm": ["lockdown", "capability", "apparmor"]}
    # AppArmor compiled in but not in the active LSM list is not on
    assert HostLsm().process(["lsm=lockdown,capability", "apparmor=Y", "selinux=1", "config=yes"])["apparmor"] is False
    assert HostLsm().process(["lsm=", "apparmor=", "selinux=1", "config=yes"])["selinux"] is True
    here = run(HostLsm)
    assert here["apparmor"] == (Path("/sys/module/apparmor/parameters/enabled").exists()
                                and Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y")


def test_loaded_modules():
    assert LoadedModules().process(["overlay 151552 0 - Live 0x0", "usb_storage 77824 0 - Live 0x0"]) == ["overlay", "usb_storage"]
    assert LoadedModules().process(["@@NOMODULES"]) is None
    here = run(LoadedModules)
    assert here == (None if not Path("/proc/modules").exists() else [line.split()[0] for line in Path("/proc/modules").read_text().splitlines()])


def test_app_armor_profiles():
    assert AppArmorProfiles().process(["docker-default (enforce)", "hardline-docker (complain)", "/usr/bin/man (enforce)"]) == {
        "docker-default": "enforce", "hardline-docker": "complain", "/usr/bin/man": "enforce"}
    assert AppArmorProfiles().default() == {}


def test_boot_loader():
    out = ["cfg=/boot/grub/grub.cfg", "args=\tlinux\t/boot/vmlinuz-6.1 root=/dev/vda1 ro quiet", "tool=update-grub",
           "tool=grub-mkconfig", "running=BOOT_IMAGE=/boot/vmlinuz-6.1 root=/dev/vda1 ro"]
    assert BootLoader().process(out) == {"kind": "grub", "cfg": "/boot/grub/grub.cfg", "mkconfig": "update-grub",
                                         "args": ["root=/dev/vda1", "ro", "quiet"],
                                         "running": ["BOOT_IMAGE=/boot/vmlinuz-6.1", "root=/dev/vda1", "ro"]}
    rhel = BootLoader().process(["cfg=/boot/grub2/grub.cfg", "tool=grubby", "tool=grub2-mkconfig", "running="])
    assert rhel == {"kind": "grubby", "cfg": "/boot/grub2/grub.cfg", "mkconfig": "grub2-mkconfig -o /boot/grub2/grub.cfg",
                    "args": [], "running": []}
    assert BootLoader().process(["tool=grubby"]) is None
    grub = [p for p in ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg") if Path(p).exists()]
    assert (run(BootLoader) or {}).get("cfg") == (grub[0] if grub else None)


def test_unit_states():
    assert command(UnitStates, units=["cups.service", "a b.service"]).endswith("' _ cups.service 'a b.service'")
    out = ["LoadState=loaded", "UnitFileState=enabled", "ActiveState=active", "", "LoadState=not-found", "ActiveState=inactive"]
    assert UnitStates().process(out) == [{"LoadState": "loaded", "UnitFileState": "enabled", "ActiveState": "active"},
                                         {"LoadState": "not-found", "ActiveState": "inactive"}]
    assert UnitStates().process(["@@NOSYSTEMD"]) is None
    if not Path("/run/systemd/system").exists():
        assert run(UnitStates, units=["cups.service"]) is None


def test_existing_paths(tmp_path):
    (tmp_path / "a b").write_text("")
    assert run(ExistingPaths, paths=[str(tmp_path / "a b"), str(tmp_path / "absent"), "/etc/passwd"]) == [
        str(tmp_path / "a b"), "/etc/passwd"]


def test_audit_enabled():
    assert AuditEnabled().process(["1"]) == "1" and AuditEnabled().process([]) is None
    assert run(AuditEnabled) in ("0", "1", "2", None)


def test_installed_packages():
    assert InstalledPackages().process(["telnet", " "]) == ["telnet"]
    assert command(InstalledPackages, packages=["telnet"]).endswith("' _ telnet")
    here = run(InstalledPackages, packages=["coreutils", "hld-not-a-package"])
    assert here == (["coreutils"] if Path("/var/lib/dpkg/status").exists() else here)


def test_selinux_booleans():
    assert SelinuxBooleans().process(["container_manage_cgroup --> off", "virt_use_nfs --> on"]) == {
        "container_manage_cgroup": "off", "virt_use_nfs": "on"}
    assert SelinuxBooleans().default() == {}


# ---- gather.py: the batch -------------------------------------------------------------------------

def test_batch_command_and_sections():
    text = Batch().command(commands=["echo a", "false", "echo b; echo c"])
    assert f"echo '{MARK} 0'" in text and f"echo '{MARK} 2'" in text
    sections = Batch().process([f"{MARK} 0", "a", f"{MARK} 1", f"{FAILED} 1 1", "@@hardline-stderr boom", f"{MARK} 2", "b", "c"])
    assert sections == {0: ["a"], 1: [], 2: ["b", "c"], "failed": {1: (1, ["boom"])}}


def test_batch_output_without_a_final_newline_keeps_its_sections(tmp_path):
    """A file without a trailing newline (daemon.json written by a script) leaves the next
    section's marker at the end of its last line; the sections stay apart (found on the lab VM)."""
    (tmp_path / "nonl").write_text('{"icc": true}')
    (tmp_path / "f").write_text("x\n")
    needs = [need(FileContents, path=str(tmp_path / "nonl")), need(FileContents, path=str(tmp_path / "f")),
             need(FileContents, path=str(tmp_path / "nonl"))]
    instances = [n.fact() for n in needs]
    commands = [n.command(f) for n, f in zip(needs, instances)]
    commands[2] = commands[2] + "; exit 3"  # fails after output without a newline
    script = Batch().command(commands=commands)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30, check=False).stdout.splitlines()
    assert any(line.endswith(f"{MARK} 1") and not line.startswith(MARK) for line in out)  # the case is real
    sections = Batch().process(out)
    assert sections[0] == ['{"icc": true}'] and sections[1] == ["x"] and sections[2] == ['{"icc": true}']
    assert sections["failed"] == {2: (3, [])}


def test_batch_runs_each_fact_in_its_own_section_here(tmp_path):
    """Facts (pyinfra's own among them) gathered in one sh run give what they give one by one."""
    (tmp_path / "f").write_text("hello\n")
    needs = [need(PathStat, path=str(tmp_path / "f")), need(FileContents, path=str(tmp_path / "f")),
             need(FileContents, path=str(tmp_path / "absent")), need(Sha1File, path=str(tmp_path / "f")),
             need(File, path=str(tmp_path / "absent")), need(Which, command="sh"), need(Which, command="hld-none"),
             need(Sysctl, keys=["kernel.ostype", "hld.no.such"]), need(ExistingPaths, paths=[])]
    instances = [n.fact() for n in needs]
    script = Batch().command(commands=[n.command(f) for n, f in zip(needs, instances)])
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30, check=False).stdout.splitlines()
    sections = Batch().process(out)
    assert sections["failed"] == {}
    values = [n.value(f, sections[i]) for i, (n, f) in enumerate(zip(needs, instances))]
    assert values[0]["mode"] == (tmp_path / "f").stat().st_mode & 0o7777
    assert values[1] == ["hello"] and values[2] is None
    assert values[3] == "f572d396fae9206628714fb2ce00f72e94f2258f"
    assert values[4] is None and values[5].endswith("/sh")
    assert values[6] is None
    assert values[7] == {"kernel.ostype": "Linux"}
    assert values[8] == []


def test_gathering_one_command_for_many_facts_and_fail_closed():
    """HostFacts sends one Batch for everything asked at once, never asks twice, and stops the
    host when a section failed."""
    class Fake(FactBase):
        def command(self, n: int) -> str:
            return f"echo {n}"

        def process(self, output: list[str]) -> int:
            return int(output[0])

    sent: list[str] = []

    def answer(fact: Any, **kwargs: Any) -> Any:
        sent.append(fact.__name__)
        script = fact().command(**kwargs)
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False).stdout.splitlines()
        return fact().process(out)

    with spec_host({}) as host:
        host.get_fact = answer
        facts = HostFacts()
        facts.prefetch([need(Fake, n=1), need(Fake, n=2), need(Fake, n=1)])
        assert sent == ["Batch"] and facts.get(Fake, n=2) == 2 and facts.get(Fake, n=1) == 1
        assert facts.get(Fake, n=3) == 3 and sent == ["Batch", "Fake"]  # not prefetched: fetched alone
        facts.prefetch([need(Fake, n=1), need(Fake, n=2)])
        assert sent == ["Batch", "Fake"]  # already gathered: nothing sent

        class Broken(Fake):
            def command(self, n: int) -> str:
                return f"echo {n}; echo oops >&2; exit 3"

        with pytest.raises(FactGatheringError, match=r"could not read fact Broken\(n=4\) \(exit 3\): oops"):
            facts.prefetch([need(Broken, n=4), need(Fake, n=5)])


def test_a_fact_needing_a_missing_command_gives_its_default():
    class NeedsTool(FactBase):
        def requires_command(self) -> str:
            return "hld-no-such-tool"

        def command(self) -> str:
            return "hld-no-such-tool --list"

        @staticmethod
        def default() -> list[str]:
            return []

    item = need(NeedsTool)
    text = item.command(NeedsTool())
    out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=False).stdout.splitlines()
    assert out == [MISSING_COMMAND] and item.value(NeedsTool(), out) == []


def test_process_output_of_every_fact_class_is_specified():
    """Every fact class of the deploys has a spec above (a new one without a test fails here)."""
    import hardline.deploys.facts as facts_module
    import hardline.deploys.platform_facts as platform_module

    classes = {name for module in (facts_module, platform_module) for name, value in vars(module).items()
               if isinstance(value, type) and issubclass(value, FactBase) and value.__module__ == module.__name__}
    tested = {name for name in classes if f"def test_{_snake(name)}" in Path(__file__).read_text()}
    assert classes == tested, sorted(classes - tested)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
