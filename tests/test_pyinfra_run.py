"""The deploy tests' oracle (tests/support/pyinfra_run.py): changed operations and commands are
read from pyinfra's own state, and a run whose state cannot be read fails the test instead of
counting as "nothing changed"."""

from __future__ import annotations

import pytest

from tests.support.pyinfra_run import deploy

TOUCH = """from pyinfra.operations import files
files.file(name="a file", path={path!r}, touch=False)
"""


def test_changes_and_commands_come_from_pyinfra_state(tmp_path):
    target = tmp_path / "made-by-pyinfra"
    first = deploy(tmp_path / "first", [("@local", {})], TOUCH.format(path=str(target)))
    assert first.returncode == 0 and target.exists()
    assert first.changed == {"@local": ["a file"]}
    assert first.commands["@local"] >= 2  # the File fact, then touch
    second = deploy(tmp_path / "second", [("@local", {})], TOUCH.format(path=str(target)))
    assert second.changed == {"@local": []} and second.commands["@local"] >= 1
    dry = deploy(tmp_path / "dry", [("@local", {})], TOUCH.format(path=str(tmp_path / "other")), dry=True)
    assert dry.stage == "planned" and dry.changed == {"@local": ["a file"]} and not (tmp_path / "other").exists()


def test_a_run_that_never_reaches_its_results_cannot_pass_as_unchanged(tmp_path):
    with pytest.raises(AssertionError, match="the change count cannot be read"):
        deploy(tmp_path, [("@local", {})], "raise SystemExit('deploy file broken')\n")
    run = deploy(tmp_path, [("@local", {})], "raise SystemExit('deploy file broken')\n", expect_state=False)
    assert run.returncode != 0 and run.stage == "start" and run.changed == {}
