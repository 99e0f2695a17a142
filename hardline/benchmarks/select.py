"""Which controls a host is verified against: its roles, the benchmark versions that apply to
them, the command line's filters (--benchmark, --level, --section), and per host the version of a
benchmark that has several (CIS Kubernetes: picked from the detected Kubernetes version unless
hardline_benchmark_versions pins it).

Example::

    sel = Selection(benchmarks=("cis-docker",), level=1)
    for catalog in candidates(host_config, sel): ...
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hardline.benchmarks.checks import KINDS
from hardline.benchmarks.gather.core import FactError, HostFacts
from hardline.catalog import Catalog, CatalogError, Control, available, version_key
from hardline.inventory import HostConfig, applicable_catalogs

# The fact that tells a component's version, for benchmarks whose version follows it (CIS
# Kubernetes: the Kubernetes the node runs, hardline.benchmarks.gather.kubernetes).
COMPONENT_FACTS: dict[str, str] = {"kubernetes": "k8s_version"}


class SelectionError(Exception):
    """A --benchmark/--level/--section value that names nothing hardline has."""


@dataclass(frozen=True)
class Selection:
    benchmarks: tuple[str, ...] = ()  # names ("cis-docker") or keys ("cis-kubernetes:1.20")
    level: int | None = None  # CIS profiles: level 1 = L1 items, level 2 = L1 and L2 items
    sections: tuple[str, ...] = ()

    def check(self) -> None:
        """Refuse filters that match no benchmark, as a clear error before anything runs."""
        for ref in self.benchmarks:
            name, _, version = ref.partition(":")
            if name not in available() or (version and version not in available()[name]):
                known = ", ".join(f"{b} ({', '.join(vs)})" for b, vs in available().items())
                raise SelectionError(f"--benchmark {ref}: unknown; hardline has {known}")
        if self.level not in (None, 1, 2):
            raise SelectionError(f"--level {self.level}: must be 1 or 2")

    def wants_catalog(self, catalog: Catalog) -> bool:
        if not self.benchmarks:
            return True
        return any(ref in (catalog.benchmark, catalog.key) for ref in self.benchmarks)

    def wants(self, control: Control) -> bool:
        if self.level is not None and control.level > self.level:
            return False
        return not self.sections or control.top_section in self.sections or control.section in self.sections


def candidates(config: HostConfig, selection: Selection) -> list[Catalog]:
    """Benchmark versions that may apply to the host (several versions of one benchmark until
    its version is picked from facts)."""
    versions = dict(config.data.get("hardline_benchmark_versions") or {})
    for ref in selection.benchmarks:  # --benchmark NAME:VERSION pins that version
        name, _, version = ref.partition(":")
        if version:
            versions[name] = version
    return [c for c in applicable_catalogs(config.roles, versions) if selection.wants_catalog(c)]


def node_controls(catalog: Catalog, config: HostConfig, selection: Selection) -> list[Control]:
    return [c for c in catalog.controls if c.scope == "node" and c.applies_to(config.roles) and selection.wants(c)]


def cluster_controls(catalog: Catalog, selection: Selection) -> list[Control]:
    return [c for c in catalog.controls if c.scope == "cluster" and selection.wants(c)]


def needs(controls: Iterable[Control], data: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Facts and file paths the checks of these controls read (manual items with a kind too:
    they report what their kind gathered)."""
    facts: set[str] = set()
    paths: set[str] = set()
    for control in controls:
        if control.kind is None or control.kind not in KINDS:  # no check yet: SKIP, nothing to gather
            continue
        params = control.resolve(data)
        facts |= KINDS[control.kind].needs(params)
        paths.update(KINDS[control.kind].paths(params))
    return facts, paths


def version_needs(catalogs: Iterable[Catalog]) -> set[str]:
    """Facts that tell the component version of benchmarks written for one: to pick a version
    among several candidates, and with a pinned version to SKIP the items the running component
    cannot express (min_version / max_version)."""
    return {COMPONENT_FACTS[c.component] for c in catalogs if c.component in COMPONENT_FACTS}


def pick(catalogs: list[Catalog], facts: HostFacts | Exception) -> list[tuple[Catalog, str]]:
    """One version per benchmark, with an error text when the version could not be picked (its
    controls are then ERROR): the only candidate, or the one written for the component version
    the host runs (the newest version when the host runs something newer than all of them)."""
    by_benchmark: dict[str, list[Catalog]] = {}
    for c in catalogs:
        by_benchmark.setdefault(c.benchmark, []).append(c)
    chosen = []
    for benchmark, versions in by_benchmark.items():
        versions.sort(key=lambda c: version_key(c.version))
        if len(versions) == 1:
            chosen.append((versions[0], ""))
            continue
        try:
            if isinstance(facts, Exception):
                raise FactError(str(facts))
            fact = COMPONENT_FACTS.get(versions[0].component)
            if fact is None:
                raise CatalogError(f"{benchmark}: several versions and no way to pick one; set hardline_benchmark_versions")
            running = facts.need(fact)
        except (FactError, CatalogError) as err:
            chosen.append((versions[-1], f"cannot pick the {benchmark} version: {err}"))
            continue
        chosen.append((pick_version(versions, running), ""))
    return chosen


def minor(version: str) -> tuple:
    return version_key(".".join(version.lstrip("v").split(".")[:2]))


def pick_version(versions: list[Catalog], running: str) -> Catalog:
    """The catalog written for ``running`` (a component version like v1.20.2); else the newest
    one older than it, else the oldest."""
    for catalog in versions:
        if any(minor(v) == minor(running) for v in catalog.component_versions):
            return catalog
    older = [c for c in versions if c.component_versions and max(minor(v) for v in c.component_versions) < minor(running)]
    return older[-1] if older else versions[0]
