"""sysctl check: runtime values and the values persisted for the next boot."""

from __future__ import annotations

import os
from typing import Any

from hardline.benchmarks.gather.core import HostFacts
from hardline.benchmarks.gather.host import SYSCTL_DIRS
from hardline.results import FAIL, PASS, SKIP, Verdict


def persisted_values(files: dict[str, str]) -> dict[str, tuple[str, str]]:
    """key -> (value, file) as systemd-sysctl applies them: *.conf by file name across the
    sysctl.d directories (an /etc file hides a same-named one further down), then sysctl.conf."""
    chosen: dict[str, str] = {}
    for directory in reversed(SYSCTL_DIRS):  # /etc last so that it wins a name clash
        for path in files:
            if os.path.dirname(path) == directory and path.endswith(".conf"):
                chosen[os.path.basename(path)] = path
    order = [chosen[name] for name in sorted(chosen)]
    # sysctl.conf, then any file outside the standard directories (a custom persist_file)
    order += [p for p in files if p not in order and os.path.dirname(p) not in SYSCTL_DIRS]
    values: dict[str, tuple[str, str]] = {}
    for path in order:
        for line in files[path].splitlines():
            line = line.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            key, _, value = line.partition("=")
            values[key.strip().lstrip("-").replace("/", ".")] = (" ".join(value.split()), path)
    return values


def check_sysctl(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    settings = {k: str(v) for k, v in params["settings"].items()}
    if not settings:
        return Verdict(SKIP, found="not asked: sysctl_settings is empty")
    runtime = facts.need("sysctl_runtime")
    persisted = persisted_values(facts.need("sysctl_files"))
    problems = []
    for key, want in sorted(settings.items()):
        now = runtime.get(key, "@@MISSING")
        if now == "@@MISSING":
            problems.append(f"{key}: not present in this kernel")
        elif " ".join(now.split()) != want:
            problems.append(f"{key}: running {now}, want {want}")
        saved = persisted.get(key)
        if saved is None:
            problems.append(f"{key}: not persisted in any sysctl file")
        elif saved[0] != want:
            problems.append(f"{key}: persisted as {saved[0]} in {saved[1]}, want {want}")
    expected = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
    found = "; ".join(problems) or f"all {len(settings)} parameters set at runtime and persisted"
    evidence = []
    if settings.get("net.ipv4.ip_forward") == "1":
        evidence.append("net.ipv4.ip_forward=1 on purpose: Docker's bridge networking routes container traffic "
                        "(the distribution benchmarks' ip_forward=0 does not apply to a container host)")
    return Verdict(FAIL if problems else PASS, expected=expected, found=found, evidence=evidence)
