"""Catalog consistency: the data that both deploys and benchmarks trust."""

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

from hardline.benchmarks.checks import CHECKS, INFO_KINDS
from hardline.catalog import ROLES, all_catalogs, find_control, load_catalog, tunables, var_refs

ROOT = Path(__file__).resolve().parent.parent
CATALOG = load_catalog("cis-docker")
# kinds with a verifier but deliberately no remediation: repartitioning is a provisioning
# decision, not something a deploy should do behind an operator's back (TLS is deployed only
# when the inventory names listeners and certificates: deploys/docker_runtime.py)
NOT_REMEDIATED = {"separate_mount"}
# CIS Kubernetes: encryption keys are a site secret (the item is manual), and RBAC, pod and
# namespace policies are the site's decisions: reported with the objects to change, never changed
NOT_REMEDIATED |= {"encryption_config", "rbac_role_binding", "rbac_access", "rbac_wildcard", "service_account_token",
                   "pod_token_automount", "pod_spec", "psp_restricts", "pod_security_admission", "network_policy",
                   "secret_env", "default_namespace"}
# kube-proxy's settings: kubeadm keeps them in the kube-system/kube-proxy ConfigMap (a cluster
# object), k3s/rke2 in their config.yaml, whose distro_config deploy is not written (no k3s or
# rke2 runs here to prove it): reported only
NOT_REMEDIATED |= {"proxy_setting"}
# CIS Kubernetes node kinds whose deploy is being written: empty since the deploys landed
# (hardline/deploys/kubernetes*.py); a new kind with a check but no deploy goes here first
DEPLOY_PENDING: set[str] = set()
# kinds about what runs on the host (containers, images, swarm membership): a deploy must not
# stop or recreate workloads, so their verdicts carry the `docker run` / compose fix instead
WORKLOAD_KINDS = {"container_setting", "container_rule", "container_info", "image_healthcheck", "sprawl",
                  "swarm_mode", "swarm"}


CATALOGS = all_catalogs()
PLATFORM = load_catalog("hardline-platform")


@pytest.fixture(params=CATALOGS, ids=lambda c: c.key)
def catalog(request):
    return request.param


def test_ids_and_slugs_unique(catalog):
    ids = Counter(c.id for c in catalog.controls)
    slugs = Counter(c.slug for c in catalog.controls)
    assert [i for i, n in ids.items() if n > 1] == []
    assert [s for s, n in slugs.items() if n > 1] == []


def test_keys_are_unique_across_catalogs_and_name_their_catalog():
    keys = Counter(c.key for cat in CATALOGS for c in cat.controls)
    assert [k for k, n in keys.items() if n > 1] == []
    for cat in CATALOGS:
        assert all(c.key == f"{cat.benchmark}:{cat.version}:{c.id}" for c in cat.controls)
        assert find_control(cat.controls[0].key) == cat.controls[0]


def test_every_cis_docker_item_of_v160_is_present():
    expected_counts = {"1": 20, "2": 18, "3": 24, "4": 12, "5": 32, "6": 2, "7": 9}
    assert dict(Counter(c.top_section for c in CATALOG.controls)) == expected_counts
    assert {c.roles for c in CATALOG.controls} == {("docker",)}
    assert len(PLATFORM.controls) == 15 and all(c.id.startswith("HL-") for c in PLATFORM.controls)


# Kinds whose checks are still being written: their controls report SKIP "no automated check in
# this hardline version". Every CIS Kubernetes kind has its check now; the set stays for the next.
PENDING_KINDS: set[str] = set()


def test_every_automated_item_has_a_check(catalog):
    missing = [c.id for c in catalog.controls if c.automated and c.kind not in CHECKS and c.kind not in PENDING_KINDS]
    assert missing == []
    assert not PENDING_KINDS & set(CHECKS), "a pending kind has its check now: remove it from PENDING_KINDS"


def test_every_docker_section_with_automated_items_has_checks():
    sections = {c.top_section for c in CATALOG.controls if c.automated}
    assert sections == {"1", "2", "3", "4", "5", "7"}  # section 6 has only manual items


def test_every_kind_named_has_a_check_and_manual_items_only_report(catalog):
    assert {c.kind for c in catalog.controls if c.kind} <= set(CHECKS) | PENDING_KINDS
    assert [c.id for c in catalog.controls if not c.automated and not c.guidance] == []


def test_manual_docker_items_name_only_reporting_kinds():
    # a manual item may name a kind that gathers what the auditor needs; it reports MANUAL
    reporting = [c for c in CATALOG.controls if not c.automated and c.kind]
    assert [c.id for c in reporting if c.kind not in INFO_KINDS and c.kind != "exec_audit"] == []


def test_ids_are_quoted_strings_and_sections_known(catalog):
    for c in catalog.controls:
        assert isinstance(c.id, str) and re.match(r"^(\d+(\.\d+)*|HL-\d+(\.\d+)*)$", c.id), c.id
        assert c.section in catalog.sections, c.id
        assert c.id.removeprefix("HL-").startswith(c.section), c.id


def test_roles_and_scopes(catalog):
    for c in catalog.controls:
        assert c.roles and set(c.roles) <= set(ROLES), c.key
        assert c.scope in ("node", "cluster"), c.key


def test_catalog_files_stay_short():
    for path in (ROOT / "hardline" / "catalogs").rglob("*.yml"):
        assert len(path.read_text().splitlines()) <= 500, path


def test_referenced_variables_exist_and_are_declared(catalog):
    known = tunables()
    for c in catalog.controls:
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
    for kind in ({c.kind for cat in CATALOGS for c in cat.controls if c.kind} - NOT_REMEDIATED - WORKLOAD_KINDS
                 - PENDING_KINDS - DEPLOY_PENDING):
        assert f'"{kind}"' in deploy_source, f"no deploy handles kind {kind}"
    assert not {k for k in DEPLOY_PENDING if f'"{k}"' in deploy_source}, "a pending deploy landed: empty DEPLOY_PENDING"


@pytest.mark.parametrize("template", ["etc/docker/daemon.json.j2", "etc/sysctl.d/hardline.conf.j2",
                                      "etc/audit/rules.d/hardline-docker.rules.j2",
                                      "etc/systemd/system/docker.service.d/hardline.conf.j2"])
def test_templates_exist(template):
    assert (ROOT / "templates" / template).is_file()


def _hardline_imports() -> dict[str, set[str]]:
    """Every hardline module and the hardline modules it imports (anywhere in the file)."""
    modules = {}
    for path in (ROOT / "hardline").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycles_in_the_product():
    graph = _hardline_imports()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for dep in graph[module]:
            if dep in path:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in done:
                visit(dep, path + [dep])
        done.add(module)

    done: set[str] = set()
    for module in graph:
        if module not in done:
            visit(module, [module])
    assert cycles == [], cycles[:5]
    assert not any(m.startswith(("lab", "tests")) for deps in graph.values() for m in deps)


def test_parsed_catalog_cache_follows_the_file(tmp_path, monkeypatch):
    """The parsed-document cache (start-up of every verify) is keyed by content: an edited file is
    parsed again, a damaged cache entry is parsed past and replaced, no cache dir means parsing."""
    from hardline import catalog

    monkeypatch.setenv("HARDLINE_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "c.yml"
    source.write_text("controls:\n  - id: '1.1'\n    level: 1\n")
    assert catalog._yaml(source) == {"controls": [{"id": "1.1", "level": 1}]}
    (entry,) = (tmp_path / "cache" / "catalogs").iterdir()
    assert catalog._yaml(source) == {"controls": [{"id": "1.1", "level": 1}]}  # from the cache
    source.write_text("controls:\n  - id: '1.2'\n    level: 2\n")
    assert catalog._yaml(source) == {"controls": [{"id": "1.2", "level": 2}]}
    assert len(list((tmp_path / "cache" / "catalogs").iterdir())) == 2
    newest = catalog._cache_file(source.read_bytes())
    assert newest is not None and newest.exists() and newest != entry
    newest.write_bytes(b"\x00garbage")
    assert catalog._yaml(source) == {"controls": [{"id": "1.2", "level": 2}]}
    assert catalog._yaml(source) == {"controls": [{"id": "1.2", "level": 2}]}
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory would be")  # unwritable, even for root
    monkeypatch.setenv("HARDLINE_CACHE_DIR", str(blocked))
    assert catalog._yaml(source) == {"controls": [{"id": "1.2", "level": 2}]}
