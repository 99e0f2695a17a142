"""One child process per hardline process for everything that runs pyinfra: loading the
inventory (pyinfra_cli), gathering facts and running commands on hosts (pyinfra's connectors).

pyinfra does its I/O with gevent, whose monkey patching deadlocks a process that already runs
threads (a pytest session, a thread pool), so none of it runs in the caller. The child starts on
first use and serves every later request of this process: importing pyinfra and patching for
gevent (~0.5 s of CPU) is paid once, not once for the inventory and again for the hosts.

Protocol: the parent writes one pickled request at a time to the child's stdin, a dict with "op"
and "env" (the environment the request sees); the child answers on stdout with pickled tuples:

* ``{"op": "inventory", "file", "cwd"}``: ("inventory", hosts) or ("error", message);
* ``{"op": "gather"|"run", ...}``: see :mod:`hardline.benchmarks.remote`.

Whatever pyinfra prints goes to stderr, kept in a temporary file whose last line explains a
child that died.

Example::

    with conversation({"op": "inventory", "file": "inv.py", "cwd": "."}) as receive:
        kind, hosts = receive()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class WorkerDied(RuntimeError):
    """The child ended (or garbled the protocol) before it answered."""


@contextlib.contextmanager
def conversation(request: dict[str, Any]) -> Iterator[Callable[[], Any]]:
    """Send ``request`` to the child (started if needed) and yield ``receive()``, which reads its
    next answer; the child is this caller's until the block ends. Raises WorkerDied when the
    child dies meanwhile (it is restarted on the next request)."""
    with _LOCK:
        proc = _child()
        stdin, stdout = proc.stdin, proc.stdout
        assert stdin is not None and stdout is not None  # _child() opens both as pipes
        try:
            pickle.dump({"env": dict(os.environ), **request}, stdin)
            stdin.flush()
            yield lambda: pickle.load(stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as err:
            _stop(proc)
            raise WorkerDied(_stderr_tail() or type(err).__name__) from None


def start() -> None:
    """Start the child now (its imports then overlap with the caller's own work)."""
    with _LOCK:
        _child()


_LOCK = threading.Lock()
_PROC: subprocess.Popen | None = None
_STDERR: Any = None


def _child() -> subprocess.Popen:
    global _PROC, _STDERR
    if _PROC is None or _PROC.poll() is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")) if p)}
        _STDERR = tempfile.TemporaryFile()
        _PROC = subprocess.Popen([sys.executable, "-m", "hardline.worker"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=_STDERR, env=env)
        atexit.register(_stop, _PROC)
    return _PROC


def _stop(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream:
                stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stderr_tail() -> str:
    if _STDERR is None:
        return ""
    _STDERR.seek(0)
    lines = _STDERR.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


# ------------------------------------------------------------------------------ the child


def _patch_for_gevent() -> None:
    """gevent's monkey.patch_all, with importlib's entry points read once for this child's life:
    gevent asks once per module it patches (~25 times), pyinfra once per connector lookup (6 per
    inventory), typeguard once, and each answer reads every installed package's metadata
    (~12 ms each with ~130 packages installed). The installed packages do not change while a
    hardline process runs."""
    from importlib import metadata

    from gevent import monkey

    every = metadata.entry_points()
    # a stand-in for the overloaded stdlib function (select by keywords, as its callers here do)
    metadata.entry_points = lambda **selection: every.select(**selection) if selection else every  # type: ignore[assignment]
    monkey.patch_all()


def _inventory(request: dict[str, Any], out) -> None:
    from hardline.inventory_pyinfra import read_inventory

    try:
        os.chdir(request["cwd"])
        answer: tuple = ("inventory", read_inventory(request["file"], request["cwd"]))
    except BaseException as err:  # the inventory is code: anything it raises is the user's to see
        answer = ("error", f"{type(err).__name__}: {err}")
    pickle.dump(answer, out)
    out.flush()


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever pyinfra, paramiko or an inventory print must not corrupt the protocol
    sys.stdout = sys.stderr
    _patch_for_gevent()
    while True:
        try:
            request = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        os.environ.clear()
        os.environ.update(request["env"])
        if request["op"] == "inventory":
            _inventory(request, out)
        else:
            from hardline.benchmarks.remote import serve

            serve(request, out)


if __name__ == "__main__":
    main()
