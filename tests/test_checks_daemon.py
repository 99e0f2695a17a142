"""CIS Docker section 2 checks against real dockerd instances started by the tests.

Each daemon runs in its own network namespace (tests/support/daemons.py), so compliant and
non-compliant daemons run side by side without sharing bridges or iptables chains.
"""

import json

import pytest

from tests.support.authz import AllowAllAuthzPlugin
from tests.support.tls import make_tls
from tests.support.verify import daemon_data, docker_host, full_facts, statuses, verify

COMPLIANT = {
    "icc": False, "log-level": "info", "iptables": True, "live-restore": True, "no-new-privileges": True,
    "userland-proxy": False, "experimental": False, "log-driver": "journald", "userns-remap": "default",
}
SECTION_2 = ["2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.9", "2.10", "2.11", "2.13", "2.14", "2.15", "2.16", "2.18"]


@pytest.fixture(scope="module")
def compliant(session_daemon_factory):
    return session_daemon_factory(COMPLIANT)


@pytest.fixture(scope="module")
def default_daemon(session_daemon_factory):
    return session_daemon_factory({})


def test_compliant_daemon_passes_section_2(compliant):
    results = verify(daemon_data(compliant, docker_userns_remap="default"), SECTION_2)
    # 2.7 (TLS for TCP listeners) has nothing to judge on a daemon without a TCP listener
    assert statuses(results) == {cid: "SKIP" if cid == "2.7" else "PASS" for cid in SECTION_2}, \
        {c: r.message for c, r in results.items()}
    assert "no TCP listener, nothing to judge" in results["2.7"].found
    assert not any(r.differs for r in results.values())
    assert results["2.2"].evidence == ["default bridge network reports enable_icc=false"]


def test_default_daemon_fails_what_cis_changes(default_daemon):
    results = statuses(verify(daemon_data(default_daemon), SECTION_2))
    failing = {"2.2", "2.9", "2.13", "2.14", "2.15", "2.16"}
    assert {cid for cid, s in results.items() if s == "FAIL"} == failing
    assert {cid for cid, s in results.items() if s == "PASS"} == set(SECTION_2) - failing - {"2.7"}


def test_noncompliant_values(session_daemon_factory):
    daemon = session_daemon_factory({
        "log-level": "debug", "insecure-registries": ["10.0.0.0/8", "registry.internal:5000"],
        "cgroup-parent": "/hl-custom", "experimental": True, "iptables": False,
    })
    results = verify(daemon_data(daemon), ["2.3", "2.4", "2.5", "2.10", "2.18"])
    assert statuses(results) == {"2.3": "FAIL", "2.4": "FAIL", "2.5": "FAIL", "2.10": "FAIL", "2.18": "FAIL"}
    assert "10.0.0.0/8" in results["2.5"].found and "registry.internal:5000" in results["2.5"].found
    assert results["2.3"].found == 'log-level = "debug" (daemon.json)'
    # the same cgroup parent is compliant once the inventory records it as the intended one
    assert verify(daemon_data(daemon, docker_cgroup_parent="/hl-custom"), ["2.10"])["2.10"].status == "PASS"


def test_flags_in_the_service_command_line_count(session_daemon_factory):
    # daemons configured by flags (as a systemd unit or /etc/default/docker would) and no daemon.json
    daemon = session_daemon_factory(None, flags=["--icc=false", "--live-restore", "--log-level", "warn"])
    results = verify(daemon_data(daemon), ["2.2", "2.3", "2.15"])
    assert statuses(results) == {"2.2": "PASS", "2.3": "FAIL", "2.15": "PASS"}
    assert results["2.2"].found == "icc = false (command-line flag)"


def test_base_device_size_in_config_file(session_daemon_factory, tmp_path):
    # overlay2 refuses dm.basesize at start, so the option is added to the running daemon's
    # daemon.json afterwards (as an edit awaiting a restart would be): the check reads the file.
    daemon = session_daemon_factory({"icc": False})
    assert verify(daemon_data(daemon), ["2.11"])["2.11"].status == "PASS"
    daemon.config_path.write_text(json.dumps({"icc": False, "storage-opts": ["dm.basesize=20G"]}))
    result = verify(daemon_data(daemon), ["2.11"])["2.11"]
    assert result.status == "FAIL" and "dm.basesize=20G" in result.found


def test_storage_driver_aufs_is_reported_from_the_running_daemon(default_daemon):
    # SIMULATION for the failing case: no kernel here has aufs, so the running daemon's real
    # `docker info` is taken and only its Driver field is replaced by "aufs".
    from hardline.benchmarks.checks import CHECKS

    data = daemon_data(default_daemon)
    config = docker_host(data, "@local")
    facts = full_facts(config)
    params = {"key": "storage-driver", "op": "not_in", "value": ["aufs"]}
    assert CHECKS["daemon_option"](params, facts, config.data).status == "PASS"
    facts.values["info"] = {**facts.values["info"], "Driver": "aufs"}
    facts.values.pop("effective", None)
    verdict = CHECKS["daemon_option"](params, facts, config.data)
    assert verdict.status == "FAIL" and 'storage-driver = "aufs"' in verdict.found


def test_userns_remap_other_than_the_inventory_still_meets_the_benchmark(compliant, default_daemon):
    # CIS 2.9 asks for remapping; which user is the inventory's choice, not the benchmark's
    spelled = verify(daemon_data(compliant, docker_userns_remap="dockremap"), ["2.9"])["2.9"]
    assert spelled.status == "PASS" and 'userns-remap = "default"' in spelled.found
    assert spelled.differs == 'differs from inventory only in spelling: userns-remap = "default", inventory says "dockremap"'
    other = verify(daemon_data(compliant, docker_userns_remap="hlremap"), ["2.9"])["2.9"]
    assert other.status == "PASS" and other.differs.startswith("differs from inventory: userns-remap")
    assert verify(daemon_data(default_daemon, docker_userns_remap="hlremap"), ["2.9"])["2.9"].status == "FAIL"


def test_central_log_driver_other_than_the_inventory_passes_with_a_note(session_daemon_factory, default_daemon):
    syslog = session_daemon_factory({"log-driver": "syslog"})
    result = verify(daemon_data(syslog, docker_log_driver="journald"), ["2.13"])["2.13"]
    assert result.status == "PASS" and result.differs == ('differs from inventory: log-driver = "syslog", '
                                                         'inventory says "journald"')
    local = verify(daemon_data(default_daemon, docker_log_driver="journald"), ["2.13"])["2.13"]
    assert local.status == "FAIL" and 'log-driver = "json-file"' in local.found and not local.differs


def test_authorization_plugin(session_daemon_factory):
    with AllowAllAuthzPlugin("hl-authz-test") as plugin:
        daemon = session_daemon_factory({"authorization-plugins": ["hl-authz-test"]})
        result = verify(daemon_data(daemon), ["2.12"])["2.12"]
        assert result.status == "PASS", result.message
        assert "/AuthZPlugin.AuthZReq" in plugin.calls  # the daemon really consults it
        daemon.stop()
    assert verify(daemon_data(daemon), ["2.12"])["2.12"].status == "ERROR"  # daemon gone: not PASS


def test_authorization_plugin_missing_fails(default_daemon):
    assert verify(daemon_data(default_daemon), ["2.12"])["2.12"].status == "FAIL"


def test_tcp_without_tls_fails_and_with_tls_passes(session_daemon_factory, tmp_path):
    plain = session_daemon_factory(None, flags=["-H", "tcp://127.0.0.1:2375"])
    result = verify(daemon_data(plain), ["2.7"])["2.7"]
    assert result.status == "FAIL" and "tlsverify is not true" in result.found
    tls = make_tls(tmp_path / "tls")
    secured = session_daemon_factory({"tlsverify": True, **tls}, flags=["-H", "tcp://127.0.0.1:2376"])
    assert verify(daemon_data(secured), ["2.7"])["2.7"].status == "PASS"


def test_daemon_json_with_comments_is_error_not_pass(session_daemon_factory):
    daemon = session_daemon_factory({"icc": False})
    daemon.config_path.write_text('{\n  // dockerd refuses comments\n  "icc": false\n}\n')
    results = verify(daemon_data(daemon), ["2.2", "2.14"])
    assert statuses(results) == {"2.2": "ERROR", "2.14": "ERROR"}
    assert "not valid JSON" in results["2.2"].found


def test_unknown_keys_in_daemon_json_do_not_break_checks(session_daemon_factory):
    daemon = session_daemon_factory({"icc": False, "features": {"buildkit": True}, "debug": False})
    assert verify(daemon_data(daemon), ["2.2"])["2.2"].status == "PASS"


def test_no_daemon_is_error_never_pass(tmp_path):
    data = {"docker_socket_path": str(tmp_path / "none.sock"), "docker_pidfile": str(tmp_path / "none.pid")}
    results = verify(data, SECTION_2)
    assert set(statuses(results).values()) == {"ERROR"}


def test_config_changed_since_start_is_noted(session_daemon_factory):
    daemon = session_daemon_factory({"live-restore": True})
    daemon.config_path.write_text(json.dumps({"live-restore": False}))
    result = verify(daemon_data(daemon), ["2.15"])["2.15"]
    assert result.status == "PASS"  # the running daemon still has live restore
    assert any("restart pending" in e for e in result.evidence)
