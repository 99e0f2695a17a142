"""CIS Docker 4.1 and section 5 checks on real containers run by real test daemons.

One daemon runs a compliant container next to containers that each break some items; a single
verify reads them all (as on a real host: one gather, one verdict per container and item).
Further daemons cover what docker-bench-security gets wrong: a userns-remapped daemon, a daemon
configured by flags only, daemon.json defaults with unknown keys, containers with no name.
"""

from __future__ import annotations

import subprocess

import pytest

from hardline.benchmarks.checks import CHECKS
from hardline.catalog import load_catalog
from tests.support.runtimes import CAPFIT, capfit_runtime
from tests.support.verify import daemon_data, docker_host, full_facts, verify, verify_subjects

SECTION_5 = [c.id for c in load_catalog("cis-docker").controls if c.top_section == "5" and c.automated and c.id != "5.1"]
LSM_IDS = ["5.2", "5.3"]  # not applicable (SKIP) where the kernel has no such LSM
CONTAINER_IDS = ["4.1"] + [i for i in SECTION_5 if i not in ["5.23"] + LSM_IDS]


def by_container(results) -> dict[str, dict[str, object]]:
    """{control id: {container name: Result}} from verify_subjects output."""
    return {cid: {(r.subject.split(" ")[1] if r.subject else ""): r for r in rs} for cid, rs in results.items()}


@pytest.fixture(scope="module")
def workload(session_daemon_factory, busybox_image, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workload")
    daemon = session_daemon_factory({"runtimes": capfit_runtime(tmp / "runtime")})
    image = busybox_image(daemon)
    (tmp / "data").mkdir()
    shared = tmp / "shared"
    shared.mkdir()
    # a shared mount needs a shared source mount in the daemon's own mount namespace
    subprocess.run(["nsenter", "-t", str(daemon.pid), "-m", "sh", "-c",
                    f"mount --bind {shared} {shared} && mount --make-shared {shared}"], check=True)

    def run(*args: str) -> str:
        return daemon.docker("run", "-d", *args, check=True).stdout.strip()

    run("--name", "good", "--read-only", "--memory", "64m", "--pids-limit", "50", "--cpu-shares", "512",
        "--user", "65534:65534", "--restart", "on-failure:3", "--health-cmd", "true",
        "--security-opt", "no-new-privileges", "-p", "127.0.0.1:8080:80", "--cap-drop", "ALL",
        "--cap-add", "NET_BIND_SERVICE", "-v", f"{tmp / 'data'}:/data:ro", "-v", "/etc/hostname:/etc/host-name:ro",
        image, "sleep", "3600")
    unnamed = run(image, "sleep", "3600")
    run("--name", "hostns", "--net", "host", "--pid", "host", "--ipc", "host", "--uts", "host",
        "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--restart", "always",
        "--cgroup-parent", "/hl-custom", "-v", "/etc:/host-etc:ro", "-v", f"{daemon.dir}:/daemon-dir",
        image, "sleep", "3600")
    run("--name", "ports", "-p", "80:80", "--restart", "on-failure", "-v", f"{daemon.socket}:/var/run/docker.sock",
        "-v", "/usr/lib:/host-lib", image, "sleep", "3600")
    run("--name", "prop", "-v", f"{shared}:/shared:shared", image, "sleep", "3600")
    run("--name", "sshd", image, "sh", "-c",
        "printf '#!/bin/sh\\nwhile :; do sleep 1; done\\n' > /tmp/sshd && chmod +x /tmp/sshd && exec /tmp/sshd")
    run("--name", "priv", "--runtime", CAPFIT, "--privileged", image, "sleep", "3600")
    daemon.docker("create", "--name", "stopped", image, "true", check=True)  # never started: not judged
    data = daemon_data(daemon, docker_container_allowed_caps=["NET_BIND_SERVICE"])
    results = by_container(verify_subjects(data, CONTAINER_IDS + LSM_IDS))
    unnamed_name = daemon.docker("inspect", "--format", "{{.Name}}", unnamed, check=True).stdout.strip().lstrip("/")
    return {"daemon": daemon, "data": data, "results": results, "unnamed": unnamed_name, "unnamed_id": unnamed}


# control id -> (a container that passes, containers that fail)
CASES = {
    "4.1": ("good", ["unnamed", "hostns"]),
    "5.4": ("good", ["hostns", "priv"]),
    "5.5": ("good", ["priv"]),
    "5.6": ("good", ["hostns", "ports"]),
    "5.7": ("good", ["sshd"]),
    "5.8": ("good", ["ports"]),
    "5.10": ("good", ["hostns"]),
    "5.11": ("good", ["unnamed"]),
    "5.12": ("good", ["unnamed"]),
    "5.13": ("good", ["unnamed"]),
    "5.14": ("good", ["ports"]),
    "5.15": ("good", ["hostns", "ports"]),
    "5.16": ("good", ["hostns"]),
    "5.17": ("good", ["hostns"]),
    "5.20": ("good", ["prop"]),
    "5.21": ("good", ["hostns"]),
    "5.22": ("good", ["hostns", "priv"]),
    "5.25": ("good", ["hostns"]),
    "5.26": ("good", ["unnamed"]),
    "5.27": ("good", ["unnamed"]),
    "5.29": ("good", ["unnamed"]),
    "5.32": ("good", ["hostns", "ports"]),
}


@pytest.mark.parametrize("cid", sorted(CASES, key=lambda i: [int(p) for p in i.split(".")]))
def test_container_item_passes_and_fails(workload, cid):
    results = workload["results"][cid]
    good, bad = CASES[cid]
    names = {("unnamed" if n == workload["unnamed"] else n): r for n, r in results.items()}
    assert names[good].status == "PASS", names[good].message
    for name in bad:
        result = names[name]
        assert result.status == "FAIL", (name, result.message)
        assert any(e.startswith("fix: ") for e in result.evidence), result.evidence  # the docker run / compose fix


def test_every_running_container_is_judged_and_only_those(workload):
    for cid in CONTAINER_IDS:
        names = set(workload["results"][cid])
        assert names == {"good", workload["unnamed"], "hostns", "ports", "prop", "sshd", "priv"}, cid


def test_container_without_a_name_is_named_by_docker_and_id(workload):
    result = workload["results"]["5.11"][workload["unnamed"]]
    assert result.subject == f"container {workload['unnamed']} (hl/busybox:latest) {workload['unnamed_id'][:12]}"


def test_evidence_names_the_cause(workload):
    r = workload["results"]
    assert "SYS_ADMIN" in r["5.4"]["hostns"].found and "privileged" in r["5.4"]["priv"].found
    assert "Seccomp mode 0 (seccomp=unconfined)" in r["5.22"]["hostns"].found
    assert "privileged" in r["5.22"]["priv"].found
    assert "/etc -> /host-etc (ro)" in r["5.6"]["hostns"].found and "/usr/lib -> /host-lib (rw" in r["5.6"]["ports"].found
    assert "the directory holding" in r["5.32"]["hostns"].found and "the Docker socket" in r["5.32"]["ports"].found
    assert "sshd (pid" in r["5.7"]["sshd"].found
    assert "on-failure:0 (0 = unlimited retries)" in r["5.15"]["ports"].found and "always" in r["5.15"]["hostns"].found
    assert "uid 65534" in r["4.1"]["good"].found
    assert "--restart on-failure:5" in " ".join(r["5.15"]["hostns"].evidence)


def test_lsm_items_skip_where_the_kernel_has_no_lsm(workload):
    # this kernel has neither AppArmor nor SELinux: not applicable, never PASS (the lab VM has AppArmor)
    for cid in ("5.2", "5.3"):
        assert list(workload["results"][cid]) == [""]
        assert workload["results"][cid][""].status == "SKIP"


def _facts(data):
    config = docker_host(data, "@local")
    return config, full_facts(config)


def test_apparmor_and_selinux_pass_and_fail_on_lsm_facts(workload):
    # SIMULATION: this kernel has no LSM, so the real facts of the running containers are taken
    # and only the daemon's reported SecurityOptions and the containers' profile/label fields are
    # set as an AppArmor or SELinux host reports them. The enforcing case runs on the lab VM.
    config, facts = _facts(workload["data"])
    facts.values["info"] = {**facts.values["info"], "SecurityOptions": ["name=apparmor", "name=selinux", "name=seccomp"]}
    for c in facts.values["containers"]:
        if c["Name"] == "/good":
            c["AppArmorProfile"], c["ProcessLabel"] = "docker-default", "system_u:system_r:container_t:s0:c1,c2"
        elif c["Name"] == "/hostns":
            c["AppArmorProfile"], c["HostConfig"]["SecurityOpt"] = "unconfined", ["label=disable"]
    for rule in ("apparmor", "selinux"):
        verdicts = {v.subject.split(" ")[1]: v.status for v in CHECKS["container_rule"]({"rule": rule}, facts, config.data)}
        assert verdicts["good"] == "PASS" and verdicts["hostns"] == "FAIL", (rule, verdicts)


def test_userns_remapped_daemon(session_daemon_factory, busybox_image):
    daemon = session_daemon_factory({"userns-remap": "default"})
    image = busybox_image(daemon)
    daemon.docker("run", "-d", "--name", "remapped", image, "sleep", "3600", check=True)
    daemon.docker("run", "-d", "--name", "shared", "--userns", "host", image, "sleep", "3600", check=True)
    results = by_container(verify_subjects(daemon_data(daemon), ["4.1", "5.31"]))
    assert results["5.31"]["remapped"].status == "PASS", results["5.31"]["remapped"].message
    shared = results["5.31"]["shared"]
    assert shared.status == "FAIL" and "--userns=host" in shared.found
    # root inside a remapped container is still root for CIS 4.1; the evidence shows the host uid
    assert results["4.1"]["remapped"].status == "FAIL"
    assert "uid 0 in the container (host uid 0)" not in results["4.1"]["remapped"].found


def test_host_user_namespace_without_remapping_fails(workload):
    result = workload["results"]["5.31"]["good"]
    assert result.status == "FAIL" and "does not remap users" in result.found


def test_daemon_configured_by_flags_only(session_daemon_factory, busybox_image):
    # no daemon.json at all; no-new-privileges from the command line applies to every container
    daemon = session_daemon_factory(None, flags=["--no-new-privileges"])
    daemon.docker("run", "-d", "--name", "plain", busybox_image(daemon), "sleep", "3600", check=True)
    result = verify(daemon_data(daemon), ["5.26"])["5.26"]
    assert result.status == "PASS" and result.subject.startswith("container plain"), result.message


def test_daemon_json_defaults_with_unknown_keys(session_daemon_factory, busybox_image):
    daemon = session_daemon_factory({"features": {"buildkit": True}, "no-new-privileges": True,
                                     "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}}})
    daemon.docker("run", "-d", "--name", "plain", busybox_image(daemon), "sleep", "3600", check=True)
    results = verify(daemon_data(daemon), ["5.26", "5.22"])
    assert results["5.26"].status == "PASS" and "NoNewPrivs 1" in results["5.26"].found
    assert results["5.22"].status == "PASS"


def test_no_running_container_is_skip_with_that_evidence(session_daemon_factory, busybox_image):
    daemon = session_daemon_factory({})
    daemon.docker("create", "--name", "idle", busybox_image(daemon), "true", check=True)
    results = verify_subjects(daemon_data(daemon), CONTAINER_IDS)
    for cid, rs in results.items():
        assert [(r.status, r.found) for r in rs] == [("SKIP", "no running containers: nothing to judge")], cid


def test_unreachable_daemon_is_error_not_pass(session_daemon_factory, busybox_image):
    daemon = session_daemon_factory({})
    daemon.docker("run", "-d", busybox_image(daemon), "sleep", "3600", check=True)
    data = daemon_data(daemon)
    daemon.stop()
    results = verify_subjects(data, CONTAINER_IDS)
    assert {r.status for rs in results.values() for r in rs} == {"ERROR"}


def test_manual_items_report_facts_as_manual(workload):
    # 5.9, 5.18, 5.19, 5.28, 5.30 are manual in CIS 1.6.0: the checks list what an auditor needs
    # and never PASS (the engine reports manual items as MANUAL with the guidance today)
    config, facts = _facts(workload["data"])
    for info in ("ports", "devices", "ulimits", "image_pinned", "default_bridge"):
        verdicts = CHECKS["container_info"]({"info": info}, facts, config.data)
        assert {v.status for v in verdicts} == {"MANUAL"}
    ports = {v.subject.split(" ")[1]: v.found for v in CHECKS["container_info"]({"info": "ports"}, facts, config.data)}
    assert "127.0.0.1:8080->80/tcp" in ports["good"]
    bridge = {v.subject.split(" ")[1]: v.found for v in CHECKS["container_info"]({"info": "default_bridge"}, facts, config.data)}
    assert "(default bridge)" in bridge["good"] and "host" in bridge["hostns"]


@pytest.mark.lab
def test_apparmor_profiles_on_the_lab_vm(lab_vm, tmp_path):
    """5.2 where AppArmor enforces (the lab VM): docker-default passes, unconfined and privileged fail."""
    from lab import qemu as lab
    from tests.support.images import busybox_rootfs_tar

    with open(busybox_rootfs_tar(tmp_path / "rootfs.tar"), "rb") as tar:
        subprocess.run(lab.ssh_command("docker import - hl/apparmor-test:1"), stdin=tar, check=True, capture_output=True)
    names = {"confined": "", "loose": "--security-opt apparmor=unconfined", "priv": "--privileged"}
    try:
        for name, flags in names.items():
            run = lab.run_ssh(f"docker run -d --name hl-aa-{name} {flags} hl/apparmor-test:1 sleep 600", timeout=120)
            assert run.returncode == 0, run.stderr
        results = {r.subject.split(" ")[1]: r for r in verify_subjects(lab.inventory_data(), ["5.2"], name="lab-vm")["5.2"]}
        assert results["hl-aa-confined"].status == "PASS" and "docker-default" in results["hl-aa-confined"].found
        assert results["hl-aa-loose"].status == "FAIL" and "unconfined" in results["hl-aa-loose"].found
        assert results["hl-aa-priv"].status == "FAIL"
    finally:
        lab.run_ssh("docker rm -f hl-aa-confined hl-aa-loose hl-aa-priv; docker rmi hl/apparmor-test:1", timeout=120)
