"""deploys/docker_daemon.py on a real dockerd without a VM: pyinfra @local writes the throw-away
daemon's daemon.json, restarts it for real (systemd is the simulated part, see
tests/support/deploy_targets.py), the verifier then reads the running daemon, a second deploy
changes nothing with one command, and a daemon.json dockerd refuses is rolled back with the
daemon left running on the previous file."""

from __future__ import annotations

import json

import pytest

from tests.support.deploy_targets import config_of, daemon_pid, local_service, stop_restarted
from tests.support.pyinfra_run import deploy
from tests.support.verify import daemon_data, statuses, verify

DEPLOY = "from hardline.deploys.docker_daemon import docker_daemon\ndocker_daemon()\n"
SECTION_2 = ["2.2", "2.3", "2.4", "2.5", "2.9", "2.13", "2.14", "2.15", "2.16", "2.18"]
WAIVE_PLUGINS = [{"id": "2.12", "reason": "no authorization plugin on the test machine", "approved_by": "tests",
                  "expires": "2099-12-31"}]


@pytest.fixture
def target(daemon_factory, tmp_path):
    daemon = daemon_factory({"icc": True, "debug": True, "storage-driver": "vfs"})
    env, prefix = local_service(daemon, tmp_path)
    data = daemon_data(daemon, docker_daemon_json_path=str(daemon.config_path), hardline_waivers=WAIVE_PLUGINS,
                       docker_restart_timeout=30)
    yield daemon, data, env, prefix
    stop_restarted(daemon)


def test_daemon_json_deployed_restarted_verified_and_idempotent(target, tmp_path):
    daemon, data, env, prefix = target
    before = statuses(verify(data, SECTION_2))
    assert before["2.2"] == "FAIL" and before["2.15"] == "FAIL"
    pid = daemon_pid(daemon)

    first = deploy(tmp_path / "first", [("@local", data)], DEPLOY, env=env, prefix=prefix)
    assert first.returncode == 0, first.tail()
    assert any("daemon.json" in op for op in first.changed["@local"]), first.changed
    assert daemon_pid(daemon) not in (None, pid), "dockerd was not restarted"
    written = config_of(daemon)
    assert written["icc"] is False and written["live-restore"] is True and written["userns-remap"] == "dockremap"
    assert written["debug"] is True and written["storage-driver"] == "vfs"  # keys hardline does not manage are kept
    assert list(daemon.dir.glob("daemon.json.hardline-bak.*")), "no backup of the previous daemon.json"
    assert "-  \"icc\": true" in first.output and "+  \"icc\": false" in first.output  # the diff is shown

    after = verify(data, SECTION_2)
    assert statuses(after) == {cid: "PASS" for cid in SECTION_2}, {c: r.found for c, r in after.items()}

    second = deploy(tmp_path / "second", [("@local", data)], DEPLOY, env=env, prefix=prefix)
    assert second.returncode == 0 and second.changed["@local"] == [], second.changed
    assert second.commands["@local"] == 1, second.command_list  # the batched facts, nothing else
    dry = deploy(tmp_path / "dry", [("@local", data)], DEPLOY, env=env, prefix=prefix, dry=True)
    assert dry.changed["@local"] == [] and dry.commands["@local"] == 1


def test_a_daemon_json_dockerd_refuses_is_rolled_back(target, tmp_path):
    daemon, data, env, prefix = target
    previous = daemon.config_path.read_text()
    # a key dockerd 20.10+ refuses at start-up: the daemon does not come back with it
    bad = {**data, "docker_daemon_extra": {"hld-no-such-option": True}}
    run = deploy(tmp_path / "bad", [("@local", bad)], DEPLOY, env=env, prefix=prefix, expect_state=False)
    assert run.returncode != 0
    assert "rolled back" in run.output and "running with the previous configuration" in run.output, run.tail()
    assert daemon.config_path.read_text() == previous
    assert daemon.docker("info", "--format", "{{.ID}}").returncode == 0  # dockerd answers
    assert json.loads(previous).get("icc") is True
