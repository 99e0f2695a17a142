"""CIS Docker section 4 (images, content trust) and 6 (image and container sprawl)."""

from __future__ import annotations

import re
from typing import Any

from hardline.benchmarks.gather.core import HostFacts
from hardline.results import FAIL, MANUAL, PASS, SKIP, Verdict


def image_subject(image: dict[str, Any]) -> str:
    tags = image.get("RepoTags") or []
    name = ", ".join(tags) if tags else "<untagged>"
    return f"image {name} {image['Id'].removeprefix('sha256:')[:12]}"


def check_image_healthcheck(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> list[Verdict]:
    """4.6: every image on the host defines a HEALTHCHECK (and does not disable it)."""
    images = facts.need("images")
    expected = "a HEALTHCHECK instruction in the image"
    if not images:
        return [Verdict(SKIP, expected=expected, found="no images on this host: nothing to judge")]
    verdicts = []
    for image in sorted(images, key=image_subject):
        test = ((image.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
        ok = bool(test) and test[0] != "NONE"
        found = f"HEALTHCHECK {' '.join(test[1:]) or test[0]}" if ok else (
            "HEALTHCHECK NONE" if test else "no HEALTHCHECK")
        evidence = [] if ok else ["fix: add HEALTHCHECK CMD <probe> to the Dockerfile and rebuild "
                                  "(or give the containers --health-cmd / compose healthcheck:)"]
        verdicts.append(Verdict(PASS if ok else FAIL, expected=expected, found=found, evidence=evidence,
                                subject=image_subject(image)))
    return verdicts


ASSIGN = re.compile(r"^\s*(?:export\s+)?DOCKER_CONTENT_TRUST\s*=\s*['\"]?([^'\"\s;#]*)")


def check_content_trust(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """4.5: DOCKER_CONTENT_TRUST=1 in the environment every login gets (/etc/environment, or a
    profile script), and no later file setting it to something else."""
    lines = facts.need("content_trust")
    settings = [(path, m.group(1)) for path, line in lines if (m := ASSIGN.match(line))]
    expected = "DOCKER_CONTENT_TRUST=1 for every login (/etc/environment or /etc/profile.d)"
    if not settings:
        return Verdict(FAIL, expected=expected, found="DOCKER_CONTENT_TRUST is set in no system environment file",
                       evidence=["fix: echo DOCKER_CONTENT_TRUST=1 >> /etc/environment"
                                 " (hardline deploys it: docker_content_trust)"])
    wrong = [f"{path}: DOCKER_CONTENT_TRUST={value}" for path, value in settings if value != "1"]
    found = "; ".join(f"{path}: DOCKER_CONTENT_TRUST={value}" for path, value in settings)
    return Verdict(FAIL if wrong else PASS, expected=expected, found=found)


def check_sprawl(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """6.1 / 6.2 (manual items): the counts an operator needs, reported as MANUAL."""
    containers = facts.need("containers")
    if params["what"] == "images":
        images = facts.need("images")
        used = {c.get("Image") for c in containers}
        unused = [image_subject(i) for i in images if i["Id"] not in used]
        found = (f"{len(images)} images, {len(images) - len(unused)} used by a container, "
                 f"{len(unused)} unused")
        return Verdict(MANUAL, expected="only images in use are kept", found=found,
                       evidence=[f"unused: {', '.join(unused[:30])}"] if unused else [])
    states: dict[str, int] = {}
    for c in containers:
        state = (c.get("State") or {}).get("Status", "?")
        states[state] = states.get(state, 0) + 1
    running = states.get("running", 0)
    found = (f"{len(containers)} containers, {running} running, {len(containers) - running} not running"
             + (f" ({', '.join(f'{n} {s}' for s, n in sorted(states.items()) if s != 'running')})"
                if len(containers) > running else ""))
    return Verdict(MANUAL, expected="no stopped containers accumulating", found=found)
