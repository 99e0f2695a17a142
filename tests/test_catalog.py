"""Catalog consistency: the data that both deploys and benchmarks trust."""

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

from hardline.benchmarks.checks import CHECKS, INFO_KINDS
from hardline.catalog import load_catalog, tunables, var_refs

ROOT = Path(__file__).resolve().parent.parent
CATALOG = load_catalog("cis-docker")
# kinds with a verifier but deliberately no remediation: repartitioning is a provisioning
# decision, not something a deploy should do behind an operator's back (TLS is deployed only
# when the inventory names listeners and certificates: deploys/docker_runtime.py)
NOT_REMEDIATED = {"separate_mount"}
# kinds about what runs on the host (containers, images, swarm membership): a deploy must not
# stop or recreate workloads, so their verdicts carry the `docker run` / compose fix instead
WORKLOAD_KINDS = {"container_setting", "container_rule", "container_info", "image_healthcheck", "sprawl",
                  "swarm_mode", "swarm"}


def test_ids_and_slugs_unique():
    ids = Counter(c.id for c in CATALOG.controls)
    slugs = Counter(c.slug for c in CATALOG.controls)
    assert [i for i, n in ids.items() if n > 1] == []
    assert [s for s, n in slugs.items() if n > 1] == []


def test_every_cis_docker_item_of_v160_is_present():
    expected_counts = {"1": 20, "2": 18, "3": 24, "4": 12, "5": 32, "6": 2, "7": 9}
    found = Counter(c.top_section for c in CATALOG.controls if not c.id.startswith("HL-"))
    assert dict(found) == expected_counts


def test_every_automated_item_of_every_section_has_a_check():
    missing = [c.id for c in CATALOG.controls if c.automated and c.kind not in CHECKS]
    assert missing == []
    sections = {c.top_section for c in CATALOG.controls if c.automated}
    assert sections == {"1", "2", "3", "4", "5", "7", "HL"}  # section 6 has only manual items


def test_every_kind_named_has_a_check_and_manual_items_only_report():
    assert {c.kind for c in CATALOG.controls if c.kind} <= set(CHECKS)
    # a manual item may name a kind that gathers what the auditor needs; it reports MANUAL
    reporting = [c for c in CATALOG.controls if not c.automated and c.kind]
    assert [c.id for c in reporting if c.kind not in INFO_KINDS and c.kind != "exec_audit"] == []
    assert [c.id for c in CATALOG.controls if not c.automated and not c.guidance] == []


def test_ids_are_quoted_strings_and_sections_known():
    for c in CATALOG.controls:
        assert isinstance(c.id, str) and re.match(r"^(\d+(\.\d+)*|HL-\d+(\.\d+)*)$", c.id), c.id
        assert c.section in CATALOG.sections, c.id
        assert c.id.startswith(c.section.replace("HL", "HL-")) or c.id.startswith(c.section), c.id


def test_referenced_variables_exist_and_are_declared():
    known = tunables()
    for c in CATALOG.controls:
        refs = var_refs(c.params)
        assert refs <= set(known), (c.id, refs - set(known))
        assert refs <= set(c.vars), (c.id, "params reference vars not listed in vars:", refs - set(c.vars))
        assert set(c.vars) <= set(known), (c.id, set(c.vars) - set(known))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _top(module: str) -> str:
    """hardline.benchmarks.x -> benchmarks, hardline.deploys.y -> deploys."""
    parts = module.split(".")
    return parts[1] if parts[0] == "hardline" and len(parts) > 1 else parts[0]


def test_benchmarks_never_import_deploys_and_vice_versa():
    for path in [*(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "hardline/benchmarks").rglob("*.py")]:
        assert not any(_top(n) == "deploys" for n in _imports(path)), path
    for path in [*(ROOT / "deploys").rglob("*.py"), *(ROOT / "hardline/deploys").rglob("*.py")]:
        assert not any(_top(n) == "benchmarks" for n in _imports(path)), path


def test_every_remediable_kind_is_deployed():
    deploy_source = "\n".join(p.read_text() for p in (ROOT / "hardline/deploys").rglob("*.py"))
    for kind in set(CHECKS) - NOT_REMEDIATED - WORKLOAD_KINDS:
        assert f'"{kind}"' in deploy_source, f"no deploy handles kind {kind}"


@pytest.mark.parametrize("template", ["etc/docker/daemon.json.j2", "etc/sysctl.d/hardline.conf.j2",
                                      "etc/audit/rules.d/hardline-docker.rules.j2",
                                      "etc/systemd/system/docker.service.d/hardline.conf.j2"])
def test_templates_exist(template):
    assert (ROOT / "templates" / template).is_file()
