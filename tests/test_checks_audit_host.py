"""CIS Docker 1.1.2-1.1.18 (docker group, audit watches) and HL-1.1 (sysctl) on this machine's
real kernel audit subsystem, /etc/group and /proc/sys."""

import subprocess
from pathlib import Path

import pytest

from tests.support.verify import daemon_data, docker_host, statuses, verify

AUDIT_IDS = [f"1.1.{n}" for n in range(3, 19)]
KEY = "hardline-test"


def auditctl(*args):
    return subprocess.run(["auditctl", *args], capture_output=True, text=True)


@pytest.fixture
def audit_env(session_daemon_factory, tmp_path):
    """Inventory data whose every audited path exists on this machine, and cleanup of our rules."""
    daemon = session_daemon_factory({"icc": False})
    default = tmp_path / "default-docker"
    default.write_text("")
    sysconfig = tmp_path / "sysconfig-docker"
    sysconfig.write_text("")
    Path("/run/containerd").mkdir(exist_ok=True)  # exists wherever containerd runs as a service
    data = daemon_data(daemon, docker_default_file=str(default), docker_sysconfig_file=str(sysconfig),
                       containerd_socket_path=str(Path(daemon.exec_root) / "containerd" / "containerd.sock"),
                       auditd_rules_file=str(tmp_path / "hardline-docker.rules"), auditd_key=KEY)
    yield data
    auditctl("-D", "-k", KEY)


def watched_paths(results):
    return {cid: r.expected.split("watches ")[1].split(" for ")[0] for cid, r in results.items() if r.expected}


def test_audit_watches_loaded_and_persisted_pass(audit_env):
    before = verify(audit_env, AUDIT_IDS)
    assert set(statuses(before).values()) == {"FAIL"}, statuses(before)
    paths = watched_paths(before)
    assert len(paths) == 16
    rules = [f"-w {p} -p wa -k {KEY}" for p in paths.values()]
    Path(audit_env["auditd_rules_file"]).write_text("\n".join(rules) + "\n")
    for rule in rules:
        assert auditctl(*rule.split()).returncode == 0, rule
    after = verify(audit_env, AUDIT_IDS)
    assert statuses(after) == {cid: "PASS" for cid in AUDIT_IDS}, {c: r.found for c, r in after.items()}


def test_loaded_but_not_persisted_fails(audit_env):
    path = watched_paths(verify(audit_env, ["1.1.14"]))["1.1.14"]
    auditctl("-w", path, "-p", "wa", "-k", KEY)
    result = verify(audit_env, ["1.1.14"])["1.1.14"]
    assert result.status == "FAIL" and "not in any rules file" in result.found


def test_persisted_but_not_loaded_fails(audit_env):
    path = watched_paths(verify(audit_env, ["1.1.18"]))["1.1.18"]
    Path(audit_env["auditd_rules_file"]).write_text(f"-w {path} -p wa -k {KEY}\n")
    result = verify(audit_env, ["1.1.18"])["1.1.18"]
    assert result.status == "FAIL" and "no loaded audit rule" in result.found


def test_read_only_watch_does_not_count(audit_env):
    path = watched_paths(verify(audit_env, ["1.1.6"]))["1.1.6"]
    Path(audit_env["auditd_rules_file"]).write_text(f"-w {path} -p r -k {KEY}\n")
    auditctl("-w", path, "-p", "r", "-k", KEY)
    assert verify(audit_env, ["1.1.6"])["1.1.6"].status == "FAIL"


def test_absent_path_is_not_applicable(audit_env, tmp_path):
    data = {**audit_env, "docker_sysconfig_file": str(tmp_path / "absent")}
    result = verify(data, ["1.1.13"])["1.1.13"]
    assert result.status == "SKIP" and "does not exist" in result.found


def test_audit_unavailable_is_error(audit_env):
    # a verifier that may not read audit rules (here: not root, via setpriv) cannot claim a PASS
    import shlex

    from hardline.benchmarks.engine import evaluate, plan
    from hardline.benchmarks.gather import gather
    from hardline.benchmarks.select import Selection
    from hardline.catalog import load_catalog

    config = docker_host(audit_env)

    def unprivileged(script: str) -> str:
        return subprocess.run("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c " + shlex.quote(script),
                              shell=True, capture_output=True, text=True).stdout

    hp = plan(config, Selection())
    facts = gather(unprivileged, config.data, hp.needs, hp.paths)
    catalog = load_catalog("cis-docker")
    (result,) = evaluate(catalog.get("1.1.6"), config, facts, catalog)
    assert result.status == "ERROR" and "auditctl" in result.found


def test_docker_group_members(tmp_path):
    user = "hltrusted"
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", user], check=True)
    try:
        assert verify({}, ["1.1.2"])["1.1.2"].status == "PASS"
        subprocess.run(["gpasswd", "-a", user, "docker"], check=True, capture_output=True)
        result = verify({}, ["1.1.2"])["1.1.2"]
        assert result.status == "FAIL" and f"not trusted: {user}" in result.found
        assert verify({"docker_trusted_users": [user]}, ["1.1.2"])["1.1.2"].status == "PASS"
    finally:
        subprocess.run(["userdel", user], check=False)


def test_sysctl_runtime_and_persisted(tmp_path):
    keys = ["kernel.dmesg_restrict", "fs.protected_hardlinks", "net.ipv4.tcp_syncookies"]
    current = {k: int(Path("/proc/sys", *k.split(".")).read_text()) for k in keys}
    persist = tmp_path / "60-hardline.conf"
    data = {"sysctl_settings": current, "sysctl_persist_file": str(persist)}
    result = verify(data, ["HL-1.1"])["HL-1.1"]
    assert result.status == "FAIL" and "not persisted" in result.found
    persist.write_text("".join(f"{k} = {v}\n" for k, v in current.items()))
    assert verify(data, ["HL-1.1"])["HL-1.1"].status == "PASS"
    wrong = {**current, "kernel.dmesg_restrict": 1 - current["kernel.dmesg_restrict"]}
    result = verify({**data, "sysctl_settings": wrong}, ["HL-1.1"])["HL-1.1"]
    assert result.status == "FAIL" and "kernel.dmesg_restrict: running" in result.found
