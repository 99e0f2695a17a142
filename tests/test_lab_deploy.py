"""The labs as test infrastructure, without a VM: the product never imports them, and a pyinfra
run's changes are read from pyinfra's own state (an unreadable count is an error, never 0)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from lab.deploy import ChangeCountUnknown, run_pyinfra

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_product_never_imports_the_labs():
    for path in (ROOT / "hardline").rglob("*.py"):
        labs = {n for n in _imported_modules(path) if n == "lab" or n.startswith(("lab.", "tests"))}
        assert not labs, (path, labs)
    assert not (ROOT / "hardline" / "lab.py").exists() and not (ROOT / "hardline" / "labrun.py").exists()
    proc = subprocess.run([sys.executable, "-m", "hardline.cli", "lab", "up"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice: 'lab'" in proc.stderr


DEPLOY = """
from pyinfra.operations import files, server
files.file(name="target file mode 600", path={path!r}, mode="600")
server.shell(name="only when asked", commands=["true"], _if=lambda: {fail!r})
"""


def test_changed_operations_are_read_from_pyinfras_state(tmp_path):
    target = tmp_path / "target"
    deploy = tmp_path / "deploy.py"
    deploy.write_text(DEPLOY.format(path=str(target), fail=False))
    first = run_pyinfra("@local", deploy=str(deploy), timeout=300)
    assert first.returncode == 0, first.stdout
    assert first.changed == 1 and first.changed_on("@local") == ["target file mode 600"]
    assert target.stat().st_mode & 0o777 == 0o600
    second = run_pyinfra("@local", deploy=str(deploy), timeout=300)
    assert second.changed == 0 and second.changed_on("@local") == []
    target.chmod(0o644)  # drift: the next run changes exactly one operation again
    assert run_pyinfra("@local", deploy=str(deploy), timeout=300).changed == 1


def test_a_count_that_cannot_be_read_is_an_error_never_zero(tmp_path):
    deploy = tmp_path / "deploy.py"
    deploy.write_text(DEPLOY.format(path=str(tmp_path / "target"), fail=False))
    # pyinfra exits 0 with an empty results table when it cannot make sense of the inventory (a
    # file name that does not exist: "neither an inventory file, a (list of) hosts or connectors")
    nothing = run_pyinfra("no-such-inventory.py", deploy=str(deploy), timeout=300)
    assert nothing.returncode == 0 and nothing.results == {"hosts": {}, "failed_hosts": []}, nothing.stdout
    with pytest.raises(ChangeCountUnknown, match="ran on no host"):
        nothing.changed
    # a deploy file that does not load: pyinfra stops before its results
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    stopped = run_pyinfra("@local", deploy=str(broken), timeout=300)
    assert stopped.returncode != 0 and stopped.results is None
    with pytest.raises(ChangeCountUnknown, match="did not dump its results"):
        stopped.changed
    # a dry run executes nothing and reports no results either
    with pytest.raises(ChangeCountUnknown):
        run_pyinfra("@local", "--dry", deploy=str(deploy), timeout=300).changed
