"""Every benchmark that applies to each inventory host (CIS Docker, CIS Kubernetes, hardline's
platform controls): one test per host, control and subject."""

from hardline.benchmarks.pytest_plugin import assert_result


def test_control(hl_result):
    assert_result(hl_result)
