"""The two ways a verify asks the Docker daemon give the same facts and the same verdicts: the
Engine API client (one python3 process on the host, hardline/benchmarks/gather/dockerapi.py)
and the docker CLI (one process per listing and inspection), on a real dockerd with running and
stopped containers, several images and encrypted and plain overlay networks; a daemon that
accepts connections and never answers costs one hardline_command_timeout and makes only the
controls that needed it ERROR; the gather's sections and their cost in processes."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hardline.benchmarks.engine import evaluate, plan
from hardline.benchmarks.gather import closure, script_for
from hardline.benchmarks.gather.core import INCOMPLETE, HostFacts, parse_sections, parse_stats, stat_line
from hardline.benchmarks.select import Selection, node_controls
from tests.support.fixtures import _unavailable
from tests.support.verify import daemon_data, docker_host, full_facts

DAEMON_FACTS = ("info", "bridge", "containers", "container_procs", "images", "overlay_networks")
# what one answer of the daemon says and the next may not (clocks, counters of its goroutines)
VOLATILE = {"SystemTime", "NGoroutines", "NFd", "NEventsListener"}
# fields only one side has with the versions installed here (docker CLI 28, dockerd 20.10): the
# CLI's own client section, daemon fields the newer CLI no longer decodes, and the container
# settings a committed image's Config carries, which the CLI's OCI image type has no field for
ONE_SIDED = {"ClientInfo", "BridgeNfIptables", "BridgeNfIp6tables", "Hostname", "AttachStdout", "AttachStderr",
             "Image"}


def differences(api, cli, path="") -> list[str]:
    """Where two parsed documents differ, ignoring the volatile fields, the one-sided ones and a
    field one side omits where the other has its empty value (the CLI re-encodes the daemon's
    answer through its own Go types: a field its types lack is dropped, one the daemon does not
    send is printed as null, "", 0 or false)."""
    if isinstance(api, dict) and isinstance(cli, dict):
        found = []
        for key in sorted(set(api) | set(cli)):
            if key in VOLATILE:
                continue
            if key not in api or key not in cli:
                if key in ONE_SIDED:
                    continue
                value = cli.get(key) if key not in api else api.get(key)
                if value not in (None, "", 0, False, [], {}):
                    found.append(f"{path}/{key} only from the {'CLI' if key not in api else 'API'}: {value!r}")
                continue
            found += differences(api[key], cli[key], f"{path}/{key}")
        return found
    if isinstance(api, list) and isinstance(cli, list) and len(api) == len(cli):
        return [d for i, (a, c) in enumerate(zip(api, cli)) for d in differences(a, c, f"{path}[{i}]")]
    return [] if api == cli else [f"{path}: API {api!r} CLI {cli!r}"[:300]]


@pytest.fixture(scope="module")
def busy_daemon(session_daemon_factory, busybox_image):
    """A swarm manager with running, stopped and restarting-policy containers, two image names
    for one image and one more image, and an encrypted and a plain overlay network."""
    daemon = session_daemon_factory({"icc": False})
    image = busybox_image(daemon)
    daemon.docker("tag", image, "hl/second:2", check=True)
    daemon.docker("swarm", "init", "--advertise-addr", "127.0.0.1", check=True)
    daemon.docker("network", "create", "-d", "overlay", "--opt", "encrypted", "hl-net10", check=True)
    daemon.docker("network", "create", "-d", "overlay", "hl-net9", check=True)
    for n in range(3):
        daemon.docker("run", "-d", "--name", f"up{n}", "--cap-add", "NET_ADMIN", image, "sleep", "3600", check=True)
    daemon.docker("run", "-d", "--name", "root-user", "--user", "0:0", "--read-only", image, "sleep", "3600", check=True)
    daemon.docker("create", "--name", "stopped", image, "true", check=True)
    daemon.docker("commit", "stopped", "hl/committed:1", check=True)
    return daemon


def _both(data: dict) -> tuple[HostFacts, HostFacts]:
    api = full_facts(docker_host({**data, "hardline_docker_client": "api"}))
    cli = full_facts(docker_host({**data, "hardline_docker_client": "cli"}))
    assert not isinstance(api, Exception) and not isinstance(cli, Exception), (api, cli)
    return api, cli


def test_api_client_and_cli_give_the_same_facts(busy_daemon):
    api, cli = _both(daemon_data(busy_daemon))
    assert "daemon_api" in api.sections and "daemon_api" not in cli.sections
    assert api.sections["daemon_api"][0] == 0, api.sections["daemon_api"]
    for name in DAEMON_FACTS:
        assert name not in api.errors and name not in cli.errors, (name, api.errors.get(name), cli.errors.get(name))
    assert len(api.values["containers"]) == 5 and len(api.values["images"]) == 2
    assert [n["Name"] for n in api.values["overlay_networks"]] == ["hl-net9", "hl-net10", "ingress"]  # network ls order
    assert [c["Name"] for c in api.values["containers"]] == [c["Name"] for c in cli.values["containers"]]
    for name in ("info", "bridge", "containers", "images", "overlay_networks"):
        assert differences(api.values[name], cli.values[name], name) == []
    # the processes of this daemon's containers (other sessions' containers come and go meanwhile)
    ours = {c["Id"] for c in api.values["containers"]}
    procs = [{"init": f.values["container_procs"]["init"],
              "processes": {k: v for k, v in f.values["container_procs"]["processes"].items() if k in ours}}
             for f in (api, cli)]
    assert procs[0] == procs[1] and len(procs[0]["processes"]) == 4
    # everything else the host said is the same too
    for name in set(api.values) - set(DAEMON_FACTS) - {"mounts"}:
        assert api.values[name] == cli.values[name], name


def test_api_client_and_cli_give_the_same_verdicts(busy_daemon):
    data = daemon_data(busy_daemon)
    verdicts = []
    for how in ("api", "cli"):
        config = docker_host({**data, "hardline_docker_client": how})
        hp = plan(config, Selection())
        facts = full_facts(config)
        verdicts.append({(c.key, r.subject): (r.status, r.found) for cat in hp.catalogs
                         for c in node_controls(cat, config, Selection()) for r in evaluate(c, config, facts, cat)})
    assert verdicts[0] == verdicts[1]
    assert {s for s, _ in verdicts[0].values()} >= {"PASS", "FAIL"}


class SilentDaemon:
    """A unix socket that accepts every connection and never answers: a hung dockerd."""

    def __init__(self, path: Path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("how", ["api", "cli"])
def test_a_hung_daemon_makes_only_its_controls_error(tmp_path, how):
    silent = SilentDaemon(tmp_path / "docker.sock")
    try:
        data = {"docker_socket_path": str(silent.path), "docker_pidfile": str(tmp_path / "none.pid"),
                "hardline_command_timeout": 2, "hardline_docker_client": how}
        config = docker_host(data)
        started = time.monotonic()
        facts = full_facts(config)
        took = time.monotonic() - started
    finally:
        silent.close()
    assert not isinstance(facts, Exception), facts
    for name in ("info", "containers", "images"):
        assert "timed out" in facts.errors.get(name, ""), (name, facts.errors.get(name))
    assert {"docker_group", "sysctl_runtime", "passwd", "mounts"} <= set(facts.values), facts.errors
    # the client gives up after one timeout for all its requests; the CLI pays one per command
    assert took < (15 if how == "api" else 40), took
    hp = plan(config, Selection())
    results = {c.id: evaluate(c, config, facts, cat)[0] for cat in hp.catalogs
               for c in node_controls(cat, config, Selection()) if cat.benchmark == "cis-docker"}
    assert results["4.6"].status == "ERROR" and "timed out" in results["4.6"].found, results["4.6"]  # images
    assert results["1.1.2"].status != "ERROR", results["1.1.2"]  # the docker group needs no daemon


def test_auto_uses_the_api_client_where_python3_exists(session_daemon_factory):
    facts = full_facts(docker_host(daemon_data(session_daemon_factory({}))))
    assert facts.sections["daemon_api"][0] == 0 and facts.values["containers"] == []


def test_without_python3_auto_asks_the_cli(session_daemon_factory, tmp_path):
    """The round-1 script on a PATH without python3 (only the tools it runs, linked one by one)."""
    daemon = session_daemon_factory({})
    config = docker_host(daemon_data(daemon))
    facts = HostFacts()
    wanted = closure(["info", "containers"])
    script = script_for(1, wanted, config.data, facts)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "timeout", "mktemp", "rm", "docker", "cut", "grep", "sed", "cat"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        (bin_dir / tool).symlink_to(found)
    out = subprocess.run([str(bin_dir / "sh"), "-c", script], capture_output=True, text=True,
                         env={"PATH": str(bin_dir)}, timeout=120).stdout
    sections = parse_sections(out)
    assert "daemon_api" not in sections and sections["info"][0] == 0 and sections["containers"][0] == 0


def test_a_section_cut_short_is_incomplete():
    out = "@@HL a\nfine\n@@HL-RC 0\n\n@@HL b\n{\"partial\": \n@@HL c\n\n@@HL-RC 3\nbad\n"
    sections = parse_sections(out)
    assert sections["a"] == (0, "fine", "") and sections["c"] == (3, "", "bad")
    assert sections["b"][0] == INCOMPLETE


def test_stat_section_tells_missing_from_unreadable(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "it's a file").write_text("x")
    paths = [str(tmp_path / "dangling"), str(tmp_path / "absent"), str(tmp_path / "it's a file"), "/etc"]
    script = "\n".join(["HLE=$(mktemp)", "run() { n=$1; shift; echo \"@@HL $n\"; \"$@\" 2>\"$HLE\"; rc=$?; echo; "
                        "echo \"@@HL-RC $rc\"; cat \"$HLE\"; }", stat_line("st", paths)])
    facts = HostFacts()
    facts.sections.update(parse_sections(subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout))
    parse_stats(facts, "st", paths)
    assert facts.stats[paths[1]] is None
    assert facts.stat(paths[2]).mode == 0o644 and facts.stat("/etc").kind == "directory"
    assert isinstance(facts.stats[paths[0]], str) and "No such file" in facts.stats[paths[0]]


def test_a_full_verify_of_a_docker_host_starts_few_processes(session_daemon_factory, busybox_image):
    """Processes the two rounds start on the host (counted with strace -f): without the per
    section mktemp/cat/rm and with one API client for the daemon, a full verify of a host with
    three containers stays under 80 (it was ~190)."""
    strace = subprocess.run(["sh", "-c", "command -v strace"], capture_output=True, text=True).stdout.strip()
    if not strace:
        _unavailable("strace is not installed (scripts/setup.sh installs it)")
    daemon = session_daemon_factory({})
    image = busybox_image(daemon)
    for n in range(3):
        daemon.docker("run", "-d", image, "sleep", "3600", check=True)
    config = docker_host(daemon_data(daemon))
    hp = plan(config, Selection())
    facts = HostFacts(wanted_paths=sorted(hp.paths))
    wanted = closure(hp.needs)
    facts.gathered = wanted
    execs = 0
    from hardline.benchmarks.gather import FACTS

    for round_no in (1, 2):
        script = script_for(round_no, wanted, config.data, facts)
        run = subprocess.run([strace, "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "sh", "-c", script],
                             capture_output=True, text=True, timeout=120)
        execs += sum(1 for line in run.stderr.splitlines() if "execve(" in line and "= 0" in line)
        facts.sections.update(parse_sections(run.stdout))
        for name, fact in FACTS.items():
            if name in wanted and fact.round == round_no:
                fact.parse(facts, config.data)
    assert not facts.errors.keys() & {"info", "containers", "container_procs", "images", "uid", "sysctl_runtime"}
    assert execs < 80, execs
