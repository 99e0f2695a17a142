"""CIS Docker 4.5/4.6 (images, content trust), 5.1 and 7.x (swarm, on real swarms of test
daemons), 5.23/5.24 (docker exec audit trail) and 6.x (sprawl counts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardline.benchmarks.checks import CHECKS
from tests.support.verify import daemon_data, docker_host, full_facts, gather_counted, statuses, verify, verify_subjects

ROOT = Path(__file__).resolve().parent.parent
SWARM_IDS = ["5.1", "7.1", "7.2", "7.3", "7.5"]


def _facts(data):
    config = docker_host(data)
    return config, full_facts(config)


# ---- 4.6 HEALTHCHECK in images -----------------------------------------------------------------

def test_image_healthcheck_per_image(session_daemon_factory, busybox_image):
    daemon = session_daemon_factory({})
    image = busybox_image(daemon)
    daemon.docker("create", "--name", "base", image, "true", check=True)
    daemon.docker("commit", "--change", "HEALTHCHECK CMD true", "base", "hl/checked:1", check=True)
    results = {r.subject.split(" ")[1]: r for r in verify_subjects(daemon_data(daemon), ["4.6"])["4.6"]}
    assert results["hl/checked:1"].status == "PASS" and "true" in results["hl/checked:1"].found
    assert results["hl/busybox:latest"].status == "FAIL" and results["hl/busybox:latest"].found == "no HEALTHCHECK"
    assert any("HEALTHCHECK CMD" in e for e in results["hl/busybox:latest"].evidence)


def test_no_images_is_skip(session_daemon_factory):
    result = verify(daemon_data(session_daemon_factory({})), ["4.6"])["4.6"]
    assert (result.status, result.found) == ("SKIP", "no images on this host: nothing to judge")


# ---- 4.5 content trust: the environment every login gets ------------------------------------

def verify_with_files(files: dict[str, str], data: dict, ids: list[str], tmp: Path) -> dict:
    """Verify in a private mount namespace where each path of ``files`` shows the given text
    (the machine's own /etc is never touched)."""
    binds = []
    for n, (dest, text) in enumerate(files.items()):
        src = tmp / f"file{n}"
        src.write_text(text)
        binds.append(f"mount --bind {src} {dest}")
    code = ("import json, sys; from tests.support.verify import verify; "
            "r = verify(json.loads(sys.argv[1]), json.loads(sys.argv[2])); "
            "print(json.dumps({k: [v.status, v.found] for k, v in r.items()}))")
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          " && ".join(binds) + ' && exec "$0" "$@"', sys.executable, "-c", code,
                          json.dumps(data), json.dumps(ids)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_content_trust_environment(session_daemon_factory, tmp_path):
    data = daemon_data(session_daemon_factory({}))
    on = verify_with_files({"/etc/environment": "LANG=C.UTF-8\nDOCKER_CONTENT_TRUST=1\n"}, data, ["4.5"], tmp_path)
    assert on["4.5"][0] == "PASS" and "/etc/environment: DOCKER_CONTENT_TRUST=1" in on["4.5"][1]
    off = verify_with_files({"/etc/environment": "DOCKER_CONTENT_TRUST=0\n"}, data, ["4.5"], tmp_path)
    assert off["4.5"][0] == "FAIL"
    none = verify_with_files({"/etc/environment": "LANG=C.UTF-8\n"}, data, ["4.5"], tmp_path)
    assert none["4.5"] == ["FAIL", "DOCKER_CONTENT_TRUST is set in no system environment file"]


# ---- 5.1 and section 7 on real swarms --------------------------------------------------------

@pytest.fixture(scope="module")
def swarms(session_daemon_factory):
    """A default single-manager swarm, a hardened one, and a second manager joined over a veth
    link between the daemons' network namespaces (a two-manager swarm)."""
    default = session_daemon_factory({})
    default.docker("swarm", "init", "--advertise-addr", "127.0.0.1", check=True)
    hardened = session_daemon_factory({})
    hardened.docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377",
                    "--autolock", check=True)
    hardened.docker("network", "rm", "ingress", input="y\n", check=True)
    hardened.docker("network", "create", "-d", "overlay", "--opt", "encrypted", "secure-net", check=True)
    deadline = time.monotonic() + 30
    while "ingress" in hardened.docker("network", "ls", "--format", "{{.Name}}").stdout and time.monotonic() < deadline:
        time.sleep(0.5)
    first, second = session_daemon_factory({}), session_daemon_factory({})
    link = f"hl{first.index}x{second.index}"
    subprocess.run(["ip", "link", "add", f"{link}a", "netns", first.netns, "type", "veth", "peer", "name",
                    f"{link}b", "netns", second.netns], check=True)
    for daemon, end, addr in ((first, "a", "10.99.0.1/24"), (second, "b", "10.99.0.2/24")):
        daemon.netns_exec("ip", "addr", "add", addr, "dev", f"{link}{end}")
        daemon.netns_exec("ip", "link", "set", f"{link}{end}", "up")
    first.docker("swarm", "init", "--advertise-addr", "10.99.0.1", "--listen-addr", "10.99.0.1:2377", check=True)
    token = first.docker("swarm", "join-token", "-q", "manager", check=True).stdout.strip()
    second.docker("swarm", "join", "--token", token, "--advertise-addr", "10.99.0.2", "--listen-addr",
                  "10.99.0.2:2377", "10.99.0.1:2377", check=True)
    return {"default": default, "hardened": hardened, "pair": first, "plain": session_daemon_factory({})}


def test_swarm_defaults_fail(swarms):
    results = verify_subjects(daemon_data(swarms["default"]), SWARM_IDS)
    first = {cid: rs[0] for cid, rs in results.items()}
    assert first["5.1"].status == "FAIL"  # the inventory does not say this host is a swarm node
    assert first["7.1"].status == "PASS" and first["7.1"].found == "1 managers of 1 nodes"
    assert first["7.2"].status == "FAIL" and "0.0.0.0:2377 is every interface" in first["7.2"].found
    assert first["7.5"].status == "FAIL" and first["7.5"].found == "AutoLockManagers = false"
    overlay = {r.subject.split(" ")[1]: r for r in results["7.3"]}
    assert overlay["ingress"].status == "FAIL" and "--ingress --opt encrypted" in overlay["ingress"].evidence[0]


def test_swarm_hardened_passes(swarms):
    results = verify_subjects(daemon_data(swarms["hardened"], docker_swarm_enabled=True), SWARM_IDS)
    assert {cid: [r.status for r in rs] for cid, rs in results.items()} == {
        "5.1": ["PASS"], "7.1": ["PASS"], "7.2": ["PASS"], "7.3": ["PASS"], "7.5": ["PASS"]}, \
        {cid: [r.message for r in rs] for cid, rs in results.items()}
    assert results["7.2"][0].found == "swarm listens on 127.0.0.1:2377"
    assert results["7.3"][0].subject.startswith("network secure-net ")


def test_two_managers_fail_the_manager_count(swarms):
    result = verify(daemon_data(swarms["pair"], docker_swarm_enabled=True), ["7.1", "7.2"])
    assert result["7.1"].status == "FAIL" and "2 managers of 2 nodes" in result["7.1"].found
    assert "even count" in result["7.1"].found
    assert result["7.2"].status == "PASS"  # bound to the link address only
    allowed = verify(daemon_data(swarms["pair"], docker_swarm_enabled=True, docker_swarm_max_managers=1), ["7.1"])
    assert "more than docker_swarm_max_managers (1)" in allowed["7.1"].found


def test_no_swarm_skips_section_7_and_passes_5_1(swarms):
    results = verify(daemon_data(swarms["plain"]), SWARM_IDS)
    assert statuses(results) == {"5.1": "PASS", "7.1": "SKIP", "7.2": "SKIP", "7.3": "SKIP", "7.5": "SKIP"}
    assert "swarm mode is not active" in results["7.3"].found


# ---- 5.23 / 5.24 from the audit trail of docker client executions ----------------------------

RECORD = ('type=SYSCALL msg=audit({t}.100:{n}): arch=c000003e syscall=59 success=yes exit=0 a0=55d0 a1=55d1 '
          'a2=55d2 a3=0 items=2 ppid=100 pid={n} auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 '
          'tty=pts0 ses=3 comm="docker" exe="/usr/bin/docker" subj=unconfined key="{key}"\n'
          'type=EXECVE msg=audit({t}.100:{n}): argc={argc} {args}\n')


def audit_log(path: Path, commands: list[list[str]], key: str = "docker-client") -> Path:
    """An audit log in auditd's format with one EXECVE event per command (hex-encoding the
    arguments auditd would encode)."""
    out = []
    for n, argv in enumerate(commands, start=700):
        args = " ".join(f'a{i}="{a}"' if a.isalnum() or a.startswith("-") else f"a{i}={a.encode().hex().upper()}"
                        for i, a in enumerate(argv))
        out.append(RECORD.format(t=1763900000 + n, n=n, key=key, argc=len(argv), args=args))
    path.write_text("".join(out))
    return path


def test_exec_audit_fails_on_privileged_exec(session_daemon_factory, tmp_path):
    # SIMULATION of the log content only: auditd cannot run next to the other test sessions on
    # this shared kernel, so the log is written in auditd's format and read by the real ausearch
    log = audit_log(tmp_path / "audit.log", [["docker", "exec", "--privileged", "web", "sh"],
                                             ["docker", "exec", "-u", "root", "web", "id"],
                                             ["docker", "exec", "--user=0:0", "web", "id"],
                                             ["docker", "ps"]])
    data = daemon_data(session_daemon_factory({}), auditd_log_file=str(log))
    result = verify(data, ["5.23"])["5.23"]
    assert result.status == "FAIL", result.message
    assert result.found == "3 docker exec invocations in the audit trail (key docker-client), 1 with --privileged"
    assert "docker exec --privileged web sh" in result.evidence[0]
    config, facts = _facts(data)
    root = CHECKS["exec_audit"]({"flag": "root"}, facts, config.data)  # 5.24 is manual: MANUAL with the count
    assert root.status == "MANUAL" and "2 with --user root" in root.found


def test_exec_audit_passes_without_privileged_exec(session_daemon_factory, tmp_path):
    log = audit_log(tmp_path / "audit.log", [["docker", "exec", "web", "ls -l /"]])
    result = verify(daemon_data(session_daemon_factory({}), auditd_log_file=str(log)), ["5.23"])["5.23"]
    assert result.status == "PASS" and result.found.startswith("1 docker exec invocations"), result.message


def test_exec_audit_skips_without_a_trail(session_daemon_factory, tmp_path):
    data = daemon_data(session_daemon_factory({}), auditd_log_file=str(tmp_path / "missing.log"),
                       auditd_exec_key="hl-no-such-key")
    result = verify(data, ["5.23"])["5.23"]
    assert result.status == "SKIP" and "not audited" in result.found, result.message


def _exec_audit_section(key: str, log: Path, start: str = "") -> tuple[int, str]:
    from hardline.benchmarks.gather.docker import EXEC_AUDIT

    run = subprocess.run(["sh", "-c", EXEC_AUDIT, "_", key, key.encode().hex().upper(), start, "-if", str(log)],
                         capture_output=True, text=True, timeout=60)
    return run.returncode, run.stdout


@pytest.mark.parametrize("keys", [["docker-client"], ["other-key"], ["other-key\x01docker-client"]])
def test_exec_audit_search_answers_as_ausearch_alone(tmp_path, keys):
    """The grep that spares ausearch a log without the key answers exactly as ausearch would:
    records under another key only (nothing found), the key itself, or the key among several
    (auditd writes them hex-encoded)."""
    log = tmp_path / "audit.log"
    text = "".join(audit_log(tmp_path / f"part{n}", [["docker", "exec", "--privileged", "web", "sh"]], key=k).read_text()
                   for n, k in enumerate(keys))
    multi = keys[0].encode().hex().upper()
    log.write_text(text.replace(f'key="{keys[0]}"', f"key={multi}") if "\x01" in keys[0] else text)
    alone = subprocess.run(["ausearch", "-if", str(log), "--raw", "-m", "EXECVE", "-k", "docker-client"],
                           capture_output=True, text=True, timeout=60)
    assert _exec_audit_section("docker-client", log) == (alone.returncode, alone.stdout)
    assert alone.returncode == (1 if keys == ["other-key"] else 0)


def test_exec_audit_start_bounds_the_search(session_daemon_factory, tmp_path):
    log = audit_log(tmp_path / "audit.log", [["docker", "exec", "--privileged", "web", "sh"]])  # Nov 2025
    assert _exec_audit_section("docker-client", log, "recent")[0] == 1  # nothing in the last 10 minutes
    data = daemon_data(session_daemon_factory({}), auditd_log_file=str(log), auditd_exec_search_start="this-year")
    assert verify(data, ["5.23"])["5.23"].status in ("PASS", "SKIP")  # the 2025 record is before this year
    with pytest.raises(Exception, match="auditd_exec_search_start"):
        docker_host({**data, "auditd_exec_search_start": "last tuesday"})


def test_exec_audit_stopped_at_the_timeout_is_error(session_daemon_factory, tmp_path):
    """A search that does not finish (here: the log is a FIFO nobody writes) is stopped at
    hardline_command_timeout and proves nothing: ERROR, not SKIP."""
    fifo = tmp_path / "audit.log"
    os.mkfifo(fifo)
    data = daemon_data(session_daemon_factory({}), auditd_log_file=str(fifo), hardline_command_timeout=2)
    result = verify(data, ["5.23"])["5.23"]
    assert result.status == "ERROR" and "timed out" in result.found, result.message


# ---- 6.1 / 6.2 sprawl counts (manual items) --------------------------------------------------

def test_sprawl_counts(session_daemon_factory, busybox_image):
    daemon = session_daemon_factory({})
    image = busybox_image(daemon)
    busybox_image(daemon, "hl/spare:1")
    daemon.docker("run", "-d", image, "sleep", "3600", check=True)
    daemon.docker("create", image, "true", check=True)
    config, facts = _facts(daemon_data(daemon))
    images = CHECKS["sprawl"]({"what": "images"}, facts, config.data)
    containers = CHECKS["sprawl"]({"what": "containers"}, facts, config.data)
    assert images.status == containers.status == "MANUAL"
    assert images.found == "2 images, 1 used by a container, 1 unused"
    assert "hl/spare:1" in images.evidence[0] and "hl/busybox" not in images.evidence[0]
    assert containers.found == "2 containers, 1 running, 1 not running (1 created)"


def test_containers_images_and_swarm_cost_no_extra_round_trip(swarms, busybox_image):
    daemon = swarms["default"]
    image = busybox_image(daemon)
    for n in range(5):
        daemon.docker("run", "-d", "--name", f"count-{n}", image, "sleep", "600", check=True)
    facts, commands = gather_counted(docker_host(daemon_data(daemon)))
    assert commands == 2 == facts.round_trips
    assert len([c for c in facts.values["containers"] if c["State"]["Running"]]) == 5
    assert facts.values["swarm_state"]["ListenAddr"] == "0.0.0.0:2377" and facts.values["dockerd_listen"]
    assert len(facts.values["container_procs"]["init"]) == 5


@pytest.mark.lab
def test_exec_audit_with_real_auditd_on_the_lab_vm(lab_vm):
    """5.23 from a real audit trail: the rule hardline deploys, a real `docker exec --privileged`."""
    from lab import qemu as lab

    key = "hl-exec-test"
    assert lab.run_ssh(f"auditctl -w /usr/bin/docker -p x -k {key}").returncode == 0
    try:
        data = {**lab.inventory_data(), "auditd_exec_key": key}
        before = verify(data, ["5.23"], name="lab-vm")["5.23"]
        assert before.status == "PASS", before.message
        # the client's execution is audited whether or not the exec succeeds
        lab.run_ssh("docker exec --privileged hl-no-such-container true", timeout=120)
        after = verify(data, ["5.23"], name="lab-vm")["5.23"]
        assert after.status == "FAIL" and "docker exec --privileged hl-no-such-container true" in after.evidence[0]
    finally:
        lab.run_ssh(f"auditctl -W /usr/bin/docker -p x -k {key}")


def test_manual_items_report_gathered_evidence_never_pass(session_daemon_factory, busybox_image):
    # 6.2 is manual: the engine runs its sprawl kind and keeps the counts as MANUAL evidence
    from tests.support.verify import daemon_data, verify_subjects

    daemon = session_daemon_factory({})
    busybox_image(daemon)
    daemon.docker("create", "--name", "hl-stopped", "hl/busybox:latest", "true", check=True)
    results = verify_subjects(daemon_data(daemon), ["6.1", "6.2", "2.1"])
    assert {r.status for rs in results.values() for r in rs} == {"MANUAL"}
    (sprawl,) = results["6.2"]
    assert "1 containers, 0 running, 1 not running" in sprawl.found
    assert sprawl.evidence[0].startswith("to review: ")
    assert "images" in results["6.1"][0].found
