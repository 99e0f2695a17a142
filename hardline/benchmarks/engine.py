"""The small generic engine: connect to a host, gather its facts once, evaluate every control.

Example::

    results = verify_hosts(load_hosts("inventories/lab.py"))
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from hardline.benchmarks.checks import CHECKS
from hardline.benchmarks.connect import testinfra_host
from hardline.benchmarks.facts import FactError, HostFacts, gather
from hardline.catalog import Catalog, Control, load_catalog
from hardline.inventory import HostConfig
from hardline.results import ERROR, FAIL, MANUAL, SKIP, WAIVED, Result, Verdict


def evaluate(control: Control, config: HostConfig, facts: HostFacts | Exception, catalog: Catalog) -> list[Result]:
    """Results of one control on one host: one, or one per subject (e.g. per container) when the
    check reports per subject. Never raises: failures to verify are ERROR."""
    started = time.monotonic()
    verdicts = _verdict(control, config, facts)
    if isinstance(verdicts, Verdict):
        verdicts = [verdicts]
    elapsed = (time.monotonic() - started) / max(1, len(verdicts))
    return [_result(control, config, v, catalog, elapsed) for v in verdicts]


def _result(control: Control, config: HostConfig, verdict: Verdict, catalog: Catalog, duration: float) -> Result:
    waiver = config.waivers.get(control.id)
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
    return Result(
        host=config.name, benchmark=catalog.benchmark, control_id=control.id, slug=control.slug,
        title=control.title, section=control.section, section_title=catalog.section_title(control.section),
        level=control.level, automated=control.automated, status=verdict.status, expected=verdict.expected,
        found=verdict.found, evidence=verdict.evidence, remediation=control.remediation, waiver=waiver_info,
        duration=duration, subject=verdict.subject,
    )


def _verdict(control: Control, config: HostConfig, facts: HostFacts | Exception) -> Verdict | list[Verdict]:
    if not control.automated:
        return _manual(control, config, facts)
    if control.kind is None:
        return Verdict(SKIP, found="no automated check in this hardline version")
    if isinstance(facts, Exception):
        return Verdict(ERROR, found=f"host could not be verified: {facts}")
    try:
        return CHECKS[control.kind](control.resolve(config.data), facts, config.data)
    except FactError as err:
        return Verdict(ERROR, found=str(err))
    except Exception as err:  # a check bug must not pass a control, nor hide the others
        return Verdict(ERROR, found=f"check {control.kind} crashed: {type(err).__name__}: {err}")


def _manual(control: Control, config: HostConfig, facts: HostFacts | Exception) -> Verdict | list[Verdict]:
    """A manual item is always MANUAL, never PASS; where it names a kind, what that check
    gathered (counts, listings) is kept as evidence for the auditor."""
    guidance = control.guidance or "verify by hand"
    if control.kind is None or isinstance(facts, Exception):
        return Verdict(MANUAL, found=guidance)
    try:
        gathered = CHECKS[control.kind](control.resolve(config.data), facts, config.data)
    except Exception as err:  # the guidance still stands; say why the evidence is missing
        return Verdict(MANUAL, found=guidance, evidence=[f"evidence could not be gathered: {err}"])
    verdicts = [gathered] if isinstance(gathered, Verdict) else gathered
    for v in verdicts:
        v.evidence = [f"to review: {guidance}"] + v.evidence
        v.status = MANUAL
    return verdicts or Verdict(MANUAL, found=guidance)


def gather_host(config: HostConfig) -> HostFacts | Exception:
    """Facts of one host, or the exception that prevented gathering them."""
    try:
        return gather(testinfra_host(config.name, config.connection), config.data)
    except Exception as err:  # unreachable, auth failure, ...: every check of the host is ERROR
        return err if str(err) else RuntimeError(type(err).__name__)


def gather_all(hosts: list[HostConfig], parallel: int = 16,
               progress: Callable[[str, HostFacts | Exception, float], None] | None = None,
               ) -> dict[str, HostFacts | Exception]:
    """Gather every host's facts concurrently (the slow part: round trips)."""
    def one(config: HostConfig):
        started = time.monotonic()
        facts = gather_host(config)
        if progress:
            progress(config.name, facts, time.monotonic() - started)
        return config.name, facts

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts)))) as pool:
        return dict(pool.map(one, hosts))


def select(catalog: Catalog, sections: list[str] | None = None) -> list[Control]:
    if not sections:
        return list(catalog.controls)
    return [c for c in catalog.controls if c.top_section in sections or c.section in sections]


def verify_hosts(hosts: list[HostConfig], benchmark: str = "cis-docker", parallel: int = 16,
                 sections: list[str] | None = None, progress=None) -> list[Result]:
    catalog = load_catalog(benchmark)
    controls = select(catalog, sections)
    facts = gather_all(hosts, parallel, progress)
    return [r for h in hosts for c in controls for r in evaluate(c, h, facts[h.name], catalog)]
