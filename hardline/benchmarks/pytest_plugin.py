"""pytest entry to the benchmarks: `pytest benchmarks --inventory inventories/lab.py --junitxml=out.xml`.

One test per (host, benchmark, control[, subject]), with the same verdicts as `hardline verify`
(the same engine computes them, once, while tests are collected: every host's facts are gathered
in parallel, once). Markers select by benchmark (`-m cis_docker`), level (`-m level1`) and
section (`-m section_2`); `-k` matches the control key, id and slug in the test id
(`host::cis-docker:1.6.0:2.2::docker_icc_disabled`). An unverifiable control is a JUnit
<error>, a failing one a <failure>; SKIP, MANUAL and WAIVED are skips with their reason.

Checks of your own sit beside the catalogs: a test taking the ``host`` fixture runs once per
inventory host with testinfra's Host API over pyinfra's connector (hardline.benchmarks.testinfra_host).
"""

from __future__ import annotations

import re

import pytest

from hardline.benchmarks.engine import verify_hosts
from hardline.benchmarks.select import Selection, SelectionError
from hardline.catalog import available
from hardline.inventory import InventoryError, load_hosts
from hardline.results import ERROR, FAIL, PASS, Result, fold


def pytest_addoption(parser):
    group = parser.getgroup("hardline")
    group.addoption("--inventory", help="pyinfra inventory file whose hosts are verified")
    group.addoption("--benchmark", action="append", default=[],
                    help="only this benchmark, e.g. cis-docker or cis-kubernetes:1.20 (repeatable; default: all that apply)")
    group.addoption("--limit", action="append", default=[], help="only these hosts or groups (repeatable)")
    group.addoption("--section", action="append", default=[], help="only these sections, e.g. 2 or 1.1")
    group.addoption("--level", type=int, choices=(1, 2), help="CIS profile level: 1 (level-1 items) or 2 (all)")


def marker(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def pytest_configure(config):
    for benchmark in available():
        config.addinivalue_line("markers", f"{marker(benchmark)}: controls of the {benchmark} benchmark")
    for level in (1, 2):
        config.addinivalue_line("markers", f"level{level}: CIS level {level} controls")
    config.addinivalue_line("markers", "section_N: controls of top-level section N (e.g. section_2)")
    config.hardline_hosts = None
    inventory = config.getoption("--inventory", None)
    if not inventory:
        return
    selection = Selection(tuple(config.getoption("--benchmark")), config.getoption("--level"),
                          tuple(config.getoption("--section")))
    try:
        selection.check()
        config.hardline_hosts = load_hosts(inventory, config.getoption("--limit"))
    except (InventoryError, FileNotFoundError, SelectionError) as err:
        pytest.exit(str(err), returncode=4)
    config.hardline_selection = selection


def _cases(config) -> list[list[Result]]:
    """Results grouped per test: (host, control key, subject)."""
    if getattr(config, "hardline_cases", None) is None:
        grouped: dict[tuple[str, str, str], list[Result]] = {}
        for r in verify_hosts(config.hardline_hosts, config.hardline_selection):
            grouped.setdefault(r.key, []).append(r)
        config.hardline_cases = list(grouped.values())
    return config.hardline_cases


def pytest_generate_tests(metafunc):
    if "hardline_host" in metafunc.fixturenames:  # checks of your own: one test per inventory host
        hosts = metafunc.config.hardline_hosts
        if hosts is None:
            pytest.exit("tests using the host fixture need --inventory INVENTORY", returncode=4)
        metafunc.parametrize("hardline_host", hosts, ids=[h.name for h in hosts])
    if "hl_case" not in metafunc.fixturenames:
        return
    if metafunc.config.hardline_hosts is None:
        pytest.exit("benchmarks need --inventory INVENTORY (a pyinfra inventory file)", returncode=4)
    params = []
    for results in _cases(metafunc.config):
        r = results[0]
        marks = [getattr(pytest.mark, marker(r.benchmark)), getattr(pytest.mark, f"level{r.level}"),
                 getattr(pytest.mark, marker(f"section_{r.section.split('.')[0]}"))]
        case_id = f"{r.host}::{r.control_key}::{r.slug}" + (f"[{r.subject}]" if r.subject else "")
        params.append(pytest.param(results, id=case_id, marks=marks))
    metafunc.parametrize("hl_case", params)


@pytest.fixture
def host(hardline_host):
    """testinfra's Host for one inventory host, over pyinfra's connector (the same connection
    rules as the deploy and the catalog checks): `def test_x(host): assert host.file(p).mode == 0o600`."""
    from hardline.benchmarks.testinfra_host import testinfra_host

    if not hardline_host.valid:
        raise HostNotVerified(str(hardline_host.error))
    return testinfra_host(hardline_host)


class HostNotVerified(Exception):
    """Raised in setup so that JUnit records an <error>, not a failure or a pass."""


@pytest.fixture
def hl_result(hl_case, record_property):
    results: list[Result] = hl_case
    r = results[0]
    status = fold(x.status for x in results)
    for key, value in (("benchmark", r.benchmark), ("benchmark_version", r.benchmark_version),
                       ("cis_id", r.control_id), ("control", r.control_key), ("slug", r.slug), ("title", r.title),
                       ("level", r.level), ("automated", r.automated), ("section", r.section), ("host", r.host),
                       ("status", status)) + ((("subject", r.subject),) if r.subject else ()):
        record_property(key, value)
    if status == ERROR:
        raise HostNotVerified(_messages(results, ERROR))
    return results


def _messages(results, status) -> str:
    return "\n".join(f"{r.name}\n{r.message}" for r in results if r.status == status)


def assert_result(results):
    """The test body: PASS passes, FAIL fails with the evidence, otherwise a skip with the reason."""
    status = fold(r.status for r in results)
    if status not in (PASS, FAIL):
        pytest.skip(f"{status}: " + "; ".join(r.message for r in results))
    assert status == PASS, _messages(results, FAIL)
