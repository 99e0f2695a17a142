"""CIS Docker Benchmark v1.6.0 (and HL platform controls) on every inventory host."""

from hardline.benchmarks.pytest_plugin import assert_result


def test_control(hl_result):
    assert_result(hl_result)
