"""CIS Kubernetes catalogs: every item present, every automated item a valid kind and params, every
variable declared, every layout complete, and the kube-bench coverage difference explained.

The params schema is data (hardline/catalogs/kinds/kubernetes.yml) so that checks and deploys can
read the same contract this test enforces; docs/kinds-kubernetes.md explains it.
"""

import dataclasses
import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from hardline.catalog import CATALOG_DIR, VAR_REF, load_catalog, tunables, var_refs, version_key
from hardline.validate import base_type

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = yaml.safe_load((CATALOG_DIR / "kinds" / "kubernetes.yml").read_text())
LAYOUTS = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((CATALOG_DIR / "layouts").glob("*.yml"))}
VERSIONS = {"1.20": 123, "1.12": 131}  # items per benchmark version (kube-bench cfg/cis-<v> has the same ids)
_spec = importlib.util.spec_from_file_location("kube_bench_coverage", ROOT / "scripts" / "kube_bench_coverage.py")
coverage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(coverage)


def catalogs():
    return [load_catalog("cis-kubernetes", v) for v in VERSIONS]


@pytest.fixture(params=list(VERSIONS), ids=lambda v: f"cis-kubernetes-{v}")
def catalog(request):
    return load_catalog("cis-kubernetes", request.param)


def test_every_item_present_with_unique_ids_and_slugs(catalog):
    assert len(catalog.controls) == VERSIONS[catalog.version]
    for counter in (Counter(c.id for c in catalog.controls), Counter(c.slug for c in catalog.controls)):
        assert [k for k, n in counter.items() if n > 1] == []
    for c in catalog.controls:
        assert re.fullmatch(r"\d+(\.\d+)+", c.id), c.id
        assert c.section in catalog.sections and (c.id + ".").startswith(c.section + "."), (c.id, c.section)
        assert c.level in (1, 2), c.id
        assert re.fullmatch(r"[a-z][a-z0-9_]*", c.slug), c.slug


def test_benchmark_version_selection_data():
    assert load_catalog("cis-kubernetes", "1.20").component_versions == ("1.19", "1.20", "1.21")
    assert load_catalog("cis-kubernetes", "1.12").component_versions == ("1.32", "1.33", "1.34")
    assert {c.component for c in catalogs()} == {"kubernetes"}


def test_roles_and_scope_follow_the_node_role_of_each_section(catalog):
    for c in catalog.controls:
        assert len(c.roles) == 1, c.id
        top = c.top_section
        if top == "5":
            assert (c.scope, c.roles) == ("cluster", ("k8s_control_plane",)), c.id
        else:
            assert c.scope == "node", c.id
            expected = {"1": {"k8s_control_plane", "k8s_etcd"}, "2": {"k8s_etcd"}, "3": {"k8s_control_plane"},
                        "4": {"k8s_worker"}}[top]
            assert set(c.roles) <= expected, c.id
        if c.kind:
            assert SCHEMA["kinds"][c.kind]["scope"] == c.scope, (c.id, c.kind)


def test_every_automated_item_has_a_kind_and_manual_items_have_guidance(catalog):
    assert [c.id for c in catalog.controls if c.automated and not c.kind] == []
    assert [c.id for c in catalog.controls if not c.automated and not c.guidance] == []
    assert [c.id for c in catalog.controls if not c.remediation] == []
    assert [c.id for c in catalog.controls if c.kind and c.kind not in SCHEMA["kinds"]] == []


# ---------------------------------------------------------------------------------- params schema

def _type_ok(kind: str, value) -> bool:
    if isinstance(value, str) and VAR_REF.match(value):
        return True  # checked against defaults.yml below
    return {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "str|list[str]": lambda v: isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v)),
        "map": lambda v: isinstance(v, dict),
        "any": lambda v: True,
        "target": _target_ok,
        "rules": _rules_ok,
    }[kind](value)


def _target_ok(target) -> bool:
    if not isinstance(target, dict) or len(target) != 1:
        return False
    (form, keys), = target.items()
    allowed = SCHEMA["targets"].get(form)
    keys = keys if isinstance(keys, list) else [keys]
    return allowed is not None and all(k in allowed for k in keys)


def _rules_ok(rules) -> bool:
    return isinstance(rules, list) and bool(rules) and all(
        isinstance(r, dict) and set(r) == {"api_groups", "resources", "verbs"}
        and all(isinstance(r[k], list) and r[k] and all(isinstance(x, str) for x in r[k]) for k in r)
        for r in rules)


def _schema_errors(c) -> list[str]:
    spec = SCHEMA["kinds"][c.kind]["params"]
    errors = [f"unknown param {k}" for k in c.params if k not in spec]
    for name, p in spec.items():
        if name not in c.params or c.params[name] is None:
            if p.get("required"):
                errors.append(f"missing {name}")
            continue
        value = c.params[name]
        if not _type_ok(p["type"], value):
            errors.append(f"{name}={value!r} is not {p['type']}")
        if "values_from" in p and not (isinstance(value, str) and value in SCHEMA[p["values_from"]]):
            errors.append(f"{name}={value!r} not in {p['values_from']}")
        if "pattern" in p:
            for v in value if isinstance(value, list) else [value]:
                if not re.fullmatch(p["pattern"], str(v)):
                    errors.append(f"{name}={v!r} does not match {p['pattern']}")
    op = c.params.get("op")
    if op in SCHEMA["ops"]:
        needs = SCHEMA["ops"][op]["value"]
        has_value = "value" in c.params
        if (needs == "required") != has_value:
            errors.append(f"op {op} {'needs' if needs == 'required' else 'takes no'} value")
    if c.kind in ("kubelet_setting", "proxy_setting"):
        flag, config = c.params.get("flag"), c.params.get("config")
        if not flag and not config:
            errors.append("needs flag or config")
        if isinstance(flag, list) or isinstance(config, list):
            if not (isinstance(flag, list) and isinstance(config, list) and len(flag) == len(config)):
                errors.append("flag and config lists must pair up")
        if "defaults" in c.params and set(c.params["defaults"]) != {"config_file", "flags_only"}:
            errors.append("defaults needs exactly config_file and flags_only")
    if isinstance(c.params.get("write"), dict):
        names = c.params.get("config") if c.kind == "kubelet_setting" else c.params.get("flag")
        if set(c.params["write"]) != set(names if isinstance(names, list) else [names]):
            errors.append(f"write keys {sorted(c.params['write'])} do not match {names}")
    return errors


def test_params_of_every_item_match_the_kind_schema(catalog):
    bad = {c.id: e for c in catalog.controls if c.kind for e in [_schema_errors(c)] if e}
    assert bad == {}


def test_the_schema_check_rejects_broken_params():
    """The schema test above can fail: mistakes a catalog edit could make are each caught."""
    good = load_catalog("cis-kubernetes", "1.20").get("apiserver_profiling_disabled")
    broken = [{**good.params, "op": "equals"}, {**good.params, "flag": "--profiling"},
              {k: v for k, v in good.params.items() if k != "value"}, {**good.params, "colour": "red"},
              {k: v for k, v in good.params.items() if k != "component"}]
    for params in broken:
        assert _schema_errors(dataclasses.replace(good, params=params)), params
    target = load_catalog("cis-kubernetes", "1.20").get("pki_owner")
    assert _schema_errors(dataclasses.replace(target, params={**target.params, "target": {"k8s_glob": "pki"}}))


def test_variables_are_declared_listed_and_of_a_fitting_type(catalog):
    known = tunables()
    for c in catalog.controls:
        refs = var_refs(c.params)
        assert refs == set(c.vars), (c.id, refs ^ set(c.vars))
        assert refs <= set(known), (c.id, refs - set(known))
        spec = SCHEMA["kinds"].get(c.kind, {}).get("params", {})
        for name, value in c.params.items():
            whole = VAR_REF.match(value) if isinstance(value, str) else None
            if not whole:
                continue
            declared = base_type(known[whole.group(1)].type)  # path, user, list[name]...: str or list[str]
            wanted = spec[name]["type"]
            if name in ("value",) and c.params.get("op") in ("gte", "lte"):
                wanted = "int"
            if name == "value" and c.params.get("type") == "int":
                wanted = "int"
            fits = {"any": True, "str|list[str]": declared in ("str", "list[str]")}.get(wanted, declared == wanted)
            if name == "write":
                fits = declared in ("str", "int", "list[str]")
            assert fits, (c.id, name, whole.group(1), declared, wanted)


def test_deployed_cipher_suites_are_within_what_the_check_accepts(catalog):
    """The deploy writes the variable, the check accepts the benchmark's list: defaults must agree."""
    for c in catalog.controls:
        if c.params.get("op") == "valid_elements" and isinstance(c.params.get("write"), str):
            resolved = c.resolve({k: t.default for k, t in tunables().items()})
            assert set(resolved["write"]) <= set(c.params["value"]), c.id


def test_min_version_only_where_documented(catalog):
    doc = (ROOT / "docs" / "kinds-kubernetes.md").read_text()
    for c in catalog.controls:
        if c.min_version:
            assert re.fullmatch(r"1\.\d+", c.min_version), c.id
            assert version_key(c.min_version) > version_key("1.20"), c.id  # expressible on the lab's 1.20 otherwise
            assert f"{c.key} " in doc, f"{c.key} has min_version {c.min_version} but docs/kinds-kubernetes.md does not explain it"


# ----------------------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_names_every_component_and_target_key(name):
    layout = LAYOUTS[name]
    assert layout["layout"] == name and layout["detect"]
    assert set(layout["components"]) == set(SCHEMA["components"])
    for comp, spec in layout["components"].items():
        assert spec["processes"], (name, comp)
        assert spec["deploy"]["method"] in ("static_pod", "distro_config", "kubelet_config", "none"), (name, comp)
    for section, form in (("files", "k8s_file"), ("dirs", "k8s_dir"), ("globs", "k8s_glob")):
        assert set(layout[section]) == set(SCHEMA["targets"][form]), (name, section)
    for section in ("files", "dirs"):
        for key, entry in layout[section].items():
            path = entry["path"]
            paths = path if isinstance(path, list) else [path]
            assert all(p is None or p.startswith("/") for p in paths), (name, key)
            if "from" in entry:
                assert entry["from"]["component"] in SCHEMA["components"], (name, key)


# ------------------------------------------------------------------------------- kube-bench coverage

@pytest.mark.parametrize("kb_version", sorted(coverage.VERSIONS))
def test_kube_bench_coverage_difference_is_empty_or_explained(kb_version):
    diff = coverage.compare(kb_version)
    assert diff["only_kube_bench"] == [] and diff["only_hardline"] == [], diff
    assert coverage.undocumented(kb_version) == []


@pytest.mark.parametrize("kb_version", sorted(coverage.VERSIONS))
def test_kube_bench_reference_holds_ids_and_names_only(kb_version):
    checks = coverage.reference(kb_version)
    assert len(checks) == VERSIONS[coverage.VERSIONS[kb_version]]
    for check in checks:
        assert set(check) == {"id", "group", "file", "scored", "type", "tests"}, check
        assert all(len(t) < 80 for t in check["tests"]), check  # setting names, never prose
