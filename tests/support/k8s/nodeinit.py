"""PID 1 of a test node's PID namespace: set the node's mounts up, then reap orphans.

    nsenter --net=/run/netns/<node> unshare --mount --uts --pid --fork --mount-proc \\
        --propagation private --kill-child python3 nodeinit.py <setup.sh>

Runs ``sh -e <setup.sh>`` (the node's overlays, tmpfs /run, hostname, ...; written by
:mod:`tests.support.k8s.node`), prints ``ready`` (or the script's error and exits), then stays
as the namespace's init: it reaps processes re-parented to it (containerd shims, daemons started
with ``nsenter --pid``) and on SIGTERM sends SIGTERM to every process of the node, waits a
little and exits. When it exits the kernel SIGKILLs whatever is left in the PID namespace and
the mount namespace goes with the last process, so nothing of a node outlives this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_SECONDS = 10


def shutdown(signum: int, frame: object) -> None:
    del signum, frame
    try:
        os.kill(-1, signal.SIGTERM)  # every process of this PID namespace but init itself
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if not any(p.isdigit() and p != "1" for p in os.listdir("/proc")):
            break
        time.sleep(0.1)
    os._exit(0)


def main(setup: str) -> int:
    done = subprocess.run(["sh", "-e", setup], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"setup failed (rc {done.returncode}): {done.stderr.strip()}", flush=True)
        return 1
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print("ready", flush=True)
    sys.stdout.close()
    os.close(1)  # the harness reads this pipe until EOF
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
