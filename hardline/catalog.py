"""The control catalog: benchmarks as data (one YAML file per benchmark) and the tunables.

Both sides read this module: deploys/ to know what to remediate, benchmarks/ to know what to
verify. Neither side's logic lives here, only the shared description of desired state.

Example::

    from hardline.catalog import load_catalog
    cat = load_catalog("cis-docker")
    cat.get("2.2").title   # 'Containers on the default bridge cannot talk to each other'
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).parent
CATALOG_DIR = PACKAGE_DIR / "catalogs"
DEFAULTS_FILE = PACKAGE_DIR / "defaults.yml"

BENCHMARK_FILES = {"cis-docker": "cis_docker.yml"}
ASSESSMENTS = ("automated", "manual")
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
    benchmark: str = ""

    @property
    def automated(self) -> bool:
        return self.assessment == "automated"

    @property
    def top_section(self) -> str:
        return self.section.split(".")[0]

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
    benchmark: str
    title: str
    version: str
    sections: dict[str, str]
    controls: tuple[Control, ...]

    def get(self, key: str) -> Control | None:
        """A control by CIS id or slug."""
        return self._index.get(key)

    @functools.cached_property
    def _index(self) -> dict[str, Control]:
        index = {c.id: c for c in self.controls}
        index.update({c.slug: c for c in self.controls})
        return index

    def of_kind(self, *kinds: str) -> list[Control]:
        return [c for c in self.controls if c.kind in kinds]

    def section_title(self, section: str) -> str:
        return self.sections.get(section) or self.sections.get(section.split(".")[0], section)


_CONTROL_KEYS = {f for f in Control.__dataclass_fields__ if f != "benchmark"}
_REQUIRED = ("id", "slug", "title", "section", "level", "assessment", "kind")


def _control(entry: dict[str, Any], benchmark: str, where: str) -> Control:
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
    return Control(
        **{**entry, "vars": tuple(entry.get("vars") or ()), "params": entry.get("params") or {},
           "references": tuple(entry.get("references") or ())},
        benchmark=benchmark,
    )


@functools.lru_cache(maxsize=None)
def load_catalog(benchmark: str = "cis-docker") -> Catalog:
    """Load and structurally check one benchmark's catalog."""
    if benchmark not in BENCHMARK_FILES:
        raise CatalogError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARK_FILES)}")
    path = CATALOG_DIR / BENCHMARK_FILES[benchmark]
    raw = yaml.safe_load(path.read_text())
    controls = tuple(_control(e, benchmark, str(path)) for e in raw["controls"])
    return Catalog(
        benchmark=raw["benchmark"],
        title=raw["title"],
        version=str(raw["version"]),
        sections={str(k): v for k, v in raw["sections"].items()},
        controls=controls,
    )


@dataclass(frozen=True)
class Tunable:
    name: str
    type: str
    default: Any
    doc: str


@functools.lru_cache(maxsize=None)
def tunables() -> dict[str, Tunable]:
    """Every inventory variable hardline reads, from defaults.yml."""
    raw = yaml.safe_load(DEFAULTS_FILE.read_text())
    return {name: Tunable(name, spec["type"], spec["default"], spec["doc"].strip()) for name, spec in raw.items()}


def defaults() -> dict[str, Any]:
    """Default value of every tunable: what deploys pass to pyinfra as data_defaults."""
    import copy

    return {name: copy.deepcopy(t.default) for name, t in tunables().items()}
