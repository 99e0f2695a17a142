"""pytest entry to the benchmarks: `pytest benchmarks/ --inventory inventories/lab.py --junitxml=out.xml`.

One test case per (host, control). Facts are gathered once per host, for all hosts in
parallel, the first time a case needs them. A host that cannot be reached or a fact that cannot
be gathered makes the case an error (JUnit <error>), never a pass.
"""

from __future__ import annotations

import pytest

from hardline.benchmarks.engine import evaluate, gather_all, select
from hardline.catalog import load_catalog
from hardline.inventory import InventoryError, load_hosts
from hardline.results import ERROR, FAIL, PASS


def pytest_addoption(parser):
    group = parser.getgroup("hardline")
    group.addoption("--inventory", help="pyinfra inventory file whose hosts are verified")
    group.addoption("--benchmark", default="cis-docker", help="benchmark catalog (default: cis-docker)")
    group.addoption("--limit", action="append", default=[], help="only these hosts or groups (repeatable)")
    group.addoption("--section", action="append", default=[], help="only these sections, e.g. 2 or 1.1")


def pytest_configure(config):
    config.hardline_hosts = None
    inventory = config.getoption("--inventory", None)
    if not inventory:
        return
    try:
        config.hardline_hosts = load_hosts(inventory, config.getoption("--limit"))
    except (InventoryError, FileNotFoundError) as err:
        pytest.exit(str(err), returncode=4)


def pytest_generate_tests(metafunc):
    if "hl_case" not in metafunc.fixturenames:
        return
    hosts = metafunc.config.hardline_hosts
    if hosts is None:
        pytest.exit("benchmarks need --inventory INVENTORY (a pyinfra inventory file)", returncode=4)
    catalog = load_catalog(metafunc.config.getoption("--benchmark"))
    controls = select(catalog, metafunc.config.getoption("--section"))
    cases = [(h, c) for h in hosts for c in controls]
    metafunc.parametrize("hl_case", cases, ids=[f"{h.name}::{c.id}" for h, c in cases])


@pytest.fixture(scope="session")
def hl_facts(pytestconfig):
    return gather_all(pytestconfig.hardline_hosts)


class HostNotVerified(Exception):
    """Raised in setup so that JUnit records an <error>, not a failure or a pass."""


@pytest.fixture
def hl_result(hl_case, hl_facts, pytestconfig, record_property):
    host, control = hl_case
    catalog = load_catalog(pytestconfig.getoption("--benchmark"))
    results = evaluate(control, host, hl_facts[host.name], catalog)
    status = worst(r.status for r in results)
    for key, value in (("cis_id", control.id), ("title", control.title), ("level", control.level),
                       ("automated", control.automated), ("section", control.section), ("host", host.name),
                       ("status", status)):
        record_property(key, value)
    if status == ERROR:
        raise HostNotVerified(_messages(results, ERROR))
    return results


ORDER = (ERROR, FAIL, PASS)


def worst(statuses) -> str:
    """ERROR over FAIL over PASS; otherwise the first other status (SKIP, MANUAL, WAIVED)."""
    statuses = list(statuses)
    for status in ORDER:
        if status in statuses:
            return status
    return statuses[0]


def _messages(results, status) -> str:
    return "\n".join(f"{r.name}\n{r.message}" for r in results if r.status == status)


def assert_result(results):
    """The test body: all PASS passes, any FAIL fails with the evidence, otherwise a skip."""
    status = worst(r.status for r in results)
    if status not in (PASS, FAIL):
        pytest.skip(f"{status}: " + "; ".join(r.message for r in results))
    assert status == PASS, _messages(results, FAIL)
