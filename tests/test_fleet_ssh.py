"""SSH variants on real sshd hosts of the test fleet (issue 12, part 1): a non-root SSH user
with sudo (`_sudo: True`), a jump host (ProxyJump, and ProxyCommand, in an ssh_config), an
ssh_config alias (HostName/Port/User/IdentityFile from the config), an unknown and a changed
host key.

One inventory file serves both tools: pyinfra must reach every good variant and refuse the bad
keys; `hardline verify` must reach the same hosts with the same data (the host's known verdicts,
tests/support/fleet_state.py) and report the bad-key hosts as ERROR without adding their key to
any known_hosts file (never a silent accept).

The verify tests of the jump host and the alias need verification to connect through pyinfra's
connectors (today hardline opens its own paramiko connections and ignores ssh_config_file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.fleet_run import hardline_run, pyinfra_outputs, pyinfra_run, statuses
from tests.support.fleet_state import SIGNATURE, SUDO_USER, expected

pytestmark = pytest.mark.fleet
REACHES = ("ssh", "sudo", "alias", "jump")


@pytest.fixture(scope="module")
def variants(ssh_fleet, tmp_path_factory):
    """The inventory (one host per good variant, a ProxyCommand entry for the jump host, the two
    bad-key entries of a plain host), its host names by variant, and the fleet."""
    tmp = tmp_path_factory.mktemp("ssh-variants")
    names = {reach: next(h.name for h in ssh_fleet.hosts.values() if h.spec.reach == reach) for reach in REACHES}
    jump = names["jump"]
    more = {f"{jump}-proxycommand": ssh_fleet.connection(jump), **ssh_fleet.host_key_variants(names["ssh"])}
    names.update(proxycommand=f"{jump}-proxycommand", unknown=f"{names['ssh']}-unknown-key",
                 changed=f"{names['ssh']}-changed-key")
    inventory = ssh_fleet.write_inventory(tmp / "variants.py", names=[names[r] for r in REACHES], more=more)
    return inventory, names, ssh_fleet


@pytest.fixture(scope="module")
def verified(variants, tmp_path_factory):
    """One `hardline verify` over the variants inventory."""
    inventory, names, fleet = variants
    before = {p: p.read_bytes() for p in fleet.dir.glob("known_hosts*")}
    run = hardline_run("verify", inventory, "-q", json_out=tmp_path_factory.mktemp("verify") / "out.json", timeout=180)
    after = {p: p.read_bytes() for p in fleet.dir.glob("known_hosts*")}
    assert not run.timed_out, run.output()
    return run, before, after


def spec_of(fleet, name: str):
    return fleet.hosts[name.split("-")[0]].spec


def test_pyinfra_reaches_each_variant_and_refuses_bad_host_keys(variants):
    inventory, names, fleet = variants
    run = pyinfra_run(inventory, "exec", "--", "echo", "who:$(id -u):${SUDO_USER:-direct}", timeout=180)
    said = pyinfra_outputs(run)
    for variant in ("ssh", "alias", "jump", "proxycommand"):
        assert "who:0:direct" in said.get(names[variant], []), (variant, run.output())
    # the sudo host refuses root logins: uid 0 there can only come from sudo as the SSH user
    assert f"who:0:{SUDO_USER}" in said.get(names["sudo"], []), run.output()
    for variant in ("unknown", "changed"):
        assert not any(line.startswith("who:") for line in said.get(names[variant], [])), (variant, run.output())
        assert re.search(rf"\[{re.escape(names[variant])}\].*host key", run.stdout + run.stderr, re.I), run.output()


def test_sudo_user_host_refuses_root_logins(variants):
    """Proof that the sudo variant is what it claims: root cannot log in there directly."""
    inventory, names, fleet = variants
    host = fleet.hosts[names["sudo"]]
    direct = {**fleet.connection(names["ssh"]), "ssh_hostname": host.address}
    probe = fleet.write_inventory(Path(inventory).with_name("root_on_sudo_host.py"), names=[],
                                  more={"root-on-sudo-host": direct})
    run = pyinfra_run(probe, "exec", "--", "id", "-u", timeout=120)
    assert "0" not in pyinfra_outputs(run).get("root-on-sudo-host", []), run.output()


def test_verify_through_sudo_user(variants, verified):
    _, names, fleet = variants
    run, _, _ = verified
    name = names["sudo"]
    assert statuses(run, name, SIGNATURE) == expected(fleet.hosts[name].spec), run.output()
    # auditctl -l and the stat of root-only paths need root: no ERROR anywhere on this host
    errors = {cid: r.found for cid, r in run.results[name].items() if r.status == "ERROR"}
    assert not errors, errors


@pytest.mark.parametrize("variant", ["jump", "proxycommand"])
def test_verify_through_jump_host(variants, verified, variant):
    """ProxyJump bastion (paramiko hops in pyinfra) and ProxyCommand ssh -W (OpenSSH) in the
    ssh_config named by ssh_config_file; the host has no route from this machine."""
    _, names, fleet = variants
    run, _, _ = verified
    name = names[variant]
    assert statuses(run, name, SIGNATURE) == expected(spec_of(fleet, name)), _why(run, name)


def test_verify_through_ssh_config_alias(variants, verified):
    """The inventory names only the alias and ssh_config_file; HostName, Port (2222), User and
    IdentityFile come from the config."""
    _, names, fleet = variants
    run, _, _ = verified
    name = names["alias"]
    assert fleet.hosts[name].spec.port == 2222
    assert statuses(run, name, SIGNATURE) == expected(fleet.hosts[name].spec), _why(run, name)


@pytest.mark.parametrize("variant", ["unknown", "changed"])
def test_bad_host_key_is_error_never_accepted(variants, verified, variant):
    """Unknown key with strict checking, or a key that differs from known_hosts even under
    pyinfra's default accept-new: every automated control ERROR, no known_hosts file changed."""
    _, names, _ = variants
    run, before, after = verified
    got = run.results[names[variant]]
    assert {r.status for r in got.values()} <= {"ERROR", "MANUAL"}, {c: r.status for c, r in got.items()}
    assert all(got[cid].status == "ERROR" for cid in SIGNATURE)
    assert after == before, "a known_hosts file was modified: a host key was accepted"


def test_verify_exit_code_names_the_refused_hosts(variants, verified):
    _, names, _ = variants
    run, _, _ = verified
    assert run.returncode == 2, run.output()  # ERROR wins over FAIL
    for variant in ("unknown", "changed"):
        assert names[variant] in run.stdout


def _why(run, name: str) -> str:
    got = run.results.get(name, {})
    first = next((r.found for r in got.values() if r.status == "ERROR"), "")
    return f"{name}: {first}"
