"""An OCI runtime wrapper so that `docker run --privileged` works on a test machine whose
capability bounding set lacks some capability (here CAP_SYS_RESOURCE).

runc refuses to start a privileged container when it cannot grant every capability. The
wrapper removes, from the bundle's config.json, the capabilities this machine cannot grant,
then execs the real runc. Everything else about the container stays as docker made it: the
HostConfig says Privileged, seccomp and the device cgroup are off, every other capability is
granted. Usage::

    daemon = factory({"runtimes": capfit_runtime(tmp_dir)})
    daemon.docker("run", "-d", "--runtime", CAPFIT, "--privileged", image, "sleep", "600")
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

CAPFIT = "hl-capfit"

_FIT = r'''
import json, sys
CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE"]
bnd = int(next(l for l in open("/proc/self/status") if l.startswith("CapBnd:")).split()[1], 16)
have = {"CAP_" + c for i, c in enumerate(CAPS) if bnd >> i & 1}
path = sys.argv[1]
spec = json.load(open(path))
caps = spec.get("process", {}).get("capabilities") or {}
for key, values in caps.items():
    caps[key] = [c for c in values if c in have]
json.dump(spec, open(path, "w"))
'''


def capfit_runtime(directory: str | Path) -> dict:
    """Write the wrapper into ``directory``; returns the daemon.json "runtimes" value."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "capfit.py").write_text(_FIT)
    runc = shutil.which("runc") or "/usr/sbin/runc"
    wrapper = directory / "capfit-runc"
    wrapper.write_text(
        "#!/bin/sh\n"
        'prev=""; for a in "$@"; do\n'
        f'  if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then {sys.executable} {directory}/capfit.py "$a/config.json"; fi\n'
        '  prev=$a\ndone\n'
        f'exec {runc} "$@"\n'
    )
    wrapper.chmod(0o755)
    return {CAPFIT: {"path": str(wrapper)}}
