"""The control catalogs: benchmarks as data, one directory per benchmark and version, and the tunables.

Both sides read this module: hardline.deploys to know what to remediate, hardline.benchmarks to
know what to verify. Neither side's logic lives here, only the shared description of desired
state. The format is described in hardline/catalogs/README.md.

A control is identified by its key ``benchmark:version:id`` (``cis-docker:1.6.0:5.4``): CIS
numbers repeat across benchmarks (CIS Kubernetes has a 1.1.1 too) and are renumbered between
versions, so a bare id means something only within one catalog.

Example::

    from hardline.catalog import load_catalog, find_control
    cat = load_catalog("cis-docker")
    cat.get("2.2").key                       # 'cis-docker:1.6.0:2.2'
    find_control("hardline-platform:1:HL-1.1").slug
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import marshal
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).parent
CATALOG_DIR = PACKAGE_DIR / "catalogs"
DEFAULTS_FILE = PACKAGE_DIR / "defaults.yml"
# libyaml's parser when PyYAML has it (the same documents, ~7x less CPU for the 240 KB of
# catalogs every verify reads), else PyYAML's own
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml(path: Path) -> Any:
    """One catalog file's document. Parsing the ~240 KB of catalogs cost ~0.14 s of every verify's
    start-up even with libyaml, so the parsed document is kept in a marshal file under
    ``$HARDLINE_CACHE_DIR`` (default ``~/.cache/hardline``)/catalogs, named after the file's
    content hash and this Python's version (like __pycache__: an edited catalog is parsed again).
    The cache is only ever an optimisation: unreadable, unwritable or undecodable means parse."""
    raw = path.read_bytes()
    cached = _cache_file(raw)
    if cached is not None:
        try:
            return marshal.loads(cached.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            pass
    document = yaml.load(raw.decode(), Loader=_YAML_LOADER)  # noqa: S506 (a safe loader)
    if cached is not None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: a type marshal cannot hold
            data = marshal.dumps(document)
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
            partial.write_bytes(data)
            os.replace(partial, cached)  # whole or absent, for concurrent hardline processes
    return document


def _cache_file(raw: bytes) -> Path | None:
    root = os.environ.get("HARDLINE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hardline")
    if root.startswith("~"):  # no home directory to expand: no cache
        return None
    tag = f"{sys.implementation.cache_tag}-{yaml.__version__}-{_YAML_LOADER.__name__}"
    return Path(root) / "catalogs" / f"{hashlib.sha256(raw).hexdigest()[:32]}-{tag}.marshal"

ASSESSMENTS = ("automated", "manual")
# Node roles a control applies to; inventory groups (or hostdata hardline_roles) give hosts theirs.
ROLES = ("docker", "k8s_control_plane", "k8s_etcd", "k8s_worker")
SCOPES = ("node", "cluster")  # cluster: evaluated once per cluster, not on every node
VAR_REF = re.compile(r"^\{([a-z][a-z0-9_]*)\}$")


class CatalogError(Exception):
    """The catalog or the defaults file is malformed (a bug in hardline's data, not user input)."""


@dataclass(frozen=True)
class Control:
    id: str
    slug: str
    title: str
    section: str
    level: int
    assessment: str
    kind: str | None
    params: dict[str, Any] = field(default_factory=dict)
    vars: tuple[str, ...] = ()
    remediation: str = ""
    guidance: str = ""
    references: tuple[str, ...] = ()  # e.g. the CIS distribution benchmark items an HL- control covers
    roles: tuple[str, ...] = ()
    scope: str = "node"
    min_version: str = ""  # oldest component version (e.g. Kubernetes) that can express the item
    max_version: str = ""  # newest component version that still has it (a flag removed later)
    benchmark: str = ""
    version: str = ""

    @property
    def key(self) -> str:
        """``benchmark:version:id``: unique across every catalog."""
        return f"{self.benchmark}:{self.version}:{self.id}"

    @property
    def catalog_key(self) -> str:
        return f"{self.benchmark}:{self.version}"

    @property
    def automated(self) -> bool:
        return self.assessment == "automated"

    @property
    def top_section(self) -> str:
        return self.section.split(".")[0]

    def applies_to(self, roles: set[str] | frozenset[str] | tuple[str, ...]) -> bool:
        return bool(set(self.roles) & set(roles))

    def resolve(self, data: dict[str, Any]) -> dict[str, Any]:
        """Params with every "{var}" reference replaced by the host's value of that var."""
        return _substitute(self.params, data)


def _substitute(value: Any, data: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = VAR_REF.match(value)
        if whole:  # a whole-string reference keeps the variable's type (list, dict, bool...)
            return data[whole.group(1)]
        return re.sub(r"\{([a-z][a-z0-9_]*)\}", lambda m: str(data[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: _substitute(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, data) for v in value]
    return value


def var_refs(value: Any) -> set[str]:
    """Names of the variables a params structure references."""
    if isinstance(value, str):
        return set(re.findall(r"\{([a-z][a-z0-9_]*)\}", value))
    if isinstance(value, dict):
        return set().union(*(var_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(var_refs(v) for v in value)) if value else set()
    return set()


@dataclass(frozen=True)
class Catalog:
    """One benchmark version: its metadata (benchmark.yml) and controls (the other *.yml)."""

    benchmark: str
    title: str
    version: str
    sections: dict[str, str]
    controls: tuple[Control, ...]
    roles: tuple[str, ...] = ()
    # e.g. {"component": "kubernetes", "versions": ["1.19", "1.20", "1.21"]}: which component
    # versions this benchmark version is written for (used to pick a version per host)
    component: str = ""
    component_versions: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.benchmark}:{self.version}"

    def get(self, ref: str) -> Control | None:
        """A control by CIS id, slug or qualified key."""
        return self._index.get(ref)

    @functools.cached_property
    def _index(self) -> dict[str, Control]:
        index = {c.id: c for c in self.controls}
        index.update({c.slug: c for c in self.controls})
        index.update({c.key: c for c in self.controls})
        return index

    def of_kind(self, *kinds: str) -> list[Control]:
        return [c for c in self.controls if c.kind in kinds]

    def section_title(self, section: str) -> str:
        return self.sections.get(section) or self.sections.get(section.split(".")[0], section)


_CONTROL_KEYS = {f for f in Control.__dataclass_fields__ if f not in ("benchmark", "version")}
_REQUIRED = ("id", "slug", "title", "section", "level", "assessment", "kind")
_BENCHMARK_KEYS = {"benchmark", "title", "version", "sections", "roles", "component", "component_versions"}


def _control(entry: dict[str, Any], meta: dict[str, Any], file_roles: list[str] | None, where: str) -> Control:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: control entry is not a mapping")
    missing = [k for k in _REQUIRED if k not in entry]
    unknown = set(entry) - _CONTROL_KEYS
    if missing or unknown:
        raise CatalogError(f"{where} {entry.get('id')}: missing {missing}, unknown {sorted(unknown)}")
    if not isinstance(entry["id"], str):
        raise CatalogError(f"{where}: id {entry['id']!r} must be a quoted string")
    if entry["assessment"] not in ASSESSMENTS:
        raise CatalogError(f"{where} {entry['id']}: assessment must be one of {ASSESSMENTS}")
    roles = tuple(entry.get("roles") or file_roles or meta.get("roles") or ())
    if not roles or set(roles) - set(ROLES):
        raise CatalogError(f"{where} {entry['id']}: roles {list(roles)} must be a non-empty subset of {ROLES}")
    scope = entry.get("scope", "node")
    if scope not in SCOPES:
        raise CatalogError(f"{where} {entry['id']}: scope must be one of {SCOPES}")
    return Control(
        **{**entry, "vars": tuple(entry.get("vars") or ()), "params": entry.get("params") or {},
           "references": tuple(entry.get("references") or ()), "roles": roles, "scope": scope,
           "min_version": str(entry.get("min_version") or ""), "max_version": str(entry.get("max_version") or "")},
        benchmark=meta["benchmark"], version=str(meta["version"]),
    )


def _load_dir(directory: Path) -> Catalog:
    meta_file = directory / "benchmark.yml"
    meta = _yaml(meta_file)
    unknown = set(meta) - _BENCHMARK_KEYS
    if unknown:
        raise CatalogError(f"{meta_file}: unknown keys {sorted(unknown)}")
    controls: list[Control] = []
    for path in sorted(directory.glob("*.yml"), key=_file_order):
        if path.name == "benchmark.yml":
            continue
        raw = _yaml(path) or {}
        controls += [_control(e, meta, raw.get("roles"), str(path)) for e in raw.get("controls") or ()]
    return Catalog(
        benchmark=meta["benchmark"], title=meta["title"], version=str(meta["version"]),
        sections={str(k): v for k, v in (meta.get("sections") or {}).items()}, controls=tuple(controls),
        roles=tuple(meta.get("roles") or ()), component=meta.get("component", ""),
        component_versions=tuple(str(v) for v in meta.get("component_versions") or ()),
    )


def _file_order(path: Path) -> tuple:
    """Files in the order their names' leading numbers give (1-host.yml before 10-x.yml)."""
    head = re.match(r"^(\d+)", path.name)
    return (int(head.group(1)) if head else 1 << 30, path.name)


def version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.-]", version))


@functools.cache
def available() -> dict[str, tuple[str, ...]]:
    """Every benchmark and its versions on disk, oldest first. A benchmark written for component
    versions is ordered by them, not by its own number: CIS Kubernetes 1.20 (for Kubernetes
    1.19-1.21) is older than CIS Kubernetes 1.12 (for 1.32-1.34)."""
    found: dict[str, list[tuple[tuple, str]]] = {}
    for meta_file in CATALOG_DIR.glob("*/*/benchmark.yml"):
        meta = _yaml(meta_file) or {}
        components = [version_key(str(v)) for v in meta.get("component_versions") or ()]
        order = (max(components) if components else (), version_key(meta_file.parent.name))
        found.setdefault(meta_file.parent.parent.name, []).append((order, meta_file.parent.name))
    return {b: tuple(v for _, v in sorted(vs)) for b, vs in sorted(found.items())}


@functools.cache
def load_catalog(benchmark: str = "cis-docker", version: str | None = None) -> Catalog:
    """Load and structurally check one benchmark version (the newest when version is None)."""
    versions = available().get(benchmark)
    if not versions:
        raise CatalogError(f"unknown benchmark {benchmark!r}; known: {', '.join(available())}")
    version = version or versions[-1]
    if version not in versions:
        raise CatalogError(f"{benchmark} has no version {version!r}; known: {', '.join(versions)}")
    catalog = _load_dir(CATALOG_DIR / benchmark / version)
    if (catalog.benchmark, catalog.version) != (benchmark, version):
        raise CatalogError(f"{CATALOG_DIR / benchmark / version}/benchmark.yml says {catalog.key}")
    return catalog


def all_catalogs() -> list[Catalog]:
    """Every benchmark version hardline has."""
    return [load_catalog(b, v) for b, versions in available().items() for v in versions]


def find_control(key: str) -> Control | None:
    """A control by its qualified key ``benchmark:version:id``."""
    benchmark, _, rest = key.partition(":")
    version, _, _cid = rest.partition(":")
    if version not in available().get(benchmark, ()):
        return None
    return load_catalog(benchmark, version).get(key)


def minor(version: str) -> tuple:
    """``v1.20.2`` / ``1.20`` -> (1, 20): benchmarks are written for minor versions."""
    return version_key(".".join(version.strip().lstrip("v").split(".")[:2]))


def catalog_for(catalogs: list[Catalog], running: str) -> Catalog:
    """Of several versions of one benchmark, the one written for the component version the host
    runs (``v1.20.2``); else the newest written for an older one; else the oldest."""
    ordered = sorted(catalogs, key=lambda c: max((minor(v) for v in c.component_versions), default=()))
    for catalog in ordered:
        if minor(running) in {minor(v) for v in catalog.component_versions}:
            return catalog
    older = [c for c in ordered if c.component_versions and max(minor(v) for v in c.component_versions) < minor(running)]
    return older[-1] if older else ordered[0]


@dataclass(frozen=True)
class Tunable:
    name: str
    type: str
    default: Any
    doc: str


@functools.cache
def tunables() -> dict[str, Tunable]:
    """Every inventory variable hardline reads, from defaults.yml."""
    raw = _yaml(DEFAULTS_FILE)
    return {name: Tunable(name, spec["type"], spec["default"], spec["doc"].strip()) for name, spec in raw.items()}


def defaults() -> dict[str, Any]:
    """Default value of every tunable: what deploys pass to pyinfra as data_defaults."""
    return {name: copy.deepcopy(t.default) for name, t in tunables().items()}


LAYOUT_DIR = CATALOG_DIR / "layouts"


@functools.cache
def kubernetes_layouts() -> dict[str, dict[str, Any]]:
    """Every Kubernetes node layout (hardline/catalogs/layouts/<name>.yml) by name, in the order
    auto-detection tries them (kubeadm first: the layout the benchmark is written for)."""
    found = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(LAYOUT_DIR.glob("*.yml"))}
    order = sorted(found, key=lambda name: (name != "kubeadm", name))
    return {name: found[name] for name in order}
