"""The small generic engine: select each host's controls, gather what they need once per host,
evaluate them, and evaluate cluster-scoped controls once per cluster.

Example::

    results = verify_hosts(load_hosts("inventories/lab.py"), Selection(level=1))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hardline.benchmarks import select
from hardline.benchmarks.checks import KINDS
from hardline.benchmarks.connect import HostRequest, gather_hosts
from hardline.benchmarks.gather.core import FactError, HostFacts
from hardline.benchmarks.select import Selection
from hardline.catalog import Catalog, Control, version_key
from hardline.inventory import HostConfig
from hardline.results import ERROR, FAIL, MANUAL, SKIP, WAIVED, Result, Verdict

CLUSTER_PREFIX = "cluster/"  # results of cluster-scoped controls are reported for "cluster/<name>"


def evaluate(control: Control, config: HostConfig, facts: HostFacts | Exception, catalog: Catalog,
             host_name: str | None = None) -> list[Result]:
    """Results of one control on one host: one, or one per subject (e.g. per container) when the
    check reports per subject. Never raises: failures to verify are ERROR."""
    started = time.monotonic()
    verdicts = _verdict(control, config, facts, catalog)
    if isinstance(verdicts, Verdict):
        verdicts = [verdicts]
    elif not verdicts:  # a per-subject check with no subject has nothing to judge
        verdicts = [Verdict(SKIP, found="nothing to judge on this host")]
    elapsed = (time.monotonic() - started) / len(verdicts)
    # what every subject's result shares, computed once (a host with 20 containers has ~700 results)
    common = dict(host=host_name or config.data.get("hardline_host_name") or config.name,
                  benchmark=catalog.benchmark, benchmark_version=catalog.version,
                  control_id=control.id, slug=control.slug, title=control.title, section=control.section,
                  section_title=catalog.section_title(control.section), level=control.level,
                  automated=control.automated, remediation=control.remediation, duration=elapsed)
    waiver = config.waivers.get(control.key)
    return [_result(common, v, waiver) for v in verdicts]


def _result(common: dict, verdict: Verdict, waiver) -> Result:
    waiver_info = None
    if waiver:
        waiver_info = {"reason": waiver.reason, "approved_by": waiver.approved_by,
                       "expires": waiver.expires.isoformat() if waiver.expires else None,
                       "expired": waiver.expired(), "underlying_status": verdict.status}
        if waiver.expired():
            verdict.evidence.append(f"waiver expired on {waiver.expires}: the control counts again")
        elif verdict.status in (FAIL, MANUAL):
            verdict.evidence.insert(0, f"waived ({waiver.reason}); check said {verdict.status}")
            verdict.status = WAIVED
        elif verdict.status == ERROR:  # a waiver accepts a known deviation, not an unverified host
            verdict.evidence.append(f"waived ({waiver.reason}), but the host could not be verified")
    return Result(**common, status=verdict.status, expected=verdict.expected, found=verdict.found,
                  evidence=verdict.evidence, waiver=waiver_info, subject=verdict.subject, differs=verdict.differs)


def _verdict(control: Control, config: HostConfig, facts: HostFacts | Exception,
             catalog: Catalog) -> Verdict | list[Verdict]:
    # an item the running component cannot express is not applicable, manual or not
    too_old = "" if isinstance(facts, Exception) else _too_old(control, facts, catalog)
    if too_old:
        return Verdict(SKIP, found=too_old)
    if not control.automated:
        return _manual(control, config, facts)
    if control.kind is None or control.kind not in KINDS:
        return Verdict(SKIP, found="no automated check in this hardline version")
    if isinstance(facts, Exception):
        return Verdict(ERROR, found=f"host could not be verified: {facts}")
    try:
        return KINDS[control.kind].check(control.resolve(config.data), facts, config.data)
    except FactError as err:
        return Verdict(ERROR, found=str(err))
    except Exception as err:  # a check bug must not pass a control, nor hide the others
        return Verdict(ERROR, found=f"check {control.kind} crashed: {type(err).__name__}: {err}")


def _too_old(control: Control, facts: HostFacts, catalog: Catalog) -> str:
    """Why the host's component cannot express the item (min_version, max_version), or ''."""
    fact = select.COMPONENT_FACTS.get(catalog.component)
    running = facts.values.get(fact) if fact else None
    if not running:
        return ""
    if control.min_version and select.minor(running) < version_key(control.min_version):
        return f"not applicable: the host runs {running}, the item needs {control.min_version} or newer"
    if control.max_version and select.minor(running) > version_key(control.max_version):
        return f"not applicable: the host runs {running}; the item's setting was removed after {control.max_version}"
    return ""


def _manual(control: Control, config: HostConfig, facts: HostFacts | Exception) -> Verdict | list[Verdict]:
    """A manual item is always MANUAL, never PASS; where it names a kind, what that check
    gathered (counts, listings) is kept as evidence for the auditor."""
    guidance = control.guidance or "verify by hand"
    if control.kind is None or control.kind not in KINDS or isinstance(facts, Exception):
        return Verdict(MANUAL, found=guidance)
    try:
        gathered = KINDS[control.kind].check(control.resolve(config.data), facts, config.data)
    except Exception as err:  # the guidance still stands; say why the evidence is missing
        return Verdict(MANUAL, found=guidance, evidence=[f"evidence could not be gathered: {err}"])
    verdicts = [gathered] if isinstance(gathered, Verdict) else gathered
    for v in verdicts:
        v.evidence = [f"to review: {guidance}"] + v.evidence
        v.status = MANUAL
    return verdicts or Verdict(MANUAL, found=guidance)


# ------------------------------------------------------------------------------------ planning


@dataclass
class HostPlan:
    """What one host is verified against and what that costs it to gather."""

    config: HostConfig
    catalogs: list[Catalog] = field(default_factory=list)  # candidates (all versions until picked)
    needs: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    clusters: list[str] = field(default_factory=list)  # clusters whose cluster controls this host runs


def plan(config: HostConfig, selection: Selection, cluster_duty: bool = False) -> HostPlan:
    hp = HostPlan(config, select.candidates(config, selection))
    controls = [c for cat in hp.catalogs for c in select.node_controls(cat, config, selection)]
    if cluster_duty:
        controls += [c for cat in hp.catalogs for c in select.cluster_controls(cat, selection)]
    hp.needs, hp.paths = select.needs(controls, config.data)
    hp.needs |= select.version_needs(hp.catalogs)
    return hp


def cluster_of(config: HostConfig) -> str:
    return str(config.data.get("k8s_cluster") or "kubernetes")


def cluster_duties(hosts: list[HostConfig]) -> dict[str, str]:
    """Host that evaluates each cluster's cluster-scoped controls: the first (by name) valid
    control-plane host of that cluster."""
    duties: dict[str, str] = {}
    for config in sorted(hosts, key=lambda h: h.name):
        if config.valid and "k8s_control_plane" in config.roles:
            duties.setdefault(cluster_of(config), config.name)
    return duties


# ----------------------------------------------------------------------------------- gathering


def gather_host(config: HostConfig, needs: set[str], paths: set[str] | None = None) -> HostFacts | Exception:
    """Facts of one host, or the exception that prevented gathering them."""
    return gather_hosts([HostRequest(config, needs, paths if paths is not None else set())])[config.name]


Progress = Callable[[str, "HostFacts | Exception", float], None]


def gather_all(plans: list[HostPlan], parallel: int = 16, progress: Progress | None = None,
               ) -> dict[str, HostFacts | Exception]:
    """Gather every host's facts concurrently (the slow part: round trips), through pyinfra."""
    return gather_hosts([HostRequest(hp.config, hp.needs, hp.paths) for hp in plans], parallel, progress)


# ---------------------------------------------------------------------------------- verifying


def invalid_host_results(config: HostConfig, selection: Selection) -> list[Result]:
    """A host whose inventory data is invalid: every automated control that its roles select is
    ERROR with the validation message (like an unreachable host); without a role, one result."""
    message = str(config.error)
    results = []
    for catalog in select.candidates(config, selection):
        for control in select.node_controls(catalog, config, selection):
            if control.automated:
                results += evaluate(control, config, ValueError(message), catalog)
    if not results:
        results.append(Result(host=config.name, benchmark="hardline", benchmark_version="1", control_id="inventory",
                              slug="inventory_data_valid", title="The host's inventory data is valid",
                              section="inventory", section_title="Inventory", level=1, automated=True,
                              status=ERROR, found=message))
    return results


def host_results(hp: HostPlan, facts: HostFacts | Exception, selection: Selection) -> list[Result]:
    results = []
    for catalog, problem in select.pick(hp.catalogs, facts):
        host_facts: HostFacts | Exception = RuntimeError(problem) if problem else facts
        for control in select.node_controls(catalog, hp.config, selection):
            results += evaluate(control, hp.config, host_facts, catalog)
    return results


def verify_hosts(hosts: list[HostConfig], selection: Selection | None = None, parallel: int = 16,
                 progress: Progress | None = None) -> list[Result]:
    """Results of every host (invalid ones ERROR) and of every cluster's cluster-scoped controls."""
    selection = selection or Selection()
    duties = cluster_duties(hosts)
    plans = {h.name: plan(h, selection, h.name in duties.values()) for h in hosts if h.valid}
    facts = gather_all(list(plans.values()), parallel, progress)
    results: list[Result] = []
    for config in hosts:
        if not config.valid:
            results += invalid_host_results(config, selection)
            continue
        results += host_results(plans[config.name], facts[config.name], selection)
    for cluster, host_name in sorted(duties.items()):
        hp = plans[host_name]
        for catalog, problem in select.pick(hp.catalogs, facts[host_name]):
            cluster_facts = RuntimeError(problem) if problem else facts[host_name]
            for control in select.cluster_controls(catalog, selection):
                results += evaluate(control, hp.config, cluster_facts, catalog, host_name=CLUSTER_PREFIX + cluster)
    return results
