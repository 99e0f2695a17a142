"""Inventory loading through pyinfra's loader, precedence, and refusal of bad data."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hardline.inventory import InventoryError, load_hosts

ROOT = Path(__file__).resolve().parent.parent


def write_inventory(tmp_path: Path, hosts: str, **group_data: str) -> Path:
    (tmp_path / "group_data").mkdir()
    for group, text in group_data.items():
        (tmp_path / "group_data" / f"{group}.py").write_text(textwrap.dedent(text))
    inv = tmp_path / "inv.py"
    inv.write_text(textwrap.dedent(hosts))
    return inv


def problems(inv: Path) -> list[str]:
    """What hardline refuses in an inventory: the problems of its invalid hosts (each of which is
    still returned, to be reported ERROR), or of an inventory that cannot be loaded at all."""
    try:
        hosts = load_hosts(str(inv))
    except InventoryError as err:
        return [str(p) for p in err.problems]
    found = [str(p) for h in hosts if h.error for p in h.error.problems]
    assert found, "no problem reported"
    return found


def test_precedence_host_over_group_over_all_over_defaults(tmp_path):
    inv = write_inventory(
        tmp_path,
        'docker_hosts = [("a", {"docker_log_driver": "syslog"}), "b"]\nweb = ["c"]\n',
        all='docker_log_driver = "fluentd"\nauditd_key = "from-all"\n',
        docker_hosts='docker_log_driver = "gelf"\n',
    )
    hosts = {h.name: h for h in load_hosts(str(inv))}
    assert hosts["a"].data["docker_log_driver"] == "syslog"  # host data
    assert hosts["b"].data["docker_log_driver"] == "gelf"  # group data
    assert hosts["c"].data["docker_log_driver"] == "fluentd"  # group_data/all.py
    assert hosts["c"].data["auditd_key"] == "from-all"
    assert hosts["c"].data["docker_userns_remap"] == "dockremap"  # hardline/defaults.yml
    assert [h.name for h in load_hosts(str(inv), ["web"])] == ["c"]


def test_wrong_type_names_file_host_and_key(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = ["a"]\n', docker_hosts='docker_trusted_users = "alice"\n')
    (msg,) = problems(inv)
    assert msg.endswith("group_data/docker_hosts.py: host a: docker_trusted_users: must be a list of strings, got 'alice'")


def test_unknown_key_with_suggestion(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = [("a", {"docker_log_drivr": "syslog", "app_port": 80})]\n')
    (msg,) = problems(inv)  # app_port is not in hardline's namespaces: someone else's data
    assert msg.endswith("host a: docker_log_drivr: unknown key (did you mean docker_log_driver?)")
    assert str(inv) in msg


def test_unknown_cis_id_in_waiver(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = ["a"]\n',
                          all='hardline_waivers = [{"id": "2.99", "reason": "x"}]\n')
    (msg,) = problems(inv)
    assert "all.py: host a: hardline_waivers[0]: unknown control id '2.99'" in msg


def test_waiver_needs_reason_and_valid_date(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = ["a"]\n', all=
                          'hardline_waivers = [{"id": "2.12", "reason": ""}, {"id": "2.2", "reason": "r", "expires": "soon"}]\n')
    msgs = problems(inv)
    assert any("waiver of cis-docker:1.6.0:2.12 needs a reason" in m for m in msgs)
    assert any("expires 'soon' is not a date" in m for m in msgs)


def test_log_opts_the_driver_does_not_accept(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = [("a", {"docker_log_driver": "journald", '
                          '"docker_log_opts": {"max-size": "10m"}})]\n')
    (msg,) = problems(inv)
    assert msg.endswith("host a: docker_log_opts: max-size not accepted by log driver 'journald'")


def test_contradictions(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = [("a", {"docker_log_driver": "json-file", "docker_userns_remap": "",'
                          ' "docker_daemon_extra": {"icc": True}, "sysctl_settings": {"net.ipv4.ip_forward": 0}})]\n')
    msgs = "\n".join(problems(inv))
    assert "json-file' is not a central logging driver, which CIS 2.13 requires" in msgs
    assert "docker_userns_remap: is empty but CIS 2.9" in msgs
    assert "docker_daemon_extra: sets 'icc', which hardline manages" in msgs
    assert "net.ipv4.ip_forward=0 breaks Docker" in msgs


def test_waiving_the_control_lifts_the_contradiction(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = [("a", {"docker_log_driver": "json-file",'
                          ' "docker_log_opts": {"max-size": "10m"}})]\n',
                          all='hardline_waivers = [{"id": "2.13", "reason": "logs shipped by an agent"}]\n')
    (host,) = load_hosts(str(inv))
    assert host.waivers["cis-docker:1.6.0:2.13"].reason == "logs shipped by an agent"


def test_bad_sysctl_and_ulimits(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = [("a", {"sysctl_settings": {"not a key": 1}}),'
                          ' ("b", {"docker_default_ulimits": {"nofile": {"soft": 10, "hard": 5}}})]\n')
    msgs = "\n".join(problems(inv))
    assert "host a: sysctl_settings: 'not a key' is not a sysctl name" in msgs
    assert "host b: docker_default_ulimits: nofile: soft 10 is above hard 5" in msgs


def run(*args, cwd=ROOT):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_and_pyinfra_refuse_bad_data_without_traceback(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = [("@local", {"docker_log_opts": {"max-size": "10m"}})]\n')
    verify = run(sys.executable, "-m", "hardline.cli", "verify", str(inv))
    # the host is not verified (its controls are ERROR, other hosts would be verified): exit 2
    assert verify.returncode == 2
    assert "docker_log_opts: max-size not accepted by log driver 'journald'" in verify.stderr
    assert "PASS 0" in verify.stdout and "ERROR 0" not in verify.stdout
    assert "Traceback" not in verify.stderr + verify.stdout
    deploy = run("pyinfra", "--dry", str(inv), "deploys/harden.py")
    out = deploy.stdout + deploy.stderr
    assert deploy.returncode != 0
    assert f"{inv}: host @local: docker_log_opts: max-size not accepted" in out
    assert "Traceback" not in out


def test_missing_inventory_file():
    result = run(sys.executable, "-m", "hardline.cli", "verify", "/nonexistent/inv.py")
    assert result.returncode == 4 and "inventory file not found" in result.stderr


def test_loading_never_imports_pyinfra_cli_into_this_process(tmp_path):
    # pyinfra_cli monkey-patches the standard library for gevent on import; in a process that
    # already runs threads (the verifier's parallel gathering, pytest plugins) that deadlocked
    inv = write_inventory(tmp_path, 'docker_hosts = ["a"]\n')
    code = ("import sys; from hardline.inventory import load_hosts; "
            f"assert [h.name for h in load_hosts({str(inv)!r})] == ['a']; "
            "assert 'pyinfra_cli' not in sys.modules and 'gevent.monkey' not in sys.modules")
    assert run(sys.executable, "-c", code).returncode == 0


def test_inventory_that_pyinfra_cannot_load(tmp_path):
    inv = tmp_path / "broken.py"
    inv.write_text("docker_hosts = [\n")
    (msg,) = problems(inv)
    assert msg.startswith(f"{inv}: host -: inventory: pyinfra could not load it: ")
    assert "SyntaxError" in msg


def test_waiver_by_key_or_slug_and_unknown_ids_name_the_candidates(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = ["a"]\n', all=textwrap.dedent('''\
        hardline_waivers = [
            {"id": "cis-docker:1.6.0:2.12", "reason": "no authz plugin"},
            {"id": "kernel_sysctl_settings", "reason": "sysctl owned by the platform team"},
        ]
        '''))
    (host,) = load_hosts(str(inv))
    assert set(host.waivers) == {"cis-docker:1.6.0:2.12", "hardline-platform:1:HL-1.1"}
    (tmp_path / "two").mkdir()
    inv2 = write_inventory(tmp_path / "two", 'docker_hosts = ["a"]\n',
                           all='hardline_waivers = [{"id": "cis-docker:9.9:2.12", "reason": "r"}]\n')
    (msg,) = problems(inv2)
    assert "unknown control id 'cis-docker:9.9:2.12' in the benchmarks that apply to this host" in msg
    assert "cis-docker:1.6.0, hardline-platform:1" in msg


def test_a_host_needs_a_role_and_roles_come_from_groups_or_data(tmp_path):
    inv = write_inventory(tmp_path, 'web = ["a", ("b", {"hardline_roles": ["docker"]}), '
                          '("c", {"hardline_roles": ["mainframe"]})]\ndocker_hosts = ["d"]\n')
    hosts = {h.name: h for h in load_hosts(str(inv))}
    assert "host a: hardline_roles: the host has no role: put it in one of the groups docker_hosts, " in str(hosts["a"].error)
    assert hosts["b"].valid and hosts["b"].roles == ("docker",)
    assert "unknown role(s) mainframe" in str(hosts["c"].error)
    assert hosts["d"].roles == ("docker",)


def test_one_invalid_host_does_not_stop_the_others(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = [("bad", {"docker_trusted_users": "alice"}), "good"]\n')
    hosts = {h.name: h for h in load_hosts(str(inv))}
    assert hosts["good"].valid and not hosts["bad"].valid
    assert "docker_trusted_users: must be a list of strings" in str(hosts["bad"].error)


def test_a_bare_id_several_benchmarks_have_is_refused_with_the_candidates(tmp_path):
    inv = write_inventory(tmp_path, 'docker_hosts = ["a"]\nk8s_control_plane = ["a", ("b", {'
                          '"hardline_benchmark_versions": {"cis-kubernetes": "1.20"}})]\n',
                          all='hardline_waivers = [{"id": "1.1.1", "reason": "r"}]\n')
    hosts = {h.name: h for h in load_hosts(str(inv))}
    assert hosts["a"].roles == ("docker", "k8s_control_plane")
    assert ("host a: hardline_waivers[0]: id '1.1.1' is ambiguous for this host: it names cis-docker:1.6.0:1.1.1, "
            "cis-kubernetes:1.12:1.1.1, cis-kubernetes:1.20:1.1.1; write the full key") in str(hosts["a"].error)
    # b is only a control-plane node, and its CIS Kubernetes version is pinned: 1.1.1 is one control
    assert hosts["b"].valid and list(hosts["b"].waivers) == ["cis-kubernetes:1.20:1.1.1"]
