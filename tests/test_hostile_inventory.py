"""Inventory values never become shell code.

Hostile values (``x; touch CANARY``, ``$(touch CANARY)``, backticks, a newline, quote breaking,
``&&``, an option) go, for every string-typed inventory variable and in every place of its shape
(list item, mapping key, mapping value):

1. through validation: every variable whose value can reach a command, a unit file, an audit
   rule or the GRUB file refuses all of them; the few that accept free text are exactly the
   ones listed in ``FREE_TEXT`` (daemon.json data, files read on the deploying machine, waiver
   reasons), each with why that is harmless;
2. through the deploy, ``--dry`` and real, into a Debian container (pyinfra's @docker connector):
   refused values stop it before a single command reaches the host; accepted values end up as
   data (daemon.json, uploaded files), never run;
3. SIMULATED defence in depth: with validation switched off in the deploying process, every
   hostile value reaches the commands the deploy builds and runs (pyinfra told to ignore errors
   and go on), and the quoting alone keeps the shell from running any of it.

After each run the canary file exists neither in the container nor on this machine.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from hardline.catalog import tunables
from hardline.inventory import InventoryError, check_host
from tests.support.deploy_targets import whole_host
from tests.support.hostimage import HostContainer
from tests.support.pyinfra_run import deploy

CANARY = f"/tmp/hld-canary-{secrets.token_hex(4)}"
FORMS = [f"x; touch {CANARY}", f"$(touch {CANARY})", f"`touch {CANARY}`", f"x\ntouch {CANARY}",
         f"x' ; touch {CANARY} ; '", f'x" ; touch {CANARY} ; "', f"x && touch {CANARY} #", f"--help;touch {CANARY}"]
HARDEN = "from hardline.deploys.harden import harden\nharden()\n"
WAIVER = {"id": "2.12", "reason": "no plugin in tests", "approved_by": "tests", "expires": "2099-12-31"}

# (variable, place) that accept any one-line text, and why that is harmless
FREE_TEXT = {
    ("docker_log_opts", "value"): "a value of daemon.json's log-opts: JSON data dockerd reads, never a command",
    ("docker_daemon_extra", "key"): "a daemon.json key (JSON data)",
    ("docker_daemon_extra", "value"): "a daemon.json value (JSON data)",
    ("docker_tls_ca_file", "value"): "a file read on the deploying machine and uploaded; its name is in no command",
    ("docker_tls_cert_file", "value"): "same",
    ("docker_tls_key_file", "value"): "same",
    ("docker_seccomp_profile", "value"): "same",
    ("hardline_waivers", "reason"): "text of reports (HTML-escaped), never in a command",
}


def places(name: str, kind: str, form: str) -> list[tuple[str, Any]]:
    """Where a hostile string can sit in a value of this variable's type."""
    if kind in ("bool", "int"):
        return []
    if kind.startswith("list["):
        return [("item", [form])]
    if name == "apparmor_workload_profiles":
        return [("key", {form: ["deny /srv/** w,"]}), ("value", {"web": [form]})]
    if kind in ("dict", "dict[str,str]", "systemd_settings", "selinux_booleans"):
        key = {"docker_log_opts": "tag", "docker_systemd_dropin": "LimitNOFILE", "cgroup_engine_limits": "TasksMax",
               "selinux_booleans": "container_manage_cgroup"}.get(name, "hld-key")
        return [("key", {form: "x"}), ("value", {key: form})]
    if kind == "sysctls":
        return [("key", {form: 1}), ("value", {"net.ipv4.tcp_syncookies": form})]
    if kind == "ulimits":
        return [("key", {form: {"soft": 1, "hard": 1}})]
    if kind == "waivers":
        return [("reason", [{**WAIVER, "reason": form, "approved_by": form}])]
    return [("value", form)]


def accepted(name: str, value: Any) -> bool:
    try:
        check_host("h", ["docker_hosts"], [("inv.py", {name: value})], {name: value})
    except InventoryError as err:
        # the message names the variable (a workload's rules are checked with apparmor_profile_rules)
        named = {name, "apparmor_profile_rules"} if name == "apparmor_workload_profiles" else {name}
        assert {p.key.split("[")[0] for p in err.problems} <= named, err
        return False
    return True


def canary_absent(*containers: HostContainer) -> None:
    assert not Path(CANARY).exists(), f"{CANARY} was created on this machine"
    for container in containers:
        assert not container.exists(CANARY), f"{CANARY} was created in the target"


@pytest.fixture(autouse=True)
def no_canary_here():
    yield
    assert not Path(CANARY).exists()


def test_validation_refuses_every_hostile_value_but_free_text():
    seen_free = set()
    checked = 0
    for name, spec in tunables().items():
        for form in FORMS:
            for place, value in places(name, spec.type, form):
                checked += 1
                # a local path is one line; daemon.json data and report text may hold any text
                free = (name, place) in FREE_TEXT and not ("\n" in form and spec.type.startswith("local_path"))
                assert accepted(name, value) == free, f"{name} ({place}) {'refuses' if free else 'accepts'} {form!r}"
                if free:
                    seen_free.add((name, place))
    assert seen_free == set(FREE_TEXT), set(FREE_TEXT) - seen_free
    assert checked > 300


# ---- the deploy -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(session_daemon_factory):
    return session_daemon_factory({})


@pytest.fixture
def target(daemon, monkeypatch, tmp_path):
    """A container whose dockerd is the test daemon outside (SIMULATED systemctl, see
    tests/support/deploy_targets.py); with this machine's PID namespace for audit rules."""
    for name, value in daemon.env().items():
        monkeypatch.setenv(name, value)
    with whole_host(daemon, tmp_path, packages=()) as (container, data):
        yield container, data


def refused_inventory() -> dict[str, Any]:
    """One hostile value for every variable that refuses them (the forms taken in turn)."""
    data: dict[str, Any] = {}
    for i, (name, spec) in enumerate(sorted(tunables().items())):
        for place, value in places(name, spec.type, FORMS[i % len(FORMS)]):
            if (name, place) not in FREE_TEXT and name not in data:
                data[name] = value
    return data


@pytest.mark.parametrize("dry", [True, False], ids=["dry", "real"])
def test_refused_values_stop_the_deploy_before_any_command(target, tmp_path, dry):
    container, base = target
    data = {**base, **refused_inventory()}
    run = deploy(tmp_path, [(container.host, data)], HARDEN, dry=dry, expect_state=False)
    assert run.returncode != 0 and "Traceback" not in run.output
    with pytest.raises(InventoryError) as refused:
        check_host(container.host, ["docker_hosts"], [("inv", data)], data)
    assert len(refused.value.problems) >= 25
    for problem in refused.value.problems:  # the deploy names every one (file, host, key, why)
        assert f"host {container.host}: {problem.key}: {problem.message}" in run.output, run.tail()
    assert run.commands.get(container.host, 0) == 0 and not run.uploads  # nothing reached the host
    canary_absent(container)


@pytest.mark.parametrize("dry", [True, False], ids=["dry", "real"])
def test_accepted_free_text_is_written_as_data_never_run(target, tmp_path, dry):
    container, base = target
    local = tmp_path / "local"
    files = {}
    for var, form in zip(("docker_tls_ca_file", "docker_tls_cert_file", "docker_tls_key_file", "docker_seccomp_profile"),
                         [f for f in FORMS if "\n" not in f]):
        path = local / var / f"{form}.pem"  # a file whose path is the hostile text
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO"}) if var == "docker_seccomp_profile" else f"{var}\n")
        files[var] = str(path)
    opts = dict(zip(("tag", "labels", "env", "labels-regex", "env-regex", "mode", "max-buffer-size"), FORMS))
    data = {**base, **files, "docker_tls_hosts": ["tcp://127.0.0.1:2376"], "docker_log_opts": opts,
            "docker_daemon_extra": {f"hld-{i}": form for i, form in enumerate(FORMS)} | {FORMS[0]: FORMS[1]},
            "hardline_waivers": [{**WAIVER, "reason": FORMS[3], "approved_by": FORMS[4]}]}
    run = deploy(tmp_path / "run", [(container.host, data)], HARDEN, dry=dry)
    assert run.returncode == 0, run.tail()
    canary_absent(container)
    if not dry:
        written = json.loads(container.read("/etc/docker/daemon.json"))
        assert written["log-opts"] == opts and written[FORMS[0]] == FORMS[1] and written["hld-3"] == FORMS[3]
        assert container.read("/etc/docker/tls/ca.pem") == "docker_tls_ca_file\n"
        assert json.loads(container.read("/etc/docker/seccomp.json")) == {"defaultAction": "SCMP_ACT_ERRNO"}


# what validation switched off lets through to the commands, per variable (kept out: values whose
# Python use stops the deploy before any command, e.g. an unknown LSM or a missing local file)
BYPASS_KEEP = {"hardline_lsm", "docker_log_driver", "docker_tls_ca_file", "docker_tls_cert_file", "docker_tls_key_file",
               "docker_seccomp_profile", "docker_tls_hosts", "hardline_waivers", "docker_default_ulimits",
               "sysctl_settings", "hardline_roles", "hardline_benchmark_versions"}
BYPASS = """import hardline.inventory as inventory

# SIMULATED: validation switched off in this process, so every hostile value reaches the deploy
inventory._type_error = lambda kind, value: None
inventory._contradictions = lambda *args: None

from hardline.deploys.harden import harden
harden()
"""


def bypass_inventory() -> dict[str, Any]:
    data: dict[str, Any] = {}
    for i, (name, spec) in enumerate(sorted(tunables().items())):
        if name in BYPASS_KEEP:
            continue
        for place, value in places(name, spec.type, FORMS[i % len(FORMS)]):
            if place in ("item", "value", "key") and name not in data:
                data[name] = value
    # kernel keys must exist (an unknown one stops the deploy): the hostile text is the value
    data["sysctl_settings"] = {"net.ipv4.tcp_syncookies": FORMS[0], "net.ipv4.conf.all.log_martians": FORMS[1]}
    return data


@pytest.mark.parametrize("dry", [True, False], ids=["dry", "real"])
def test_with_validation_off_quoting_alone_keeps_every_value_out_of_the_shell(daemon, monkeypatch, tmp_path, dry):
    for name, value in daemon.env().items():
        monkeypatch.setenv(name, value)
    # no audit capability: auditctl fails (its commands still run through the shell), no kernel state
    with HostContainer(daemon, packages=("telnet",)) as container:
        # a group member whose name is hostile: values read from the host are quoted too
        container.sh(f"sed -i 's/^docker:x:999:$/docker:x:999:hld;touch {CANARY.replace('/', chr(92) + '/')}/' /etc/group")
        data = {**bypass_inventory(), "_ignore_errors": True, "_continue_on_error": True}
        run = deploy(tmp_path, [(container.host, data)], BYPASS, dry=dry, expect_state=False)
        canary_absent(container)
        sent = run.command_list.get(container.host, [])
        assert len(sent) >= (1 if dry else 20), run.tail()
        if not dry:  # the hostile values did reach the commands that ran
            reached = [c for c in sent if CANARY in c]
            assert len(reached) >= 8, sent
            assert any("gpasswd -d" in c and CANARY in c for c in sent), sent
