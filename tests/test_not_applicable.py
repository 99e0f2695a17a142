"""Nothing to judge is SKIP, never PASS: a real dockerd with no container, no image and no swarm,
and platform features the inventory did not ask for."""

from hardline.benchmarks.checks import KINDS
from hardline.catalog import all_catalogs
from tests.support.verify import daemon_data, docker_host, verify_config

# kinds that judge subjects (containers, images, overlay networks): with none, nothing to judge
SUBJECT_KINDS = {"container_setting", "container_rule", "image_healthcheck"}


def test_no_check_passes_on_an_empty_subject_list(session_daemon_factory):
    daemon = session_daemon_factory({})  # no container, no image, no swarm
    data = daemon_data(daemon, kernel_cgroup_v2=False, platform_packages_absent=[], selinux_booleans={},
                       sysctl_settings={})
    results = verify_config(docker_host(data))
    by_kind = {c.id: c.kind for cat in all_catalogs() for c in cat.controls}
    subject_controls = {cid: rs for cid, rs in results.items() if by_kind.get(cid) in SUBJECT_KINDS and rs[0].automated}
    assert len(subject_controls) >= 25  # sections 4.6 and 5: one verdict per container or image
    for cid, rs in subject_controls.items():
        assert [r.status for r in rs] == ["SKIP"], (cid, [r.message for r in rs])
        # 5.2/5.3 say first that the host has no AppArmor/SELinux at all; the rest: no subject
        assert "nothing to judge" in rs[0].found or cid in ("5.2", "5.3"), (cid, rs[0].found)
    not_asked = {cid: rs[0] for cid, rs in results.items() if cid in ("HL-1.1", "HL-3.3", "HL-4.1", "HL-5.1")}
    assert {cid: r.status for cid, r in not_asked.items()} == {"HL-1.1": "SKIP", "HL-3.3": "SKIP", "HL-4.1": "SKIP",
                                                              "HL-5.1": "SKIP"}
    # HL-3.3 (SELinux booleans) is SKIP before that on a host without SELinux
    assert all("not asked" in r.found for cid, r in not_asked.items() if cid != "HL-3.3"), not_asked
    # overlay encryption (7.x) on a host without swarm, TLS (2.7) without a TCP listener
    assert results["2.7"][0].status == "SKIP"
    # and across every result: nothing claims PASS about an empty list of subjects
    for cid, rs in results.items():
        for r in rs:
            if r.status == "PASS":
                assert not any(w in r.found for w in ("no running containers", "no images", "no overlay networks",
                                                      "is empty", "not asked")), (cid, r.found)


def test_an_empty_verdict_list_is_skip_not_pass(session_daemon_factory):
    # the engine's own guard: a per-subject check that returns no verdict at all has judged nothing
    from hardline.benchmarks.engine import evaluate
    from hardline.benchmarks.gather.core import HostFacts
    from hardline.catalog import load_catalog

    catalog = load_catalog("cis-docker")
    control = catalog.get("5.4")
    config = docker_host({})
    original = KINDS[control.kind]
    try:
        KINDS[control.kind] = type(original)(lambda params, facts, data: [], original.needs, original.paths)
        (result,) = evaluate(control, config, HostFacts(), catalog)
    finally:
        KINDS[control.kind] = original
    assert result.status == "SKIP" and result.found == "nothing to judge on this host"
